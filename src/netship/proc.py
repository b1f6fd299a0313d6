"""The one subprocess helper: list argv only, the binary is found first, failures keep output."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import CommandError, MissingTool

log = logging.getLogger("netship.proc")


def which(tool: str, hint: str = "") -> str:
    path = shutil.which(tool)
    if path is None:
        raise MissingTool(f"{tool} not found on PATH{': ' + hint if hint else ''}")
    return path


def run(
    argv: Sequence[str | Path],
    *,
    check: bool = True,
    capture: bool = True,
    input: bytes | str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | str | None = None,
    hint: str = "",
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv (never a shell string). Raises MissingTool or CommandError.

    Output is text; the command line is logged at debug level so --verbose shows it.
    """
    args = [str(a) for a in argv]
    exe = which(args[0], hint)
    log.debug("$ %s", " ".join(args))
    try:
        proc = subprocess.run(
            [exe, *args[1:]],
            input=input.decode() if isinstance(input, bytes) else input,
            capture_output=capture,
            text=True,
            env=None if env is None else dict(env),
            cwd=cwd,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        raise CommandError(args, -1, "", f"timed out after {timeout} s") from e
    if check and proc.returncode != 0:
        raise CommandError(args, proc.returncode, proc.stdout or "", proc.stderr or "")
    return proc
