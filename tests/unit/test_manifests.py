"""netship.manifests: golden files per network and layout (compared as parsed data), byte-level
determinism, what each transformation changes relative to upstream's template, arch
selection, digests, and errors.

Golden files live in tests/unit/data/manifests/golden/; regenerate them after an intended
change with ``NETSHIP_UPDATE_GOLDEN=1 python -m pytest tests/unit/test_manifests.py`` and
review the diff.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from netship.arch import ALL_ARCHES, Arch
from netship.catalog import load_catalog
from netship.cluster import parse_cluster
from netship.errors import ConfigError, UsageError
from netship.manifests import plan_manifests, render_network, write_manifests
from netship.manifests.images import load_images
from netship.manifests.validate import ManifestInvalid
from netship.manifests.workloads import containers
from netship.settings import load_settings
from tests.support.upstream_manifests import FLANNEL, KUBE_ROUTER

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data" / "manifests"
GOLDEN = DATA / "golden"
UPDATE = os.environ.get("NETSHIP_UPDATE_GOLDEN") == "1"

REG = "reg.example:5000/netship"
VERSIONS = {"flannel": "v0.28.9", "flannel-cni-plugin": "v1.9.1-flannel1", "kube-router": "v2.11.1",
            "cni-plugins": "v1.9.1"}


def fake_digest(*parts: str) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256("/".join(parts).encode()).hexdigest()


def build_report(registry: str = "127.0.0.1:5000", drop: tuple[tuple[str, Arch], ...] = ()) -> dict:
    """A build report in the BRIEF contract's JSON shape, with made-up but stable digests."""
    images = {}
    for name, version in VERSIONS.items():
        arches = {
            a.k8s: {"platform": a.platform, "tag": f"{registry}/{name}:{version}-{a.k8s}",
                    "digest": fake_digest(name, version, a.k8s)}
            for a in ALL_ARCHES if (name, a) not in drop
        }
        images[name] = {"name": name, "version": version, "repository": f"{registry}/{name}",
                        "tag": f"{registry}/{name}:{version}", "digest": fake_digest(name, version),
                        "components": {name: version}, "arches": arches}
    return {"netship_version": "0.1.0", "registry": registry, "images": images}


GOLDEN_CLUSTER = {
    "service_cidr": "10.96.0.0/12",
    "cluster_cidr": "10.244.0.0/16",
    "dns_svc_ip": "10.96.0.10",
    "node_port_range": "30000-32767",
    "flannel_backend": "host-gw",
    "flannel_subnet_len": 25,
    "private_registry": REG,
    "apiserver": "192.168.1.10:6443",
}


@pytest.fixture
def settings(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "build-report.json").write_text(json.dumps(build_report()))
    cluster_file = tmp_path / "cluster.yml"
    cluster_file.write_text(yaml.safe_dump(GOLDEN_CLUSTER))
    return load_settings(env={}, flags={"catalog_dir": str(REPO / "release"), "out_dir": str(out),
                                        "cluster_file": str(cluster_file), "cache_dir": str(tmp_path / "cache")})


