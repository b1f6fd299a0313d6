"""``pins update``: record the sha256 of every asset of one component version in ``pins.lock``.

Like kubespray's hash updater: the pins come from upstream's checksum file in whichever
layout the component uses (per-asset, combined SHA256SUMS, goreleaser checksums.txt or
NAME_VERSION_checksums.txt), read through the mirrors. Where upstream publishes none
(flannel), or publishes another algorithm than sha256, each asset is downloaded (into the
cache, so a later fetch needs no request) and hashed, and the pin's source says it was
computed from the bytes. Only the named component/version is written; every other entry of
the lock file stays as it was. ``select`` also sets the component's ``version:`` line in
catalog.yml, changing nothing else in that file.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .arch import Arch
from .cache import Cache
from .catalog import CATALOG_FILE, LOCK_FILE, UNKNOWN_PIN, Asset, Component, Pin, load_catalog, write_pins
from .checksums import FileCache, UpstreamChecksum, fetch_upstream_checksum
from .digest import Digest
from .download import Downloader, mirror_urls
from .errors import ConfigError, UsageError
from .fetch import download_unpinned
from .fsutil import atomic_write_text
from .output import note
from .settings import Settings

SOURCE_COMPUTED = "computed from downloaded bytes (upstream publishes no checksum file)"
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class NewPin:
    arch: Arch
    asset: str
    sha256: Digest
    source: str
    read_from: str  # URL of the checksum file or asset actually read (mirror or upstream)

    def to_json(self) -> dict[str, Any]:
        return {"arch": self.arch.k8s, "asset": self.asset, "sha256": self.sha256.hex,
                "source": self.source, "read_from": self.read_from}


@dataclass(frozen=True)
class PinsReport:
    component: str
    version: str
    pins: tuple[NewPin, ...]
    lock_file: Path
    selected: bool
    catalog_file: Path

    def to_json(self) -> dict[str, Any]:
        return {"component": self.component, "version": self.version,
                "pins": [p.to_json() for p in self.pins], "lock_file": str(self.lock_file),
                "selected": self.selected, "catalog_file": str(self.catalog_file)}

    def human(self) -> list[str]:
        lines = [f"{self.component} {self.version} {p.arch.k8s:8} {p.sha256.hex}  ({p.source})" for p in self.pins]
        lines.append(f"wrote {len(self.pins)} pins to {self.lock_file}")
        if self.selected:
            lines.append(f"{self.catalog_file}: {self.component} now uses {self.version}")
        return lines


def update_pins(
    settings: Settings, component: str, version: str, *, select: bool = False,
    downloader: Downloader | None = None,
) -> PinsReport:
    if not version or not _VERSION_RE.match(version):
        raise UsageError(f"--version: {version!r} is not a release tag (e.g. v1.9.1)")
    catalog = load_catalog(settings.catalog_dir)
    comp = catalog.component(component)
    downloader = downloader or Downloader(settings)
    cache = Cache(settings)
    files = FileCache()

    # Checksum files first (sequentially: a combined file is read once for all arches).
    upstream: dict[Arch, UpstreamChecksum | None] = {
        arch: fetch_upstream_checksum(settings, downloader, comp, arch, version, files) for arch in comp.arches
    }

    def pin_one(arch: Arch) -> NewPin:
        up = upstream[arch]
        name = comp.asset_name(arch, version)
        if up is not None and up.algorithm == "sha256":
            return NewPin(arch, name, Digest.sha256_hex(up.hex, up.served_from), f"upstream {up.file_name}",
                          up.served_from)
        asset = Asset(comp, version, arch, UNKNOWN_PIN)
        digest, url, _size = download_unpinned(cache, downloader, asset, mirror_urls(settings, asset.url), up)
        source = (SOURCE_COMPUTED if up is None else
                  f"computed from downloaded bytes, verified against upstream {up.file_name} ({up.algorithm})")
        return NewPin(arch, name, digest, source, url)

    with ThreadPoolExecutor(max_workers=max(1, min(settings.jobs, len(comp.arches)))) as pool:
        new = list(pool.map(pin_one, comp.arches))

    lock = settings.catalog_dir / LOCK_FILE
    pins: dict[tuple[str, str, Arch], Pin] = dict(catalog.pins)
    for p in new:
        pins[(comp.name, version, p.arch)] = Pin(p.sha256, p.source)
    write_pins(lock, pins)
    note(f"{lock}: recorded {len(new)} pins for {comp.name} {version}")
    catalog_file = settings.catalog_dir / CATALOG_FILE
    if select and comp.version != version:
        select_version(catalog_file, comp, version)
        note(f"{catalog_file}: {comp.name} version {comp.version} -> {version}")
    return PinsReport(comp.name, version, tuple(new), lock, select, catalog_file)


def _yaml_scalar(text: str) -> str:
    """``text`` as a YAML scalar that reads back as the same string (quoted only if needed)."""
    try:
        if yaml.safe_load(text) == text and ":" not in text and "#" not in text:
            return text
    except yaml.YAMLError:
        pass
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def select_version(catalog_file: Path, comp: Component, version: str) -> None:
    """Rewrite only the ``version:`` line of ``comp`` in catalog.yml (comments, order and every
    other byte stay as they are), then check the file still loads and says ``version``."""
    text = catalog_file.read_text()
    lines = text.splitlines(keepends=True)
    head = re.compile(rf"^(\s*){re.escape(comp.name)}\s*:\s*(#.*)?$")
    start = indent = None
    in_components = False
    for i, line in enumerate(lines):
        if re.match(r"^components\s*:", line):
            in_components = True
            continue
        if in_components and (m := head.match(line.rstrip("\r\n"))) and len(m.group(1)) > 0:
            start, indent = i, len(m.group(1))
            break
    if start is None or indent is None:
        raise ConfigError(f"{catalog_file}: cannot find component {comp.name!r} under 'components:' to set its version")
    vline = re.compile(r"^(\s+version\s*:\s*)(\S.*?)(\s*#.*)?(\r?\n)?$")
    for j in range(start + 1, len(lines)):
        line = lines[j]
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and len(line) - len(line.lstrip()) <= indent:
            break  # next component: this one has no version line of its own
        m = vline.match(line)
        if m and len(line) - len(line.lstrip()) > indent:
            lines[j] = f"{m.group(1)}{_yaml_scalar(version)}{m.group(3) or ''}{m.group(4) or ''}"
            new_text = "".join(lines)
            atomic_write_text(catalog_file, new_text)
            got = load_catalog(catalog_file.parent).component(comp.name).version
            if got != version:  # pragma: no cover - guarded by _yaml_scalar
                atomic_write_text(catalog_file, text)
                raise ConfigError(f"{catalog_file}: {comp.name}.version reads back as {got!r}, not {version!r}")
            return
    raise ConfigError(f"{catalog_file}: component {comp.name!r} has no 'version:' line to change")
