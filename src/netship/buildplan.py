"""The build plan as data: one target per image and arch (context, build args, tags,
platform, an input hash), and the ``docker buildx`` calls that realise it.

Two strategies, chosen from the builder's capability (see ``netship.buildx.inspect_builder``):

- ``per-platform`` (the ``docker`` driver of Engine 20.10, which can neither build several
  platforms in one call nor export an OCI index): one ``buildx build --platform P --push``
  per image and arch, tagged ``REG/NAME:VERSION-ARCH``; then ``buildx imagetools create``
  joins the per-arch manifests into the list ``REG/NAME:VERSION``.
- ``multi-platform`` (``docker-container``, ``remote``, ``kubernetes`` or a multi-node
  builder, e.g. native arm64/s390x nodes): one ``buildx build --platform P1,P2,..`` per image
  pushing the list ``REG/NAME:VERSION``; then each per-arch tag is pointed at that arch's
  manifest through the registry API (its bytes copied, so the digest is the list entry's).

Nothing here runs a program; ``netship.buildx`` executes the plan.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .arch import Arch
from .catalog import Catalog
from .digest import sha256_file
from .errors import BuildError
from .images import ImageSpec

PER_PLATFORM = "per-platform"
MULTI_PLATFORM = "multi-platform"
STRATEGIES = (PER_PLATFORM, MULTI_PLATFORM)
# Bump when the meaning of the input hash changes, so old state never matches.
_HASH_SCHEMA = "netship-build-inputs-1"


@dataclass(frozen=True)
class BuilderInfo:
    """What ``docker buildx inspect`` says about a builder."""

    name: str
    driver: str
    nodes: int = 1
    platforms: tuple[str, ...] = ()

    @property
    def strategy(self) -> str:
        if self.driver == "docker" and self.nodes <= 1:
            return PER_PLATFORM
        return MULTI_PLATFORM


@dataclass(frozen=True)
class BuildCall:
    """One ``docker buildx build`` invocation."""

    image: str
    platforms: tuple[str, ...]
    tags: tuple[str, ...]
    context: Path
    dockerfile: Path
    build_args: tuple[tuple[str, str], ...]
    push: bool
    builder: str | None = None

    def argv(self, metadata_file: Path | str | None = None) -> list[str]:
        argv = ["docker", "buildx", "build"]
        if self.builder:
            argv += ["--builder", self.builder]
        argv += ["--platform", ",".join(self.platforms), "--file", str(self.dockerfile)]
        for tag in self.tags:
            argv += ["--tag", tag]
        for key, value in self.build_args:
            argv += ["--build-arg", f"{key}={value}"]
        # Provenance attestations would add an "unknown/unknown" entry to the list.
        argv += ["--provenance=false"]
        if self.push:
            argv += ["--push"]
        if metadata_file is not None:
            argv += ["--metadata-file", str(metadata_file)]
        argv.append(str(self.context))
        return argv


def imagetools_create_argv(tag: str, sources: Sequence[str], builder: str | None = None) -> list[str]:
    argv = ["docker", "buildx", "imagetools", "create"]
    if builder:
        argv += ["--builder", builder]
    return [*argv, "--tag", tag, *sources]


@dataclass(frozen=True)
class ArchTarget:
    arch: Arch
    platform: str
    tag: str  # REG/NAME:VERSION-ARCH
    files: tuple[tuple[str, str], ...]  # (context-relative path, sha256 hex) of what it COPYs
    input_hash: str  # hash of everything that decides the image: files, Dockerfile, args, base


@dataclass(frozen=True)
class ImagePlan:
    name: str
    version: str
    repository: str  # REG/NAME
    tag: str  # REG/NAME:VERSION, the manifest list
    components: tuple[tuple[str, str], ...]
    targets: tuple[ArchTarget, ...]
    calls: tuple[BuildCall, ...]

    @property
    def input_hash(self) -> str:
        h = hashlib.sha256()
        for t in self.targets:
            h.update(f"{t.arch}={t.input_hash}\n".encode())
        return h.hexdigest()

    def target(self, arch: Arch) -> ArchTarget:
        return next(t for t in self.targets if t.arch == arch)


@dataclass(frozen=True)
class BuildPlan:
    strategy: str
    builder: str | None
    registry: str
    push: bool
    base_image: str | None
    images: tuple[ImagePlan, ...]
    skipped: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy, "builder": self.builder, "registry": self.registry,
            "push": self.push, "base_image": self.base_image, "skipped": list(self.skipped),
            "images": [
                {
                    "name": img.name, "version": img.version, "tag": img.tag,
                    "components": dict(img.components),
                    "targets": [
                        {"arch": t.arch.k8s, "platform": t.platform, "tag": t.tag, "input_hash": t.input_hash}
                        for t in img.targets
                    ],
                    "calls": [c.argv() for c in img.calls],
                    "join": (imagetools_create_argv(img.tag, [f"{img.repository}@<{t.arch} digest>" for t in img.targets], self.builder)
                             if self.strategy == PER_PLATFORM and self.push else None),
                }
                for img in self.images
            ],
        }


def arg_name(component: str) -> str:
    """Build argument carrying a component's version: ``kube-router`` -> ``KUBE_ROUTER_VERSION``."""
    return component.upper().replace("-", "_").replace(".", "_") + "_VERSION"


