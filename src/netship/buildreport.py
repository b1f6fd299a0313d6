"""The build report: every image, arch, tag and digest that ``build`` pushed.

Written by ``build`` at ``settings.build_report``; later steps (bundle, manifests, release)
read it through ``load`` rather than asking the daemon. JSON shape (sorted keys)::

    {"netship_version": "0.1.0", "registry": "127.0.0.1:5000",
     "images": {"flannel": {"name": "flannel", "version": "v0.28.9",
         "repository": "127.0.0.1:5000/flannel", "tag": "127.0.0.1:5000/flannel:v0.28.9",
         "digest": "sha256:<manifest list>", "components": {"flannel": "v0.28.9"},
         "arches": {"amd64": {"platform": "linux/amd64",
                              "tag": "127.0.0.1:5000/flannel:v0.28.9-amd64",
                              "digest": "sha256:<image manifest>"}}}}}

``digest`` is null for images built with ``--no-push`` (they exist only in the local daemon).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import __version__
from .arch import Arch
from .digest import Digest
from .errors import ConfigError
from .fsutil import atomic_write_json
from .imageref import ImageRef


@dataclass(frozen=True)
class ArchResult:
    arch: Arch
    platform: str
    tag: str
    digest: Digest | None

    @property
    def ref(self) -> ImageRef:
        """The per-arch image, pinned by digest when known."""
        return ImageRef.parse(self.tag).with_digest(self.digest)


@dataclass(frozen=True)
class ImageResult:
    name: str
    version: str
    repository: str
    tag: str
    digest: Digest | None
    components: Mapping[str, str]
    arches: Mapping[Arch, ArchResult]

    @property
    def ref(self) -> ImageRef:
        """The manifest list, pinned by digest when known."""
        return ImageRef.parse(self.tag).with_digest(self.digest)


@dataclass(frozen=True)
class BuildReport:
    registry: str
    images: Mapping[str, ImageResult] = field(default_factory=dict)
    netship_version: str = __version__

    def image(self, name: str) -> ImageResult:
        try:
            return self.images[name]
        except KeyError:
            from .errors import unknown

            raise unknown("image", name, self.images, "build report") from None

    def merged(self, newer: BuildReport) -> BuildReport:
        """This report with ``newer``'s images replacing same-named ones (same registry only)."""
        if newer.registry != self.registry:
            return newer
        return replace(newer, images={**self.images, **newer.images})

    def to_json(self) -> dict[str, Any]:
        return {
            "netship_version": self.netship_version,
            "registry": self.registry,
            "images": {
                name: {
                    "name": img.name, "version": img.version, "repository": img.repository,
                    "tag": img.tag, "digest": str(img.digest) if img.digest else None,
                    "components": dict(img.components),
                    "arches": {
                        a.k8s: {"platform": r.platform, "tag": r.tag,
                                "digest": str(r.digest) if r.digest else None}
                        for a, r in img.arches.items()
                    },
                }
                for name, img in self.images.items()
            },
        }

    @classmethod
    def from_json(cls, raw: Any, where: str = "build report") -> BuildReport:
        try:
            images = {}
            for name, img in raw["images"].items():
                iw = f"{where}: images.{name}"
                arches = {}
                for a, r in img["arches"].items():
                    arch = Arch.parse(a, f"{iw}.arches")
                    arches[arch] = ArchResult(
                        arch, str(r["platform"]), str(r["tag"]),
                        Digest.parse(r["digest"], f"{iw}.arches.{a}.digest") if r.get("digest") else None)
                images[str(name)] = ImageResult(
                    name=str(img["name"]), version=str(img["version"]), repository=str(img["repository"]),
                    tag=str(img["tag"]),
                    digest=Digest.parse(img["digest"], f"{iw}.digest") if img.get("digest") else None,
                    components={str(k): str(v) for k, v in (img.get("components") or {}).items()},
                    arches=arches,
                )
            return cls(registry=str(raw["registry"]), images=images,
                       netship_version=str(raw.get("netship_version", "")))
        except (KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"{where}: malformed build report (missing or bad {e})") from None


def load(path: Path | str) -> BuildReport:
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no build report; run `netship build` first") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: malformed JSON at line {e.lineno}: {e.msg}") from None
    return BuildReport.from_json(raw, str(path))


def save(path: Path | str, report: BuildReport) -> None:
    atomic_write_json(path, report.to_json())
