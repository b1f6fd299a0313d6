"""What a task prints: one JSON document on stdout with --json, human lines otherwise.

Notes and progress go to stderr so stdout stays clean for machines.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("netship")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (tests and pytest swap it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def setup_logging(verbose: bool = False) -> None:
    root = logging.getLogger("netship")
    if not root.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("netship: %(message)s"))
        root.addHandler(handler)
        root.propagate = False
    root.setLevel(logging.DEBUG if verbose else logging.INFO)


def note(message: str) -> None:
    log.info(message)


def emit(payload: Any, as_json: bool, human: Iterable[str] = ()) -> None:
    """Print the task's result: JSON (sorted keys) or the human lines."""
    if as_json:
        sys.stdout.write(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    else:
        for line in human:
            sys.stdout.write(line + "\n")
    sys.stdout.flush()
