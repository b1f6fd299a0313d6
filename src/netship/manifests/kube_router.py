"""kube-router: upstream's generic all-features DaemonSet (manifests/kube-router.yml) as data.

ServiceAccount, RBAC, ConfigMap (CNI conf; kubeconfig with the API server), DaemonSet(s) in
the two layouts, with the service-proxy options (service CIDRs, NodePort range, IP
families) from the cluster settings. kube-router learns each node's pod CIDR from
``node.spec.podCIDR`` (kube-controller-manager ``--allocate-node-cidrs --cluster-cidr``),
so ``cluster_cidr`` selects its IP families (``--enable-ipv4/--enable-ipv6``) here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

import yaml

from ..arch import Arch
from ..cluster import ClusterSettings
from .common import (
    add_cni_plugins_installer,
    arch_daemonsets,
    set_apiserver_env,
    set_flag,
    set_images,
    set_pull_policy,
)
from .images import ImageSet
from .workloads import find

TEMPLATE = "kube-router.yml"
IMAGES = ("kube-router", "cni-plugins")
_IMAGE_MAP = {"kube-router": "kube-router"}


def kubeconfig(cluster: ClusterSettings) -> str:
    """The kubeconfig kube-router reads (upstream's is a sed template with %APISERVER%; the
    same structure is built here as data). The service account's token and CA are mounted."""
    if cluster.apiserver_url:
        server = cluster.apiserver_url
    else:
        ip = cluster.kubernetes_svc_ip
        server = f"https://[{ip}]:443" if ip.version == 6 else f"https://{ip}:443"
    conf = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": {
            "certificate-authority": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
            "server": server}}],
        "users": [{"name": "kube-router", "user": {
            "tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}}],
        "contexts": [{"name": "kube-router-context", "context": {"cluster": "cluster", "user": "kube-router"}}],
        "current-context": "kube-router-context",
    }
    return yaml.safe_dump(conf, sort_keys=True, default_flow_style=False)


def flags(cluster: ClusterSettings) -> list[tuple[str, list[str]]]:
    families = {n.version for n in cluster.cluster_cidr}
    out = [
        ("--service-cluster-ip-range", [str(n) for n in cluster.service_cidr]),
        ("--service-node-port-range", [cluster.node_port_range_text]),
    ]
    if 6 in families:
        out.append(("--enable-ipv6", ["true"]))
    if 4 not in families:
        out.append(("--enable-ipv4", ["false"]))
    return out


def render(base: list[dict[str, Any]], cluster: ClusterSettings, images: ImageSet, registry: str,
           arches: Sequence[Arch], layout: str, pin: bool) -> list[dict[str, Any]]:
    docs = copy.deepcopy(base)
    cm = find(docs, "ConfigMap", "kube-router-cfg")
    cm["data"]["cni-conf.json"] = json.dumps(json.loads(cm["data"]["cni-conf.json"]), indent=2) + "\n"
    cm["data"]["kubeconfig"] = kubeconfig(cluster)
    ds = find(docs, "DaemonSet", "kube-router")
    router = next(c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "kube-router")
    args = [str(a) for a in router.get("args") or []]
    for flag, values in flags(cluster):
        args = set_flag(args, flag, values)
    router["args"] = args
    out = [d for d in docs if d is not ds]
    for arch, d in arch_daemonsets(ds, arches, layout):
        where = f"kube-router DaemonSet {d['metadata']['name']}"
        set_images(d, _IMAGE_MAP, images, registry, arch, pin, where)
        add_cni_plugins_installer(d, images, registry, arch, pin, volume="cni-bin")
        set_pull_policy(d)
        set_apiserver_env(d, cluster)
        out.append(d)
    return out
