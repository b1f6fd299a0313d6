"""Cluster network settings (``release/cluster.yml``): what an operator sets for a cluster.

Parsed once, at the edge, into a frozen ``ClusterSettings`` whose addresses are already
``ipaddress`` values; every check raises a one-line ``ConfigError`` naming the file and key.

Keys (defaults in ``DEFAULTS``)::

    cluster_network     flannel | calico | kube-router | cilium
    service_cidr        Cluster IP range; a dual-stack pair "V4,V6" (or "V6,V4") allowed
    kubernetes_svc_ip   first address of service_cidr unless set
    dns_svc_ip          second address of service_cidr unless set
    cluster_cidr        Pod IP range; a dual-stack pair allowed
    node_networks       list of the nodes' own networks (checked for overlap); default []
    node_port_range     "START-END"
    flannel_backend     vxlan | host-gw | wireguard
    flannel_subnet_len  prefix length of each node's IPv4 pod subnet
    private_registry    host[:port][/prefix] nodes pull images from
    apiserver           host:port of the API server, for nodes with several networks; or null
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, unknown
from .imageref import ImageRef

NETWORKS = ("flannel", "calico", "kube-router", "cilium")
FLANNEL_BACKENDS = ("vxlan", "host-gw", "wireguard")
FLANNEL_IPV6_SUBNET_LEN = 64

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULTS: dict[str, Any] = {
    "cluster_network": "flannel",
    "service_cidr": "10.68.0.0/16",
    "kubernetes_svc_ip": None,  # first address of service_cidr
    "dns_svc_ip": None,  # second address of service_cidr
    "cluster_cidr": "172.20.0.0/16",
    "node_networks": [],
    "node_port_range": "20000-40000",
    "flannel_backend": "vxlan",
    "flannel_subnet_len": 24,
    "private_registry": "127.0.0.1:5000",
    "apiserver": None,
}


@dataclass(frozen=True)
class ClusterSettings:
    cluster_network: str = "flannel"
    service_cidr: tuple[IPNetwork, ...] = (ipaddress.ip_network("10.68.0.0/16"),)
    kubernetes_svc_ip: IPAddress = ipaddress.ip_address("10.68.0.1")
    dns_svc_ip: IPAddress = ipaddress.ip_address("10.68.0.2")
    cluster_cidr: tuple[IPNetwork, ...] = (ipaddress.ip_network("172.20.0.0/16"),)
    node_networks: tuple[IPNetwork, ...] = ()
    node_port_range: tuple[int, int] = (20000, 40000)
    flannel_backend: str = "vxlan"
    flannel_subnet_len: int = 24
    private_registry: str = "127.0.0.1:5000"
    apiserver: tuple[str, int] | None = None
    source: str = field(default="defaults", compare=False)

    # -- derived values, spelled the way manifests and daemons want them ----------------
    @property
    def service_cidr_text(self) -> str:
        return ",".join(str(n) for n in self.service_cidr)

    @property
    def cluster_cidr_text(self) -> str:
        return ",".join(str(n) for n in self.cluster_cidr)

    @property
    def cluster_cidr_v4(self) -> ipaddress.IPv4Network | None:
        return next((n for n in self.cluster_cidr if n.version == 4), None)  # type: ignore[return-value]

    @property
    def cluster_cidr_v6(self) -> ipaddress.IPv6Network | None:
        return next((n for n in self.cluster_cidr if n.version == 6), None)  # type: ignore[return-value]

    @property
    def node_port_range_text(self) -> str:
        return f"{self.node_port_range[0]}-{self.node_port_range[1]}"

    @property
    def apiserver_host(self) -> str | None:
        return self.apiserver[0] if self.apiserver else None

    @property
    def apiserver_port(self) -> int | None:
        return self.apiserver[1] if self.apiserver else None

    @property
    def apiserver_url(self) -> str | None:
        if not self.apiserver:
            return None
        host, port = self.apiserver
        return f"https://{'[' + host + ']' if ':' in host else host}:{port}"

    def flannel_net_conf(self) -> dict[str, Any]:
        """flannel's net-conf.json / etcd config (``flanneld -etcd-prefix``) as data."""
        conf: dict[str, Any] = {}
        v4, v6 = self.cluster_cidr_v4, self.cluster_cidr_v6
        if v4 is not None:
            conf["Network"] = str(v4)
            conf["SubnetLen"] = self.flannel_subnet_len
        else:
            conf["EnableIPv4"] = False
        if v6 is not None:
            conf["EnableIPv6"] = True
            conf["IPv6Network"] = str(v6)
            conf["IPv6SubnetLen"] = FLANNEL_IPV6_SUBNET_LEN
        conf["Backend"] = {"Type": self.flannel_backend}
        return conf

    def as_dict(self) -> dict[str, Any]:
        """The settings as a cluster.yml mapping (round-trips through ``parse_cluster``)."""
        return {
            "cluster_network": self.cluster_network,
            "service_cidr": self.service_cidr_text,
            "kubernetes_svc_ip": str(self.kubernetes_svc_ip),
            "dns_svc_ip": str(self.dns_svc_ip),
            "cluster_cidr": self.cluster_cidr_text,
            "node_networks": [str(n) for n in self.node_networks],
            "node_port_range": self.node_port_range_text,
            "flannel_backend": self.flannel_backend,
            "flannel_subnet_len": self.flannel_subnet_len,
            "private_registry": self.private_registry,
            "apiserver": f"{self.apiserver_url.removeprefix('https://')}" if self.apiserver else None,
        }

    def replace(self, **changes: Any) -> ClusterSettings:
        return dataclasses.replace(self, **changes)


