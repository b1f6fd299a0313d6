"""Daemon-less image archives: one tar that is both a ``docker save`` archive and an OCI layout.

The tar holds, with sorted entries, fixed modes, uid/gid 0 and one mtime:

- ``blobs/sha256/<hex>``: every manifest, config and layer, each stored once, byte for byte
  as the registry serves it (layers stay compressed);
- ``index.json`` + ``oci-layout``: the OCI image layout; each tagged image is one descriptor
  annotated with ``io.containerd.image.name`` (the full name, read by ``ctr images import``)
  and ``org.opencontainers.image.ref.name`` (the tag, read by skopeo and podman);
- ``manifest.json``: Docker's archive index (``Config`` / ``RepoTags`` / ``Layers`` pointing at
  the same blobs), read by ``docker load`` (Engine 20.10+). Only image manifests (one
  platform) get an entry: docker cannot load manifest lists.

Plan first (``plan_archive``: manifests only, small), then stream the blobs
(``write_archive``): memory stays flat whatever the layer sizes.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .digest import CHUNK, Digest
from .errors import BundleError
from .imageref import ImageRef
from .registry import INDEXES, OCI_INDEX, BlobTransfer, Descriptor, Manifest, Registry, TransferStats

ANN_CONTAINERD_NAME = "io.containerd.image.name"
ANN_REF_NAME = "org.opencontainers.image.ref.name"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
FILE_MODE = 0o644
DIR_MODE = 0o755
BLOCK = 512


@dataclass(frozen=True)
class SourceImage:
    """What to put in the archive: a manifest at ``repository`` (host/path), and its names."""

    repository: str  # host:port/path
    reference: str  # tag or sha256:... digest
    names: tuple[str, ...]  # full references to tag it with (host/path:tag)


@dataclass(frozen=True)
class PlannedImage:
    names: tuple[str, ...]
    manifest: Manifest
    repository: str


@dataclass(frozen=True)
class BlobRef:
    descriptor: Descriptor
    repository: str  # where to read it from


@dataclass(frozen=True)
class ArchivePlan:
    images: tuple[PlannedImage, ...]
    manifests: Mapping[str, Manifest]  # hex -> every manifest (tops and children)
    blobs: Mapping[str, BlobRef]  # hex -> configs and layers
    referenced_bytes: int  # sum of blob sizes over every image (before dedup)
    docker_entries: tuple[tuple[PlannedImage, Manifest], ...] = field(default=())

    @property
    def stored_bytes(self) -> int:
        return sum(m.size for m in self.manifests.values()) + sum(
            b.descriptor.size for b in self.blobs.values())

    @property
    def deduplicated_bytes(self) -> int:
        return self.referenced_bytes - self.stored_bytes

    def index_json(self) -> bytes:
        entries = []
        for img in self.images:
            for name in img.names:
                ref = ImageRef.parse(name, "image name")
                ann = {ANN_CONTAINERD_NAME: name, ANN_REF_NAME: ref.tag or "latest"}
                entries.append(img.manifest.descriptor(ann).to_json())
        entries.sort(key=lambda e: (e["annotations"][ANN_CONTAINERD_NAME], e["digest"]))
        doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        return _json(doc)

    def docker_manifest_json(self) -> bytes | None:
        if not self.docker_entries:
            return None
        out = []
        for img, m in self.docker_entries:
            children = m.children()
            out.append({
                "Config": blob_path(children[0].digest),
                "RepoTags": sorted(img.names),
                "Layers": [blob_path(d.digest) for d in children[1:]],
            })
        out.sort(key=lambda e: e["RepoTags"])
        return json.dumps(out, separators=(",", ":"), sort_keys=True).encode()

    def entries(self) -> list[tuple[str, int]]:
        """(member name, size) in archive order; directories have size -1."""
        files: list[tuple[str, int]] = [("blobs/", -1), ("blobs/sha256/", -1)]
        blobs = {h: m.size for h, m in self.manifests.items()}
        blobs.update({h: b.descriptor.size for h, b in self.blobs.items()})
        files += [(f"blobs/sha256/{h}", blobs[h]) for h in sorted(blobs)]
        files.append(("index.json", len(self.index_json())))
        dm = self.docker_manifest_json()
        if dm is not None:
            files.append(("manifest.json", len(dm)))
        files.append(("oci-layout", len(OCI_LAYOUT)))
        return files

    def archive_size(self) -> int:
        """Exact size of the tar ``write_archive`` produces (ustar headers, names < 100)."""
        total = 0
        for _name, size in self.entries():
            total += BLOCK + (0 if size < 0 else -(-size // BLOCK) * BLOCK)
        return _tar_total(total)


def _tar_total(body: int) -> int:
    # tarfile ends with two zero blocks and pads the whole to a multiple of RECORDSIZE.
    end = body + 2 * BLOCK
    rec = tarfile.RECORDSIZE
    return -(-end // rec) * rec


def blob_path(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


def _json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _split(repository: str) -> tuple[str, str]:
    host, _, path = repository.partition("/")
    return host, path


def plan_archive(
    registries: Mapping[str, Registry],
    sources: Iterable[SourceImage],
    *,
    platform_only: bool = True,
) -> ArchivePlan:
    """Fetch the manifests of ``sources`` (never the layers) and decide what the tar holds.

    ``registries`` maps host -> client. ``platform_only``: every source must be a single
    image manifest (per-arch bundle); otherwise indexes are kept with all their children.
    Sources pointing at the same manifest are merged (their names joined).
    """
    by_digest: dict[str, PlannedImage] = {}
    manifests: dict[str, Manifest] = {}
    blobs: dict[str, BlobRef] = {}
    referenced = 0
    docker: dict[str, tuple[PlannedImage, Manifest]] = {}

    def client(repository: str) -> tuple[Registry, str]:
        host, path = _split(repository)
        if host not in registries:
            raise BundleError(f"{repository}: no registry client for {host}")
        return registries[host], path

    def add_image_manifest(m: Manifest, repository: str) -> int:
        """Record an image manifest and its blobs; returns the bytes it references."""
        manifests[m.digest.hex] = m
        total = m.size
        for d in m.children():
            total += d.size
            blobs.setdefault(d.digest.hex, BlobRef(d, repository))
        return total

    for src in sources:
        reg, path = client(src.repository)
        top = reg.get_manifest(path, src.reference)
        # bytes a one-archive-per-image tool would store for this source (dedup statistics);
        # a manifest already planned (as a top or as a list's child) adds nothing new.
        already = top.digest.hex in manifests
        closure = 0
        if top.is_index:
            if platform_only:
                raise BundleError(f"{src.repository}@{src.reference}: is a manifest list; "
                                  "a per-arch archive needs one platform's manifest")
            manifests[top.digest.hex] = top
            closure += top.size
            for child in top.children():
                if child.media_type in INDEXES:
                    raise BundleError(f"{src.repository}@{top.digest}: nested index {child.digest} not supported")
                known = manifests.get(child.digest.hex)
                child_m = known or reg.get_manifest(path, child.digest)
                closure += add_image_manifest(child_m, src.repository)
        else:
            closure += add_image_manifest(top, src.repository)
        if not already:
            referenced += closure
        prev = by_digest.get(top.digest.hex)
        names = tuple(sorted(set(src.names) | set(prev.names if prev else ())))
        planned = PlannedImage(names, top, prev.repository if prev else src.repository)
        by_digest[top.digest.hex] = planned
        if not top.is_index:
            docker[top.digest.hex] = (planned, top)
    images = tuple(sorted(by_digest.values(), key=lambda p: (p.names, p.manifest.digest.hex)))
    return ArchivePlan(images, manifests, blobs, referenced,
                       tuple(sorted(docker.values(), key=lambda e: e[0].names)))


def _info(name: str, size: int, mtime: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    if size < 0:
        info.type, info.mode, info.size = tarfile.DIRTYPE, DIR_MODE, 0
    else:
        info.type, info.mode, info.size = tarfile.REGTYPE, FILE_MODE, size
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = mtime
    return info


@dataclass(frozen=True)
class ArchiveStats:
    size: int
    blobs: int
    referenced_bytes: int
    stored_bytes: int

    @property
    def deduplicated_bytes(self) -> int:
        return self.referenced_bytes - self.stored_bytes


def write_archive(
    registries: Mapping[str, Registry], plan: ArchivePlan, out: BinaryIO, *, mtime: int = 0
) -> ArchiveStats:
    """Write the tar to ``out`` (a stream), reading each blob from its registry once and
    checking its digest and size as it streams. Headers are tarfile's (ustar); the data is
    written straight through, without tarfile's extra buffer copy."""
    counter = _CountingWriter(out)

    def member(name: str, size: int, chunks) -> None:
        counter.write(_info(name, size, mtime).tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict"))
        n = 0
        for chunk in chunks:
            counter.write(chunk)
            n += len(chunk)
        if n != max(size, 0):
            raise BundleError(f"{name}: got {n} bytes, expected {size}")
        if -n % BLOCK:
            counter.write(bytes(-n % BLOCK))

    for name, size in plan.entries():
        if size < 0:
            member(name, -1, ())
        elif not name.startswith("blobs/sha256/"):
            data = {"index.json": plan.index_json(), "oci-layout": OCI_LAYOUT,
                    "manifest.json": plan.docker_manifest_json()}[name]
            assert data is not None
            member(name, size, (data,))
        elif (hexd := name.rsplit("/", 1)[1]) in plan.manifests:
            member(name, size, (plan.manifests[hexd].data,))
        else:
            ref = plan.blobs[hexd]
            host, path = _split(ref.repository)
            with registries[host].open_blob(path, ref.descriptor.digest, ref.descriptor.size) as reader:
                try:
                    member(name, size, iter(lambda: reader.read(CHUNK), b""))
                except BundleError:
                    raise BundleError(f"{ref.repository}@{ref.descriptor.digest}: blob shorter than "
                                      f"its descriptor's {size} bytes") from None
                reader.verify()
    counter.write(bytes(plan.archive_size() - counter.count))  # end blocks + record padding
    return ArchiveStats(counter.count, len(plan.manifests) + len(plan.blobs),
                        plan.referenced_bytes, plan.stored_bytes)


class _CountingWriter:
    def __init__(self, f: BinaryIO):
        self._f, self.count = f, 0

    def write(self, data: bytes) -> int:
        self._f.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:  # tarfile closes its fileobj only when it opened it
        pass


# --- pushing an archive's OCI layout to a registry --------------------------------------------

@dataclass
class PushStats(TransferStats):
    manifests: int = 0
    tags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "manifests": self.manifests, "tags": sorted(self.tags)}