def created_timestamp(epoch: int) -> str:
    """RFC 3339 UTC timestamp for ``org.opencontainers.image.created``."""
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_epoch(spec: ImageSpec, catalog: Catalog) -> int:
    """When SOURCE_DATE_EPOCH is unset: the newest of the files that define the image
    (spec, Dockerfile, catalog), so an unchanged image keeps its timestamp (and its hash)."""
    paths = [spec.path, spec.dockerfile, catalog.directory / "catalog.yml"]
    return max(int(p.stat().st_mtime) for p in paths if p.exists())


def build_args(spec: ImageSpec, catalog: Catalog, epoch: int, base_image: str | None) -> tuple[tuple[str, str], ...]:
    version = spec.version(catalog)
    comp = catalog.component(spec.version_from)
    args: dict[str, str] = {}
    if base_image:
        args["BASE_IMAGE"] = base_image
    for c, v in spec.component_versions(catalog).items():
        args[arg_name(c)] = v
    args["OCI_SOURCE"] = comp.source
    args["OCI_VERSION"] = version
    # Upstream's commit is not known from a release asset: the revision is its release tag.
    args["OCI_REVISION"] = version
    args["OCI_CREATED"] = created_timestamp(epoch)
    # BuildKit >= 0.11 (docker-container/remote builders) clamps timestamps to it: reproducible digests.
    args["SOURCE_DATE_EPOCH"] = str(epoch)
    return tuple(sorted(args.items()))


