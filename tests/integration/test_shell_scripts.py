"""The shell scripts we ship or run are checked by shellcheck (installed by setup-stack.sh).

install.sh runs on air-gapped nodes with nothing but a POSIX sh, so it is checked as `sh`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("script,shell", [
    ("src/netship/installer/install.sh", "sh"),
    ("scripts/setup-stack.sh", "bash"),
    (".ci/run", "bash"),
])
def test_shellcheck_finds_no_warnings(script, shell):
    proc = subprocess.run(["shellcheck", "-s", shell, "-S", "warning", str(ROOT / script)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_is_not_vacuous(tmp_path):
    bad = tmp_path / "bad.sh"
    bad.write_text('#!/bin/sh\nfiles=$(ls)\nfor f in "$files"; do [[ -n $f ]] && echo $f; done\n')
    proc = subprocess.run(["shellcheck", "-s", "sh", "-S", "warning", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0 and "SC3010" in proc.stdout  # [[ ]] is not POSIX sh