def push_layout(archive: str | Path, target: Registry, retarget) -> PushStats:
    """Push every tagged image of the OCI layout in tar ``archive`` through the registry API.

    ``retarget(name) -> (repository path, tag)`` maps an ``io.containerd.image.name`` to the
    place in ``target``. Manifests are pushed byte for byte (same digests, lists kept);
    blobs the registry already has are skipped, blobs pushed to another repository in this
    run are mounted.
    """
    stats = PushStats()
    where = str(archive)
    with tarfile.open(archive, "r:") as tar:
        members = {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}

        def read(name: str) -> bytes:
            m = members.get(name)
            if m is None:
                raise BundleError(f"{where}: {name} missing")
            f = tar.extractfile(m)
            assert f is not None
            return f.read()

        def manifest(desc: Descriptor) -> Manifest:
            m = Manifest.parse(read(blob_path(desc.digest)), desc.media_type, f"{where}: {desc.digest}")
            if m.digest != desc.digest:
                raise BundleError(f"{where}: blob {desc.digest} does not match its name")
            return m

        index = json.loads(read("index.json"))
        transfer = BlobTransfer(target)

        def push_blob(repo: str, d: Descriptor) -> None:
            name = blob_path(d.digest)
            if name not in members:
                raise BundleError(f"{where}: {name} missing")
            transfer.push(repo, d, lambda: tar.extractfile(members[name]), stats)  # type: ignore[arg-type, return-value]

        def push_image(repo: str, m: Manifest, reference: str) -> None:
            for d in m.children():
                push_blob(repo, d)
            target.put_manifest(repo, reference, m)
            stats.manifests += 1

        entries = sorted(index.get("manifests") or [],
                         key=lambda e: (0 if e.get("mediaType") not in INDEXES else 1,
                                        (e.get("annotations") or {}).get(ANN_CONTAINERD_NAME, "")))
        for raw in entries:
            desc = Descriptor.from_json(raw, f"{where}: index.json")
            name = (desc.annotations or {}).get(ANN_CONTAINERD_NAME)
            if not name:
                raise BundleError(f"{where}: index.json entry {desc.digest} has no {ANN_CONTAINERD_NAME}")
            repo, tag = retarget(name)
            top = manifest(desc)
            if top.is_index:
                for child in top.children():
                    push_image(repo, manifest(child), str(child.digest))
                target.put_manifest(repo, tag, top)
                stats.manifests += 1
            else:
                push_image(repo, top, tag)
            stats.tags.append(f"{target.host}/{repo}:{tag}")
    return stats
