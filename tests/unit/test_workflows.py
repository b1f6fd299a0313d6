"""The CI workflows: every action pinned by commit, schema-valid, doing what the issue asks.

Schema validation runs in-process against check-jsonschema's vendored GitHub workflow schema
(the file ``check-jsonschema --builtin-schema vendor.github-workflows`` uses), so it needs no
network and no subprocess; tests/integration/test_release_workflows.py runs the real
``actionlint`` and ``check-jsonschema`` command lines.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
SHA_PIN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
# Version comments are for humans and for dependabot/renovate: `uses: x@SHA # vX.Y.Z`.
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(\S+)\s*(#.*)?$")


def _load(name: str) -> dict:
    # PyYAML (YAML 1.1) reads the key `on` as True; GitHub reads it as the string "on".
    raw = yaml.safe_load((WORKFLOWS / name).read_text())
    if True in raw:
        raw["on"] = raw.pop(True)
    return raw


def _steps(workflow: dict) -> list[dict]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def _builtin_schema(name: str) -> dict:
    import check_jsonschema

    base = Path(check_jsonschema.__file__).parent / "builtin_schemas"
    return json.loads((base / name).read_text())


def test_both_workflows_exist():
    assert {p.name for p in WORKFLOWS.glob("*.yml")} >= {"ci.yml", "release.yml"}


@pytest.mark.parametrize("name", ["ci.yml", "release.yml"])
def test_every_action_is_pinned_by_full_commit_sha(name):
    text = (WORKFLOWS / name).read_text()
    uses = [m for line in text.splitlines() if (m := USES_LINE.match(line))]
    assert uses, f"{name} uses no actions at all?"
    for m in uses:
        ref, comment = m.group(1), m.group(2) or ""
        assert SHA_PIN.match(ref), f"{name}: {ref} is not pinned by a 40-hex commit SHA"
        assert re.search(r"#\s*v\d+\.\d+\.\d+", comment), f"{name}: {ref} lacks its '# vX.Y.Z' comment"
    # ...and nothing sneaks in through another spelling (e.g. a `uses:` in a flow mapping).
    parsed = [s["uses"] for s in _steps(_load(name)) if "uses" in s]
    assert len(parsed) == len(uses)


@pytest.mark.parametrize("name", ["ci.yml", "release.yml"])
@pytest.mark.parametrize("schema", ["vendor/github-workflows.json", "custom/github-workflows-require-timeout.json"])
def test_workflow_validates_against_github_schema(name, schema):
    jsonschema.validate(_load(name), _builtin_schema(schema))


def test_schema_check_is_not_vacuous():
    bad = _load("ci.yml")
    bad["jobs"]["test"]["runs-on"] = {"labels": 3}
    bad["jobs"]["test"]["stepz"] = bad["jobs"]["test"].pop("steps")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, _builtin_schema("vendor/github-workflows.json"))


def test_ci_runs_the_readme_test_command_on_push_and_pull_request():
    wf = _load("ci.yml")
    assert "push" in wf["on"] and "pull_request" in wf["on"]
    runs = [s.get("run", "") for s in _steps(wf)]
    assert any(r.strip() == "bash .ci/run" for r in runs)
    # .ci/run must be the README's test command, word for word.
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.S).group(1)
    test_cmd = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")][1]
    # .ci/run takes the line under the "# 2. run the tests" comment: that line must be test_cmd.
    lines = block.splitlines()
    marker = next(i for i, ln in enumerate(lines) if ln.startswith("# 2. run the tests"))
    assert lines[marker + 1].strip() == test_cmd.strip()
    ci_run = (ROOT / ".ci" / "run").read_text()
    assert "/^# 2\\. run the tests/{getline; print; exit}" in ci_run and 'bash -c "$cmd"' in ci_run
    # The stack script targets Debian 12 as root and starts dockerd: a privileged Debian 12 container.
    container = wf["jobs"]["test"]["container"]
    assert container["image"].startswith("debian:12")
    assert "--privileged" in container["options"]


def test_release_runs_on_version_tags_with_qemu_buildx_and_pushes():
    wf = _load("release.yml")
    assert wf["on"]["push"]["tags"] == ["v*"]
    assert "branches" not in wf["on"]["push"]
    assert wf["permissions"]["contents"] == "write"
    steps = _steps(wf)
    used = [s["uses"].split("@")[0] for s in steps if "uses" in s]
    for action in ("actions/checkout", "docker/setup-qemu-action", "docker/setup-buildx-action"):
        assert action in used
    # qemu and buildx are set up before the release runs.
    release_idx = next(i for i, s in enumerate(steps) if "invoke release" in s.get("run", ""))
    assert all(used_i < release_idx for used_i, s in enumerate(steps) if "setup-" in s.get("uses", ""))
    argv = shlex.split(steps[release_idx]["run"].replace("\\\n", " ").split(">")[0])
    assert argv[:2] == ["invoke", "release"]
    assert "--push" in argv
    assert argv[argv.index("--registry") + 1] == "$REGISTRY"
    assert argv[argv.index("--arch") + 1] == "all"
    assert wf["jobs"]["release"]["env"]["REGISTRY"].startswith("ghcr.io/")
    install = next(s["run"] for s in steps if "Install netship" in s.get("name", ""))
    assert "pip install ." in install
    # bundle names carry netship's version: a tag that disagrees stops the release before it runs
    check = next(i for i, s in enumerate(steps) if "netship.__version__" in s.get("run", ""))
    assert check < release_idx


def test_release_attaches_the_release_folder_after_checking_its_sums():
    steps = _steps(_load("release.yml"))
    upload = steps[-1]["run"]
    assert "sha256sum -c SHA256SUMS" in upload
    assert upload.index("sha256sum -c") < upload.index("gh release")
    assert "--notes-file RELEASE.md" in upload
    assert "release/out/$VERSION" in upload
