"""Cluster network settings: defaults, the shipped file, and each bad input named by its key."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from netship.cluster import ClusterSettings, load_cluster, parse_cluster
from netship.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_defaults_match_the_issue_and_the_shipped_file():
    c = parse_cluster({})
    assert c == ClusterSettings()
    assert c.cluster_network == "flannel"
    assert c.service_cidr == (ipaddress.ip_network("10.68.0.0/16"),)
    assert str(c.kubernetes_svc_ip) == "10.68.0.1" and str(c.dns_svc_ip) == "10.68.0.2"
    assert c.cluster_cidr_text == "172.20.0.0/16"
    assert c.node_port_range == (20000, 40000)
    assert (c.flannel_backend, c.flannel_subnet_len) == ("vxlan", 24)
    assert c.private_registry == "127.0.0.1:5000" and c.apiserver is None
    assert load_cluster(REPO / "release" / "cluster.yml") == c


def test_missing_file_means_defaults(tmp_path):
    assert load_cluster(tmp_path / "nope.yml") == ClusterSettings()


def test_round_trip_through_as_dict():
    c = parse_cluster({"service_cidr": "10.96.0.0/12,fd00:96::/108", "cluster_cidr": "10.244.0.0/16,fd00:244::/56",
                       "apiserver": "[fd00::1]:6443", "node_networks": ["192.168.1.0/24"]})
    assert parse_cluster(c.as_dict()) == c


def test_service_ips_follow_service_cidr_unless_set():
    c = parse_cluster({"service_cidr": "10.96.0.0/12"})
    assert (str(c.kubernetes_svc_ip), str(c.dns_svc_ip)) == ("10.96.0.1", "10.96.0.2")
    c = parse_cluster({"service_cidr": "10.96.0.0/12", "dns_svc_ip": "10.96.0.10"})
    assert str(c.dns_svc_ip) == "10.96.0.10"


def test_dual_stack_pairs():
    c = parse_cluster({"service_cidr": "10.68.0.0/16,fd00:68::/108", "cluster_cidr": ["172.20.0.0/16", "fd00:20::/56"]})
    assert [n.version for n in c.service_cidr] == [4, 6]
    assert str(c.cluster_cidr_v6) == "fd00:20::/56"
    assert c.flannel_net_conf() == {
        "Network": "172.20.0.0/16", "SubnetLen": 24, "EnableIPv6": True,
        "IPv6Network": "fd00:20::/56", "IPv6SubnetLen": 64, "Backend": {"Type": "vxlan"},
    }


def test_ipv6_only():
    c = parse_cluster({"service_cidr": "fd00:68::/108", "cluster_cidr": "fd00:20::/56"})
    assert str(c.kubernetes_svc_ip) == "fd00:68::1"
    assert c.flannel_net_conf()["EnableIPv4"] is False


def test_apiserver_forms():
    assert parse_cluster({"apiserver": "10.0.0.1:6443"}).apiserver_url == "https://10.0.0.1:6443"
    assert parse_cluster({"apiserver": "api.example.com:443"}).apiserver == ("api.example.com", 443)
    assert parse_cluster({"apiserver": "[fd00::1]:6443"}).apiserver_url == "https://[fd00::1]:6443"


@pytest.mark.parametrize(
    "raw, pattern",
    [
        # unknown keys, with a suggestion
        ({"servce_cidr": "10.0.0.0/16"}, r"unknown key 'servce_cidr' \(did you mean 'service_cidr'\?\)"),
        ({"flannel_subnetlen": 24}, r"did you mean 'flannel_subnet_len'"),
        ({"cluster_network": "calicoo"}, r"cluster_network 'calicoo' \(did you mean 'calico'\?\)"),
        ({"flannel_backend": "udp"}, r"unknown flannel_backend 'udp'.*valid: host-gw, vxlan, wireguard"),
        # CIDRs
        ({"service_cidr": "10.68.0.0"}, r"service_cidr: '10.68.0.0' is not a CIDR"),
        ({"service_cidr": "10.68.0.1/16"}, r"service_cidr: '10.68.0.1/16' is not a valid CIDR: .*host bits"),
        ({"cluster_cidr": "300.0.0.0/8"}, r"cluster_cidr: '300.0.0.0/8' is not a valid CIDR"),
        ({"cluster_cidr": "10.1.0.0/16,10.2.0.0/16"}, r"cluster_cidr: a dual-stack pair needs one IPv4 and one IPv6"),
        ({"cluster_cidr": "10.1.0.0/16,fd00::/56,fd01::/56"}, r"cluster_cidr: at most two CIDRs"),
        ({"cluster_cidr": 42}, r"cluster_cidr: expected a CIDR"),
        ({"service_cidr": "fd00::/108"}, r"cluster_cidr: primary family IPv4 differs from service_cidr's IPv6"),
        # service IPs
        ({"kubernetes_svc_ip": "10.69.0.1"}, r"kubernetes_svc_ip: 10.69.0.1 is not inside service_cidr 10.68.0.0/16"),
        ({"dns_svc_ip": "10.68.0.0"}, r"dns_svc_ip: 10.68.0.0 is the network address of service_cidr"),
        ({"dns_svc_ip": "10.68.255.255"}, r"dns_svc_ip: 10.68.255.255 is the broadcast address of service_cidr"),
        ({"kubernetes_svc_ip": "10.68.0.0"}, r"kubernetes_svc_ip: 10.68.0.0 is the network address"),
        ({"dns_svc_ip": "fd00::10"}, r"dns_svc_ip: fd00::10 is not inside service_cidr"),
        ({"dns_svc_ip": "not-an-ip"}, r"dns_svc_ip: 'not-an-ip' is not an IP address"),
        ({"dns_svc_ip": "10.68.0.1"}, r"dns_svc_ip: 10.68.0.1 is the same address as kubernetes_svc_ip"),
        ({"service_cidr": "10.68.0.0/31"}, r"service_cidr: 10.68.0.0/31 is too small"),
        # overlaps
        ({"cluster_cidr": "10.68.128.0/17"}, r"cluster_cidr: 10.68.128.0/17 overlaps service_cidr 10.68.0.0/16"),
        ({"cluster_cidr": "10.0.0.0/8"}, r"cluster_cidr: 10.0.0.0/8 overlaps service_cidr 10.68.0.0/16"),
        ({"node_networks": ["192.168.0.0/24", "172.20.5.0/24"]},
         r"node_networks\[1\]: 172.20.5.0/24 overlaps cluster_cidr 172.20.0.0/16"),
        ({"node_networks": ["10.68.1.0/24"]}, r"node_networks\[0\]: 10.68.1.0/24 overlaps service_cidr"),
        ({"service_cidr": "10.68.0.0/16,fd00::/64", "cluster_cidr": "172.20.0.0/16,fd00::/56"},
         r"cluster_cidr: fd00::/56 overlaps service_cidr fd00::/64"),
        ({"node_networks": "nope"}, r"node_networks\[0\]: 'nope' is not a CIDR"),
        # flannel subnet length
        ({"flannel_subnet_len": 16}, r"flannel_subnet_len: /16 leaves room for fewer than 2 node subnets in cluster_cidr 172.20.0.0/16"),
        ({"flannel_subnet_len": 12}, r"flannel_subnet_len: /12 leaves room for fewer than 2"),
        ({"flannel_subnet_len": 31}, r"flannel_subnet_len: /31 leaves no room for pods"),
        ({"flannel_subnet_len": "x"}, r"flannel_subnet_len: expected an integer"),
        ({"flannel_subnet_len": True}, r"flannel_subnet_len: expected an integer"),
        ({"cluster_cidr": "172.20.0.0/16,fd00:20::/64"}, r"cluster_cidr: IPv6 fd00:20::/64 leaves room for fewer than 2"),
        # NodePort range
        ({"node_port_range": "30000"}, r"node_port_range: expected START-END"),
        ({"node_port_range": "0-100"}, r"node_port_range: port 0 is outside 1-65535"),
        ({"node_port_range": "30000-70000"}, r"node_port_range: port 70000 is outside 1-65535"),
        ({"node_port_range": "40000-20000"}, r"node_port_range: start 40000 must be below end 20000"),
        ({"node_port_range": "30000-30000"}, r"node_port_range: start 30000 must be below end 30000"),
        # registry and apiserver
        ({"private_registry": "https://reg:5000"}, r"private_registry: expected HOST\[:PORT\]\[/PREFIX\] without a scheme"),
        ({"private_registry": "myreg"}, r"private_registry: 'myreg': the host needs a '.' or ':PORT'"),
        ({"private_registry": "reg:5000/UPPER"}, r"private_registry: 'reg:5000/UPPER' is not a registry"),
        ({"apiserver": "10.0.0.1"}, r"apiserver: expected HOST:PORT"),
        ({"apiserver": "10.0.0.1:99999"}, r"apiserver: port 99999 is outside 1-65535"),
        ({"apiserver": "[zz::1]:6443"}, r"apiserver: expected HOST:PORT"),
    ],
)
def test_bad_input_names_the_key(raw, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        parse_cluster(raw, "cluster.yml")
    message = str(err.value)
    assert message.startswith("cluster.yml: ") and "\n" not in message


def test_not_a_mapping(tmp_path):
    p = tmp_path / "cluster.yml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=rf"^{p}: expected a mapping of settings, got list$"):
        load_cluster(p)


def test_bad_yaml_names_the_line(tmp_path):
    p = tmp_path / "cluster.yml"
    p.write_text("service_cidr: 10.0.0.0/16\ncluster_cidr: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"^{p}: line \d+ not valid YAML"):
        load_cluster(p)


def test_two_node_networks_may_overlap_each_other():
    c = parse_cluster({"node_networks": ["192.168.0.0/16", "192.168.1.0/24"]})
    assert len(c.node_networks) == 2
