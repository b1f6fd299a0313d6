"""Atomic writes: a temporary file beside the target, renamed into place only when complete."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TMP_PREFIX = ".netship-tmp-"


@contextlib.contextmanager
def atomic_open(path: Path | str, mode: str = "wb", perm: int = 0o644) -> Iterator[IO[Any]]:
    """Yield a file object; on clean exit it is fsynced and renamed to ``path``.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, perm)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path | str, data: bytes, perm: int = 0o644) -> None:
    with atomic_open(path, "wb", perm) as f:
        f.write(data)


def atomic_write_text(path: Path | str, text: str, perm: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode(), perm)


def dumps_json(value: Any) -> str:
    """Stable JSON: sorted keys, two-space indent, trailing newline (for diffs and determinism)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"


def atomic_write_json(path: Path | str, value: Any) -> None:
    atomic_write_text(path, dumps_json(value))


def remove_stale_temps(directory: Path | str) -> int:
    """Remove temporary files an interrupted run left behind; returns how many."""
    n = 0
    d = Path(directory)
    if d.is_dir():
        for p in d.glob(TMP_PREFIX + "*"):
            with contextlib.suppress(OSError):
                p.unlink() if not p.is_dir() else None
                n += 1
    return n
