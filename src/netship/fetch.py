"""Fetch: verified, cached, unpacked release assets.

``fetch(settings, assets)`` makes, for each asset,

- the raw verified file at ``settings.blob_dir / <sha256 hex>`` (downloaded through the
  mirrors into ``partial/`` and renamed into place only after its sha256 matched the pin);
- the unpacked tree at ``tree_path(settings, asset)`` = ``tree/COMPONENT/VERSION/ARCH/``
  (archive members with "./" stripped and the catalog's ``rename`` applied, raw binaries
  under their catalog ``binary`` name, executables 0755), every ELF file in it checked
  against the asset's arch before the tree is put in place.

What is already cached and recorded is not touched, so a second fetch makes no request;
``verify=True`` re-hashes blobs and tree files and replaces whatever is corrupt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import elf
from .arch import Arch
from .cache import Cache
from .catalog import LOCK_FILE, Asset
from .checksums import FileCache, UpstreamChecksum, fetch_upstream_checksum
from .digest import CHUNK, Digest
from .download import Downloader, mirror_urls
from .errors import ChecksumMismatch, ConfigError, FetchError, NetshipError, WrongArchitecture
from .fsutil import atomic_write_json
from .output import note
from .progress import PlainProgress, make_progress
from .settings import Settings
from .unpack import member_ids, place_binary, unpack_tar

CACHED = "cached"
DOWNLOADED = "downloaded"


@dataclass(frozen=True)
class FetchedAsset:
    key: str  # COMPONENT/VERSION/ARCH
    component: str
    version: str
    arch: Arch
    name: str  # asset file name
    url: str  # upstream URL from the catalog
    digest: Digest
    size: int
    status: str  # cached | downloaded
    source: str | None  # URL the bytes came from this run (None when cached)
    pinned: bool
    pin_source: str  # where the pin came from, or "unpinned"
    upstream_checksum: str  # for unpinned assets: what upstream's checksum file said
    blob: Path
    tree: Path
    files: tuple[str, ...]
    repaired: tuple[str, ...] = ()  # what --verify found corrupt and replaced
    rejected: tuple[str, ...] = ()  # checksum mismatches from mirrors tried before the one that worked

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "component": self.component, "version": self.version,
            "arch": self.arch.k8s, "asset": self.name, "url": self.url,
            "digest": str(self.digest), "bytes": self.size, "status": self.status,
            "source": self.source, "pinned": self.pinned, "pin_source": self.pin_source,
            "upstream_checksum": self.upstream_checksum, "blob": str(self.blob),
            "tree": str(self.tree), "files": list(self.files), "repaired": list(self.repaired),
            "rejected_mirrors": list(self.rejected),
        }


@dataclass(frozen=True)
class FetchReport:
    assets: tuple[FetchedAsset, ...]
    skipped: tuple[str, ...] = ()
    requests: int = 0
    retries: int = 0
    seconds: float = 0.0

    @property
    def unpinned(self) -> tuple[str, ...]:
        return tuple(a.key for a in self.assets if not a.pinned)

    def to_json(self) -> dict[str, Any]:
        return {
            "assets": [a.to_json() for a in self.assets],
            "downloaded": sum(a.status == DOWNLOADED for a in self.assets),
            "cached": sum(a.status == CACHED for a in self.assets),
            "bytes_downloaded": sum(a.size for a in self.assets if a.status == DOWNLOADED),
            "unpinned": list(self.unpinned),
            "skipped": list(self.skipped),
            "http_requests": self.requests,
            "retries": self.retries,
        }

    def human(self) -> list[str]:
        lines = []
        for a in self.assets:
            flag = "" if a.pinned else f"  UNPINNED (upstream checksum: {a.upstream_checksum})"
            fixed = f"  repaired: {', '.join(a.repaired)}" if a.repaired else ""
            fixed += f"  ({len(a.rejected)} mirror(s) served wrong bytes)" if a.rejected else ""
            lines.append(f"{a.status:10} {a.key:46} {a.digest.hex[:16]}  {a.size:>11} B  {a.tree}{flag}{fixed}")
        lines.append(f"{len(self.assets)} assets: {self.to_json()['downloaded']} downloaded, "
                     f"{self.to_json()['cached']} cached, {len(self.unpinned)} unpinned"
                     + (f", {len(self.skipped)} arch(es) skipped (not published)" if self.skipped else ""))
        return lines


def tree_path(settings: Settings, asset_or_component: Asset | str, version: str | None = None,
              arch: Arch | str | None = None) -> Path:
    """``tree/COMPONENT/VERSION/ARCH`` for an Asset or for (component, version, arch)."""
    if isinstance(asset_or_component, Asset):
        comp, version, arch = asset_or_component.component.name, asset_or_component.version, asset_or_component.arch
    else:
        comp = asset_or_component
        if version is None or arch is None:
            raise TypeError("tree_path(settings, component, version, arch) needs version and arch")
    arch_s = arch.k8s if isinstance(arch, Arch) else Arch.parse(str(arch)).k8s
    return settings.tree_dir / comp / version / arch_s


def unpinned_refusal(settings: Settings, assets: Sequence[Asset]) -> ConfigError:
    versions = sorted({(a.component.name, a.version) for a in assets})
    how = "; ".join(f"netship pins update --component {c} --version {v}" for c, v in versions)
    keys = ", ".join(a.key for a in assets)
    return ConfigError(
        f"{settings.catalog_dir / LOCK_FILE}: no pinned sha256 for {len(assets)} asset(s): {keys}; "
        f"pin them where upstream or a mirror is reachable with `{how}` "
        f"(add --select to switch to that version), or pass --allow-unpinned to fetch them unverified "
        f"against a pin (checked against upstream's checksum file where one exists)")


def fetch(
    settings: Settings,
    assets: Sequence[Asset],
    *,
    verify: bool = False,
    allow_unpinned: bool = False,
    skipped: Sequence[str] = (),
    progress: Any = None,
    downloader: Downloader | None = None,
) -> FetchReport:
    """Make every asset present, verified and unpacked. Raises NetshipError on failure
    (after the other assets finished); unpinned assets are refused unless allowed."""
    started = time.monotonic()
    allow_unpinned = allow_unpinned or settings.allow_unpinned
    unpinned = [a for a in assets if not a.pin.known]
    if unpinned and not allow_unpinned:
        raise unpinned_refusal(settings, unpinned)
    for a in unpinned:
        note(f"{a.key}: no pin; fetching UNPINNED (--allow-unpinned)")
    cache = Cache(settings)
    downloader = downloader or Downloader(settings)
    checksum_files = FileCache()
    results: list[FetchedAsset | BaseException] = [None] * len(assets)  # type: ignore[list-item]
    progress = progress if progress is not None else (make_progress() if assets else PlainProgress())

    def one(i: int, asset: Asset) -> None:
        try:
            results[i] = _fetch_one(settings, cache, downloader, asset, verify, progress, checksum_files)
        except (NetshipError, OSError) as e:
            results[i] = e

    with progress:
        if settings.jobs <= 1 or len(assets) <= 1:
            for i, a in enumerate(assets):
                one(i, a)
        else:
            pool = ThreadPoolExecutor(max_workers=min(settings.jobs, len(assets)))
            try:
                for f in [pool.submit(one, i, a) for i, a in enumerate(assets)]:
                    f.result()
            except BaseException:  # Ctrl-C: stop the downloads in flight, keep their partials
                downloader.cancel()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown()
    failures = [(a, r) for a, r in zip(assets, results, strict=True) if isinstance(r, BaseException)]
    if failures:
        for a, err in failures:
            note(f"FAILED {a.key}: {err}")
        if len(failures) == 1:
            err = failures[0][1]
            raise err if isinstance(err, NetshipError) else FetchError(f"{failures[0][0].key}: {err}")
        a, err = failures[0]
        raise FetchError(f"{len(failures)} of {len(assets)} assets failed (each is listed above); first: {err}")
    return FetchReport(
        tuple(r for r in results if isinstance(r, FetchedAsset)), tuple(skipped),
        downloader.requests_made, len(downloader.retries), time.monotonic() - started,
    )


# -- one asset -------------------------------------------------------------------------------

def _fetch_one(settings: Settings, cache: Cache, downloader: Downloader, asset: Asset, verify: bool,
               progress: Any, checksum_files: FileCache) -> FetchedAsset:
    cb = progress.for_asset(asset.key)
    urls = mirror_urls(settings, asset.url)
    repaired: list[str] = []
    rejected: list[str] = []
    if asset.pin.known:
        digest = asset.pin.sha256
        assert digest is not None
        status, source, size = _ensure_blob(cache, downloader, digest, urls, asset.key, verify, cb, repaired,
                                            rejected)
        upstream_note = "not needed (pinned)"
    else:
        digest, status, source, size, upstream_note = _ensure_unpinned(
            settings, cache, downloader, asset, urls, verify, cb, repaired, checksum_files)
    files = _ensure_tree(settings, cache, asset, digest, verify, repaired)
    cb("done", status=status + (" (repaired)" if repaired else ""))
    return FetchedAsset(
        key=asset.key, component=asset.component.name, version=asset.version, arch=asset.arch,
        name=asset.name, url=asset.url, digest=digest, size=size, status=status, source=source,
        pinned=asset.pin.known, pin_source=asset.pin.source if asset.pin.known else "unpinned",
        upstream_checksum=upstream_note, blob=cache.blob_path(digest), tree=tree_path(settings, asset),
        files=tuple(files), repaired=tuple(repaired), rejected=tuple(rejected),
    )


def _ensure_blob(cache: Cache, downloader: Downloader, digest: Digest, urls: list[str], what: str,
                 verify: bool, cb: Any, repaired: list[str], rejected: list[str]) -> tuple[str, str | None, int]:
    path = cache.blob_path(digest)
    if not verify and path.is_file():  # fast path: no lock, no hashing, no request
        return CACHED, None, path.stat().st_size
    with cache.lock(digest.hex):
        if path.is_file():
            if not verify or cache.verify_blob(digest):
                return CACHED, None, path.stat().st_size
            note(f"{what}: cached blob {path} is corrupt; removed, downloading again")
            repaired.append("blob")
        got = downloader.download(urls, cache.partial_path(digest.hex), what=what, expected=digest, progress=cb)
        cache.commit(cache.partial_path(digest.hex), digest)
        rejected.extend(got.rejected)
        return DOWNLOADED, got.url, got.size


def _ensure_unpinned(settings: Settings, cache: Cache, downloader: Downloader, asset: Asset,
                     urls: list[str], verify: bool, cb: Any, repaired: list[str],
                     checksum_files: FileCache) -> tuple[Digest, str, str | None, int, str]:
    index = cache.unpinned_dir / asset.component.name / asset.version / f"{asset.arch.k8s}.json"
    name = cache.key_name(asset.key)
    with cache.lock(name):
        with contextlib.suppress(OSError, ValueError, KeyError, NetshipError):
            rec = json.loads(index.read_text())
            digest = Digest.sha256_hex(rec["sha256"])
            if cache.has(digest) and (not verify or cache.verify_blob(digest)):
                return digest, CACHED, None, cache.blob_path(digest).stat().st_size, rec["upstream_checksum"]
            if verify:
                repaired.append("blob")
        upstream = fetch_upstream_checksum(settings, downloader, asset.component, asset.arch, asset.version,
                                           checksum_files)
        digest, got_url, size = download_unpinned(cache, downloader, asset, urls, upstream, cb)
        upstream_note = (f"matches upstream {upstream.file_name} ({upstream.algorithm})" if upstream
                         else "upstream publishes none")
        atomic_write_json(index, {"sha256": digest.hex, "upstream_checksum": upstream_note, "source": got_url})
        return digest, DOWNLOADED, got_url, size, upstream_note


def download_unpinned(cache: Cache, downloader: Downloader, asset: Asset, urls: list[str],
                      upstream: UpstreamChecksum | None, cb: Any = None) -> tuple[Digest, str, int]:
    """Download an asset whose sha256 is not pinned, check it against upstream's checksum when
    given, and store it in the cache. Returns (sha256, URL it came from, size)."""
    part = cache.partial_path(cache.key_name(asset.key))
    expected = Digest.sha256_hex(upstream.hex) if upstream and upstream.algorithm == "sha256" else None
    got = downloader.download(urls, part, what=asset.key, expected=expected,
                              progress=cb or (lambda *a, **k: None))
    if upstream is not None and upstream.algorithm != "sha256":
        h = hashlib.new(upstream.algorithm)
        with open(part, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
        if h.hexdigest() != upstream.hex:
            part.unlink()
            raise ChecksumMismatch(f"{asset.key} ({upstream.algorithm} from {upstream.file_name})",
                                   upstream.hex, h.hexdigest(), got.url)
    with cache.lock(got.digest.hex):
        if cache.has(got.digest):
            part.unlink()
        else:
            cache.commit(part, got.digest)
    return got.digest, got.url, got.size


# -- the unpacked tree --------------------------------------------------------------------------

def _state_path(cache: Cache, asset: Asset) -> Path:
    return cache.state_dir / asset.component.name / asset.version / f"{asset.arch.k8s}.json"


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _file_id(p: Path, with_hash: bool) -> str:
    if p.is_symlink():
        return "symlink:" + os.readlink(p)
    mode = "x" if os.stat(p).st_mode & 0o111 else "-"
    if not with_hash:
        return f"file:{mode}"
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}:{mode}"


def _tree_ok(tree: Path, blob: Path, asset: Asset) -> bool:
    """--verify: the tree holds exactly what the blob unpacks to (re-hashing both sides)."""
    comp = asset.component
    if comp.format == "binary":
        from .digest import sha256_file

        expected = {str(comp.binary): f"sha256:{sha256_file(blob).hex}:x"}
    else:
        expected = member_ids(blob, what=asset.name, rename=lambda n: comp.renamed(n, asset.arch))
    present = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_symlink() or p.is_file()}
    if present != set(expected):
        return False
    return all(_file_id(tree / rel, with_hash=True) == want for rel, want in expected.items())


def _ensure_tree(settings: Settings, cache: Cache, asset: Asset, digest: Digest, verify: bool,
                 repaired: list[str]) -> list[str]:
    tree = tree_path(settings, asset)
    state_path = _state_path(cache, asset)
    state = _read_state(state_path)
    if not verify and state and state.get("blob") == digest.hex and tree.is_dir():
        return sorted(state["files"])
    with cache.lock("tree-" + cache.key_name(asset.key)):
        state = _read_state(state_path)
        if state and state.get("blob") == digest.hex and tree.is_dir():
            if not verify or _tree_ok(tree, cache.blob_path(digest), asset):
                return sorted(state["files"])
            note(f"{asset.key}: unpacked tree {tree} differs from what was unpacked; unpacking again")
            repaired.append("tree")
        tree.parent.mkdir(parents=True, exist_ok=True)
        for stale in tree.parent.glob(f".netship-*-{asset.arch.k8s}-*"):  # left by an interrupted run;
            shutil.rmtree(stale, ignore_errors=True)  # ours alone: we hold this tree's lock
        tmp = Path(tempfile.mkdtemp(prefix=f".netship-tmp-{asset.arch.k8s}-", dir=tree.parent))
        try:
            os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the tree is meant to be read (e.g. by docker build)
            files = _unpack(cache.blob_path(digest), tmp, asset)
            ids = {rel: _file_id(tmp / rel, with_hash=False) for rel in files}
            old = None
            if tree.exists() or tree.is_symlink():
                old = Path(tempfile.mkdtemp(prefix=f".netship-old-{asset.arch.k8s}-", dir=tree.parent))
                os.replace(tree, old / "t")
            os.replace(tmp, tree)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        atomic_write_json(state_path, {"asset": asset.name, "blob": digest.hex, "files": ids})
        return sorted(files)


def _unpack(blob: Path, dest: Path, asset: Asset) -> list[str]:
    comp = asset.component
    what = f"{asset.name} ({asset.key})"
    if comp.format == "binary":
        assert comp.binary is not None
        files = place_binary(blob, dest, comp.binary)
        elf.check(dest / comp.binary, asset.arch, f"{what}: {comp.binary}", require_elf=True)
        return files
    files = unpack_tar(blob, dest, what=what, rename=lambda n: comp.renamed(n, asset.arch))
    n_elf = 0
    for rel in files:
        p = dest / rel
        if p.is_file() and not p.is_symlink() and elf.check(p, asset.arch, f"{what}: {rel}") is not None:
            n_elf += 1
    if n_elf == 0:
        raise WrongArchitecture(f"{what}: archive holds no ELF binary at all (expected binaries for {asset.arch.k8s})")
    return files