def input_hash(
    dockerfile_bytes: bytes, files: Sequence[tuple[str, str]], args: Sequence[tuple[str, str]],
    platform: str, base_digest: str | None, tags: Sequence[str],
) -> str:
    doc = {
        "schema": _HASH_SCHEMA, "dockerfile": hashlib.sha256(dockerfile_bytes).hexdigest(),
        "files": list(map(list, files)), "args": list(map(list, args)), "platform": platform,
        "base_digest": base_digest, "tags": list(tags),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


class FileHasher:
    """sha256 of context files, memoised by (path, size, mtime) so a no-op rebuild stays cheap.

    ``cache`` is a plain dict the caller may persist between runs."""

    def __init__(self, cache: dict[str, str] | None = None):
        self.cache: dict[str, str] = cache if cache is not None else {}

    def __call__(self, path: Path) -> str:
        st = path.stat()
        key = f"{path}:{st.st_size}:{st.st_mtime_ns}:{st.st_mode:o}"
        hexd = self.cache.get(key)
        if hexd is None:
            hexd = sha256_file(path).hex
            self.cache[key] = hexd
        return hexd


def make_plan(
    selection: Sequence[tuple[ImageSpec, tuple[Arch, ...]]],
    catalog: Catalog,
    *,
    context: Path,
    registry: str,
    strategy: str,
    push: bool = True,
    builder: str | None = None,
    base_image: str | None = None,
    base_digest: str | None = None,
    source_date_epoch: int | None = None,
    skipped: Sequence[str] = (),
    hasher: FileHasher | None = None,
) -> BuildPlan:
    """The plan for the selected images and arches. ``context`` is the fetch tree
    (``settings.tree_dir``); every binary a spec names must be there."""
    if strategy not in STRATEGIES:
        raise BuildError(f"unknown build strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    hasher = hasher or FileHasher()
    registry = registry.strip("/")
    images = []
    for spec, arches in selection:
        version = spec.version(catalog)
        repository = f"{registry}/{spec.name}"
        list_tag = f"{repository}:{version}"
        epoch = source_date_epoch if source_date_epoch is not None else default_epoch(spec, catalog)
        args = build_args(spec, catalog, epoch, base_image)
        dockerfile_bytes = spec.dockerfile.read_bytes()
        versions = spec.component_versions(catalog)
        targets = []
        for arch in arches:
            files = []
            for b in spec.binaries:
                base = f"{b.component}/{versions[b.component]}/{arch.k8s}"
                if b.whole_tree:
                    found = sorted(p for p in (context / base).rglob("*") if p.is_file()) if (context / base).is_dir() else []
                    if not found:
                        raise BuildError(
                            f"image {spec.name} {arch}: fetched tree {context / base} is missing or empty; "
                            f"run `netship fetch --component {b.component} --arch {arch}` first")
                    files.extend((p.relative_to(context).as_posix(), hasher(p)) for p in found)
                    continue
                path = context / base / b.file
                if not path.is_file():
                    raise BuildError(
                        f"image {spec.name} {arch}: fetched binary {path} is missing; "
                        f"run `netship fetch --component {b.component} --arch {arch}` first")
                files.append((f"{base}/{b.file}", hasher(path)))
            tag = f"{list_tag}-{arch.k8s}"
            tags = (tag, list_tag) if strategy == MULTI_PLATFORM else (tag,)
            targets.append(ArchTarget(
                arch, arch.platform, tag, tuple(files),
                input_hash(dockerfile_bytes, files, args, arch.platform, base_digest, tags)))
        if strategy == PER_PLATFORM:
            calls = tuple(
                BuildCall(spec.name, (t.platform,), (t.tag,), context, spec.dockerfile, args, push, builder)
                for t in targets)
        else:
            calls = (BuildCall(spec.name, tuple(t.platform for t in targets), (list_tag,), context,
                               spec.dockerfile, args, push, builder),)
        images.append(ImagePlan(spec.name, version, repository, list_tag, tuple(versions.items()),
                                tuple(targets), calls))
    return BuildPlan(strategy, builder, registry, push, base_image, tuple(images), tuple(skipped))


def describe(plan: BuildPlan) -> list[str]:
    """Human lines for ``--dry-run``."""
    lines = [f"strategy {plan.strategy} (builder {plan.builder or 'default'}), registry {plan.registry}, "
             f"{'push' if plan.push else 'no push'}, base {plan.base_image or 'runtime-alpine (default stage)'}"]
    for note in plan.skipped:
        lines.append(f"skip: {note}")
    for img in plan.images:
        lines.append(f"{img.tag}  [{', '.join(t.platform for t in img.targets)}]")
        for call in img.calls:
            lines.append("  $ " + " ".join(call.argv()))
        if plan.push:
            if plan.strategy == PER_PLATFORM:
                lines.append("  $ " + " ".join(imagetools_create_argv(
                    img.tag, [f"{img.repository}@<{t.arch} digest>" for t in img.targets], plan.builder)))
            else:
                for t in img.targets:
                    lines.append(f"  registry: tag {t.tag} -> {img.repository}@<{t.arch} digest> (manifest copied as is)")
    return lines
