"""The component catalog (hand-edited ``catalog.yml``) and its pins (machine-written ``pins.lock``).

Loaded once at the edge into frozen values; everything downstream works on ``Asset`` values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from packaging.version import InvalidVersion, Version

from .arch import ALL_ARCHES, Arch
from .digest import Digest
from .errors import ConfigError, UsageError, unknown
from .fsutil import atomic_write_json

CATALOG_FILE = "catalog.yml"
LOCK_FILE = "pins.lock"

FORMATS = ("tgz", "binary")
LAYOUTS = ("per-asset", "combined", "none")
_COMPONENT_KEYS = {
    "description", "source", "version", "url", "asset", "format", "arches", "arch_names",
    "binary", "rename", "checksums",
}
_CHECKSUM_KEYS = {"layout", "file", "file_before", "algorithm"}


def _version(tag: str) -> Version | None:
    try:
        return Version(tag.lstrip("v"))
    except InvalidVersion:
        return None


@dataclass(frozen=True)
class ChecksumSpec:
    layout: str  # per-asset | combined | none
    file: str | None = None
    file_before: tuple[tuple[str, str], ...] = ()
    algorithm: str = "sha256"

    def file_template(self, tag: str) -> str | None:
        v = _version(tag)
        # The oldest threshold above the version wins (thresholds sorted ascending).
        for threshold, template in sorted(self.file_before, key=lambda t: _version(t[0]) or Version("0")):
            tv = _version(threshold)
            if v is not None and tv is not None and v < tv:
                return template
        return self.file


@dataclass(frozen=True)
class Pin:
    sha256: Digest | None
    source: str  # where the pin came from: "kubespray checksum table", "upstream SHA256SUMS", "computed from bytes", "unknown"

    @property
    def known(self) -> bool:
        return self.sha256 is not None


UNKNOWN_PIN = Pin(None, "unknown")


@dataclass(frozen=True)
class Component:
    name: str
    version: str
    url: str
    asset: str
    format: str
    arches: tuple[Arch, ...]
    checksums: ChecksumSpec
    arch_names: tuple[tuple[Arch, str], ...] = ()
    binary: str | None = None
    rename: tuple[tuple[str, str], ...] = ()
    description: str = ""
    source: str = ""

    def arch_name(self, arch: Arch) -> str:
        return dict(self.arch_names).get(arch, arch.k8s)

    def _vars(self, arch: Arch, tag: str) -> dict[str, str]:
        return {
            "tag": tag,
            "version": tag.removeprefix("v"),
            "tag_base": re.sub(r"-flannel\d+$", "", tag),
            "arch": self.arch_name(arch),
        }

    def asset_name(self, arch: Arch, tag: str | None = None) -> str:
        return self.asset.format(**self._vars(arch, tag or self.version))

    def asset_url(self, arch: Arch, tag: str | None = None) -> str:
        tag = tag or self.version
        return self.url.format(asset=self.asset_name(arch, tag), **self._vars(arch, tag))

    def checksum_url(self, arch: Arch, tag: str | None = None) -> str | None:
        """URL of upstream's checksum file for this asset (same release folder), or None."""
        tag = tag or self.version
        template = self.checksums.file_template(tag)
        if self.checksums.layout == "none" or not template:
            return None
        name = template.format(asset=self.asset_name(arch, tag), **self._vars(arch, tag))
        return self.asset_url(arch, tag).rsplit("/", 1)[0] + "/" + name

    def renamed(self, member: str, arch: Arch) -> str:
        """Name a member of the archive gets in the per-arch tree."""
        for pattern, target in self.rename:
            if member == pattern.format(**self._vars(arch, self.version)):
                return target
        return member


@dataclass(frozen=True)
class Asset:
    """One file to fetch: a component at a version for one arch."""

    component: Component
    version: str
    arch: Arch
    pin: Pin

    @property
    def name(self) -> str:
        return self.component.asset_name(self.arch, self.version)

    @property
    def url(self) -> str:
        return self.component.asset_url(self.arch, self.version)

    @property
    def key(self) -> str:
        return f"{self.component.name}/{self.version}/{self.arch}"


@dataclass(frozen=True)
class Catalog:
    directory: Path
    components: Mapping[str, Component]
    # (component, version, arch) -> Pin
    pins: Mapping[tuple[str, str, Arch], Pin] = field(default_factory=dict)

    def component(self, name: str) -> Component:
        try:
            return self.components[name]
        except KeyError:
            raise unknown("component", name, self.components, "--component") from None

    def pin(self, component: str, version: str, arch: Arch) -> Pin:
        return self.pins.get((component, version, arch), UNKNOWN_PIN)

    def select(
        self,
        components: Iterable[str] | None = None,
        arches: Iterable[Arch] | None = None,
        *,
        explicit_arches: bool = False,
        skipped: list[str] | None = None,
    ) -> list[Asset]:
        """Assets for the chosen components and arches, in catalog order.

        An arch a component does not publish is an error when both were named explicitly,
        otherwise it is skipped and a one-line note is appended to ``skipped``.
        """
        names = list(components) if components else list(self.components)
        explicit_components = components is not None and len(names) > 0
        arches = tuple(arches) if arches else ALL_ARCHES
        assets = []
        for name in names:
            comp = self.component(name)
            for arch in arches:
                if arch not in comp.arches:
                    msg = (f"{name} {comp.version} does not publish {arch} "
                           f"(it publishes {', '.join(a.k8s for a in comp.arches)})")
                    if explicit_components and explicit_arches:
                        raise UsageError(f"--arch {arch}: {msg}")
                    if skipped is not None:
                        skipped.append(msg)
                    continue
                assets.append(Asset(comp, comp.version, arch, self.pin(name, comp.version, arch)))
        return assets


