"""What flannel's ``mk-docker-opts.sh`` does, from flanneld's ``/run/flannel/subnet.env``.

``FLANNEL_SUBNET`` becomes ``--bip``, ``FLANNEL_MTU`` ``--mtu``, and ``FLANNEL_IPMASQ`` is
inverted into ``--ip-masq`` (flannel masquerades itself when true, so docker must not; and
the other way round). Output as ``DOCKER_OPTS``-style environment lines, or merged into a
``daemon.json`` mapping keeping the user's other keys.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

DEFAULT_SUBNET_ENV = Path("/run/flannel/subnet.env")
FORMATS = ("env", "daemon-json")


@dataclass(frozen=True)
class FlannelSubnet:
    subnet: ipaddress.IPv4Interface  # the bridge address with its prefix, e.g. 10.2.26.1/24
    mtu: int
    ipmasq: bool  # flannel's own setting (docker's is the inverse)

    @property
    def docker_ip_masq(self) -> bool:
        return not self.ipmasq


_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*?)\s*$")


def parse_env_lines(text: str, where: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _LINE.match(line)
        if not m:
            raise ConfigError(f"{where}: line {n}: expected KEY=VALUE, got {line.strip()!r}")
        value = m.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[m.group(1)] = value
    return values


def parse_subnet_env(text: str, where: str = str(DEFAULT_SUBNET_ENV)) -> FlannelSubnet:
    values = parse_env_lines(text, where)
    for key in ("FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ"):
        if key not in values:
            raise ConfigError(f"{where}: {key} is missing")
    try:
        subnet = ipaddress.IPv4Interface(values["FLANNEL_SUBNET"])
        if "/" not in values["FLANNEL_SUBNET"]:
            raise ValueError("no /PREFIX")
    except ValueError as e:
        raise ConfigError(f"{where}: FLANNEL_SUBNET: {values['FLANNEL_SUBNET']!r} is not ADDRESS/PREFIX: {e}") from None
    if subnet.ip == subnet.network.network_address:
        raise ConfigError(f"{where}: FLANNEL_SUBNET: {subnet} is a network address, not the bridge's")
    mtu_text = values["FLANNEL_MTU"]
    if not mtu_text.isdigit() or not 68 <= int(mtu_text) <= 65535:
        raise ConfigError(f"{where}: FLANNEL_MTU: {mtu_text!r} is not an MTU (68-65535)")
    masq = values["FLANNEL_IPMASQ"]
    if masq not in ("true", "false"):
        raise ConfigError(f"{where}: FLANNEL_IPMASQ: {masq!r} is neither true nor false")
    return FlannelSubnet(subnet, int(mtu_text), masq == "true")


def load_subnet_env(path: Path | str) -> FlannelSubnet:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read flannel's subnet file: {e.strerror or e} (is flanneld running?)") from None
    return parse_subnet_env(text, str(path))


def docker_options(s: FlannelSubnet) -> list[str]:
    """``--bip``, ``--ip-masq``, ``--mtu`` in mk-docker-opts.sh's order."""
    return [f"--bip={s.subnet}", f"--ip-masq={'true' if s.docker_ip_masq else 'false'}", f"--mtu={s.mtu}"]


def env_lines(s: FlannelSubnet, key: str = "DOCKER_OPTS") -> list[str]:
    """mk-docker-opts.sh's output: one variable per option, then all of them under ``key``."""
    bip, masq, mtu = docker_options(s)
    return [
        f'DOCKER_OPT_BIP="{bip}"',
        f'DOCKER_OPT_IPMASQ="{masq}"',
        f'DOCKER_OPT_MTU="{mtu}"',
        f'{key}="{bip} {masq} {mtu}"',
    ]


def daemon_json(s: FlannelSubnet, existing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``existing`` daemon.json with bip, ip-masq and mtu set; every other key kept."""
    return {**(existing or {}), "bip": str(s.subnet), "ip-masq": s.docker_ip_masq, "mtu": s.mtu}


def load_daemon_json(path: Path | str | None) -> dict[str, Any]:
    """The user's daemon.json, or {} when it does not exist."""
    if path is None:
        return {}
    path = Path(path)
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text() or "{}")
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return raw
