"""flannel for Kubernetes: upstream's kube-flannel.yml (manifests/flannel.yml) changed as data.

Namespace (pod-security label), RBAC v1, ServiceAccount, ConfigMap (cni-conf.json with flannel
+ portmap, net-conf.json from the cluster settings), and the DaemonSet(s): one per arch
(``kube-flannel-ds-ARCH``, images ``REG/flannel:VERSION-ARCH``) or one multi-arch.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from typing import Any

from ..arch import Arch
from ..cluster import ClusterSettings
from .common import add_cni_plugins_installer, arch_daemonsets, set_apiserver_env, set_images
from .images import ImageSet
from .workloads import find

TEMPLATE = "flannel.yml"
IMAGES = ("flannel", "flannel-cni-plugin", "cni-plugins")
_IMAGE_MAP = {"flannel": "flannel", "flannel-cni-plugin": "flannel-cni-plugin"}
_NET_CONF_KEYS = ("Network", "SubnetLen", "EnableIPv4", "EnableIPv6", "IPv6Network", "IPv6SubnetLen", "Backend")


def json_text(value: Any) -> str:
    return json.dumps(value, indent=2) + "\n"


def net_conf(upstream_text: str, cluster: ClusterSettings) -> dict[str, Any]:
    """upstream's net-conf.json with the network keys replaced by the cluster settings'."""
    conf = {k: v for k, v in json.loads(upstream_text).items() if k not in _NET_CONF_KEYS}
    return {**cluster.flannel_net_conf(), **conf}


def render(base: list[dict[str, Any]], cluster: ClusterSettings, images: ImageSet, registry: str,
           arches: Sequence[Arch], layout: str, pin: bool) -> list[dict[str, Any]]:
    docs = copy.deepcopy(base)
    ns = find(docs, "Namespace")
    ns["metadata"].setdefault("labels", {})["pod-security.kubernetes.io/enforce"] = "privileged"
    cm = find(docs, "ConfigMap")
    cm["data"]["cni-conf.json"] = json_text(json.loads(cm["data"]["cni-conf.json"]))
    cm["data"]["net-conf.json"] = json_text(net_conf(cm["data"]["net-conf.json"], cluster))
    ds = find(docs, "DaemonSet")
    install = next(c for c in ds["spec"]["template"]["spec"]["initContainers"] if c["name"] == "install-cni")
    # netship's flannel image has no /opt/bin/install-conf (upstream's helper): plain cp.
    install["command"] = ["cp"]
    install["args"] = ["-f", "/etc/kube-flannel/cni-conf.json", "/etc/cni/net.d/10-flannel.conflist"]
    out = [d for d in docs if d is not ds]
    for arch, d in arch_daemonsets(ds, arches, layout):
        where = f"flannel DaemonSet {d['metadata']['name']}"
        set_images(d, _IMAGE_MAP, images, registry, arch, pin, where)
        add_cni_plugins_installer(d, images, registry, arch, pin, volume="cni-plugin")
        set_apiserver_env(d, cluster)
        out.append(d)
    return out


def etcd_config(cluster: ClusterSettings) -> dict[str, Any]:
    """The JSON ``flanneld -etcd-prefix`` reads at PREFIX/config (Network, SubnetLen, Backend.Type)."""
    return cluster.flannel_net_conf()
