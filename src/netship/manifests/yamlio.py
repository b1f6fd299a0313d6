"""YAML documents in and out, as data: the only place manifests are parsed or printed.

Output is stable: keys sorted at every level (the order ``kubectl get -o yaml`` prints),
multi-line strings as ``|`` blocks, documents separated by ``---``. The same data gives
the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError


class _Dumper(yaml.SafeDumper):
    """SafeDumper with block literals for multi-line strings and indented sequences."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "\n" in value:
        # A block literal cannot carry trailing spaces on a line; fall back to quoting then.
        if not any(line != line.rstrip() for line in value.splitlines()):
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)

# libyaml's loader when present (same data, several times faster); the dumper stays pure
# Python so the bytes written do not depend on whether libyaml is installed.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_documents(text: str, where: str = "manifest") -> list[dict[str, Any]]:
    """All non-empty documents of a YAML stream; each must be a mapping."""
    try:
        docs = list(yaml.load_all(text, Loader=_Loader))  # noqa: S506 - a safe loader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{where}:{line} not valid YAML: {getattr(e, 'problem', None) or e}") from None
    out: list[dict[str, Any]] = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ConfigError(f"{where}: document {i + 1} is a {type(doc).__name__}, not a mapping")
        out.append(doc)
    return out


def load_file(path: Path | str) -> list[dict[str, Any]]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    return load_documents(text, str(path))


def dump_documents(docs: list[dict[str, Any]], header: str = "") -> str:
    """One YAML stream, each document starting with ``---``; ``header`` lines become comments."""
    parts = [f"# {line}".rstrip() + "\n" for line in header.splitlines()]
    for doc in docs:
        parts.append("---\n")
        parts.append(yaml.dump(doc, Dumper=_Dumper, sort_keys=True, default_flow_style=False,
                               allow_unicode=True, width=1 << 16))
    return "".join(parts)
