"""A multi-arch test base image made without emulation, for builds that must not reach Docker Hub.

Per arch: Debian's ``busybox-static`` (cached as .debs by scripts/setup-stack.sh) unpacked
into a root with applet links, built ``FROM scratch`` + ``COPY root/ /`` for that platform
(no RUN step: nothing executes for the target arch), pushed, then joined with
``docker buildx imagetools create`` into one manifest list. The test binaries are
static-looking ELF headers that are never executed, so no ``libc6`` is needed.
"""

from __future__ import annotations

import io
import lzma
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path

from netship import proc
from netship.arch import ALL_ARCHES, Arch

DEBS_DIR = Path(os.environ.get("NETSHIP_DEBS_DIR", "/var/lib/netship-stack/debs"))
APPLETS = (
    "sh", "ash", "uname", "od", "hexdump", "ls", "cat", "cp", "mv", "rm", "mkdir", "test", "[", "basename",
    "dirname", "head", "tail", "stat", "echo", "true", "false", "env", "readlink", "sleep", "wc", "grep", "find",
)


def _ar_members(data: bytes) -> dict[str, bytes]:
    """The members of an ar archive (a .deb)."""
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    out, pos = {}, 8
    while pos + 60 <= len(data):
        header = data[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        out[name] = data[pos + 60:pos + 60 + size]
        pos += 60 + size + (size & 1)
    return out


def busybox_from_deb(deb: Path) -> bytes:
    members = _ar_members(deb.read_bytes())
    name = next((n for n in members if n.startswith("data.tar")), None)
    if name is None:
        raise ValueError(f"{deb}: no data.tar member")
    raw = members[name]
    if name.endswith(".xz"):
        raw = lzma.decompress(raw)
    elif name.endswith(".zst"):
        import zstandard

        raw = zstandard.ZstdDecompressor().decompressobj().decompress(raw)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for m in tar.getmembers():
            if m.name.lstrip("./") == "bin/busybox":
                return tar.extractfile(m).read()
    raise ValueError(f"{deb}: no bin/busybox")


def deb_for(arch: Arch, debs_dir: Path = DEBS_DIR) -> Path:
    found = sorted((debs_dir / arch.debian).glob("busybox-static_*.deb"))
    if not found:
        raise FileNotFoundError(f"no busybox-static .deb for {arch.debian} in {debs_dir}: run scripts/setup-stack.sh")
    return found[-1]


def build_base(repository: str, work: Path, arches: Iterable[Arch] = ALL_ARCHES,
               debs_dir: Path = DEBS_DIR) -> str:
    """Build and push ``REPOSITORY:ARCH`` per arch and the list ``REPOSITORY:multi``; returns the list tag."""
    sources = []
    for arch in arches:
        ctx = work / arch.k8s
        (ctx / "root" / "bin").mkdir(parents=True, exist_ok=True)
        bb = ctx / "root" / "bin" / "busybox"
        bb.write_bytes(busybox_from_deb(deb_for(arch, debs_dir)))
        bb.chmod(0o755)
        for applet in APPLETS:
            link = ctx / "root" / "bin" / applet
            if not link.is_symlink():
                link.symlink_to("busybox")
        (ctx / "root" / "tmp").mkdir(exist_ok=True)
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY root/ /\nENV PATH=/bin\n")
        tag = f"{repository}:{arch.k8s}"
        meta = ctx / "metadata.json"
        proc.run(["docker", "buildx", "build", "--platform", arch.platform, "--tag", tag, "--provenance=false",
                  "--push", "--metadata-file", meta, ctx], timeout=600)
        import json

        digest = json.loads(meta.read_text())["containerimage.digest"]
        sources.append(f"{repository}@{digest}")
    multi = f"{repository}:multi"
    proc.run(["docker", "buildx", "imagetools", "create", "--tag", multi, *sources], timeout=300)
    return multi
