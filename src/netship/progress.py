"""Download progress: rich bars (bytes, rate, per asset) on a terminal, plain lines otherwise.

``with make_progress(enabled) as p: cb = p.for_asset(label)``; ``cb(event, **fields)`` takes
the events ``netship.download`` sends ("start", "advance", "restart", "retry") plus
"done" (status=...) from fetch.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from .output import note

Callback = Callable[..., None]


class PlainProgress:
    """One log line when a download starts and one when it ends; nothing per chunk."""

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def for_asset(self, label: str) -> Callback:
        state = {"started": False}

        def cb(event: str, **f: Any) -> None:
            if event == "start" and not state["started"]:
                state["started"] = True
                resume = f" (resuming at byte {f['offset']})" if f.get("offset") else ""
                note(f"downloading {label} from {f.get('url')}{resume}")
            elif event == "done":
                note(f"{label}: {f.get('status')}")

        return cb


class RichProgress:
    def __init__(self, stream: TextIO):
        from rich.console import Console
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
            TimeRemainingColumn(), console=Console(file=stream), transient=False,
        )
        self._lock = threading.Lock()
        self._escape = escape

    def __enter__(self) -> RichProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def for_asset(self, label: str) -> Callback:
        task_id = None
        escape = self._escape

        def cb(event: str, **f: Any) -> None:
            nonlocal task_id
            with self._lock:
                if event == "start":
                    if task_id is None:
                        task_id = self._progress.add_task(label, total=f.get("total"))
                    self._progress.update(task_id, total=f.get("total"), completed=f.get("offset") or 0)
                elif event == "advance" and task_id is not None:
                    self._progress.advance(task_id, f["n"])
                elif event == "restart" and task_id is not None:
                    self._progress.update(task_id, completed=0)
                elif event == "retry" and task_id is not None:
                    self._progress.update(task_id, description=f"{label} (retry: {escape(str(f.get('reason')))})")
                elif event == "done":
                    if task_id is None:
                        task_id = self._progress.add_task(label, total=1, completed=1)
                    self._progress.update(task_id, description=f"{label} ({f.get('status')})")

        return cb


def make_progress(stream: TextIO | None = None, force_plain: bool = False) -> PlainProgress | RichProgress:
    stream = stream or sys.stderr
    if not force_plain and hasattr(stream, "isatty") and stream.isatty():
        return RichProgress(stream)
    return PlainProgress()