def _require(mapping: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in mapping or mapping[key] in (None, ""):
        raise ConfigError(f"{where}: missing key {key!r}")
    return mapping[key]


def check_mapping(raw: Any, allowed: set[str], where: str, required: tuple[str, ...] = ()) -> Mapping[str, Any]:
    """One hand-edited YAML mapping checked at the edge: a mapping, no unknown key (with a
    "did you mean"), every ``required`` key present and not empty. Catalog, image specs and
    mirror-images.yml share it."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping")
    for key in raw:
        if key not in allowed:
            raise unknown("key", str(key), allowed, where)
    for key in required:
        if not raw.get(key):
            raise ConfigError(f"{where}: missing key {key!r}")
    return raw


def _parse_component(name: str, raw: Any, path: Path) -> Component:
    where = f"{path}: components.{name}"
    check_mapping(raw, _COMPONENT_KEYS, where)
    fmt = _require(raw, "format", where)
    if fmt not in FORMATS:
        raise unknown("format", fmt, FORMATS, f"{where}.format")
    arches_raw = _require(raw, "arches", where)
    if not isinstance(arches_raw, list):
        raise ConfigError(f"{where}.arches: expected a list")
    arches = tuple(Arch.parse(str(a), f"{where}.arches") for a in arches_raw)
    arch_names = tuple(
        (Arch.parse(str(k), f"{where}.arch_names"), str(v)) for k, v in (raw.get("arch_names") or {}).items()
    )
    cs = raw.get("checksums") or {"layout": "none"}
    check_mapping(cs, _CHECKSUM_KEYS, f"{where}.checksums")
    layout = cs.get("layout", "none")
    if layout not in LAYOUTS:
        raise unknown("checksum layout", str(layout), LAYOUTS, f"{where}.checksums.layout")
    if layout != "none" and not cs.get("file"):
        raise ConfigError(f"{where}.checksums: layout {layout} needs 'file'")
    algorithm = cs.get("algorithm", "sha256")
    if algorithm not in ("sha256", "sha512"):
        raise unknown("algorithm", str(algorithm), ("sha256", "sha512"), f"{where}.checksums.algorithm")
    if fmt == "binary" and not raw.get("binary"):
        raise ConfigError(f"{where}: format binary needs 'binary' (its name in the tree)")
    comp = Component(
        name=name,
        version=str(_require(raw, "version", where)),
        url=str(_require(raw, "url", where)),
        asset=str(_require(raw, "asset", where)),
        format=fmt,
        arches=arches,
        checksums=ChecksumSpec(
            layout=layout,
            file=cs.get("file"),
            file_before=tuple((str(k), str(v)) for k, v in (cs.get("file_before") or {}).items()),
            algorithm=algorithm,
        ),
        arch_names=arch_names,
        binary=raw.get("binary"),
        rename=tuple((str(k), str(v)) for k, v in (raw.get("rename") or {}).items()),
        description=str(raw.get("description", "")),
        source=str(raw.get("source", "")),
    )
    try:  # a template with an unknown placeholder is a config error now, not a KeyError later
        comp.asset_url(arches[0]) if arches else None
        comp.checksum_url(arches[0]) if arches else None
    except (KeyError, IndexError, ValueError) as e:
        raise ConfigError(f"{where}: bad placeholder {e} in url/asset/checksums.file") from None
    return comp


def load_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{line}: malformed YAML: {problem}") from None


def load_pins(path: Path) -> dict[tuple[str, str, Arch], Pin]:
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from None
    pins: dict[tuple[str, str, Arch], Pin] = {}
    for comp, versions in (raw.get("components") or {}).items():
        for version, arches in versions.items():
            for arch_name, entry in arches.items():
                where = f"{path}: components.{comp}.{version}.{arch_name}"
                arch = Arch.parse(arch_name, where)
                hexval = entry.get("sha256")
                digest = Digest.sha256_hex(hexval, f"{where}.sha256") if hexval else None
                pins[(comp, version, arch)] = Pin(digest, str(entry.get("source", "unknown")))
    return pins


def write_pins(path: Path, pins: Mapping[tuple[str, str, Arch], Pin]) -> None:
    out: dict[str, Any] = {"_comment": "machine-written by `netship pins update`; do not edit by hand"}
    comps: dict[str, Any] = {}
    for (comp, version, arch), pin in pins.items():
        comps.setdefault(comp, {}).setdefault(version, {})[arch.k8s] = {
            "sha256": pin.sha256.hex if pin.sha256 else None,
            "source": pin.source,
        }
    out["components"] = comps
    atomic_write_json(path, out)


def load_catalog(directory: Path | str) -> Catalog:
    directory = Path(directory)
    path = directory / CATALOG_FILE
    raw = load_yaml(path)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("components"), Mapping):
        raise ConfigError(f"{path}: expected a mapping with key 'components'")
    check_mapping(raw, {"components"}, str(path))
    components = {str(n): _parse_component(str(n), c, path) for n, c in raw["components"].items()}
    pins = load_pins(directory / LOCK_FILE)
    for comp, _version, _arch in pins:
        if comp not in components:
            raise unknown("component", comp, components, str(directory / LOCK_FILE))
    return Catalog(directory, components, pins)
