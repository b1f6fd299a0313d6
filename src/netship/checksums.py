"""Upstream checksum files: read them in every layout upstream uses.

- per-asset: ``ASSET.sha256`` / ``.sha256sum`` / ``.sha512`` with one ``HEX  NAME`` line
  (or a bare HEX);
- combined: ``SHA256SUMS``, goreleaser ``checksums.txt``, ``NAME_VERSION_checksums.txt``,
  one ``HEX  NAME`` (or ``HEX *NAME``) line per asset; BSD ``SHA256 (NAME) = HEX`` too.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .arch import Arch
from .catalog import Component
from .download import Downloader, mirror_urls
from .errors import FetchError
from .settings import Settings

_HEXLEN = {"sha256": 64, "sha512": 128, "sha1": 40}
_GNU = re.compile(r"^([0-9a-fA-F]+)\s+\*?(.+?)\s*$")
_BSD = re.compile(r"^(\w+)\s*\((.+)\)\s*=\s*([0-9a-fA-F]+)\s*$")
_BARE = re.compile(r"^([0-9a-fA-F]+)\s*$")


@dataclass(frozen=True)
class UpstreamChecksum:
    algorithm: str
    hex: str
    file_url: str  # the checksum file's upstream URL (what the pin records)
    served_from: str  # the URL it was actually read from (a mirror, maybe)

    @property
    def file_name(self) -> str:
        return self.file_url.rsplit("/", 1)[-1]


def parse(text: str, algorithm: str, where: str) -> dict[str, str]:
    """Map asset name -> lowercase hex; a bare-hex file maps "" -> hex."""
    want = _HEXLEN[algorithm]
    out: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _GNU.match(line)
        if m:
            hexv, name = m.group(1), m.group(2).strip()
        elif (m := _BSD.match(line)):
            hexv, name = m.group(3), m.group(2).strip()
        elif (m := _BARE.match(line)):
            hexv, name = m.group(1), ""
        else:
            raise FetchError(f"{where}: line {lineno}: not a checksum line: {line[:80]!r}")
        if len(hexv) != want:
            raise FetchError(f"{where}: line {lineno}: {algorithm} must have {want} hex digits, got {len(hexv)}")
        out[name.removeprefix("./").rsplit("/", 1)[-1] if name else ""] = hexv.lower()
    return out


def lookup(entries: dict[str, str], asset_name: str, where: str) -> str:
    if asset_name in entries:
        return entries[asset_name]
    if len(entries) == 1 and "" in entries:
        return entries[""]
    raise FetchError(f"{where}: no checksum line for {asset_name}")


class FileCache:
    """Checksum files already read this run (URL -> (text, served_from)), shared by threads:
    a combined file is fetched once, not once per arch."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[str, str]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, url: str, load: Callable[[], tuple[str, str]]) -> tuple[str, str]:
        with self._lock:
            lock = self._locks.setdefault(url, threading.Lock())
        with lock:
            if url not in self._files:
                self._files[url] = load()
            return self._files[url]


def fetch_upstream_checksum(
    settings: Settings, downloader: Downloader, comp: Component, arch: Arch, version: str,
    cache: FileCache | None = None,
) -> UpstreamChecksum | None:
    """Upstream's checksum for one asset, read through the mirrors; None when upstream publishes none."""
    url = comp.checksum_url(arch, version)
    if url is None:
        return None
    cache = cache or FileCache()
    text, served = cache.get(url, lambda: downloader.get_text(mirror_urls(settings, url), f"checksum file {url}"))
    algorithm = comp.checksums.algorithm
    hexv = lookup(parse(text, algorithm, served), comp.asset_name(arch, version), served)
    return UpstreamChecksum(algorithm, hexv, url, served)
