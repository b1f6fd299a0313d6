"""Image specs (``images/*.yml``): which catalog components go in, where each binary lands,
the entrypoint and the arches. Loaded once into frozen values; the build plan reads them.

An arch the image (or one of its components) does not publish is skipped with a one-line
note, or is an error when both the image and the arch were asked for explicitly.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .arch import ALL_ARCHES, Arch
from .catalog import Catalog, check_mapping, load_yaml
from .errors import ConfigError, UsageError, unknown

_KEYS = {"name", "description", "dockerfile", "version_from", "arches", "binaries", "entrypoint",
         "runtime_packages"}
_BINARY_KEYS = {"component", "file", "dest", "elf"}
_NAME = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*$")


ALL_FILES = "*"


@dataclass(frozen=True)
class Binary:
    component: str  # catalog component whose fetch tree holds it
    file: str  # path inside tree/COMPONENT/VERSION/ARCH/, or "*": every file there
    dest: str  # absolute path in the image (a folder ending in "/" for "*")
    elf: bool = True  # an executable of the target arch (False: a script or data file)

    @property
    def whole_tree(self) -> bool:
        """The component's whole per-arch tree goes into the folder ``dest``: its executables
        must be ELF files of the arch; other files (README, LICENSE) come along as data."""
        return self.file == ALL_FILES


@dataclass(frozen=True)
class ImageSpec:
    name: str
    path: Path  # the spec file
    dockerfile: Path
    version_from: str
    arches: tuple[Arch, ...]
    binaries: tuple[Binary, ...]
    entrypoint: tuple[str, ...]
    description: str = ""
    runtime_packages: tuple[str, ...] = ()

    @property
    def components(self) -> tuple[str, ...]:
        """Components in first-use order, without duplicates."""
        return tuple(dict.fromkeys(b.component for b in self.binaries))

    def version(self, catalog: Catalog) -> str:
        return catalog.component(self.version_from).version

    def component_versions(self, catalog: Catalog) -> dict[str, str]:
        return {c: catalog.component(c).version for c in self.components}

    def supported_arches(self, catalog: Catalog) -> tuple[Arch, ...]:
        """The spec's arches that every component publishes, in canonical order."""
        ok = set(self.arches)
        for c in self.components:
            ok &= set(catalog.component(c).arches)
        return tuple(a for a in ALL_ARCHES if a in ok)

    def missing_reason(self, catalog: Catalog, arch: Arch) -> str:
        if arch not in self.arches:
            return f"image {self.name} is not built for {arch} (its spec {self.path.name} lists {', '.join(map(str, self.arches))})"
        for c in self.components:
            comp = catalog.component(c)
            if arch not in comp.arches:
                return (f"image {self.name} skipped for {arch}: component {c} {comp.version} does not publish it "
                        f"(it publishes {', '.join(map(str, comp.arches))})")
        return ""


def default_images_dir(catalog_dir: Path) -> Path:
    """``images/`` beside the catalog's folder (the repository root), else the checkout's,
    else the copy installed with the package (``netship/_data/images``)."""
    for candidate in (Path(catalog_dir).resolve().parent / "images",
                      Path(__file__).resolve().parents[2] / "images",
                      Path(__file__).resolve().parent / "_data" / "images"):
        if candidate.is_dir():
            return candidate
    return Path(catalog_dir).resolve().parent / "images"


