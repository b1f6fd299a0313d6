"""netship settings: one frozen value filled by one cascade.

defaults  <  invoke config (``netship:`` in invoke.yaml)  <  NETSHIP_* environment  <  flags

The environment is passed in as a mapping (tasks pass ``os.environ``; tests pass ``{}``);
nothing below the edge reads ``os.environ``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, unknown

ENV_PREFIX = "NETSHIP_"
DEFAULT_REGISTRY = "127.0.0.1:5000"
UPSTREAM = "upstream"  # the mirror keyword meaning "the URL in the catalog"


def _default_cache() -> Path:
    return Path(os.path.expanduser("~/.cache/netship"))


def default_catalog_dir() -> Path:
    """``./release`` when it holds a catalog, else the catalog of the source checkout we run from."""
    here = Path("release")
    if (here / "catalog.yml").exists():
        return here
    checkout = Path(__file__).resolve().parents[2] / "release"
    return checkout if (checkout / "catalog.yml").exists() else here


@dataclass(frozen=True)
class Settings:
    catalog_dir: Path = field(default_factory=default_catalog_dir)
    cache_dir: Path = field(default_factory=_default_cache)
    out_dir: Path = Path("release/out")
    # Ordered base URLs; "upstream" means the URL in the catalog. A mirror holds assets at
    # BASE/<upstream host>/<upstream path> (kubespray's files_repo layout).
    mirrors: tuple[str, ...] = (UPSTREAM,)
    jobs: int = 4
    retries: int = 5
    timeout: float = 30.0
    backoff: float = 1.0  # seconds before the first retry; doubles per attempt (capped at 30 s)
    ca_bundle: Path | None = None
    registry: str = DEFAULT_REGISTRY
    builder: str | None = None
    base_image: str | None = None
    cluster_file: Path = Path("release/cluster.yml")
    images_dir: Path | None = None  # image specs; default: images/ beside the catalog
    source_date_epoch: int | None = None
    allow_unpinned: bool = False
    debug: bool = False  # NETSHIP_DEBUG=1: log every command netship runs
    # docker config.json with registry credentials (auths.HOST.auth); None: ~/.docker/config.json
    docker_config: Path | None = None
    mirror_file: Path | None = None  # images copied by `mirror`; default: mirror-images.yml beside the catalog

    @property
    def build_report(self) -> Path:
        return self.out_dir / "build-report.json"

    @property
    def tree_dir(self) -> Path:
        """Readable tree of verified, unpacked assets: tree/COMPONENT/VERSION/ARCH/."""
        return self.cache_dir / "tree"

    @property
    def blob_dir(self) -> Path:
        return self.cache_dir / "sha256"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _coerce(name: str, value: Any, where: str) -> Any:
    """Turn a config/env/flag value into the field's type, or raise naming the key."""
    ftype = str(_FIELDS[name].type)
    try:
        if value is None:
            if "None" in ftype:
                return None
            raise ValueError("must not be empty")
        if name == "mirrors":
            items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
            if not items:
                raise ValueError("needs at least one base URL (or 'upstream')")
            for m in items:
                if m != UPSTREAM and not str(m).startswith(("http://", "https://", "file://")):
                    raise ValueError(f"{m!r} is not an http(s) URL nor 'upstream'")
            return tuple(str(m).rstrip("/") if m != UPSTREAM else m for m in items)
        if ftype.startswith("Path"):
            return Path(os.path.expanduser(str(value)))
        if ftype.startswith("int"):
            n = int(value)
            if name in ("jobs",) and n < 1:
                raise ValueError("must be at least 1")
            if n < 0:
                raise ValueError("must not be negative")
            return n
        if ftype.startswith("float"):
            x = float(value)
            if x <= 0:
                raise ValueError("must be positive")
            return x
        if ftype.startswith("bool"):
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("1", "true", "yes", "on"):
                return True
            if s in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"{value!r} is not a boolean")
        return str(value)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: invalid value {value!r}: {e}") from None


def load_settings(
    config: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Apply the cascade. Unknown keys anywhere are errors (config typos must not pass)."""
    values: dict[str, Any] = {}
    for key, value in (config or {}).items():
        name = key.replace("-", "_")
        if name not in _FIELDS:
            raise unknown("setting", key, _FIELDS, "invoke.yaml netship")
        values[name] = _coerce(name, value, f"invoke.yaml netship.{key}")
    for key, value in (env or {}).items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX):].lower()
        if name not in _FIELDS:
            raise unknown("environment variable", key,
                          [ENV_PREFIX + n.upper() for n in _FIELDS], "environment")
        values[name] = _coerce(name, value, f"environment {key}")
    for name, value in (flags or {}).items():
        if value is None or value == () or value == []:
            continue  # flag not given
        if name not in _FIELDS:
            raise unknown("setting", name, _FIELDS, "flags")
        values[name] = _coerce(name, value, f"--{name.replace('_', '-')}")
    settings = Settings(**values)
    if settings.source_date_epoch is None and "SOURCE_DATE_EPOCH" in (env or {}):
        settings = settings.replace(
            source_date_epoch=_coerce("source_date_epoch", env["SOURCE_DATE_EPOCH"], "environment SOURCE_DATE_EPOCH"))
    return settings
