"""The `netship fetch` and `netship pins update` tasks: flags, exit codes, --json output."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest

from netship.cli import program
from tests.support.httpserver import LoopbackServer, Status
from tests.support.upstream import make_upstream, mirror_path


@pytest.fixture
def env(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("NETSHIP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NETSHIP_BACKOFF", "0.01")
    monkeypatch.chdir(tmp_path)  # no project invoke.yaml
    mirror, catalog_dir = tmp_path / "mirror", tmp_path / "catalog"
    up = make_upstream(mirror, catalog_dir)
    with LoopbackServer(mirror) as srv:
        yield SimpleNamespace(up=up, srv=srv, tmp=tmp_path, mirror=mirror, catalog_dir=catalog_dir,
                              cache_dir=tmp_path / "cache")


def run(env, *args, base=True):
    argv = ["netship", *args]
    if base:
        argv += ["--catalog-dir", str(env.catalog_dir), "--cache-dir", str(env.cache_dir), "--mirror", env.srv.url]
    return program.run(argv, exit=False)


def test_fetch_json_summary(env, capsys):
    assert run(env, "fetch", "--component", "cni-plugins,calicoctl", "--arch", "arm64,x86_64", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert [a["key"] for a in out["assets"]] == [
        "cni-plugins/v1.9.1/amd64", "cni-plugins/v1.9.1/arm64", "calicoctl/v3.31.7/amd64", "calicoctl/v3.31.7/arm64"]
    a = out["assets"][0]
    assert a["asset"] == "cni-plugins-linux-amd64-v1.9.1.tgz" and a["arch"] == "amd64"
    assert a["digest"] == "sha256:" + env.up.digests[a["url"]] and a["bytes"] > 0
    assert a["status"] == "downloaded" and a["source"] == f"{env.srv.url}/{mirror_path(a['url'])}"
    assert a["pinned"] is True and out["unpinned"] == [] and out["downloaded"] == 4
    assert run(env, "fetch", "--component", "cni-plugins,calicoctl", "--arch", "arm64,amd64", "--json") == 0
    again = json.loads(capsys.readouterr().out)
    assert again["cached"] == 4 and again["http_requests"] == 0


def test_fetch_human_output(env, capsys):
    assert run(env, "fetch", "--component", "cilium-cli") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("downloaded cilium-cli/v0.19.7/amd64")
    assert out[-1] == "2 assets: 2 downloaded, 0 cached, 0 unpinned, 3 arch(es) skipped (not published)"


@pytest.mark.parametrize("args,message", [
    (("--component", "flanel"), "unknown component 'flanel' (did you mean 'flannel'?)"),
    (("--arch", "mips"), "unknown architecture 'mips'"),
    (("--component", "calicoctl", "--arch", "arm"), "--arch arm: calicoctl v3.31.7 does not publish arm"),
    (("--jobs", "0"), "--jobs: invalid value '0': must be at least 1"),
    (("--mirror", "ftp://example"), "is not an http(s) URL nor 'upstream'"),
    (("--ca-bundle", "/nonexistent.pem"), "--ca-bundle: /nonexistent.pem: file not found"),
])
def test_usage_errors_exit_2(env, capsys, args, message):
    assert run(env, "fetch", *args) == 2
    err = capsys.readouterr().err
    assert "netship: error: " in err and message in err
    assert env.srv.requests == []


def test_unknown_flag_exits_2(env, capsys):
    assert run(env, "fetch", "--no-such-flag", base=False) == 2


def test_unpinned_refused_exit_2_then_allowed_and_reported(env, capsys):
    lock = env.catalog_dir / "pins.lock"
    raw = json.loads(lock.read_text())
    raw["components"]["flannel"]["v0.28.9"]["arm"] = {"sha256": None, "source": "unknown"}
    lock.write_text(json.dumps(raw))
    assert run(env, "fetch", "--component", "flannel") == 2
    assert "netship pins update --component flannel --version v0.28.9" in capsys.readouterr().err
    assert run(env, "fetch", "--component", "flannel", "--allow-unpinned", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["unpinned"] == ["flannel/v0.28.9/arm"]
    arm = next(a for a in out["assets"] if a["arch"] == "arm")
    assert arm["pinned"] is False and arm["pin_source"] == "unpinned"
    assert arm["upstream_checksum"] == "upstream publishes none"


def test_allow_unpinned_from_environment(env, capsys, monkeypatch):
    lock = env.catalog_dir / "pins.lock"
    raw = json.loads(lock.read_text())
    raw["components"]["cilium-cli"]["v0.19.7"]["arm64"] = {"sha256": None, "source": "unknown"}
    lock.write_text(json.dumps(raw))
    monkeypatch.setenv("NETSHIP_ALLOW_UNPINNED", "yes")
    assert run(env, "fetch", "--component", "cilium-cli", "--json") == 0
    assert json.loads(capsys.readouterr().out)["unpinned"] == ["cilium-cli/v0.19.7/arm64"]


def test_download_failure_exits_1(env, capsys):
    env.srv.faults[mirror_path(
        "https://github.com/cilium/cilium-cli/releases/download/v0.19.7/cilium-linux-arm64.tar.gz")] = Status(
        403, times=None)
    assert run(env, "fetch", "--component", "cilium-cli") == 1
    err = capsys.readouterr().err
    assert "netship: error: cilium-cli/v0.19.7/arm64: could not download from any mirror" in err
    assert "HTTP 403" in err


def test_pins_update_subcommand(env, capsys):
    assert run(env, "pins", "update", "--component", "cilium-cli", "--version", "v0.19.7", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["component"] == "cilium-cli" and len(out["pins"]) == 2
    assert out["pins"][0]["source"] == "upstream cilium-linux-amd64.tar.gz.sha256sum"
    assert run(env, "pins", "update", "--component", "cilium-cli") == 2
    assert "--version is required" in capsys.readouterr().err


def test_fetch_help_explains_the_flags(capsys):
    assert program.run(["netship", "fetch", "--help"], exit=False) == 0
    out = capsys.readouterr().out
    for flag in ("--arch", "--component", "--mirror", "--jobs", "--verify", "--json", "--allow-unpinned",
                 "--ca-bundle", "--cache-dir", "--catalog-dir", "--retries", "--timeout"):
        assert flag in out, flag
    assert "Range" in out and "Exit codes" in out
