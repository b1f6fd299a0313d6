"""Kubernetes manifests for the cluster network, by structured transformation.

Base templates (``manifests/`` at the top of the checkout, shipped in the wheel as
``netship/_data/manifests``) are loaded as YAML documents, changed as data by one module per
network (``flannel``, ``kube_router``, ``calico``), validated against Kubernetes' schemas
(``validate``) and dumped with sorted keys (``yamlio``): the same settings and build report
give identical bytes. ``rewrite`` moves any manifest's images to a private registry.

Public API (bundle-offline and release use it)::

    write_manifests(settings, *, network=None, arches=None, layout="per-arch", registry=None,
                    pin_digests=False, out_dir) -> list[Path]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..arch import ALL_ARCHES, Arch
from ..catalog import load_catalog
from ..cluster import ClusterSettings, load_cluster
from ..errors import ConfigError, UsageError, unknown
from ..fsutil import atomic_write_text
from ..output import note
from ..settings import Settings
from . import calico, flannel, kube_router
from .common import LAYOUTS
from .images import ImageSet, load_images
from .rewrite import DigestResolver, ImageChange
from .validate import ValidationReport, validate_documents
from .workloads import containers
from .yamlio import dump_documents, load_file

NETWORKS = ("flannel", "kube-router", "calico", "cilium")
_MODULES = {"flannel": flannel, "kube-router": kube_router}

__all__ = [
    "LAYOUTS", "NETWORKS", "Rendered", "render_network", "template_dir", "write_manifests",
]


def template_dir() -> Path:
    """``manifests/`` of the source checkout, else the copy inside the installed package."""
    checkout = Path(__file__).resolve().parents[3] / "manifests"
    if (checkout / flannel.TEMPLATE).exists():
        return checkout
    return Path(__file__).resolve().parents[1] / "_data" / "manifests"


def load_template(name: str) -> list[dict[str, Any]]:
    return load_file(template_dir() / name)


@dataclass(frozen=True)
class Rendered:
    """One output file, planned: its name, documents and the images it references."""

    filename: str
    network: str
    layout: str
    arches: tuple[Arch, ...]
    documents: tuple[dict[str, Any], ...]
    images: tuple[str, ...]
    changes: tuple[ImageChange, ...] = field(default=())

    @property
    def header(self) -> str:
        arch = ",".join(a.k8s for a in self.arches) or "-"
        return (f"{self.network} manifests written by netship {__version__} (layout {self.layout}, arches {arch}).\n"
                "Generated from netship's base templates and the cluster settings; edit those, not this file.")

    def text(self) -> str:
        return dump_documents(list(self.documents), self.header)


def _arches_for(images: ImageSet, names: Iterable[str], arches: Sequence[Arch] | None, network: str) -> tuple[Arch, ...]:
    """Requested arches that every image of the network has; an explicit request for one that
    is missing is an error, an implicit 'all' skips it with a note."""
    explicit = arches is not None
    wanted = tuple(arches) if arches is not None else ALL_ARCHES
    chosen: list[Arch] = []
    for arch in wanted:
        missing = [n for n in names if not images.supports(n, arch)]
        if missing:
            if explicit:
                raise UsageError(f"--arch {arch}: {network} needs image(s) {', '.join(missing)} for {arch},"
                                 f" which {images.source} lacks")
            note(f"{network}: skipping {arch}: no {', '.join(missing)} image for it in {images.source}")
            continue
        chosen.append(arch)
    if not chosen:
        raise UsageError(f"{network}: no requested arch has all images in {images.source}")
    return tuple(chosen)


def render_network(network: str, cluster: ClusterSettings, images: ImageSet | None, *,
                   registry: str, arches: Sequence[Arch] | None = None, layout: str = "per-arch",
                   pin_digests: bool = False, calico_manifest: Path | None = None,
                   resolve: DigestResolver | None = None) -> Rendered:
    """Plan one network's manifest file (no I/O beyond reading templates)."""
    if layout not in LAYOUTS:
        raise unknown("layout", layout, LAYOUTS, "--layout")
    if network not in NETWORKS:
        raise unknown("network", network, NETWORKS, "--network")
    if network == "cilium":
        raise UsageError("--network cilium: netship writes no cilium manifests; cilium is installed by"
                         " `cilium install` (cilium-cli) with its images mirrored by `invoke mirror`")
    if network == "calico":
        if calico_manifest is None:
            raise UsageError("--network calico needs the upstream manifest: pass --calico-manifest FILE"
                             " (calico.yaml from calico's release-TAG.tgz)")
        docs, changes = calico.render(load_file(calico_manifest), cluster, registry,
                                      resolve if pin_digests else None, str(calico_manifest))
        return Rendered("calico.yml", network, "upstream", tuple(arches or ()), tuple(docs),
                        tuple(sorted({c.new for c in changes})), tuple(changes))
    module = _MODULES[network]
    if images is None:
        raise UsageError(f"{network}: no images (no build report and no catalog)")
    chosen = _arches_for(images, module.IMAGES, arches, network)
    docs = module.render(load_template(module.TEMPLATE), cluster, images, registry, chosen, layout, pin_digests)
    refs = sorted({str(c["image"]) for d in docs for _f, c in containers(d)})
    return Rendered(f"{network}.yml", network, layout, chosen, tuple(docs), tuple(refs))


