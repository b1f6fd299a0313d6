"""The tasks through the real console-script entry: flags, exit codes, --json, files written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from netship.cli import program

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data" / "manifests"
FLANNEL_UPSTREAM = REPO / "manifests" / "flannel.yml"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no project invoke.yaml; relative release/ paths land here
    for key in list(__import__("os").environ):
        if key.startswith("NETSHIP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NETSHIP_CATALOG_DIR", str(REPO / "release"))
    monkeypatch.setenv("NETSHIP_OUT_DIR", str(tmp_path / "out"))
    return tmp_path


def run(*argv: str) -> int:
    return program.run(["netship", *argv], exit=False)


def test_manifests_json_and_files(env, capsys):
    assert run("manifests", "--network", "kube-router", "--arch", "amd64,aarch64", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    (f,) = out["files"]
    assert f["path"] == str(env / "out" / "manifests" / "kube-router.yml")
    assert f["arches"] == ["amd64", "arm64"] and f["layout"] == "per-arch"
    assert "127.0.0.1:5000/kube-router:v2.11.1-arm64" in f["images"]
    docs = list(yaml.safe_load_all(Path(f["path"]).read_text()))
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "DaemonSet"] == ["kube-router-amd64", "kube-router-arm64"]
    assert len(out["validated_for"]) >= 1


def test_manifests_uses_cluster_file_flag(env, capsys):
    cluster = env / "c.yml"
    cluster.write_text("cluster_cidr: 10.244.0.0/16\nprivate_registry: reg.local:5000\n")
    assert run("manifests", "--cluster-file", str(cluster), "--layout", "multi-arch", "--out", str(env / "m")) == 0
    docs = list(yaml.safe_load_all((env / "m" / "flannel.yml").read_text()))
    cm = next(d for d in docs if d and d["kind"] == "ConfigMap")
    assert json.loads(cm["data"]["net-conf.json"])["Network"] == "10.244.0.0/16"
    assert "reg.local:5000/flannel:v0.28.9" in (env / "m" / "flannel.yml").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (("manifests", "--cluster-file", "nope.yml"), "cluster_file: nope.yml: file not found"),
        (("manifests", "--arch", "mips"), "unknown architecture 'mips'"),
        (("manifests", "--network", "cilium"), "cilium is installed by `cilium install`"),
        (("manifests", "--network", "calico", "--calico-manifest", "missing.yaml"), "--calico-manifest: missing.yaml: file not found"),
        (("docker-opts", "--subnet-env", "missing.env"), "cannot read flannel's subnet file"),
        (("docker-opts", "--format", "yaml"), "unknown format 'yaml'"),
    ],
)
def test_usage_errors_exit_2(env, capsys, argv, message):
    assert run(*argv) == 2
    assert message in capsys.readouterr().err


def test_bad_cluster_file_exit_2(env, capsys):
    (env / "c.yml").write_text("clustr_cidr: 10.0.0.0/8\n")
    assert run("manifests", "--cluster-file", str(env / "c.yml")) == 2
    err = capsys.readouterr().err
    assert "unknown key 'clustr_cidr' (did you mean 'cluster_cidr'?)" in err and len(err.strip().splitlines()) == 1


def test_calico_from_file(env, capsys):
    assert run("manifests", "--network", "calico", "--calico-manifest", str(DATA / "calico-mini.yaml"), "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["unchecked"] == ["crd.projectcalico.org/v1 IPPool default-ipv4-ippool"]
    assert "127.0.0.1:5000/calico/node:v3.31.7" in out["files"][0]["images"]


def test_rewrite_positional_and_file_to_out(env, capsys):
    shutil.copy(FLANNEL_UPSTREAM, env / "a.yml")
    shutil.copy(DATA / "workloads.yaml", env / "b.yaml")
    assert run("manifests", "rewrite", "a.yml", "--file", "b.yaml", "--registry", "r.example:443", "--out", "o", "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert [f["output"] for f in out["files"]] == ["o/a.yml", "o/b.yaml"]
    text = (env / "o" / "a.yml").read_text()
    assert "ghcr.io" not in text and "r.example:443/flannel-io/flannel:v0.28.9" in text


def test_rewrite_to_stdout(env, capsys):
    assert run("manifests.rewrite", str(DATA / "workloads.yaml"), "--registry", "r.example") == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert docs[0]["spec"]["containers"][0]["image"] == "r.example/busybox"


def test_rewrite_needs_a_file(env, capsys):
    assert run("manifests", "rewrite") == 2
    assert "path" in capsys.readouterr().err


def test_flannel_etcd_config(env, capsys):
    assert run("flannel-etcd-config") == 0
    assert json.loads(capsys.readouterr().out) == {"Network": "172.20.0.0/16", "SubnetLen": 24, "Backend": {"Type": "vxlan"}}
    assert run("flannel-etcd-config", "--json", "--etcd-prefix", "/my/net/") == 0
    assert json.loads(capsys.readouterr().out)["etcd_key"] == "/my/net/config"


def test_docker_opts_env_and_daemon_json(env, capsys):
    (env / "subnet.env").write_text("FLANNEL_SUBNET=10.2.26.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n")
    assert run("docker-opts", "--subnet-env", "subnet.env") == 0
    assert capsys.readouterr().out.splitlines()[-1] == 'DOCKER_OPTS="--bip=10.2.26.1/24 --ip-masq=true --mtu=1450"'
    (env / "daemon.json").write_text('{"log-driver": "journald"}')
    assert run("docker-opts", "--subnet-env", "subnet.env", "--format", "daemon-json",
               "--daemon-json", "daemon.json", "--out", "daemon.json") == 0
    assert json.loads((env / "daemon.json").read_text()) == {
        "log-driver": "journald", "bip": "10.2.26.1/24", "ip-masq": True, "mtu": 1450}


def test_rewrite_pin_digests_from_the_build_report_then_the_registry(env, capsys):
    from tests.unit.test_manifests import build_report, fake_digest

    (env / "out").mkdir()
    (env / "out" / "build-report.json").write_text(json.dumps(build_report()))

    def pod(*images):
        (env / "p.yml").write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}}))

    # moved references that are exactly the report's tags get the report's digests, no network
    pod("127.0.0.1:5000/flannel:v0.28.9-arm64", "elsewhere.io/kube-router:v2.11.1")
    assert run("manifests", "rewrite", "p.yml", "--registry", "127.0.0.1:5000", "--pin-digests") == 0
    got = yaml.safe_load(capsys.readouterr().out)
    assert [c["image"] for c in got["spec"]["containers"]] == [
        f"127.0.0.1:5000/flannel:v0.28.9-arm64@{fake_digest('flannel', 'v0.28.9', 'arm64')}",
        f"127.0.0.1:5000/kube-router:v2.11.1@{fake_digest('kube-router', 'v2.11.1')}"]
    # anything else is asked of the registry: here a loopback port nobody listens on -> exit 1
    pod("ghcr.io/x/flannel:v0.28.9-arm64")
    assert run("manifests", "rewrite", "p.yml", "--registry", "127.0.0.1:1", "--pin-digests") == 1
    assert "127.0.0.1:1" in capsys.readouterr().err