def _parse(path: Path, raw: Any, catalog: Catalog) -> ImageSpec:
    where = str(path)
    check_mapping(raw, _KEYS, where, ("name", "dockerfile", "version_from", "binaries", "entrypoint"))
    name = str(raw["name"])
    if not _NAME.match(name):
        raise ConfigError(f"{where}: name {name!r} is not a valid repository name (lowercase, digits, . _ -)")
    if name != path.stem:
        raise ConfigError(f"{where}: name {name!r} must match the file name {path.stem!r}")
    version_from = str(raw["version_from"])
    if version_from not in catalog.components:
        raise unknown("component", version_from, catalog.components, f"{where}: version_from")
    arches = tuple(Arch.parse(str(a), f"{where}: arches") for a in (raw.get("arches") or [a.k8s for a in ALL_ARCHES]))
    if not isinstance(raw["binaries"], list):
        raise ConfigError(f"{where}: binaries: expected a list")
    binaries = []
    dests: set[str] = set()
    for i, b in enumerate(raw["binaries"]):
        bwhere = f"{where}: binaries[{i}]"
        check_mapping(b, _BINARY_KEYS, bwhere, ("component", "file", "dest"))
        comp = str(b["component"])
        if comp not in catalog.components:
            raise unknown("component", comp, catalog.components, f"{bwhere}.component")
        file, dest = str(b["file"]), str(b["dest"])
        if file.startswith("/") or ".." in Path(file).parts:
            raise ConfigError(f"{bwhere}.file: must be a relative path inside the fetch tree: {file!r}")
        if not dest.startswith("/"):
            raise ConfigError(f"{bwhere}.dest: must be an absolute path in the image: {dest!r}")
        if (file == ALL_FILES) != dest.endswith("/"):
            raise ConfigError(f"{bwhere}: file '*' (the whole tree) goes with a folder dest ending in '/', "
                              f"and only it: {file!r} -> {dest!r}")
        if dest in dests:
            raise ConfigError(f"{bwhere}.dest: {dest!r} is used twice")
        dests.add(dest)
        binaries.append(Binary(comp, file, dest, bool(b.get("elf", True))))
    entrypoint = raw["entrypoint"]
    if not isinstance(entrypoint, list) or not all(isinstance(x, str) for x in entrypoint):
        raise ConfigError(f"{where}: entrypoint: expected a list of strings")
    dockerfile = (path.parent.parent / "dockerfiles" / str(raw["dockerfile"])).resolve()
    return ImageSpec(
        name=name, path=path, dockerfile=dockerfile, version_from=version_from, arches=arches,
        binaries=tuple(binaries), entrypoint=tuple(entrypoint), description=str(raw.get("description", "")),
        runtime_packages=tuple(str(p) for p in raw.get("runtime_packages") or ()),
    )


def load_images(images_dir: Path | str, catalog: Catalog) -> dict[str, ImageSpec]:
    """All specs of ``images_dir``, by name, in file-name order."""
    images_dir = Path(images_dir)
    files = sorted(images_dir.glob("*.yml"))
    if not files:
        raise ConfigError(f"{images_dir}: no image specs (*.yml)")
    specs = {}
    for f in files:
        spec = _parse(f, load_yaml(f), catalog)
        if not spec.dockerfile.is_file():
            raise ConfigError(f"{f}: dockerfile {spec.dockerfile} not found")
        specs[spec.name] = spec
    return specs


def select(
    specs: Mapping[str, ImageSpec],
    catalog: Catalog,
    names: Iterable[str] | None,
    arches: Iterable[Arch] | None,
    *,
    explicit_arches: bool = False,
    skipped: list[str] | None = None,
) -> list[tuple[ImageSpec, tuple[Arch, ...]]]:
    """(spec, arches to build) per chosen image. Unsupported arches are skipped with a note,
    or raise UsageError when the images and the arch were both named explicitly."""
    chosen = list(names) if names else list(specs)
    explicit_images = bool(names)
    wanted = tuple(arches) if arches else ALL_ARCHES
    out = []
    for name in chosen:
        if name not in specs:
            raise unknown("image", name, specs, "--image")
        spec = specs[name]
        ok = spec.supported_arches(catalog)
        build = []
        for arch in wanted:
            if arch in ok:
                build.append(arch)
                continue
            reason = spec.missing_reason(catalog, arch)
            if explicit_images and explicit_arches:
                raise UsageError(f"--arch {arch}: {reason}")
            if skipped is not None:
                skipped.append(reason)
        if build:
            out.append((spec, tuple(build)))
    return out


_COPY = re.compile(r"^COPY\s+(?:--\S+\s+)*(\S+)\s+(\S+)\s*$", re.MULTILINE)
_ENTRYPOINT = re.compile(r"^ENTRYPOINT\s+(\[.*\])\s*$", re.MULTILINE)


def dockerfile_mismatches(spec: ImageSpec) -> list[str]:
    """What the spec says that its Dockerfile does not do (COPY targets, entrypoint): [] if they agree."""
    text = spec.dockerfile.read_text()
    copies = {dest: src for src, dest in _COPY.findall(text)}
    problems = []
    for b in spec.binaries:
        src = copies.get(b.dest)
        want = "/${TARGETARCH}/" + ("" if b.whole_tree else b.file)
        if src is None:
            problems.append(f"{spec.dockerfile.name}: no COPY to {b.dest}")
        elif not (src.startswith(f"{b.component}/") and src.endswith(want)):
            problems.append(f"{spec.dockerfile.name}: COPY to {b.dest} takes {src}, spec says {b.component}/.../{b.file}")
    extra = set(copies) - {b.dest for b in spec.binaries}
    problems.extend(f"{spec.dockerfile.name}: COPY to {d} is not in {spec.path.name}" for d in sorted(extra))
    m = _ENTRYPOINT.search(text)
    if not m or tuple(json.loads(m.group(1))) != spec.entrypoint:
        problems.append(f"{spec.dockerfile.name}: ENTRYPOINT differs from {spec.path.name}")
    return problems
