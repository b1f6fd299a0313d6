"""The content-addressed cache: ``CACHE/sha256/<hex>`` holds only verified bytes.

Layout under ``settings.cache_dir``:

- ``sha256/<hex>``       a verified blob (renamed into place only after its digest matched)
- ``partial/<name>``     an interrupted download, resumed by the next attempt or run
- ``locks/<name>.lock``  one file lock per blob / tree, so concurrent processes share safely
- ``tree/C/V/ARCH/``     the readable, unpacked tree (``netship.fetch`` writes it)
- ``state/C/V/ARCH.json`` what each tree was made from (blob digest, file digests)
- ``unpinned/C/V/ARCH.json`` the digest an --allow-unpinned fetch got last time
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock

from .digest import Digest, sha256_file
from .settings import Settings

LOCK_TIMEOUT = -1  # wait as long as the other process needs


class Cache:
    def __init__(self, settings: Settings):
        self.root = settings.cache_dir
        self.blob_dir = settings.blob_dir
        self.partial_dir = self.root / "partial"
        self.lock_dir = self.root / "locks"
        self.state_dir = self.root / "state"
        self.unpinned_dir = self.root / "unpinned"

    def blob_path(self, digest: Digest) -> Path:
        return self.blob_dir / digest.hex

    def has(self, digest: Digest) -> bool:
        return self.blob_path(digest).is_file()

    def partial_path(self, name: str) -> Path:
        return self.partial_dir / name

    @staticmethod
    def key_name(text: str) -> str:
        """A file-name-safe key for anything (e.g. an asset key when no digest is known)."""
        return "k-" + hashlib.sha256(text.encode()).hexdigest()[:32]

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Exclusive lock shared by threads and processes using this cache."""
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.lock_dir / f"{name}.lock"), timeout=LOCK_TIMEOUT):
            yield

    def verify_blob(self, digest: Digest) -> bool:
        """Re-hash a cached blob; remove it when corrupt. True when it is present and good."""
        path = self.blob_path(digest)
        if not path.is_file():
            return False
        if sha256_file(path) == digest:
            return True
        path.unlink()
        return False

    def commit(self, part: Path, digest: Digest) -> Path:
        """Move a verified partial file to its content address (atomic rename)."""
        dest = self.blob_path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(part, 0o444)
        os.replace(part, dest)
        return dest