def write_manifests(settings: Settings, *, network: str | None = None, arches: Sequence[Arch] | None = None,
                    layout: str = "per-arch", registry: str | None = None, pin_digests: bool = False,
                    out_dir: Path | str, cluster: ClusterSettings | None = None,
                    calico_manifest: Path | None = None, validate_versions: Sequence[str] | None = None,
                    resolve: DigestResolver | None = None) -> list[Path]:
    """Render, validate and write the network's manifests into ``out_dir``; returns the paths.

    ``network`` defaults to the cluster settings' ``cluster_network``; ``registry`` to its
    ``private_registry``; ``arches`` None means every arch the images have (an explicit list
    must all be available). Images come from the build report at ``settings.build_report``
    when it exists, else from the catalog versions. Files are validated before any is written.
    """
    rendered, _report = plan_manifests(settings, network=network, arches=arches, layout=layout,
                                       registry=registry, pin_digests=pin_digests, cluster=cluster,
                                       calico_manifest=calico_manifest, validate_versions=validate_versions,
                                       resolve=resolve)
    out = Path(out_dir)
    paths = []
    for r in rendered:
        path = out / r.filename
        atomic_write_text(path, r.text())
        paths.append(path)
    return paths


def plan_manifests(settings: Settings, *, network: str | None = None, arches: Sequence[Arch] | None = None,
                   layout: str = "per-arch", registry: str | None = None, pin_digests: bool = False,
                   cluster: ClusterSettings | None = None, calico_manifest: Path | None = None,
                   validate_versions: Sequence[str] | None = None, resolve: DigestResolver | None = None,
                   ) -> tuple[list[Rendered], ValidationReport]:
    """Everything ``write_manifests`` does except writing: the rendered, validated files."""
    if cluster is None:
        cluster = load_cluster(settings.cluster_file)
    network = network or cluster.cluster_network
    registry = (registry or cluster.private_registry).rstrip("/")
    images = None
    if network in _MODULES:
        try:
            catalog = load_catalog(settings.catalog_dir)
        except ConfigError:
            if not settings.build_report.exists():
                raise
            catalog = None
        images = load_images(settings.build_report, catalog)
    rendered = [render_network(network, cluster, images, registry=registry, arches=arches, layout=layout,
                               pin_digests=pin_digests, calico_manifest=calico_manifest, resolve=resolve)]
    (only,) = rendered
    return rendered, validate_documents(only.documents, validate_versions, only.filename)
