"""Safe archive extraction into a fresh directory.

Every member is checked before anything is written for it:
- names are normalised (leading ``./`` dropped) and renamed by the catalog's ``rename``;
- absolute names and names with a ``..`` component are refused;
- symbolic links must point inside the target (relative, resolving within it); hard links
  must name an earlier member;
- device files, FIFOs and anything else that is not a file, directory or link is refused;
- nothing is written through a symbolic link (parents are resolved and must stay inside).

Regular files get mode 0755 when any execute bit is set in the archive, 0644 otherwise.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

from .errors import UnsafeArchive

CHUNK = 1 << 20


def _normalise(name: str, what: str) -> str | None:
    """Member name without leading './'; None for the archive root itself."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchive(f"{what}: member {name!r} has an absolute path")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(f"{what}: member {name!r} has a '..' component (path traversal)")
    return "/".join(parts) or None


def _inside(root: Path, path: str) -> bool:
    root_s = str(root)
    return path == root_s or path.startswith(root_s + os.sep)


def unpack_tar(
    archive: Path,
    dest: Path,
    *,
    what: str,
    rename: Callable[[str], str] = lambda n: n,
) -> list[str]:
    """Extract ``archive`` (any tar compression) into ``dest`` (created, should be empty).

    Returns the relative names of the files and links written, sorted.
    Raises UnsafeArchive naming the archive and the member at fault.
    """
    dest.mkdir(parents=True, exist_ok=True)
    root = Path(os.path.realpath(dest))
    written: list[str] = []
    files: set[str] = set()
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise UnsafeArchive(f"{what}: not a readable tar archive: {e}") from None
    with tar:
        try:
            for member in tar:
                raw = _normalise(member.name, what)
                if raw is None:
                    continue
                name = _normalise(rename(raw), what)
                if name is None:
                    continue
                target = root / name
                if member.ischr() or member.isblk():
                    raise UnsafeArchive(f"{what}: member {member.name!r} is a device file")
                if member.isfifo():
                    raise UnsafeArchive(f"{what}: member {member.name!r} is a FIFO")
                if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
                    raise UnsafeArchive(f"{what}: member {member.name!r} has unsupported type {member.type!r}")
                parent = target.parent
                parent.mkdir(parents=True, exist_ok=True)
                real_parent = os.path.realpath(parent)
                if not _inside(root, real_parent):
                    raise UnsafeArchive(f"{what}: member {member.name!r} would be written through a link outside the target")
                if member.isdir():
                    if target.is_symlink():
                        raise UnsafeArchive(f"{what}: directory {member.name!r} replaces a link")
                    target.mkdir(exist_ok=True)
                    continue
                if target.is_symlink() or target.is_file():
                    target.unlink()
                elif target.exists():
                    raise UnsafeArchive(f"{what}: member {member.name!r} replaces a directory")
                if member.issym():
                    link = member.linkname
                    if link.startswith("/"):
                        raise UnsafeArchive(f"{what}: link {member.name!r} -> {link!r} is absolute")
                    resolved = os.path.realpath(os.path.join(real_parent, link))
                    if not _inside(root, resolved):
                        raise UnsafeArchive(f"{what}: link {member.name!r} -> {link!r} points outside the archive")
                    os.symlink(link, target)
                elif member.islnk():
                    src = _normalise(member.linkname, what)
                    if src is None or rename(src) not in files:
                        raise UnsafeArchive(
                            f"{what}: hard link {member.name!r} -> {member.linkname!r} names no earlier file")
                    shutil.copyfile(root / rename(src), target)
                    os.chmod(target, os.stat(root / rename(src)).st_mode & 0o777)
                    files.add(name)
                else:
                    src_f = tar.extractfile(member)
                    assert src_f is not None
                    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
                    with os.fdopen(fd, "wb") as out, src_f:
                        shutil.copyfileobj(src_f, out, CHUNK)
                    os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)
                    files.add(name)
                written.append(name)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise UnsafeArchive(f"{what}: broken archive: {e}") from None
    return sorted(set(written))


def place_binary(blob: Path, dest: Path, name: str) -> list[str]:
    """A raw-binary asset: copy into ``dest/name`` with mode 0755."""
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / name
    shutil.copyfile(blob, target)
    os.chmod(target, 0o755)
    return [name]



def member_ids(archive: Path, *, what: str, rename: Callable[[str], str] = lambda n: n) -> dict[str, str]:
    """What ``unpack_tar`` would write, as {name: id}, without writing anything.

    id is ``sha256:<hex>:x`` / ``sha256:<hex>:-`` (executable or not) for files and
    ``symlink:<target>`` for links; used by ``fetch --verify`` to check an unpacked tree.
    """
    import hashlib

    ids: dict[str, str] = {}
    with tarfile.open(archive, "r:*") as tar:
        for member in tar:
            raw = _normalise(member.name, what)
            name = _normalise(rename(raw), what) if raw is not None else None
            if name is None or member.isdir():
                continue
            if member.issym():
                ids[name] = "symlink:" + member.linkname
            elif member.islnk():
                src = _normalise(member.linkname, what)
                ids[name] = ids.get(rename(src) if src else "", "missing")
            elif member.isreg():
                h = hashlib.sha256()
                f = tar.extractfile(member)
                assert f is not None
                for chunk in iter(lambda f=f: f.read(CHUNK), b""):
                    h.update(chunk)
                ids[name] = f"sha256:{h.hexdigest()}:{'x' if member.mode & 0o111 else '-'}"
    return ids
