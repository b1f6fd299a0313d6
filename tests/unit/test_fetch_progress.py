"""Progress: rich bars on a terminal, plain log lines otherwise; fed by a real fetch."""

from __future__ import annotations

import io
import logging

from netship.progress import PlainProgress, RichProgress, make_progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_rich_bars_with_bytes_and_rate():
    stream = FakeTTY()
    progress = make_progress(stream)
    assert isinstance(progress, RichProgress)
    with progress:
        cb = progress.for_asset("cni-plugins/v1.9.1/amd64")
        cb("start", url="http://m/x", offset=0, total=2_000_000)
        cb("advance", n=1_000_000)
        cb("retry", reason="HTTP 503", wait=0.1)
        cb("start", url="http://m/x", offset=1_000_000, total=2_000_000)
        cb("advance", n=1_000_000)
        cb("done", status="downloaded")
    out = stream.getvalue()
    assert "cni-plugins/v1.9.1/amd64" in out and "downloaded" in out
    assert "2.0 MB" in out or "2.0/2.0 MB" in out  # rich's DownloadColumn


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_not_a_terminal_gets_plain_lines():
    stream = io.StringIO()
    progress = make_progress(stream)
    assert isinstance(progress, PlainProgress)
    # Our own handler on netship's logger: caplog's capture depends on what earlier tests
    # did to logging (seen doubling every record in the full suite).
    logger = logging.getLogger("netship")
    collect, level = _Collect(), logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    try:
        with progress:
            cb = progress.for_asset("calicoctl/v3.31.7/arm64")
            cb("start", url="http://m/calicoctl", offset=10, total=100)
            for _ in range(50):
                cb("advance", n=1)
            cb("start", url="http://m/calicoctl", offset=60, total=100)
            cb("done", status="downloaded")
    finally:
        logger.removeHandler(collect)
        logger.setLevel(level)
    assert collect.lines == ["downloading calicoctl/v3.31.7/arm64 from http://m/calicoctl (resuming at byte 10)",
                             "calicoctl/v3.31.7/arm64: downloaded"]
    assert stream.getvalue() == ""
