"""Image references for the manifests netship writes: from the build report when there is
one, else from the catalog versions (tags ``REG/NAME:VERSION`` and ``REG/NAME:VERSION-ARCH``).

The build report is read through ``netship.buildreport``; only the tag part of its
references is used, so the images can be addressed in any registry they were copied to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..arch import Arch
from ..catalog import Catalog
from ..digest import Digest
from ..errors import ConfigError, UsageError
from ..imageref import ImageRef

# netship's image name -> the catalog component whose version tags it (BRIEF: images contract)
IMAGE_COMPONENTS: dict[str, str] = {
    "flannel": "flannel",
    "flannel-cni-plugin": "flannel-cni-plugin",
    "kube-router": "kube-router",
    "cni-plugins": "cni-plugins",
}


@dataclass(frozen=True)
class ArchImage:
    tag: str  # the tag part, e.g. v0.28.9-amd64
    digest: Digest | None = None


@dataclass(frozen=True)
class Image:
    name: str
    version: str
    tag: str  # the manifest list's tag, e.g. v0.28.9
    digest: Digest | None = None
    arches: Mapping[Arch, ArchImage] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageSet:
    """What the manifests reference. ``source`` says where it came from (for notes and JSON)."""

    images: Mapping[str, Image]
    source: str

    def image(self, name: str) -> Image:
        try:
            return self.images[name]
        except KeyError:
            raise UsageError(f"{self.source}: no image {name!r}; have: {', '.join(sorted(self.images))}") from None

    def supports(self, name: str, arch: Arch) -> bool:
        return arch in self.image(name).arches

    def ref(self, name: str, registry: str, arch: Arch | None = None, pin: bool = False) -> ImageRef:
        """``REG/NAME:TAG`` (the manifest list when arch is None), with ``@digest`` if pinned."""
        img = self.image(name)
        if arch is None:
            tag, digest = img.tag, img.digest
        else:
            per = img.arches.get(arch)
            if per is None:
                raise UsageError(f"{self.source}: image {name} has no {arch} build")
            tag, digest = per.tag, per.digest
        ref = ImageRef.parse(f"{registry.rstrip('/')}/{name}:{tag}", "--registry")
        if pin:
            if digest is None:
                raise UsageError(
                    f"--pin-digests: no digest for {name}{'-' + arch.k8s if arch else ''} in {self.source}"
                    " (run `invoke build` first so the build report has digests)")
            ref = ref.with_digest(digest)
        return ref


def from_catalog(catalog: Catalog) -> ImageSet:
    images: dict[str, Image] = {}
    for name, component in IMAGE_COMPONENTS.items():
        try:
            comp = catalog.component(component)
        except ConfigError:
            continue
        images[name] = Image(
            name=name, version=comp.version, tag=comp.version,
            arches={a: ArchImage(f"{comp.version}-{a.k8s}") for a in comp.arches},
        )
    return ImageSet(images, f"catalog {catalog.directory}")


def _tag_of(ref: Any, where: str) -> str:
    parsed = ImageRef.parse(str(ref), where)
    if not parsed.tag:
        raise ConfigError(f"{where}: tag {ref!r} has no tag part")
    return parsed.tag


def from_report(path: Path) -> ImageSet:
    """Read the build report through ``netship.buildreport`` (the build area's reader)."""
    from .. import buildreport

    report = buildreport.load(path)
    images: dict[str, Image] = {}
    for name, img in sorted(report.images.items()):
        where = f"{path}: images.{name}"
        arches = {a: ArchImage(_tag_of(r.tag, f"{where}.arches.{a.k8s}.tag"), r.digest)
                  for a, r in img.arches.items()}
        images[name] = Image(name, img.version, _tag_of(img.tag, f"{where}.tag"), img.digest, arches)
    return ImageSet(images, f"build report {path}")


def load_images(report_path: Path | None, catalog: Catalog | None) -> ImageSet:
    """The build report when it exists, else the catalog's versions."""
    if report_path is not None and Path(report_path).exists():
        report = from_report(Path(report_path))
        if catalog is not None:  # images the build did not make still get catalog tags
            merged = dict(from_catalog(catalog).images)
            merged.update(report.images)
            return ImageSet(merged, report.source)
        return report
    if catalog is None:
        raise UsageError("no build report and no catalog: cannot name the images")
    return from_catalog(catalog)
