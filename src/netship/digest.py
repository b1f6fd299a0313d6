"""Content digests: checked when they enter, so the rest of the code can trust them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

_HEX = {"sha256": 64, "sha512": 128}
CHUNK = 1 << 20


@dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str, where: str = "digest") -> Digest:
        """Parse ``sha256:<hex>`` or a bare 64-hex sha256."""
        text = text.strip()
        algo, sep, hexpart = text.partition(":")
        if not sep:
            algo, hexpart = "sha256", text
        hexpart = hexpart.lower()
        length = _HEX.get(algo)
        if length is None or not re.fullmatch(rf"[0-9a-f]{{{length}}}", hexpart):
            raise ConfigError(f"{where}: not a valid digest: {text!r}")
        return cls(algo, hexpart)

    @classmethod
    def sha256_hex(cls, hexpart: str, where: str = "digest") -> Digest:
        return cls.parse(f"sha256:{hexpart}", where)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def sha256_file(path: Path | str) -> Digest:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return Digest("sha256", h.hexdigest())


def sha256_bytes(data: bytes) -> Digest:
    return Digest("sha256", hashlib.sha256(data).hexdigest())