def load_stream(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def images_of(docs) -> list[str]:
    return [c["image"] for d in docs for _f, c in containers(d)]


def by_name(docs, kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


# -- golden files --------------------------------------------------------------------------

CASES = [
    ("flannel", "per-arch", None),
    ("flannel", "multi-arch", None),
    ("kube-router", "per-arch", None),
    ("kube-router", "multi-arch", None),
    ("calico", "upstream", DATA / "calico-mini.yaml"),
]


@pytest.mark.parametrize("network, layout, calico", CASES, ids=[f"{n}-{lay}" for n, lay, _ in CASES])
def test_golden(settings, tmp_path, network, layout, calico):
    paths = write_manifests(settings, network=network, layout="per-arch" if layout == "upstream" else layout,
                            out_dir=tmp_path / "m", calico_manifest=calico)
    assert [p.name for p in paths] == [f"{network}.yml"]
    golden = GOLDEN / f"{network}-{layout}.yml"
    if UPDATE:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(paths[0].read_bytes())
    assert load_stream(paths[0]) == load_stream(golden)


def test_output_is_byte_identical_across_runs(settings, tmp_path):
    a = write_manifests(settings, network="flannel", out_dir=tmp_path / "a")
    b = write_manifests(settings, network="flannel", out_dir=tmp_path / "b")
    assert a[0].read_bytes() == b[0].read_bytes()
    text = a[0].read_text()
    # stable key order and no run-dependent content
    assert str(tmp_path) not in text
    first = text.split("---\n")[1]
    assert first.startswith("apiVersion: v1\nkind: Namespace\nmetadata:\n")


# -- what changes relative to upstream's template ---------------------------------------------


def _expected_flannel_ds(upstream_ds: dict, arch: Arch, reg: str, apiserver: tuple[str, str]) -> dict:
    """upstream's DaemonSet with exactly the changes netship documents, spelled out by hand."""
    ds = copy.deepcopy(upstream_ds)
    ds["metadata"]["name"] = f"kube-flannel-ds-{arch.k8s}"
    ds["spec"]["selector"]["matchLabels"]["arch"] = arch.k8s
    ds["spec"]["template"]["metadata"]["labels"]["arch"] = arch.k8s
    spec = ds["spec"]["template"]["spec"]
    del spec["affinity"]  # replaced by the nodeSelector
    spec["nodeSelector"] = {"kubernetes.io/os": "linux", "kubernetes.io/arch": arch.k8s}
    plugin, install = spec["initContainers"]
    plugin["image"] = f"{reg}/flannel-cni-plugin:v1.9.1-flannel1-{arch.k8s}"
    install["image"] = f"{reg}/flannel:v0.28.9-{arch.k8s}"
    install["command"] = ["cp"]
    install["args"] = ["-f", "/etc/kube-flannel/cni-conf.json", "/etc/cni/net.d/10-flannel.conflist"]
    spec["initContainers"].insert(0, {
        "name": "install-cni-plugins", "image": f"{reg}/cni-plugins:v1.9.1-{arch.k8s}",
        "volumeMounts": [{"name": "cni-plugin", "mountPath": "/host/opt/cni/bin"}]})
    main = spec["containers"][0]
    main["image"] = f"{reg}/flannel:v0.28.9-{arch.k8s}"
    main["env"] += [{"name": "KUBERNETES_SERVICE_HOST", "value": apiserver[0]},
                    {"name": "KUBERNETES_SERVICE_PORT", "value": apiserver[1]}]
    return ds


def test_flannel_changes_only_what_it_documents(settings):
    upstream = load_stream(FLANNEL)
    cluster = parse_cluster(GOLDEN_CLUSTER)
    (r,), _ = plan_manifests(settings, network="flannel", cluster=cluster)
    docs = list(r.documents)
    up_ds = next(d for d in upstream if d["kind"] == "DaemonSet")
    ds = by_name(docs, "DaemonSet")
    assert sorted(ds) == sorted(f"kube-flannel-ds-{a.k8s}" for a in ALL_ARCHES)
    for arch in ALL_ARCHES:
        assert ds[f"kube-flannel-ds-{arch.k8s}"] == _expected_flannel_ds(up_ds, arch, REG, ("192.168.1.10", "6443"))
    # the other documents: only the ConfigMap's network settings differ
    others = [d for d in docs if d["kind"] != "DaemonSet"]
    up_others = [d for d in upstream if d["kind"] != "DaemonSet"]
    assert [(d["kind"], d["metadata"]["name"]) for d in others] == [(d["kind"], d["metadata"]["name"]) for d in up_others]
    cm, up_cm = by_name(others, "ConfigMap")["kube-flannel-cfg"], by_name(up_others, "ConfigMap")["kube-flannel-cfg"]
    assert json.loads(cm["data"]["cni-conf.json"]) == json.loads(up_cm["data"]["cni-conf.json"])
    assert json.loads(cm["data"]["net-conf.json"]) == {
        "Network": "10.244.0.0/16", "SubnetLen": 25, "EnableNFTables": False, "Backend": {"Type": "host-gw"}}
    for d, u in zip(others, up_others, strict=True):
        if d["kind"] != "ConfigMap":
            assert d == u
    ns = by_name(others, "Namespace")["kube-flannel"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert {d["apiVersion"] for d in docs if d["kind"].startswith("ClusterRole")} == {"rbac.authorization.k8s.io/v1"}


def test_flannel_multi_arch_uses_manifest_lists_and_arch_affinity(settings):
    (r,), _ = plan_manifests(settings, network="flannel", layout="multi-arch", arches=[Arch.AMD64, Arch.ARM64])
    (ds,) = [d for d in r.documents if d["kind"] == "DaemonSet"]
    assert ds["metadata"]["name"] == "kube-flannel-ds"
    spec = ds["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]}]}]
    assert images_of([ds]) == [f"{REG}/cni-plugins:v1.9.1", f"{REG}/flannel-cni-plugin:v1.9.1-flannel1",
                               f"{REG}/flannel:v0.28.9", f"{REG}/flannel:v0.28.9"]


def test_no_apiserver_no_env(settings):
    cluster = parse_cluster({**GOLDEN_CLUSTER, "apiserver": None})
    (r,), _ = plan_manifests(settings, network="flannel", cluster=cluster, arches=[Arch.AMD64])
    names = {e["name"] for d in r.documents for _f, c in containers(d) for e in c.get("env", [])}
    assert "KUBERNETES_SERVICE_HOST" not in names


def test_kube_router_settings(settings):
    (r,), _ = plan_manifests(settings, network="kube-router", arches=[Arch.ARM])
    docs = list(r.documents)
    upstream = load_stream(KUBE_ROUTER)
    (ds,) = by_name(docs, "DaemonSet").values()
    assert ds["metadata"]["name"] == "kube-router-arm"
    spec = ds["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm"}
    router = next(c for c in spec["containers"] if c["name"] == "kube-router")
    up_router = next(c for d in upstream if d["kind"] == "DaemonSet" for c in d["spec"]["template"]["spec"]["containers"])
    assert router["args"] == up_router["args"] + ["--service-cluster-ip-range=10.96.0.0/12",
                                                  "--service-node-port-range=30000-32767"]
    assert router["image"] == f"{REG}/kube-router:v2.11.1-arm"
    assert {c["imagePullPolicy"] for _f, c in containers(ds)} == {"IfNotPresent"}
    assert [c["name"] for c in spec["initContainers"]] == ["install-cni-plugins", "install-cni"]
    assert {"name": "cni-bin", "hostPath": {"path": "/opt/cni/bin"}} in spec["volumes"]
    cm = by_name(docs, "ConfigMap")["kube-router-cfg"]
    kubeconfig = yaml.safe_load(cm["data"]["kubeconfig"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == "https://192.168.1.10:6443"
    assert kubeconfig["current-context"] == "kube-router-context"
    # RBAC and ServiceAccount untouched
    for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
        assert by_name(docs, kind) == by_name(upstream, kind)


def test_kube_router_dual_stack_and_default_server(settings):
    cluster = parse_cluster({"service_cidr": "10.68.0.0/16,fd00:68::/108", "cluster_cidr": "172.20.0.0/16,fd00:20::/56"})
    (r,), _ = plan_manifests(settings, network="kube-router", cluster=cluster, layout="multi-arch")
    (ds,) = by_name(list(r.documents), "DaemonSet").values()
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--service-cluster-ip-range")] == [
        "--service-cluster-ip-range=10.68.0.0/16", "--service-cluster-ip-range=fd00:68::/108"]
    assert "--enable-ipv6=true" in args and not any(a.startswith("--enable-ipv4") for a in args)
    cm = by_name(list(r.documents), "ConfigMap")["kube-router-cfg"]
    assert yaml.safe_load(cm["data"]["kubeconfig"])["clusters"][0]["cluster"]["server"] == "https://10.68.0.1:443"
    assert images_of([ds])[0] == "127.0.0.1:5000/cni-plugins:v1.9.1"  # cluster's default registry


def test_calico_rewrites_images_and_sets_pool(settings):
    (r,), report = plan_manifests(settings, network="calico", calico_manifest=DATA / "calico-mini.yaml")
    docs = list(r.documents)
    src = load_stream(DATA / "calico-mini.yaml")
    assert images_of(docs) == [
        f"{REG}/calico/cni:v3.31.7", f"{REG}/calico/cni:v3.31.7", f"{REG}/calico/node:v3.31.7",
        f"{REG}/calico/node:v3.31.7", f"{REG}/calico/kube-controllers:v3.31.7"]
    node = next(c for d in docs for f, c in containers(d) if c["name"] == "calico-node")
    env = {e["name"]: e.get("value") for e in node["env"]}
    assert env["CALICO_IPV4POOL_CIDR"] == "10.244.0.0/16"
    assert env["FELIX_IPV6SUPPORT"] == "false" and "CALICO_IPV6POOL_CIDR" not in env
    # everything but images and that one env entry is as in the input
    back = copy.deepcopy(docs)
    for d, s in zip(back, src, strict=True):
        for (_f, c), (_g, sc) in zip(containers(d), containers(s), strict=True):
            c["image"] = sc["image"]
            c["env"] = [e for e in c.get("env", []) if e["name"] != "CALICO_IPV4POOL_CIDR"] or sc.get("env")
            if "env" not in sc:
                del c["env"]
    assert back == src
    assert report.unchecked == ("crd.projectcalico.org/v1 IPPool default-ipv4-ippool",)


def test_calico_dual_stack_sets_both_pools(settings):
    cluster = parse_cluster({"service_cidr": "10.68.0.0/16,fd00:68::/108", "cluster_cidr": "172.20.0.0/16,fd00:20::/56"})
    (r,), _ = plan_manifests(settings, network="calico", cluster=cluster, calico_manifest=DATA / "calico-mini.yaml")
    node = next(c for d in r.documents for f, c in containers(d) if c["name"] == "calico-node")
    env = {e["name"]: e.get("value") for e in node["env"]}
    assert (env["CALICO_IPV4POOL_CIDR"], env["CALICO_IPV6POOL_CIDR"], env["FELIX_IPV6SUPPORT"]) == (
        "172.20.0.0/16", "fd00:20::/56", "true")
    assert [e["name"] for e in node["env"]].count("FELIX_IPV6SUPPORT") == 1


# -- images: build report, catalog, digests, arches --------------------------------------------


def test_without_report_tags_come_from_the_catalog(settings):
    settings.build_report.unlink()
    catalog = load_catalog(REPO / "release")
    (r,), _ = plan_manifests(settings, network="flannel", arches=[Arch.S390X])
    version = catalog.component("flannel").version
    cni = catalog.component("flannel-cni-plugin").version
    assert f"{REG}/flannel:{version}-s390x" in r.images
    assert f"{REG}/flannel-cni-plugin:{cni}-s390x" in r.images


def test_pin_digests_per_arch_and_multi_arch(settings):
    (r,), _ = plan_manifests(settings, network="flannel", arches=[Arch.ARM64], pin_digests=True)
    assert f"{REG}/flannel:v0.28.9-arm64@{fake_digest('flannel', 'v0.28.9', 'arm64')}" in r.images
    (r,), _ = plan_manifests(settings, network="kube-router", layout="multi-arch", pin_digests=True)
    assert f"{REG}/kube-router:v2.11.1@{fake_digest('kube-router', 'v2.11.1')}" in r.images


def test_pin_digests_needs_a_report(settings):
    settings.build_report.unlink()
    with pytest.raises(UsageError, match=r"--pin-digests: no digest for flannel"):
        plan_manifests(settings, network="flannel", pin_digests=True)


def test_registry_flag_overrides_cluster(settings):
    (r,), _ = plan_manifests(settings, network="flannel", arches=[Arch.AMD64], registry="mirror.local:443/")
    assert all(i.startswith("mirror.local:443/") for i in r.images)


def test_arch_missing_from_report_skipped_or_error(settings):
    settings.build_report.write_text(json.dumps(build_report(drop=(("flannel", Arch.S390X),))))
    (r,), _ = plan_manifests(settings, network="flannel")
    assert Arch.S390X not in r.arches and len(r.arches) == 4
    assert not any("s390x" in i for i in r.images)
    with pytest.raises(UsageError, match=r"--arch s390x: flannel needs image\(s\) flannel for s390x"):
        plan_manifests(settings, network="flannel", arches=[Arch.AMD64, Arch.S390X])
    # kube-router does not need the flannel image
    (r,), _ = plan_manifests(settings, network="kube-router", arches=[Arch.S390X])
    assert r.arches == (Arch.S390X,)


def test_images_prefer_report_then_catalog(settings):
    images = load_images(settings.build_report, load_catalog(REPO / "release"))
    assert images.source.startswith("build report")
    assert str(images.ref("flannel", "r:1", Arch.ARM)) == "r:1/flannel:v0.28.9-arm"


# -- errors and validation --------------------------------------------------------------------


def test_network_errors(settings):
    with pytest.raises(UsageError, match="cilium is installed by `cilium install`"):
        plan_manifests(settings, network="cilium")
    with pytest.raises(UsageError, match="--network calico needs the upstream manifest: pass --calico-manifest"):
        plan_manifests(settings, network="calico")
    with pytest.raises(ConfigError, match=r"unknown network 'flanel' \(did you mean 'flannel'\?\)"):
        plan_manifests(settings, network="flanel")
    with pytest.raises(ConfigError, match=r"unknown layout 'perarch' \(did you mean 'per-arch'\?\)"):
        plan_manifests(settings, network="flannel", layout="perarch")


def test_network_defaults_to_cluster_setting(settings, tmp_path):
    settings.cluster_file.write_text(yaml.safe_dump({**GOLDEN_CLUSTER, "cluster_network": "kube-router"}))
    paths = write_manifests(settings, out_dir=tmp_path / "m", arches=[Arch.AMD64])
    assert [p.name for p in paths] == ["kube-router.yml"]


def test_invalid_output_is_an_error_and_nothing_is_written(settings, tmp_path, monkeypatch):
    from netship.manifests import flannel

    real = flannel.render

    def broken(*a, **kw):
        docs = real(*a, **kw)
        docs[-1]["spec"]["template"]["spec"]["hostNetwrok"] = True  # a typo strict schemas catch
        return docs

    monkeypatch.setattr(flannel, "render", broken)
    with pytest.raises(ManifestInvalid, match=r"flannel.yml: DaemonSet kube-flannel/kube-flannel-ds-s390x is invalid "
                                              r"for Kubernetes 1\.\d+: spec.template.spec: Additional properties"):
        write_manifests(settings, network="flannel", out_dir=tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_unknown_container_image_in_template_is_an_error(settings, monkeypatch):
    from netship import manifests

    real = manifests.load_template

    def drifted(name):
        docs = real(name)
        for d in docs:
            for _f, c in containers(d):
                c["image"] = "quay.io/other/thing:v1"
        return docs

    monkeypatch.setattr(manifests, "load_template", drifted)
    with pytest.raises(ConfigError, match="uses image quay.io/other/thing:v1 that netship does not build"):
        render_network("flannel", parse_cluster({}), load_images(settings.build_report, None), registry=REG)
