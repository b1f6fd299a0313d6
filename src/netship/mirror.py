"""``mirror``: copy images netship does not build (calico, cilium) into the private registry.

Registry to registry through the HTTP API (``netship.registry``), no daemon: for each image
the source's manifest list is read, filtered to the requested arches (or kept whole), every
per-arch manifest's blobs are copied (skipped when the target has them, mounted from another
repository of the target when this run already put them there, else streamed), then the
per-arch manifests (by digest and as ``TAG-ARCH``) and the list (as ``TAG``) are put.

The plan is data (``plan_mirror``); ``mirror`` executes it and returns a report in the build
report's shape, so bundles and manifests can treat mirrored images like built ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import registry as reg
from .arch import ALL_ARCHES, Arch
from .buildreport import ArchResult, BuildReport, ImageResult
from .catalog import Catalog, check_mapping, load_yaml
from .digest import Digest, sha256_bytes
from .errors import ConfigError, RegistryError, UsageError, unknown
from .imageref import DOCKER_HUB, ImageRef
from .output import note
from .settings import Settings

MIRROR_FILE = "mirror-images.yml"
REPORT_FILE = "mirror-report.json"
_KEYS = {"source", "version_of", "tag", "arches", "path", "networks"}
# Docker Hub's registry API lives on another host than its image names say.
_API_HOSTS = {DOCKER_HUB: "registry-1.docker.io"}


@dataclass(frozen=True)
class MirrorImage:
    """One entry of mirror-images.yml, resolved against the catalog."""

    name: str
    source: ImageRef  # with tag
    arches: tuple[Arch, ...]
    path: str
    version: str
    component: str | None = None
    networks: tuple[str, ...] = ()


@dataclass(frozen=True)
class MirrorStep:
    """Copy ``source`` to ``target`` for ``arches``."""

    image: MirrorImage
    source: ImageRef
    target: ImageRef
    arches: tuple[Arch, ...]
    keep_all_platforms: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"name": self.image.name, "source": str(self.source), "target": str(self.target),
                "arches": [a.k8s for a in self.arches], "keep_all_platforms": self.keep_all_platforms}


@dataclass(frozen=True)
class MirrorResult:
    step: MirrorStep
    digest: Digest  # of what TAG points to in the target
    source_digest: Digest
    arches: Mapping[Arch, tuple[str, Digest]]  # arch -> (platform, per-arch manifest digest)
    unchanged: bool
    blobs: reg.TransferStats = field(default_factory=reg.TransferStats)

    def to_json(self) -> dict[str, Any]:
        return {**self.step.to_json(), "digest": str(self.digest), "source_digest": str(self.source_digest),
                "unchanged": self.unchanged,
                "arch_digests": {a.k8s: str(d) for a, (_p, d) in self.arches.items()},
                "blobs": self.blobs.to_json()}


# --- the data file ----------------------------------------------------------------------------

def mirror_file(settings: Settings) -> Path:
    return settings.mirror_file or settings.catalog_dir / MIRROR_FILE


def load_mirror_images(path: Path, catalog: Catalog) -> list[MirrorImage]:
    raw = load_yaml(path)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("images"), Mapping):
        raise ConfigError(f"{path}: expected a mapping with key 'images'")
    out = []
    for name, entry in raw["images"].items():
        where = f"{path}: images.{name}"
        check_mapping(entry, _KEYS, where, ("source",))
        if bool(entry.get("version_of")) == bool(entry.get("tag")):
            raise ConfigError(f"{where}: give exactly one of 'version_of' (a catalog component) or 'tag'")
        component = entry.get("version_of")
        if component and component not in catalog.components:
            raise unknown("component", str(component), catalog.components, f"{where}.version_of")
        version = catalog.components[str(component)].version if component else str(entry["tag"])
        src = ImageRef.parse(str(entry["source"]), f"{where}.source")
        if src.tag or src.digest:
            raise ConfigError(f"{where}.source: give the repository without tag or digest")
        arches_raw = entry.get("arches")
        if not isinstance(arches_raw, list) or not arches_raw:
            raise ConfigError(f"{where}.arches: expected a non-empty list")
        arches = tuple(sorted({Arch.parse(str(a), f"{where}.arches") for a in arches_raw},
                              key=ALL_ARCHES.index))
        path_ = str(entry.get("path") or src.familiar_path)
        ImageRef.parse(f"127.0.0.1:5000/{path_}", f"{where}.path")  # a valid repository path
        out.append(MirrorImage(str(name), src.with_tag(version), arches, path_, version,
                               str(component) if component else None,
                               tuple(str(n) for n in entry.get("networks") or ())))
    return out


# --- the plan ---------------------------------------------------------------------------------

def plan_mirror(
    images: Sequence[MirrorImage],
    arches: Iterable[Arch],
    registry: str,
    *,
    names: Iterable[str] | None = None,
    explicit_arches: bool = False,
    keep_all_platforms: bool = False,
    skipped: list[str] | None = None,
) -> list[MirrorStep]:
    """One step per image; an arch an image does not publish is skipped with a note, or an
    error when both the image and the arch were asked for by name."""
    by_name = {i.name: i for i in images}
    wanted = list(names) if names else list(by_name)
    for n in wanted:
        if n not in by_name:
            raise unknown("mirror image", n, by_name, "--image")
    explicit = bool(names) and explicit_arches
    arches = tuple(arches)
    steps = []
    for n in wanted:
        img = by_name[n]
        chosen = tuple(a for a in arches if a in img.arches)
        for a in arches:
            if a not in img.arches:
                msg = f"{n} {img.version} does not publish {a} (it publishes {', '.join(x.k8s for x in img.arches)})"
                if explicit:
                    raise UsageError(f"--arch {a}: {msg}")
                if skipped is not None:
                    skipped.append(msg)
        if not chosen:
            continue
        target = ImageRef.parse(f"{registry.rstrip('/')}/{img.path}:{img.version}", "--registry")
        steps.append(MirrorStep(img, img.source, target, chosen, keep_all_platforms))
    return steps


# --- manifest lists ---------------------------------------------------------------------------

def arch_of_platform(platform: Mapping[str, Any] | None) -> Arch | None:
    """The Arch a manifest-list entry is for; None for other OSes, unknown arches, other arm
    variants and attestation entries (``unknown/unknown``)."""
    if not platform or platform.get("os") != "linux":
        return None
    arch, variant = platform.get("architecture", ""), platform.get("variant")
    if arch == "arm" and variant not in (None, "", "v7"):
        return None
    if arch == "arm64" and variant not in (None, "", "v8"):
        return None
    try:
        return Arch.from_platform(f"linux/{arch}")
    except UsageError:
        return None


def filter_index(index: reg.Manifest, arches: Sequence[Arch], keep_all: bool, where: str
                 ) -> tuple[reg.Manifest, dict[Arch, reg.Descriptor]]:
    """The list to put in the target and the per-arch entries to copy.

    With ``keep_all`` (or when the list already holds exactly the wanted arches) the source
    bytes are kept, so the digest stays upstream's; otherwise a new list with only the wanted
    entries (in the source's order, each entry unchanged) is written with stable JSON.
    """
    raw = index.json
    picked: dict[Arch, reg.Descriptor] = {}
    keep_entries = []
    for entry in raw.get("manifests", []):
        desc = reg.Descriptor.from_json(entry, where)
        arch = arch_of_platform(desc.platform)
        if arch in arches and arch not in picked:
            picked[arch] = desc
            keep_entries.append(entry)
    missing = [a.k8s for a in arches if a not in picked]
    if missing:
        have = sorted(p for e in raw.get("manifests", []) if (p := reg.Descriptor.from_json(e, where).platform_string))
        raise RegistryError(f"{where}: manifest list has no {', '.join(missing)} (it has {', '.join(have) or 'nothing'})")
    if keep_all or len(keep_entries) == len(raw.get("manifests", [])):
        return index, picked  # upstream's bytes: every entry (attestations too) is copied
    new = {k: v for k, v in raw.items() if k != "manifests"}
    new["manifests"] = keep_entries
    data = json.dumps(new, indent=3, sort_keys=False).encode()
    return reg.Manifest(index.media_type, sha256_bytes(data), data), picked


# --- copying ----------------------------------------------------------------------------------

class _BlobStream:
    """File-like view of a source blob for ``Registry.push_blob``; closing ends the request."""

    def __init__(self, src: reg.Registry, repo: str, desc: reg.Descriptor):
        self._cm = src.open_blob(repo, desc.digest, desc.size)
        self._reader = self._cm.__enter__()

    def read(self, n: int = -1) -> bytes:
        return self._reader.read(n)

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


def api_host(domain: str) -> str:
    return _API_HOSTS.get(domain, domain)


ClientFactory = Callable[[str], reg.Registry]


def default_clients(settings: Settings) -> ClientFactory:
    cache: dict[str, reg.Registry] = {}

    def get(host: str) -> reg.Registry:
        if host not in cache:
            cache[host] = reg.client_for(api_host(host), ca_bundle=settings.ca_bundle,
                                         timeout=settings.timeout, docker_config=settings.docker_config)
        return cache[host]

    return get


def _copy_manifest(src: reg.Registry, src_repo: str, dst: reg.BlobTransfer, dst_repo: str,
                   desc: reg.Descriptor, stats: reg.TransferStats) -> reg.Manifest:
    m = src.get_manifest(src_repo, desc.digest)
    if m.is_index:
        raise RegistryError(f"{src.host}/{src_repo}@{desc.digest}: nested manifest lists are not supported")
    if dst.target.head_manifest(dst_repo, str(m.digest)) is None:
        for blob in m.children():
            if "foreign" in blob.media_type or "nondistributable" in blob.media_type:
                continue  # served by its vendor's URLs, never by registries (Windows base layers)
            dst.push(dst_repo, blob, lambda b=blob: _BlobStream(src, src_repo, b), stats)  # type: ignore[misc]
        dst.target.put_manifest(dst_repo, str(m.digest), m)
    else:
        for blob in m.children():
            dst.known(dst_repo, blob, stats)
    return m


def mirror_one(step: MirrorStep, clients: ClientFactory,
               transfers: dict[str, reg.BlobTransfer]) -> MirrorResult:
    """Copy one image; ``transfers`` (one per target host) remembers blobs pushed by earlier
    steps so that they are mounted, not uploaded again."""
    src, dst = clients(step.source.domain), clients(step.target.domain)
    transfer = transfers.setdefault(step.target.domain, reg.BlobTransfer(dst))
    src_repo, dst_repo = step.source.path, step.target.path
    tag = step.target.tag or step.image.version
    where = str(step.source)
    top = src.get_manifest(src_repo, step.source.reference)
    stats = reg.TransferStats()
    if top.is_index:
        target_top, picked = filter_index(top, step.arches, step.keep_all_platforms, where)
        platforms = {a: d.platform_string or a.platform for a, d in picked.items()}
        to_copy = [reg.Descriptor.from_json(e, where) for e in target_top.json["manifests"]]
    else:  # a single-platform image: its config says which arch it is
        cfg = json.loads(src.read_blob(src_repo, top.children()[0].digest))
        arch = arch_of_platform({"os": cfg.get("os"), "architecture": cfg.get("architecture"),
                                 "variant": cfg.get("variant")})
        if arch is None or arch not in step.arches:
            raise RegistryError(f"{where}: single-platform image for {cfg.get('os')}/{cfg.get('architecture')}, "
                                f"not one of {', '.join(a.k8s for a in step.arches)}")
        target_top, picked, platforms, to_copy = top, {arch: top.descriptor()}, {arch: arch.platform}, []
    # Done before? The tag already names what we would write, and each per-arch tag too.
    have = dst.head_manifest(dst_repo, tag)
    arch_tags_ok = have is not None and have.digest == target_top.digest and all(
        (h := dst.head_manifest(dst_repo, f"{tag}-{a.k8s}")) is not None and h.digest == d.digest
        for a, d in picked.items())
    if arch_tags_ok:
        return MirrorResult(step, target_top.digest, top.digest,
                            {a: (platforms[a], d.digest) for a, d in sorted(picked.items(), key=_order)},
                            unchanged=True, blobs=stats)
    for desc in to_copy:
        _copy_manifest(src, src_repo, transfer, dst_repo, desc, stats)
    if not top.is_index:
        _copy_manifest(src, src_repo, transfer, dst_repo, top.descriptor(), stats)
    else:
        dst.put_manifest(dst_repo, str(target_top.digest), target_top)
    for a, d in picked.items():
        child = src.get_manifest(src_repo, d.digest) if top.is_index else top
        dst.put_manifest(dst_repo, f"{tag}-{a.k8s}", child)
    dst.put_manifest(dst_repo, tag, target_top)
    return MirrorResult(step, target_top.digest, top.digest,
                        {a: (platforms[a], d.digest) for a, d in sorted(picked.items(), key=_order)},
                        unchanged=False, blobs=stats)


def _order(item: tuple[Arch, Any]) -> int:
    return ALL_ARCHES.index(item[0])


def mirror(steps: Sequence[MirrorStep], clients: ClientFactory) -> list[MirrorResult]:
    transfers: dict[str, reg.BlobTransfer] = {}
    results = []
    for step in steps:
        r = mirror_one(step, clients, transfers)
        verb = "unchanged" if r.unchanged else (
            f"{r.blobs.uploaded} blobs copied ({r.blobs.uploaded_bytes} bytes), "
            f"{r.blobs.mounted} mounted, {r.blobs.existing} present")
        note(f"mirror {step.source} -> {step.target} [{', '.join(a.k8s for a in step.arches)}]: {verb}")
        results.append(r)
    return results


def report_of(results: Sequence[MirrorResult], registry: str) -> BuildReport:
    """The mirrored images in the build report's shape (for bundles and manifests)."""
    images = {}
    for r in results:
        s = r.step
        tag = str(s.target)
        images[s.image.name] = ImageResult(
            name=s.image.name, version=s.image.version, repository=s.target.repository, tag=tag,
            digest=r.digest,
            components={s.image.component or s.image.name: s.image.version},
            arches={a: ArchResult(a, platform, f"{tag}-{a.k8s}", d) for a, (platform, d) in r.arches.items()},
        )
    return BuildReport(registry=registry, images=images)


def report_path(settings: Settings) -> Path:
    return settings.out_dir / REPORT_FILE

