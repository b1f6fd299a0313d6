"""calico: the upstream manifest from the calico release (``calico.yaml`` in calico's
``release-TAG.tgz``, or any copy the user passes), with every image moved to the private
registry and the pod IP pool set from ``cluster_cidr`` (``CALICO_IPV4POOL_CIDR``, and
``CALICO_IPV6POOL_CIDR`` for an IPv6 or dual-stack cluster) on the calico-node container.

netship builds no calico images: they are mirrored with their upstream paths
(``invoke mirror``), so the rewrite keeps the path (``REG/calico/node:v3.31.7``). The layout
does not apply (calico's images are manifest lists already).
"""

from __future__ import annotations

from typing import Any

from ..cluster import ClusterSettings
from ..errors import ConfigError
from .rewrite import DigestResolver, ImageChange, rewrite_documents
from .workloads import containers, set_env

NODE_CONTAINER = "calico-node"


def render(base: list[dict[str, Any]], cluster: ClusterSettings, registry: str,
           resolve: DigestResolver | None = None, where: str = "calico manifest"
           ) -> tuple[list[dict[str, Any]], list[ImageChange]]:
    docs, changes = rewrite_documents(base, registry, resolve, where)
    nodes = [c for d in docs if d.get("kind") == "DaemonSet"
             for f, c in containers(d) if f == "containers" and c.get("name") == NODE_CONTAINER]
    if len(nodes) != 1:
        raise ConfigError(f"{where}: expected one DaemonSet container named {NODE_CONTAINER}, found {len(nodes)}")
    node = nodes[0]
    v4, v6 = cluster.cluster_cidr_v4, cluster.cluster_cidr_v6
    if v4 is not None:
        set_env(node, "CALICO_IPV4POOL_CIDR", str(v4))
    if v6 is not None:
        set_env(node, "CALICO_IPV6POOL_CIDR", str(v6))
        set_env(node, "IP6", "autodetect")
        set_env(node, "FELIX_IPV6SUPPORT", "true")
    if v4 is None:
        set_env(node, "IP", "none")
    return docs, changes
