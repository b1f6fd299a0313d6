"""HTTP downloads: streaming, resumable (Range), retried with backoff, mirror after mirror.

One ``Downloader`` per run. ``download(urls, part, ...)`` streams the first URL that works
into the partial file ``part`` while hashing it, resuming from what ``part`` already holds.

Rules (each one is tested against a real loopback server):
- connection errors, resets, timeouts, short bodies, 5xx and 429 are retried with
  exponential backoff (``settings.backoff`` doubling, capped); ``Retry-After`` is honoured;
- any other 4xx is not retried: that mirror is skipped;
- at most ``settings.retries + 1`` attempts per URL, then the next mirror;
- a retry resumes with ``Range: bytes=N-``; a 200 answer to it means the server ignored
  Range, so the partial is discarded and the body taken from byte 0; a 206 for another
  range is refused (partial discarded, next attempt starts over);
- redirects are followed; TLS is always verified (``settings.ca_bundle`` may add a CA);
  proxies come from the environment through requests' ``trust_env``;
- when an expected digest is given, a mismatch deletes the partial, is reported, and the
  next mirror is tried.
"""

from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

from . import __version__
from .digest import Digest
from .errors import ChecksumMismatch, FetchError
from .output import note
from .settings import UPSTREAM, Settings

CHUNK = 1 << 20
MAX_BACKOFF = 30.0
MAX_RETRY_AFTER = 300.0
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
USER_AGENT = f"netship/{__version__}"

# progress(event, **fields): "start"(url, offset, total) "advance"(n) "restart"() "retry"(reason, wait)
ProgressFn = Callable[..., None]


def _noop(*_a: object, **_k: object) -> None:
    pass


@dataclass(frozen=True)
class Downloaded:
    url: str  # where the bytes came from (after mirror choice, before redirects)
    digest: Digest  # sha256 of the complete file
    size: int
    attempts: int
    resumed: bool = False  # some bytes came from an earlier attempt or run (HTTP Range)
    rejected: tuple[str, ...] = ()  # mirrors tried before this one that served wrong bytes


@dataclass(frozen=True)
class RetryEvent:
    url: str
    reason: str
    wait: float


