"""verify-bundle: recompute every digest of a bundle and name what is missing, extra or altered.

Checked, streaming (memory stays flat):
- the bundle file against its ``.sha256`` sidecar when present, the gzip header (no name,
  no time), tar structure (header checksums; zero padding and trailer for a plain tar);
- every file against ``SHA256SUMS`` and against ``bundle.json``'s ``files`` (size + sha256);
- inside ``images/images.tar``: every ``blobs/sha256/<hex>`` against its name, and the
  references: ``index.json`` -> manifests (lists -> manifests) -> config + layers, and
  Docker's ``manifest.json`` -> config + layers; sizes must match the descriptors; blobs
  nobody references are extra.

Works on a bundle file (.tar, .tar.gz, .tar.zst) or on an unpacked bundle folder.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .bundle import GZIP_HEADER, IMAGES_TAR, INVENTORY, SUMS, compression_of, decompressor
from .digest import CHUNK
from .errors import VerificationError

KEEP_SMALL = 1 << 20  # manifests/configs are kept in memory to follow their references
_BLOB = re.compile(r"^blobs/sha256/([0-9a-f]{64})$")
_SUM_LINE = re.compile(r"^([0-9a-f]{64})  ([^ /][^\n]*)$")


@dataclass(frozen=True)
class Problem:
    kind: str  # missing | extra | altered | malformed
    what: str  # the file or blob at fault
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.what}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class VerifyReport:
    path: Path
    files: int = 0
    blobs: int = 0
    images: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, what: str, detail: str = "") -> None:
        self.problems.append(Problem(kind, what, detail))

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "ok": self.ok, "files": self.files, "blobs": self.blobs,
                "images": self.images,
                "problems": [{"kind": p.kind, "what": p.what, "detail": p.detail} for p in self.problems]}


class _Hashing:
    """Read-through wrapper hashing everything read from ``f``."""

    def __init__(self, f: IO[bytes]):
        self._f, self.h, self.n = f, hashlib.sha256(), 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.h.update(data)
        self.n += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def _hash_stream(f: IO[bytes]) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    while chunk := f.read(CHUNK):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


# --- a strict streaming tar reader -------------------------------------------------------------
# tarfile in stream mode stops silently at a damaged header and never shows the padding;
# a bundle must have no byte that no check covers, so headers, padding and trailer are
# all checked here.

class TarDamaged(Exception):
    pass


_ZERO = bytes(512)


def _read_exact(stream: IO[bytes], n: int, what: str) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = stream.read(min(CHUNK, n - got))
        if not chunk:
            raise TarDamaged(f"truncated {what}")
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


class _Limited:
    def __init__(self, stream: IO[bytes], size: int):
        self._s, self.left = stream, size

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        want = self.left if n is None or n < 0 else min(n, self.left)
        data = _read_exact(self._s, want, "member data")
        self.left -= len(data)
        return data


def iter_tar(stream: IO[bytes]) -> Iterator[tuple[str, tarfile.TarInfo, IO[bytes]]]:
    """Yield (name, info, data reader) per member; raise TarDamaged on any damage:
    header checksum, non-zero padding, truncation, non-zero bytes after the end marker."""
    offset = 0
    longname: str | None = None
    while True:
        buf = _read_exact(stream, 512, f"tar header at offset {offset}")
        if buf == _ZERO:
            while chunk := stream.read(CHUNK):
                if chunk.count(0) != len(chunk):
                    raise TarDamaged(f"non-zero bytes after the end-of-archive marker (offset {offset})")
            return
        try:
            info = tarfile.TarInfo.frombuf(buf, "utf-8", "surrogateescape")
        except tarfile.HeaderError as e:
            raise TarDamaged(f"damaged tar header at offset {offset}: {e}") from None
        pad = -info.size % 512
        offset += 512 + info.size + pad
        if info.type == tarfile.GNUTYPE_LONGNAME:
            longname = _read_exact(stream, info.size, "long name").rstrip(b"\0").decode("utf-8", "surrogateescape")
        elif info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGLINK):
            _read_exact(stream, info.size, "extended header")
        else:
            name = longname if longname is not None else info.name
            longname = None
            reader = _Limited(stream, info.size if info.isfile() else 0)
            yield name, info, reader  # type: ignore[misc]
            while reader.read(CHUNK):
                pass
        if pad and _read_exact(stream, pad, "padding").count(0) != pad:
            raise TarDamaged(f"non-zero bytes in the padding before offset {offset}")


# --- images.tar -----------------------------------------------------------------------------

def verify_layout(stream: IO[bytes], report: VerifyReport, prefix: str = IMAGES_TAR) -> None:
    """Check an image archive (OCI layout + docker manifest.json) read as a stream."""
    blobs: dict[str, int] = {}
    small: dict[str, bytes] = {}
    meta: dict[str, bytes] = {}
    try:
        for raw_name, m, f in iter_tar(stream):
            name = raw_name.removeprefix("./")
            if m.isdir():
                continue
            where = f"{prefix}: {name}"
            if not m.isfile():
                report.add("extra", where, "not a regular file")
                continue
            mb = _BLOB.match(name)
            if mb:
                want = mb.group(1)
                if m.size <= KEEP_SMALL:
                    data = f.read()
                    got = hashlib.sha256(data).hexdigest()
                    small[want] = data
                else:
                    got, _ = _hash_stream(f)
                report.blobs += 1
                blobs[want] = m.size
                if got != want:
                    report.add("altered", where, f"content hashes to sha256:{got}")
                    small.pop(want, None)
            elif name in ("index.json", "manifest.json", "oci-layout"):
                meta[name] = f.read(KEEP_SMALL + 1)
            else:
                report.add("extra", where, "unexpected member")
    except TarDamaged as e:
        report.add("altered", prefix, str(e))
        return
    referenced: set[str] = set()

    def load_json(name: str) -> Any:
        if name not in meta:
            report.add("missing", f"{prefix}: {name}")
            return None
        try:
            return json.loads(meta[name])
        except ValueError as e:
            report.add("altered", f"{prefix}: {name}", f"not JSON: {e}")
            return None

    def follow(desc: Any, where: str) -> None:
        try:
            algo, _, hexd = str(desc["digest"]).partition(":")
            size = int(desc["size"])
        except (KeyError, TypeError, ValueError):
            report.add("altered", where, "malformed descriptor")
            return
        if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexd):
            report.add("altered", where, f"bad digest {desc.get('digest')!r}")
            return
        if hexd not in blobs:
            report.add("missing", f"{prefix}: blobs/sha256/{hexd}", f"referenced by {where}")
            return
        if blobs[hexd] != size:
            report.add("altered", f"{prefix}: blobs/sha256/{hexd}",
                       f"size {blobs[hexd]}, {where} says {size}")
        first_visit = hexd not in referenced
        referenced.add(hexd)
        mt = str(desc.get("mediaType", ""))
        if first_visit and ("manifest" in mt or "index" in mt) and hexd in small:
            try:
                doc = json.loads(small[hexd])
            except ValueError:
                report.add("altered", f"{prefix}: blobs/sha256/{hexd}", "manifest is not JSON")
                return
            here = f"manifest sha256:{hexd}"
            if "manifests" in doc:
                for i, child in enumerate(doc.get("manifests") or []):
                    follow(child, f"{here} manifests[{i}]")
            else:
                follow(doc.get("config") or {}, f"{here} config")
                for i, layer in enumerate(doc.get("layers") or []):
                    follow(layer, f"{here} layers[{i}]")

    layout = load_json("oci-layout")
    if layout is not None and not (isinstance(layout, dict) and layout.get("imageLayoutVersion")):
        report.add("altered", f"{prefix}: oci-layout", "no imageLayoutVersion")
    index = load_json("index.json")
    if isinstance(index, dict):
        for i, desc in enumerate(index.get("manifests") or []):
            follow(desc, f"index.json manifests[{i}]")
            report.images += 1
    if "manifest.json" in meta:
        docker = load_json("manifest.json")
        for i, entry in enumerate(docker if isinstance(docker, list) else []):
            for j, p in enumerate([entry.get("Config")] + list(entry.get("Layers") or [])):
                mb = _BLOB.match(str(p))
                what = f"manifest.json[{i}].{'Config' if j == 0 else f'Layers[{j - 1}]'}"
                if not mb:
                    report.add("altered", f"{prefix}: {what}", f"bad path {p!r}")
                elif mb.group(1) not in blobs:
                    report.add("missing", f"{prefix}: {p}", f"referenced by {what}")
                else:
                    referenced.add(mb.group(1))
    for hexd in sorted(set(blobs) - referenced):
        report.add("extra", f"{prefix}: blobs/sha256/{hexd}", "not referenced by any manifest")


# --- the bundle ---------------------------------------------------------------------------------

def _members_from_dir(root: Path) -> Iterator[tuple[str, IO[bytes] | None]]:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                yield p.relative_to(root).as_posix(), f
        elif p.is_symlink():
            yield p.relative_to(root).as_posix(), None


def _members_from_tar(path: Path, report: VerifyReport) -> Iterator[tuple[str, IO[bytes] | None]]:
    comp = compression_of(path)
    with open(path, "rb") as raw:
        stream = decompressor(raw, comp)
        top = None
        for name, m, f in iter_tar(stream):  # type: ignore[arg-type]
            first = name.split("/", 1)[0]
            if top is None:
                top = first
            if first != top or ".." in name.split("/") or name.startswith("/"):
                report.add("extra", name, "outside the bundle's folder")
                continue
            rel = name[len(top) + 1:].rstrip("/")
            if m.isdir() or not rel:
                continue
            yield rel, (f if m.isfile() else None)


def verify_bundle(path: Path) -> VerifyReport:
    """Verify a bundle file or unpacked folder; never raises for content problems."""
    path = Path(path)
    report = VerifyReport(path)
    if not path.exists():
        raise VerificationError(f"{path}: no such bundle")
    hashes: dict[str, tuple[str, int]] = {}
    texts: dict[str, bytes] = {}
    if path.is_file():
        sidecar = path.with_name(path.name + ".sha256")
        comp = compression_of(path)
        if sidecar.is_file():
            want = sidecar.read_text().split()[0] if sidecar.read_text().split() else ""
            got, _ = _hash_stream(open(path, "rb"))  # noqa: SIM115
            if got != want:
                report.add("altered", path.name, f"sha256 {got}, {sidecar.name} says {want}")
        if comp == "gzip":
            with open(path, "rb") as f:
                head = f.read(len(GZIP_HEADER))
            if head != GZIP_HEADER:
                report.add("altered", path.name, f"gzip header {head.hex()} is not the canonical {GZIP_HEADER.hex()}")
        members = _members_from_tar(path, report)
    else:
        comp = "none"
        members = _members_from_dir(path)
    try:
        for rel, f in members:
            if f is None:
                report.add("extra", rel, "not a regular file")
                continue
            report.files += 1
            if rel in (SUMS, INVENTORY):
                data = f.read()
                texts[rel] = data
                hashes[rel] = (hashlib.sha256(data).hexdigest(), len(data))
            elif rel == IMAGES_TAR:
                hs = _Hashing(f)
                verify_layout(hs, report)  # type: ignore[arg-type]
                hs.drain()
                hashes[rel] = (hs.h.hexdigest(), hs.n)
            else:
                hashes[rel] = _hash_stream(f)
    except TarDamaged as e:
        report.add("altered", path.name, str(e))
        return report
    except Exception as e:  # noqa: BLE001 - gzip CRC (BadGzipFile/OSError), zstd checksum (ZstdError), EOFError
        report.add("altered", path.name, f"cannot decompress: {type(e).__name__}: {e}")
        return report
    _check_sums(texts.get(SUMS), hashes, report)
    _check_inventory(texts.get(INVENTORY), hashes, report)
    return report


def _check_sums(data: bytes | None, hashes: dict[str, tuple[str, int]], report: VerifyReport) -> None:
    if data is None:
        report.add("missing", SUMS)
        return
    listed: dict[str, str] = {}
    for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        m = _SUM_LINE.match(line)
        if not m:
            report.add("altered", SUMS, f"line {n} is malformed: {line[:80]!r}")
            continue
        listed[m.group(2)] = m.group(1)
    for rel, want in sorted(listed.items()):
        if rel not in hashes:
            report.add("missing", rel, f"listed in {SUMS}")
        elif hashes[rel][0] != want:
            report.add("altered", rel, f"sha256 {hashes[rel][0]}, {SUMS} says {want}")
    for rel in sorted(set(hashes) - set(listed) - {SUMS}):
        report.add("extra", rel, f"not listed in {SUMS}")


def _check_inventory(data: bytes | None, hashes: dict[str, tuple[str, int]], report: VerifyReport) -> None:
    if data is None:
        report.add("missing", INVENTORY)
        return
    try:
        files = json.loads(data)["files"]
        items = {str(k): (str(v["sha256"]), int(v["size"])) for k, v in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        report.add("altered", INVENTORY, f"unreadable files section: {e}")
        return
    for rel, (sha, size) in sorted(items.items()):
        if rel not in hashes:
            report.add("missing", rel, f"listed in {INVENTORY}")
        elif hashes[rel] != (sha, size):
            report.add("altered", rel, f"sha256/size differ from {INVENTORY}")
