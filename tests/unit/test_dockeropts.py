"""docker-opts: mk-docker-opts.sh as data, from flannel's subnet.env."""

from __future__ import annotations

import json

import pytest

from netship.dockeropts import (
    daemon_json,
    docker_options,
    env_lines,
    load_daemon_json,
    load_subnet_env,
    parse_subnet_env,
)
from netship.errors import ConfigError

SEED = "FLANNEL_NETWORK=10.2.0.0/16\nFLANNEL_SUBNET=10.2.26.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"


def test_seed_example():
    s = parse_subnet_env(SEED)
    assert " ".join(docker_options(s)) == "--bip=10.2.26.1/24 --ip-masq=true --mtu=1450"


def test_ipmasq_true_turns_docker_masquerading_off():
    s = parse_subnet_env(SEED.replace("FLANNEL_IPMASQ=false", "FLANNEL_IPMASQ=true"))
    assert docker_options(s) == ["--bip=10.2.26.1/24", "--ip-masq=false", "--mtu=1450"]


def test_env_lines_like_mk_docker_opts():
    assert env_lines(parse_subnet_env(SEED)) == [
        'DOCKER_OPT_BIP="--bip=10.2.26.1/24"',
        'DOCKER_OPT_IPMASQ="--ip-masq=true"',
        'DOCKER_OPT_MTU="--mtu=1450"',
        'DOCKER_OPTS="--bip=10.2.26.1/24 --ip-masq=true --mtu=1450"',
    ]
    assert env_lines(parse_subnet_env(SEED), key="DOCKER_NETWORK_OPTIONS")[-1].startswith("DOCKER_NETWORK_OPTIONS=")


def test_daemon_json_keeps_user_keys_and_overrides_ours():
    user = {"log-driver": "journald", "mtu": 9000, "registry-mirrors": ["https://m.example"]}
    out = daemon_json(parse_subnet_env(SEED), user)
    assert out == {"log-driver": "journald", "registry-mirrors": ["https://m.example"],
                   "bip": "10.2.26.1/24", "ip-masq": True, "mtu": 1450}
    assert user["mtu"] == 9000  # the input mapping is not changed


def test_quotes_comments_export_tolerated():
    text = '# written by flanneld\nexport FLANNEL_SUBNET="10.2.26.1/24"\nFLANNEL_MTU=\'1450\'\n\nFLANNEL_IPMASQ=false\n'
    assert docker_options(parse_subnet_env(text))[0] == "--bip=10.2.26.1/24"


@pytest.mark.parametrize(
    "text, pattern",
    [
        (SEED.replace("FLANNEL_IPMASQ=false", "FLANNEL_IPMASQ=yes"), r"FLANNEL_IPMASQ: 'yes' is neither true nor false"),
        (SEED.replace("FLANNEL_IPMASQ=false", "FLANNEL_IPMASQ="), r"FLANNEL_IPMASQ: '' is neither true nor false"),
        (SEED.replace("FLANNEL_IPMASQ=false\n", ""), r"FLANNEL_IPMASQ is missing"),
        (SEED.replace("FLANNEL_SUBNET=10.2.26.1/24\n", ""), r"FLANNEL_SUBNET is missing"),
        (SEED.replace("10.2.26.1/24", "10.2.26.1"), r"FLANNEL_SUBNET: '10.2.26.1' is not ADDRESS/PREFIX"),
        (SEED.replace("10.2.26.1/24", "10.2.26.0/24"), r"FLANNEL_SUBNET: 10.2.26.0/24 is a network address"),
        (SEED.replace("FLANNEL_MTU=1450", "FLANNEL_MTU=big"), r"FLANNEL_MTU: 'big' is not an MTU"),
        (SEED.replace("FLANNEL_MTU=1450", "FLANNEL_MTU=20"), r"FLANNEL_MTU: '20' is not an MTU"),
        (SEED + "garbage line\n", r"line 5: expected KEY=VALUE"),
    ],
)
def test_bad_subnet_env(text, pattern):
    with pytest.raises(ConfigError, match=rf"^subnet.env: .*{pattern}"):
        parse_subnet_env(text, "subnet.env")


def test_files(tmp_path):
    with pytest.raises(ConfigError, match=r"cannot read flannel's subnet file.*is flanneld running"):
        load_subnet_env(tmp_path / "missing.env")
    assert load_daemon_json(tmp_path / "absent.json") == {}
    (tmp_path / "d.json").write_text('{"debug": true}')
    assert load_daemon_json(tmp_path / "d.json") == {"debug": True}
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON \(line 1"):
        load_daemon_json(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text(json.dumps([1]))
    with pytest.raises(ConfigError, match=r"expected a JSON object, got list"):
        load_daemon_json(tmp_path / "list.json")
