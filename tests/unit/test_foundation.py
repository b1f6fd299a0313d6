import json

import pytest

from netship.arch import ALL_ARCHES, Arch, parse_arches
from netship.catalog import load_catalog
from netship.digest import Digest
from netship.errors import ConfigError, UsageError
from netship.settings import load_settings
from tests.support.upstream import make_elf, make_upstream


@pytest.mark.parametrize("spelling,arch", [
    ("amd64", Arch.AMD64), ("x86_64", Arch.AMD64), ("aarch64", Arch.ARM64), ("linux/arm/v7", Arch.ARM),
    ("armhf", Arch.ARM), ("ppc64el", Arch.PPC64LE), ("linux/s390x", Arch.S390X),
])
def test_arch_spellings(spelling, arch):
    assert Arch.parse(spelling) is arch


def test_arch_unknown_suggests():
    with pytest.raises(ConfigError, match=r"unknown architecture 'arm46'.*did you mean 'arm64'"):
        Arch.parse("arm46")


def test_parse_arches_all_and_list_order():
    assert parse_arches("all") == ALL_ARCHES
    assert parse_arches("s390x,amd64,s390x") == (Arch.AMD64, Arch.S390X)


def test_digest_rejects_short_hex():
    with pytest.raises(ConfigError, match="not a valid digest"):
        Digest.parse("sha256:abc")


def test_real_catalog_pins_known_and_unknown():
    cat = load_catalog("release")
    assert cat.pin("cni-plugins", "v1.9.1", Arch.AMD64).sha256.hex.startswith("b98f74a0")
    assert not cat.pin("cni-plugins", "v1.9.1", Arch.S390X).known
    assert not cat.pin("flannel", "v0.28.9", Arch.AMD64).known
    kr = cat.component("kube-router")
    assert kr.asset_name(Arch.ARM) == "kube-router_2.11.1_linux_armv7.tar.gz"
    assert kr.checksum_url(Arch.ARM).endswith("/v2.11.1/checksums.txt")
    assert kr.checksum_url(Arch.ARM, "v2.10.0").endswith("/v2.10.0/kube-router_2.10.0_checksums.txt")
    assert cat.component("flannel-cni-plugin").asset_name(Arch.ARM64) == "cni-plugin-flannel-linux-arm64-v1.9.1.tgz"


def test_select_explicit_unpublished_arch_is_usage_error():
    cat = load_catalog("release")
    with pytest.raises(UsageError, match="calicoctl v3.31.7 does not publish arm"):
        cat.select(["calicoctl"], [Arch.ARM], explicit_arches=True)
    skipped: list[str] = []
    assets = cat.select(None, [Arch.ARM], skipped=skipped)
    assert {a.component.name for a in assets} == {"cni-plugins", "flannel", "flannel-cni-plugin", "kube-router"}
    assert any("cilium-cli" in s for s in skipped)


def test_catalog_malformed_yaml_names_file(tmp_path):
    (tmp_path / "catalog.yml").write_text("components: [\n")
    with pytest.raises(ConfigError, match=r"catalog.yml:.*malformed YAML"):
        load_catalog(tmp_path)


def test_catalog_unknown_key_suggests(tmp_path):
    (tmp_path / "catalog.yml").write_text(
        "components:\n  x:\n    version: v1\n    url: u/{asset}\n    asset: a-{arch}\n    format: binary\n"
        "    binary: x\n    arches: [amd64]\n    arhces: []\n")
    with pytest.raises(ConfigError, match="unknown key 'arhces'.*did you mean 'arches'"):
        load_catalog(tmp_path)


def test_settings_cascade_and_typos():
    s = load_settings({"jobs": 2}, {"NETSHIP_JOBS": "3"}, {"jobs": None})
    assert s.jobs == 3
    assert load_settings({"jobs": 2}, {"NETSHIP_JOBS": "3"}, {"jobs": 5}).jobs == 5
    with pytest.raises(ConfigError, match="NETSHIP_JOSB.*did you mean 'NETSHIP_JOBS'"):
        load_settings({}, {"NETSHIP_JOSB": "1"})
    with pytest.raises(ConfigError, match=r"--jobs: invalid value 0"):
        load_settings({}, {}, {"jobs": 0})


def test_fixture_elf_headers():
    for arch in ALL_ARCHES:
        data = make_elf(arch)
        assert data[:4] == b"\x7fELF" and data[4] == arch.elf_class
        off = 18
        order = "big" if arch.elf_big_endian else "little"
        assert int.from_bytes(data[off:off + 2], order) == arch.elf_machine


def test_fixture_upstream_pins_match(tmp_path):
    up = make_upstream(tmp_path / "mirror", tmp_path / "cat")
    cat = load_catalog(tmp_path / "cat")
    for asset in cat.select():
        import hashlib
        assert hashlib.sha256(up.path_for(asset.url).read_bytes()).hexdigest() == asset.pin.sha256.hex
    lock = json.loads((tmp_path / "cat" / "pins.lock").read_text())
    assert "calicoctl" in lock["components"]


def test_bare_netship_lists_tasks_and_groups_read_as_subcommands(capsys):
    from netship.cli import join_subcommands, program
    from netship.tasks import ns

    assert program.run(["netship"], exit=False) == 0
    out = capsys.readouterr().out
    for task in ("fetch", "build", "bundle-offline", "manifests", "release", "pins.update", "verify-bundle"):
        assert task in out
    assert join_subcommands(["pins", "update", "--component", "pins"], ns) == ["pins.update", "--component", "pins"]
    assert join_subcommands(["manifests", "--network", "flannel"], ns) == ["manifests", "--network", "flannel"]
