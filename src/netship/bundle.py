"""Offline bundles: one file per arch that a person carries to an air-gapped node.

``netship-offline-VERSION-ARCH.tar[.gz|.zst]`` holds, under ``netship-offline-VERSION-ARCH/``:

- ``images/images.tar``: every image of that arch (docker ``manifest.json`` + OCI layout,
  see ``netship.ociarchive``); always a plain tar (docker 20.10 cannot load zstd, ctr 1.6
  cannot import gzip), the outer compression is the only one;
- ``bin/cni/``: CNI plugin binaries (installed into /opt/cni/bin), ``bin/tools/``: CLIs;
- ``manifests/``: the stamped manifests for that arch (``netship.manifests``);
- ``bundle.json``: the inventory; ``SHA256SUMS`` over every other file; ``install.sh``.

The multi-arch variant ``netship-offline-VERSION-multiarch.tar[...]`` holds one OCI layout
with every platform of every image (manifest lists kept, same digests) for seeding a
private registry with ``push-bundle``.

Plan as data (``plan_bundles``), then write (``write_bundle``): streamed, deterministic
(sorted entries, fixed modes, uid/gid 0, mtime = SOURCE_DATE_EPOCH, gzip without name nor
time, zstd at a fixed level without content size), atomic (temp + rename).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import importlib.resources
import os
import shutil
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, BinaryIO

from . import __version__, buildreport
from .arch import Arch
from .buildreport import BuildReport
from .catalog import Asset, load_catalog
from .digest import CHUNK
from .errors import BundleError, ConfigError, unknown
from .fsutil import TMP_PREFIX, atomic_open, dumps_json
from .ociarchive import ArchivePlan, SourceImage, plan_archive, write_archive
from .output import note
from .registry import Registry, client_for
from .settings import Settings

COMPRESSIONS: dict[str, str] = {"gzip": ".tar.gz", "zstd": ".tar.zst", "none": ".tar"}
GZIP_LEVEL = 6
ZSTD_LEVEL = 6
MULTIARCH = "multiarch"
# Which fetched components go into bin/ and where the installer puts them.
# Daemons that run as images (flanneld, kube-router) are not copied: their images carry them.
BIN_LAYOUT: dict[str, str] = {
    "cni-plugins": "cni",
    "flannel-cni-plugin": "cni",
    "calicoctl": "tools",
    "cilium-cli": "tools",
}
IMAGES_TAR = "images/images.tar"
TAGS = "images/tags.txt"  # one image reference per line, for install.sh --registry
SUMS = "SHA256SUMS"
INVENTORY = "bundle.json"
INSTALLER = "install.sh"


# --- the images to bundle ------------------------------------------------------------------

MIRROR_REPORT = "mirror-report.json"  # what `netship mirror` writes beside the build report


def load_images(settings: Settings) -> tuple[BuildReport, frozenset[str]]:
    """The build report, plus the images `netship mirror` copied into the same registry
    (calico, cilium) when its report is there, and the names of those mirrored images.
    Every per-arch image must have been pushed."""
    path = settings.build_report
    if not path.exists():
        raise BundleError(f"{path}: build report not found (run `netship build` first)")
    report = buildreport.load(path)
    mirrored_names: frozenset[str] = frozenset()
    mirrored_path = path.parent / MIRROR_REPORT
    if mirrored_path.exists():
        mirrored = buildreport.load(mirrored_path)
        if mirrored.registry == report.registry:
            mirrored_names = frozenset(mirrored.images) - set(report.images)
            report = replace(report, images={**mirrored.images, **report.images})
    if not report.images:
        raise BundleError(f"{path}: build report lists no images")
    for key, img in report.images.items():
        for arch, entry in img.arches.items():
            if entry.digest is None:
                raise BundleError(f"{path}: image {key} arch {arch} was not pushed (no digest); "
                                  "bundles are read from the registry: build with --push")
    return report, mirrored_names


# --- the plan -------------------------------------------------------------------------------

@dataclass(frozen=True)
class BinFile:
    component: str
    source: Path
    dest: str  # bin/cni/bridge


@dataclass(frozen=True)
class BundlePlan:
    name: str  # netship-offline-VERSION-ARCH
    arch: Arch | None  # None: multi-arch variant
    compression: str
    path: Path  # final file
    sources: tuple[SourceImage, ...]
    images: Mapping[str, Mapping[str, Any]]  # inventory entries
    components: Mapping[str, Mapping[str, Any]]
    bin_files: tuple[BinFile, ...]
    mtime: int
    with_installer: bool = True


def bundle_name(version: str, arch: Arch | None) -> str:
    return f"netship-offline-{version}-{arch.k8s if arch else MULTIARCH}"


def _read_from(repository: str, registry_override: str | None) -> str:
    if not registry_override:
        return repository
    _host, _, path = repository.partition("/")
    return f"{registry_override.rstrip('/')}/{path}"


def plan_bundles(
    settings: Settings,
    arches: Sequence[Arch] | None,
    *,
    compression: str = "gzip",
    multiarch: bool = False,
    per_arch: bool = True,
    out_dir: Path | None = None,
    registry: str | None = None,
    tree_paths: Callable[[Asset], Path] | None = None,
    skipped: list[str] | None = None,
) -> list[BundlePlan]:
    """Decide every bundle's content from the build report, the catalog and the fetch tree.

    ``arches`` None means every arch the build report holds. An arch that an image of the
    report lacks is an error. ``registry``: read the images from there instead of the
    report's registry (names are kept as in the report).
    """
    if compression not in COMPRESSIONS:
        raise unknown("compression", compression, COMPRESSIONS, "--compression")
    out = Path(out_dir or settings.out_dir)
    report, mirrored = load_images(settings)
    images = dict(sorted(report.images.items()))
    built = {a for key, img in images.items() if key not in mirrored for a in img.arches}
    chosen = tuple(arches) if arches else tuple(a for a in Arch if a in built)
    catalog = load_catalog(settings.catalog_dir)
    mtime = settings.source_date_epoch or 0
    plans: list[BundlePlan] = []
    for arch in chosen if per_arch else ():
        sources, inv_images = [], {}
        for key, img in images.items():
            entry = img.arches.get(arch)
            if entry is None:
                if key in mirrored:  # upstream does not publish this image for arch
                    if skipped is not None:
                        skipped.append(f"mirrored image {key} has no {arch}: not in the {arch} bundle")
                    continue
                have = ", ".join(a.k8s for a in img.arches) or "none"
                raise BundleError(f"{settings.build_report}: image {key} has no arch {arch} (built: {have})")
            names = (img.tag, entry.tag)
            sources.append(SourceImage(_read_from(img.repository, registry), str(entry.digest), names))
            inv_images[key] = {"version": img.version, "platform": entry.platform,
                               "tags": sorted(names), "digest": str(entry.digest),
                               "index_digest": str(img.digest), "components": dict(img.components)}
        comps, bins = _binaries(settings, catalog, arch, tree_paths, skipped)
        name = bundle_name(__version__, arch)
        plans.append(BundlePlan(name, arch, compression, out / (name + COMPRESSIONS[compression]),
                                tuple(sources), inv_images, comps, bins, mtime))
    if multiarch:
        sources, inv_images = [], {}
        for key, img in images.items():
            sources.append(SourceImage(_read_from(img.repository, registry), str(img.digest), (img.tag,)))
            for _a, entry in sorted(img.arches.items(), key=lambda item: item[0].k8s):
                sources.append(SourceImage(_read_from(img.repository, registry), str(entry.digest), (entry.tag,)))
            inv_images[key] = {
                "version": img.version, "tags": [img.tag], "digest": str(img.digest),
                "components": dict(img.components),
                "arches": {a.k8s: {"platform": e.platform, "tag": e.tag, "digest": str(e.digest)}
                           for a, e in sorted(img.arches.items(), key=lambda item: item[0].k8s)},
            }
        name = bundle_name(__version__, None)
        plans.append(BundlePlan(name, None, compression, out / (name + COMPRESSIONS[compression]),
                                tuple(sources), inv_images, {}, (), mtime, with_installer=False))
    return plans


def _binaries(settings: Settings, catalog, arch: Arch, tree_paths, skipped) -> tuple[dict, tuple[BinFile, ...]]:
    names = [n for n in catalog.components if n in BIN_LAYOUT]
    assets = catalog.select(names, (arch,), skipped=skipped)
    if tree_paths is None:
        tree_paths = _tree_paths(settings, assets)
    comps: dict[str, dict[str, Any]] = {}
    bins: list[BinFile] = []
    seen: dict[str, str] = {}
    for asset in assets:
        root = tree_paths(asset)
        if not root.is_dir():
            raise BundleError(f"{root}: {asset.key} is not in the fetch tree (run `invoke fetch --arch {arch}`)")
        files = []
        for p in sorted(root.rglob("*")):
            if p.is_file() and not p.is_symlink() and os.stat(p).st_mode & 0o111:
                dest = f"bin/{BIN_LAYOUT[asset.component.name]}/{p.name}"
                if dest in seen:
                    raise BundleError(f"{p}: {dest} already comes from {seen[dest]}")
                seen[dest] = asset.key
                bins.append(BinFile(asset.component.name, p, dest))
                files.append(dest)
        comps[asset.component.name] = {
            "version": asset.version, "url": asset.url,
            "pin": str(asset.pin.sha256) if asset.pin.sha256 else None, "pin_source": asset.pin.source,
            "files": files,
        }
    return comps, tuple(sorted(bins, key=lambda b: b.dest))


def _tree_paths(settings: Settings, assets: list[Asset]) -> Callable[[Asset], Path]:
    """Fetch what is missing (through ``netship.fetch`` when it exists), then map to tree paths."""
    try:
        from . import fetch as fetch_mod  # type: ignore[attr-defined]
    except ImportError:
        fetch_mod = None
    if fetch_mod is not None:
        missing = [a for a in assets if not fetch_mod.tree_path(settings, a).is_dir()]
        if missing:
            note(f"fetching {len(missing)} missing asset(s) into {settings.tree_dir}")
            fetch_mod.fetch(settings, missing, allow_unpinned=settings.allow_unpinned)
        return lambda a: fetch_mod.tree_path(settings, a)
    return lambda a: settings.tree_dir / a.component.name / a.version / a.arch.k8s


# --- writing ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class BundleResult:
    path: Path
    arch: str
    size: int
    sha256: str
    images: int
    blobs: int
    images_tar_size: int
    referenced_bytes: int
    stored_bytes: int
    files: int
    manifests: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def deduplicated_bytes(self) -> int:
        return self.referenced_bytes - self.stored_bytes

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "arch": self.arch, "size": self.size, "sha256": self.sha256,
                "images": self.images, "blobs": self.blobs, "images_tar_size": self.images_tar_size,
                "referenced_bytes": self.referenced_bytes, "stored_bytes": self.stored_bytes,
                "deduplicated_bytes": self.deduplicated_bytes, "files": self.files,
                "manifests": self.manifests}


class _HashingWriter:
    def __init__(self, f: BinaryIO):
        self._f, self.hasher, self.count = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self._f.write(data)
        self.hasher.update(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self._f.flush()


def installer_script() -> bytes:
    return importlib.resources.files("netship.installer").joinpath("install.sh").read_bytes()


GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0, OS unknown
_STORED_MAX = 0xFFFF


class _Plain:
    def __init__(self, f: BinaryIO):
        self._f = f

    def write(self, data: bytes) -> None:
        self._f.write(data)

    write_stored = write

    def finish(self) -> None:
        pass


class _Gzip:
    """Deterministic gzip (one member, no name, mtime 0).

    Data written with ``write`` is deflated at GZIP_LEVEL; data written with ``write_stored``
    (the image archive: its layers are already compressed) goes into deflate *stored*
    blocks after a full flush, which every gzip reader accepts and which costs a copy and
    a CRC instead of a futile second compression.
    """

    def __init__(self, f: BinaryIO):
        self._f = f
        self._z = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._crc = 0
        self._size = 0
        self._dirty = False
        f.write(GZIP_HEADER)

    def write(self, data: bytes) -> None:
        if data:
            self._crc = zlib.crc32(data, self._crc)
            self._size += len(data)
            self._f.write(self._z.compress(data))
            self._dirty = True

    def write_stored(self, data: bytes) -> None:
        if not data:
            return
        if self._dirty:  # end the current block, byte-aligned, with no reference to earlier data
            self._f.write(self._z.flush(zlib.Z_FULL_FLUSH))
            self._dirty = False
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        view = memoryview(data)
        for i in range(0, len(data), _STORED_MAX):
            chunk = view[i:i + _STORED_MAX]
            n = len(chunk)
            self._f.write(b"\x00" + struct.pack("<HH", n, n ^ 0xFFFF))
            self._f.write(chunk)

    def finish(self) -> None:
        self._f.write(self._z.flush(zlib.Z_FINISH))
        self._f.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))


class _Zstd:
    def __init__(self, f: BinaryIO):
        import zstandard

        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True,
                                        write_content_size=False, threads=0)
        self._w = cctx.stream_writer(f, closefd=False)

    def write(self, data: bytes) -> None:
        self._w.write(data)

    write_stored = write

    def finish(self) -> None:
        self._w.close()


def compressor(f: BinaryIO, compression: str) -> _Plain | _Gzip | _Zstd:
    """A deterministic compressing writer over ``f``; ``finish()`` ends the stream."""
    return {"gzip": _Gzip, "zstd": _Zstd, "none": _Plain}[compression](f)


class _TarWriter:
    """A streaming GNU tar writer (tarfile's headers) that lets file data bypass compression."""

    def __init__(self, out: _Plain | _Gzip | _Zstd, mtime: int):
        self._out, self._mtime, self._offset = out, mtime, 0

    def _header(self, info: tarfile.TarInfo) -> None:
        buf = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
        self._out.write(buf)
        self._offset += len(buf)

    def _pad(self, size: int) -> None:
        pad = -size % 512
        if pad:
            self._out.write(bytes(pad))
            self._offset += pad

    def add_dir(self, name: str) -> None:
        self._header(_tar_info(name, 0, 0o755, self._mtime, is_dir=True))

    def add_bytes(self, name: str, data: bytes, mode: int) -> None:
        self._header(_tar_info(name, len(data), mode, self._mtime))
        self._out.write(data)
        self._offset += len(data)
        self._pad(len(data))

    def add_file(self, name: str, path: Path, size: int, mode: int, *, stored: bool = False) -> None:
        self._header(_tar_info(name, size, mode, self._mtime))
        write = self._out.write_stored if stored else self._out.write
        n = 0
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                write(chunk)
                n += len(chunk)
        if n != size:
            raise BundleError(f"{path}: changed while bundling ({n} bytes, expected {size})")
        self._offset += n
        self._pad(n)

    def close(self) -> None:
        end = self._offset + 2 * 512
        total = -(-end // tarfile.RECORDSIZE) * tarfile.RECORDSIZE
        self._out.write(bytes(total - self._offset))


def decompressor(f: BinaryIO, compression: str) -> BinaryIO:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)  # type: ignore[return-value]
    return f


def compression_of(path: Path) -> str:
    name = path.name
    for comp, suffix in COMPRESSIONS.items():
        if comp != "none" and name.endswith(suffix):
            return comp
    if name.endswith(".tar") or path.is_dir():
        return "none"
    raise BundleError(f"{path}: not a bundle name (expected .tar, .tar.gz or .tar.zst)")


def _tar_info(name: str, size: int, mode: int, mtime: int, is_dir: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if is_dir else tarfile.REGTYPE
    info.size = 0 if is_dir else size
    info.mode, info.mtime = mode, mtime
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _sha256_path(path: Path) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def clean_stale(out_dir: Path) -> int:
    """Remove temporaries an interrupted run left in ``out_dir`` (files and directories)."""
    n = 0
    if out_dir.is_dir():
        for p in out_dir.glob(TMP_PREFIX + "*"):
            with contextlib.suppress(OSError):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                n += 1
    return n


@contextlib.contextmanager
def out_lock(out_dir: Path) -> Iterator[None]:
    """One bundle writer per output folder, so stale-temp cleanup never hits a live run.

    The lock is a ``flock`` on the folder itself: nothing is left behind in it.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BundleError(f"{out_dir}: another bundle run is writing here") from None
        stale = clean_stale(out_dir)
        if stale:
            note(f"removed {stale} stale temporary file(s) from an interrupted run in {out_dir}")
        yield
    finally:
        os.close(fd)  # releases the lock


ManifestWriter = Callable[[Settings, Arch, Path], list[Path]]


def default_manifest_writer(registry: str | None) -> ManifestWriter | None:
    """``netship.manifests.write_manifests`` for one arch, or None until that issue lands."""
    try:
        from .manifests import write_manifests  # type: ignore[attr-defined]
    except ImportError:
        return None

    def write(settings: Settings, arch: Arch, out_dir: Path) -> list[Path]:
        return list(write_manifests(settings, arches=(arch,), layout="per-arch",
                                    registry=registry, out_dir=out_dir))

    return write


def write_bundle(
    settings: Settings,
    plan: BundlePlan,
    registries: Mapping[str, Registry],
    *,
    manifest_writer: ManifestWriter | None = None,
) -> BundleResult:
    """Write one bundle atomically. Every blob is streamed from its registry once."""
    out_dir = plan.path.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    archive: ArchivePlan = plan_archive(registries, plan.sources, platform_only=plan.arch is not None)
    staging = Path(_mkdtemp(out_dir))
    try:
        # 1. images.tar, staged (its digest goes into bundle.json before it in the tar)
        images_tmp = staging / "images.tar"
        with open(images_tmp, "wb") as f:
            hw = _HashingWriter(f)
            stats = write_archive(registries, archive, hw, mtime=plan.mtime)  # type: ignore[arg-type]
        if stats.size != archive.archive_size():
            raise BundleError(f"{images_tmp}: wrote {stats.size} bytes, planned {archive.archive_size()}")
        # 2. manifests
        manifest_files: list[tuple[str, Path]] = []
        if plan.arch is not None and manifest_writer is not None:
            mdir = staging / "manifests"
            mdir.mkdir()
            for p in manifest_writer(settings, plan.arch, mdir):
                p = Path(p)
                rel = p.resolve().relative_to(mdir.resolve()).as_posix()
                manifest_files.append((f"manifests/{rel}", p))
        # 3. the file list: (member, source path or bytes, mode)
        files: dict[str, tuple[Path | bytes, int]] = {IMAGES_TAR: (images_tmp, 0o644)}
        tags = sorted({n for img in archive.images for n in img.names})
        files[TAGS] = ("".join(t + "\n" for t in tags).encode(), 0o644)
        for b in plan.bin_files:
            files[b.dest] = (b.source, 0o755)
        for rel, p in manifest_files:
            files[rel] = (p, 0o644)
        if plan.with_installer:
            files[INSTALLER] = (installer_script(), 0o755)
        digests: dict[str, dict[str, Any]] = {}
        for rel, (src, _mode) in files.items():
            if isinstance(src, bytes):
                digests[rel] = {"sha256": hashlib.sha256(src).hexdigest(), "size": len(src)}
            elif rel == IMAGES_TAR:
                digests[rel] = {"sha256": hw.hasher.hexdigest(), "size": hw.count}
            else:
                hexd, size = _sha256_path(src)
                digests[rel] = {"sha256": hexd, "size": size}
        inventory = {
            "netship_version": __version__,
            "name": plan.name,
            "arch": plan.arch.k8s if plan.arch else MULTIARCH,
            "platform": plan.arch.platform if plan.arch else None,
            "source_date_epoch": plan.mtime,
            "components": plan.components,
            "images": plan.images,
            "images_archive": {"path": IMAGES_TAR, "blobs": stats.blobs,
                               "referenced_bytes": stats.referenced_bytes,
                               "stored_bytes": stats.stored_bytes},
            "manifests": sorted(rel for rel, _ in manifest_files),
            "files": digests,
        }
        files[INVENTORY] = (dumps_json(inventory).encode(), 0o644)
        digests_all = dict(digests)
        digests_all[INVENTORY] = {"sha256": hashlib.sha256(files[INVENTORY][0]).hexdigest()}  # type: ignore[arg-type]
        sums = "".join(f"{digests_all[rel]['sha256']}  {rel}\n" for rel in sorted(digests_all))
        files[SUMS] = (sums.encode(), 0o644)
        # 4. the outer tar, sorted, atomically
        dirs = {"images", "manifests", "bin"}
        for rel in files:
            parts = rel.split("/")[:-1]
            dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        members = sorted([(d, None) for d in dirs] + [(r, r) for r in files], key=lambda m: m[0])
        with atomic_open(plan.path, "wb") as f:
            fh = _HashingWriter(f)
            cw = compressor(fh, plan.compression)  # type: ignore[arg-type]
            tar = _TarWriter(cw, plan.mtime)
            tar.add_dir(plan.name)
            for rel, key in members:
                name = f"{plan.name}/{rel}"
                if key is None:
                    tar.add_dir(name)
                    continue
                src, mode = files[key]
                if isinstance(src, bytes):
                    tar.add_bytes(name, src, mode)
                else:
                    tar.add_file(name, src, digests[key]["size"], mode, stored=key == IMAGES_TAR)
            tar.close()
            cw.finish()
        sidecar = plan.path.with_name(plan.path.name + ".sha256")
        with atomic_open(sidecar, "wb") as f:
            f.write(f"{fh.hasher.hexdigest()}  {plan.path.name}\n".encode())
        return BundleResult(
            path=plan.path, arch=plan.arch.k8s if plan.arch else MULTIARCH, size=fh.count,
            sha256=fh.hasher.hexdigest(), images=len(archive.images), blobs=stats.blobs,
            images_tar_size=stats.size, referenced_bytes=stats.referenced_bytes,
            stored_bytes=stats.stored_bytes, files=len(files), manifests=len(manifest_files),
        )
    except OSError as e:
        raise BundleError(f"{plan.path}: cannot write bundle: {e.strerror or e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _mkdtemp(out_dir: Path) -> str:
    import tempfile

    return tempfile.mkdtemp(prefix=TMP_PREFIX, dir=out_dir)


def registries_for(settings: Settings, plans: Sequence[BundlePlan]) -> dict[str, Registry]:
    hosts = {s.repository.partition("/")[0] for p in plans for s in p.sources}
    return {h: client_for(h, ca_bundle=settings.ca_bundle, timeout=settings.timeout,
                          docker_config=settings.docker_config) for h in sorted(hosts)}


def bundle_offline(
    settings: Settings,
    arches: Sequence[Arch] | None = None,
    *,
    compression: str = "gzip",
    multiarch: bool = False,
    per_arch: bool = True,
    out_dir: Path | None = None,
    registry: str | None = None,
    manifest_writer: ManifestWriter | None | bool = True,
    registries: Mapping[str, Registry] | None = None,
    tree_paths: Callable[[Asset], Path] | None = None,
    skipped: list[str] | None = None,
) -> list[BundleResult]:
    """Plan and write every bundle. ``manifest_writer=True``: use netship.manifests if present."""
    out = Path(out_dir or settings.out_dir)
    with out_lock(out):
        plans = plan_bundles(settings, arches, compression=compression, multiarch=multiarch,
                             per_arch=per_arch, out_dir=out, registry=registry,
                             tree_paths=tree_paths, skipped=skipped)
        if registries is None:
            registries = registries_for(settings, plans)
        if manifest_writer is True:
            manifest_writer = default_manifest_writer(load_images(settings)[0].registry or settings.registry)
        results = []
        for plan in plans:
            note(f"writing {plan.path}")
            results.append(write_bundle(settings, plan, registries, manifest_writer=manifest_writer or None))
        return results


def open_bundle_stream(path: Path) -> IO[bytes]:
    """A readable stream of the bundle's (decompressed) tar."""
    f = open(path, "rb")  # noqa: SIM115 - returned to the caller
    return decompressor(f, compression_of(path))  # type: ignore[return-value]


# --- push-bundle ------------------------------------------------------------------------------

def extract_images_tar(bundle: Path, dest_dir: Path) -> Path:
    """Copy the bundle's images/images.tar (streamed, any compression) into ``dest_dir``."""
    if bundle.is_dir():
        p = bundle / IMAGES_TAR
        if not p.is_file():
            raise BundleError(f"{bundle}: no {IMAGES_TAR}")
        return p
    with open_bundle_stream(bundle) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
        for m in tar:
            if m.isfile() and m.name.split("/", 1)[-1] == IMAGES_TAR:
                src = tar.extractfile(m)
                assert src is not None
                out = dest_dir / "images.tar"
                with open(out, "wb") as f:
                    shutil.copyfileobj(src, f, CHUNK)
                return out
    raise BundleError(f"{bundle}: no {IMAGES_TAR} inside")


def push_bundle(settings: Settings, bundle: Path, registry: str, *, verify: bool = True,
                target: Registry | None = None) -> dict[str, Any]:
    """Push every image of a bundle (the multi-arch variant keeps its manifest lists) to
    ``registry`` (host[:port][/prefix]) through the registry HTTP API."""
    from .ociarchive import push_layout
    from .verify import verify_bundle

    bundle = Path(bundle)
    if verify:
        rep = verify_bundle(bundle)
        if not rep.ok:
            raise BundleError(f"{bundle}: verification failed: {rep.problems[0]} "
                              f"({len(rep.problems)} problem(s); run verify-bundle)")
    host = registry.strip().rstrip("/").partition("/")[0]
    if not host:
        raise ConfigError("--registry: expected HOST[:PORT][/PREFIX]")
    client = target or client_for(host, ca_bundle=settings.ca_bundle, timeout=settings.timeout,
                                  docker_config=settings.docker_config)
    client.ping()

    def retarget(name: str) -> tuple[str, str]:
        from .imageref import ImageRef

        ref = ImageRef.parse(name, f"{bundle}: image name")
        moved = ref.with_registry(registry)
        return moved.path, ref.tag or "latest"

    import tempfile

    with tempfile.TemporaryDirectory(prefix=TMP_PREFIX) as tmp:
        images_tar = extract_images_tar(bundle, Path(tmp))
        stats = push_layout(images_tar, client, retarget)
    return {"bundle": str(bundle), "registry": registry, **stats.to_json()}