# -- parsing ---------------------------------------------------------------------------


def _err(where: str, key: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {key}: {message}")


def _cidrs(value: Any, key: str, where: str) -> tuple[IPNetwork, ...]:
    """One CIDR, or a dual-stack pair (one IPv4 and one IPv6), as "A,B" or a YAML list."""
    if isinstance(value, str):
        items = [p.strip() for p in value.split(",") if p.strip()]
    elif isinstance(value, list):
        items = [str(p).strip() for p in value]
    else:
        raise _err(where, key, f"expected a CIDR like 10.0.0.0/16, got {value!r}")
    if not items:
        raise _err(where, key, "must not be empty")
    nets: list[IPNetwork] = []
    for item in items:
        if "/" not in item:
            raise _err(where, key, f"{item!r} is not a CIDR (missing /PREFIX)")
        try:
            nets.append(ipaddress.ip_network(item, strict=True))
        except ValueError as e:
            raise _err(where, key, f"{item!r} is not a valid CIDR: {e}") from None
    if len(nets) > 2:
        raise _err(where, key, f"at most two CIDRs (a dual-stack IPv4/IPv6 pair), got {len(nets)}")
    if len(nets) == 2 and nets[0].version == nets[1].version:
        raise _err(where, key, f"a dual-stack pair needs one IPv4 and one IPv6 CIDR, got two IPv{nets[0].version}")
    return tuple(nets)


def _address(value: Any, key: str, where: str) -> IPAddress:
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise _err(where, key, f"{value!r} is not an IP address") from None


def _service_ip(addr: IPAddress, nets: tuple[IPNetwork, ...], key: str, where: str) -> None:
    net = next((n for n in nets if n.version == addr.version), None)
    if net is None or addr not in net:
        raise _err(where, key, f"{addr} is not inside service_cidr {','.join(map(str, nets))}")
    if addr == net.network_address:
        raise _err(where, key, f"{addr} is the network address of service_cidr {net}")
    if net.version == 4 and addr == net.broadcast_address:
        raise _err(where, key, f"{addr} is the broadcast address of service_cidr {net}")


def _nth(nets: tuple[IPNetwork, ...], n: int, key: str, where: str) -> IPAddress:
    net = nets[0]
    usable = net.num_addresses - (2 if net.version == 4 else 1)
    if usable < n:
        raise _err(where, "service_cidr", f"{net} is too small to hold {key}")
    return net.network_address + n


def _port_range(value: Any, where: str) -> tuple[int, int]:
    key = "node_port_range"
    m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", str(value))
    if not m:
        raise _err(where, key, f"expected START-END like 30000-32767, got {value!r}")
    start, end = int(m.group(1)), int(m.group(2))
    for port in (start, end):
        if not 1 <= port <= 65535:
            raise _err(where, key, f"port {port} is outside 1-65535")
    if start >= end:
        raise _err(where, key, f"start {start} must be below end {end}")
    return start, end


def _apiserver(value: Any, where: str) -> tuple[str, int] | None:
    if value is None or value == "":
        return None
    text = str(value).strip().removeprefix("https://")
    m = re.fullmatch(r"\[([0-9a-fA-F:.]+)\]:(\d+)|([A-Za-z0-9.-]+):(\d+)", text)
    if not m:
        raise _err(where, "apiserver", f"expected HOST:PORT (IPv6 as [ADDR]:PORT), got {value!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if m.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _err(where, "apiserver", f"{host!r} is not an IPv6 address") from None
    if not 1 <= port <= 65535:
        raise _err(where, "apiserver", f"port {port} is outside 1-65535")
    return host, port


def _registry(value: Any, where: str) -> str:
    text = str(value or "").strip().rstrip("/")
    if not text or "://" in text:
        raise _err(where, "private_registry", f"expected HOST[:PORT][/PREFIX] without a scheme, got {value!r}")
    try:
        ImageRef.parse(f"{text}/probe", "private_registry")
    except ConfigError:
        raise _err(where, "private_registry", f"{value!r} is not a registry host[:port][/prefix]") from None
    host = text.split("/", 1)[0]
    if not ("." in host or ":" in host or host == "localhost"):
        raise _err(where, "private_registry",
                   f"{value!r}: the host needs a '.' or ':PORT' (or be localhost), else it reads as a Docker Hub path")
    return text


def _choice(value: Any, key: str, choices: tuple[str, ...], where: str) -> str:
    text = str(value)
    if text not in choices:
        raise unknown(key, text, choices, where)
    return text


def _int(value: Any, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _err(where, key, f"expected an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise _err(where, key, f"expected an integer, got {value!r}") from None


def parse_cluster(raw: Mapping[str, Any] | None, where: str = "cluster settings") -> ClusterSettings:
    """Check and convert a cluster.yml mapping. Unknown keys are errors with a suggestion."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(raw).__name__}")
    for key in raw:
        if key not in DEFAULTS:
            raise unknown("key", str(key), DEFAULTS, where)
    values = {**DEFAULTS, **raw}

    network = _choice(values["cluster_network"], "cluster_network", NETWORKS, where)
    service = _cidrs(values["service_cidr"], "service_cidr", where)
    cluster = _cidrs(values["cluster_cidr"], "cluster_cidr", where)
    nodes_raw = values["node_networks"] or []
    if isinstance(nodes_raw, str):
        nodes_raw = [p for p in nodes_raw.split(",") if p.strip()]
    if not isinstance(nodes_raw, list):
        raise _err(where, "node_networks", f"expected a list of CIDRs, got {nodes_raw!r}")
    nodes: list[IPNetwork] = []
    for i, item in enumerate(nodes_raw):
        (net,) = _cidrs(str(item), f"node_networks[{i}]", where)[:1]
        nodes.append(net)

    if service[0].version != cluster[0].version:
        raise _err(where, "cluster_cidr",
                   f"primary family IPv{cluster[0].version} differs from service_cidr's IPv{service[0].version}")

    # No overlaps among service_cidr, cluster_cidr and the node networks.
    named: list[tuple[str, IPNetwork]] = (
        [("service_cidr", n) for n in service] + [("cluster_cidr", n) for n in cluster]
        + [(f"node_networks[{i}]", n) for i, n in enumerate(nodes)]
    )
    for i, (key_a, a) in enumerate(named):
        for key_b, b in named[i + 1:]:
            both_nodes = key_a.startswith("node_networks") and key_b.startswith("node_networks")
            if not both_nodes and key_a != key_b and a.version == b.version and a.overlaps(b):
                raise _err(where, key_b, f"{b} overlaps {key_a} {a}")

    if values["kubernetes_svc_ip"] is None:
        k8s_ip = _nth(service, 1, "kubernetes_svc_ip", where)
    else:
        k8s_ip = _address(values["kubernetes_svc_ip"], "kubernetes_svc_ip", where)
    _service_ip(k8s_ip, service, "kubernetes_svc_ip", where)
    if values["dns_svc_ip"] is None:
        dns_ip = _nth(service, 2, "dns_svc_ip", where)
    else:
        dns_ip = _address(values["dns_svc_ip"], "dns_svc_ip", where)
    _service_ip(dns_ip, service, "dns_svc_ip", where)
    if dns_ip == k8s_ip:
        raise _err(where, "dns_svc_ip", f"{dns_ip} is the same address as kubernetes_svc_ip")

    backend = _choice(values["flannel_backend"], "flannel_backend", FLANNEL_BACKENDS, where)
    subnet_len = _int(values["flannel_subnet_len"], "flannel_subnet_len", where)
    v4 = next((n for n in cluster if n.version == 4), None)
    if v4 is not None:
        if subnet_len > 30:
            raise _err(where, "flannel_subnet_len", f"/{subnet_len} leaves no room for pods on a node (at most 30)")
        if subnet_len - v4.prefixlen < 1:
            raise _err(where, "flannel_subnet_len",
                       f"/{subnet_len} leaves room for fewer than 2 node subnets in cluster_cidr {v4}")
    v6 = next((n for n in cluster if n.version == 6), None)
    if v6 is not None and network == "flannel" and FLANNEL_IPV6_SUBNET_LEN - v6.prefixlen < 1:
        raise _err(where, "cluster_cidr",
                   f"IPv6 {v6} leaves room for fewer than 2 node subnets of /{FLANNEL_IPV6_SUBNET_LEN}")

    return ClusterSettings(
        cluster_network=network,
        service_cidr=service,
        kubernetes_svc_ip=k8s_ip,
        dns_svc_ip=dns_ip,
        cluster_cidr=cluster,
        node_networks=tuple(nodes),
        node_port_range=_port_range(values["node_port_range"], where),
        flannel_backend=backend,
        flannel_subnet_len=subnet_len,
        private_registry=_registry(values["private_registry"], where),
        apiserver=_apiserver(values["apiserver"], where),
        source=where,
    )


def load_cluster(path: Path | str | None) -> ClusterSettings:
    """Read cluster.yml; a missing file means all defaults (an explicit but absent one is the
    caller's to reject)."""
    if path is None:
        return parse_cluster({}, "defaults")
    path = Path(path)
    if not path.exists():
        return parse_cluster({}, f"{path} (absent: defaults)")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{line} not valid YAML: {getattr(e, 'problem', e)}") from None
    return parse_cluster(raw, str(path))