class _Retry(Exception):
    """A failure worth another attempt on the same URL."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


class _GiveUp(Exception):
    """A failure that another attempt on this URL will not fix (4xx): try the next mirror."""


def mirror_urls(settings: Settings, upstream_url: str) -> list[str]:
    """The URLs to try for one upstream URL, in the order of ``settings.mirrors``.

    A mirror base M serves ``https://HOST/PATH`` at ``M/HOST/PATH``; "upstream" is the URL itself.
    """
    parts = urlsplit(upstream_url)
    out: list[str] = []
    for base in settings.mirrors:
        url = upstream_url if base == UPSTREAM else f"{base.rstrip('/')}/{parts.netloc}{parts.path}"
        if url not in out:
            out.append(url)
    return out


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return min(max(0.0, float(value)), MAX_RETRY_AFTER)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when - (time.time() if now is None else now)), MAX_RETRY_AFTER)


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class Downloader:
    """Thread-safe: each thread gets its own requests.Session."""

    def __init__(self, settings: Settings, sleep: Callable[[float], None] | None = None):
        self.settings = settings
        self._cancel = threading.Event()
        self.sleep = sleep or self._cancel.wait  # a backoff sleep ends early on cancel()
        self._local = threading.local()
        self._lock = threading.Lock()
        self.retries: list[RetryEvent] = []  # every retry taken, for reports and tests
        # Always verify TLS. Given per request so that REQUESTS_CA_BUNDLE in the environment
        # cannot override an explicit --ca-bundle (requests would let it).
        self._verify: str | bool = str(settings.ca_bundle) if settings.ca_bundle else True
        self.requests_made = 0

    def cancel(self) -> None:
        """Stop every download soon (Ctrl-C): partial files stay for the next run to resume."""
        self._cancel.set()

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise FetchError("interrupted")

    # -- sessions -------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.trust_env = True  # HTTP(S)_PROXY / NO_PROXY from the environment
            s.headers["User-Agent"] = USER_AGENT
            s.headers["Accept-Encoding"] = "identity"  # we hash the bytes as served
            self._local.session = s
        return s

    def _get(self, url: str, headers: dict[str, str] | None = None) -> requests.Response:
        self._check_cancel()
        with self._lock:
            self.requests_made += 1
        if url.startswith("file://"):
            raise _GiveUp("file:// URLs are read directly")  # handled by callers
        return self._session().get(
            url, headers=headers or {}, stream=True, allow_redirects=True, verify=self._verify,
            timeout=(self.settings.timeout, self.settings.timeout),
        )

    def _backoff(self, url: str, attempt: int, reason: str, retry_after: float | None,
                 progress: ProgressFn) -> None:
        wait = min(self.settings.backoff * (2 ** (attempt - 1)), MAX_BACKOFF)
        if retry_after is not None:
            wait = max(wait, retry_after)
        with self._lock:
            self.retries.append(RetryEvent(url, reason, wait))
        progress("retry", reason=reason, wait=wait)
        note(f"{url}: {reason}; retrying in {wait:.2f} s (attempt {attempt + 1} of {self.settings.retries + 1})")
        self.sleep(wait)
        self._check_cancel()

    # -- small files (checksum files) -----------------------------------------------------
    def get_text(self, urls: Sequence[str], what: str) -> tuple[str, str]:
        """Body of the first URL that answers 200, as text; returns (text, url)."""
        errors: list[str] = []
        for url in urls:
            if url.startswith("file://"):
                path = Path(urlsplit(url).path)
                try:
                    return path.read_text(), url
                except OSError as e:
                    errors.append(f"{url}: {e.strerror}")
                    continue
            attempts = self.settings.retries + 1
            for attempt in range(1, attempts + 1):
                try:
                    with self._get(url) as r:
                        self._check_status(r)
                        return r.content.decode("utf-8", "replace"), url
                except _GiveUp as e:
                    errors.append(f"{url}: {e}")
                    break
                except (_Retry, requests.RequestException) as e:
                    reason = str(e) if isinstance(e, _Retry) else _describe(e)
                    if attempt == attempts:
                        errors.append(f"{url}: {reason} (after {attempts} attempts)")
                        break
                    self._backoff(url, attempt, reason, getattr(e, "retry_after", None), _noop)
        raise FetchError(f"{what}: could not download from any mirror: {'; '.join(errors)}")

    @staticmethod
    def _check_status(r: requests.Response) -> None:
        if r.status_code in RETRY_STATUS or r.status_code >= 500:
            raise _Retry(f"HTTP {r.status_code}", parse_retry_after(r.headers.get("Retry-After")))
        if r.status_code >= 400:
            raise _GiveUp(f"HTTP {r.status_code}")

    # -- assets ---------------------------------------------------------------------------
    def download(
        self,
        urls: Sequence[str],
        part: Path,
        *,
        what: str,
        expected: Digest | None = None,
        progress: ProgressFn = _noop,
    ) -> Downloaded:
        """Download into ``part`` (resuming it) from the first URL that yields the right bytes.

        On success ``part`` holds the complete file; the caller renames it into place.
        Raises ChecksumMismatch when every mirror served wrong bytes and at least one
        mismatch happened, FetchError otherwise. ``part`` is removed after a mismatch.
        """
        part.parent.mkdir(parents=True, exist_ok=True)
        errors: list[str] = []
        mismatches: list[ChecksumMismatch] = []
        for url in urls:
            try:
                if url.startswith("file://"):
                    got = self._copy_file(url, part, progress)
                else:
                    got = self._download_one(url, part, progress)
                if expected is not None and got.digest != expected and got.resumed:
                    # the partial we resumed may have been bad: one clean download from byte 0
                    note(f"{what}: resumed download from {url} did not verify; downloading again from byte 0")
                    _unlink(part)
                    got = self._download_one(url, part, progress)
            except _GiveUp as e:
                errors.append(f"{url}: {e}")
                continue
            if expected is not None and got.digest != expected:
                _unlink(part)
                err = ChecksumMismatch(what, expected.hex, got.digest.hex, url)
                note(f"{err}; trying the next mirror" if url != urls[-1] else str(err))
                mismatches.append(err)
                errors.append(f"{url}: sha256 {got.digest.hex} (expected {expected.hex})")
                continue
            if mismatches:
                return dataclasses.replace(got, rejected=tuple(str(m) for m in mismatches))
            return got
        if mismatches and len(mismatches) == len(urls):
            raise mismatches[-1] if len(urls) == 1 else ChecksumMismatch(
                what, mismatches[-1].expected, mismatches[-1].actual,
                f"every mirror ({len(urls)}); last {mismatches[-1].source}")
        if mismatches:
            raise ChecksumMismatch(what, mismatches[-1].expected, mismatches[-1].actual,
                                   f"{mismatches[-1].source}; other mirrors failed: {'; '.join(errors)}")
        raise FetchError(f"{what}: could not download from any mirror: {'; '.join(errors)}")

    def _copy_file(self, url: str, part: Path, progress: ProgressFn) -> Downloaded:
        src = Path(urlsplit(url).path)
        if not src.is_file():
            raise _GiveUp("no such file")
        h = hashlib.sha256()
        n = 0
        progress("start", url=url, offset=0, total=src.stat().st_size)
        with open(src, "rb") as fin, open(part, "wb") as fout:
            for chunk in iter(lambda: fin.read(CHUNK), b""):
                h.update(chunk)
                fout.write(chunk)
                n += len(chunk)
                progress("advance", n=len(chunk))
        return Downloaded(url, Digest("sha256", h.hexdigest()), n, 1)

    def _download_one(self, url: str, part: Path, progress: ProgressFn) -> Downloaded:
        """Attempts on one URL. Raises _GiveUp when this URL will not work."""
        attempts = self.settings.retries + 1
        hasher, offset = _rehash(part)
        last = ""
        for attempt in range(1, attempts + 1):
            try:
                total, hasher = self._attempt(url, part, hasher, offset, progress)
                return Downloaded(url, Digest("sha256", hasher.hexdigest()), total, attempt,
                                  resumed=total > 0 and self._local.resumed)
            except _Retry as e:
                last, retry_after = str(e), e.retry_after
            except requests.exceptions.SSLError as e:
                raise _GiveUp(f"TLS error: {_describe(e)}") from None
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                    urllib3.exceptions.HTTPError, OSError) as e:
                # resets, refused connections, timeouts, bodies cut short (urllib3 raises
                # these directly from the raw stream we read)
                last, retry_after = _describe(e), None
            except requests.RequestException as e:
                raise _GiveUp(_describe(e)) from None
            # what we have so far stays in `part`: the next attempt resumes from there
            hasher, offset = _rehash(part)
            if attempt == attempts:
                break
            self._backoff(url, attempt, last, retry_after, progress)
        raise _GiveUp(f"{last} (after {attempts} attempts)")

    def _attempt(self, url: str, part: Path, hasher, offset: int, progress: ProgressFn) -> tuple[int, object]:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        self._local.resumed = False
        with self._get(url, headers) as r:
            if r.status_code == 416 and offset:
                _unlink(part)
                raise _Retry(f"HTTP 416 for bytes={offset}-: starting over")
            self._check_status(r)
            expected_len: int | None = None
            cl = r.headers.get("Content-Length")
            if offset and r.status_code == 206:
                m = _CONTENT_RANGE.match(r.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != offset:
                    _unlink(part)  # never splice bytes from the wrong place
                    raise _Retry(f"refused HTTP 206 with Content-Range "
                                 f"{r.headers.get('Content-Range')!r} for Range bytes={offset}-; starting over")
                mode = "ab"
                self._local.resumed = True
                total = None if m.group(3) == "*" else int(m.group(3))
            elif r.status_code == 200:
                if offset:
                    note(f"{url}: server ignored Range (answered 200); starting over from byte 0")
                    progress("restart")
                hasher = hashlib.sha256()
                offset = 0
                mode = "wb"
                total = int(cl) if cl and cl.isdigit() else None
            else:
                raise _GiveUp(f"unexpected HTTP {r.status_code}")
            if cl and cl.isdigit():
                expected_len = int(cl)
            progress("start", url=url, offset=offset, total=total)
            got = 0
            # read1: whatever has arrived (up to CHUNK), so bytes received before a reset are kept
            read = getattr(r.raw, "read1", None) or r.raw.read
            with open(part, mode) as f:
                while True:
                    self._check_cancel()
                    chunk = read(CHUNK, decode_content=False)
                    if not chunk:
                        break
                    hasher.update(chunk)
                    f.write(chunk)
                    got += len(chunk)
                    progress("advance", n=len(chunk))
                f.flush()
                os.fsync(f.fileno())
            if expected_len is not None and got != expected_len:
                raise _Retry(f"body ended after {got} of {expected_len} bytes")
            size = offset + got
            if total is not None and size != total:
                raise _Retry(f"have {size} of {total} bytes")
            return size, hasher


def _rehash(part: Path):
    """(sha256 hasher fed with what ``part`` holds, its size); (fresh, 0) when absent."""
    h = hashlib.sha256()
    n = 0
    try:
        with open(part, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
                n += len(chunk)
    except FileNotFoundError:
        pass
    return h, n


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _describe(e: BaseException) -> str:
    """A one-line reason for a requests exception (its str can span lines and nest reprs)."""
    kind = type(e).__name__
    text = str(e).replace("\n", " ")
    for marker in ("Connection reset", "Connection refused", "Read timed out", "timed out",
                   "IncompleteRead", "Connection broken", "Remote end closed", "Max retries exceeded"):
        if marker in text:
            return f"{kind}: {marker.lower()}"
    return f"{kind}: {text[:160]}"
