"""`pins update` on every upstream checksum layout, served by a real loopback mirror."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from netship.arch import Arch
from netship.catalog import load_catalog
from netship.errors import ChecksumMismatch, ConfigError, FetchError, UsageError
from netship.fetch import fetch
from netship.pins import SOURCE_COMPUTED, select_version, update_pins
from netship.settings import Settings
from tests.support.httpserver import LoopbackServer
from tests.support.upstream import make_upstream, mirror_path

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(tmp_path):
    mirror, catalog_dir = tmp_path / "mirror", tmp_path / "catalog"
    make_upstream(mirror, catalog_dir)
    with LoopbackServer(mirror) as srv:
        settings = Settings(catalog_dir=catalog_dir, cache_dir=tmp_path / "cache", mirrors=(srv.url,),
                            retries=1, backoff=0.01, timeout=5.0)
        yield SimpleNamespace(srv=srv, settings=settings, tmp=tmp_path, mirror=mirror)


def publish(env, component: str, version: str, catalog_edit=None):
    """Put upstream-shaped assets and checksum files of COMPONENT at VERSION on the mirror."""
    src = env.tmp / f"src-{component}-{version}"
    src.mkdir()
    text = (REPO / "release" / "catalog.yml").read_text()
    if catalog_edit:
        text = catalog_edit(text)
    (src / "catalog.yml").write_text(text)
    select_version(src / "catalog.yml", load_catalog(src).component(component), version)
    return make_upstream(env.mirror, env.tmp / f"cat-{component}-{version}", source_catalog=src,
                         components=[component])


def lock_json(settings):
    return json.loads((settings.catalog_dir / "pins.lock").read_text())


def without(lock, component, version):
    lock = json.loads(json.dumps(lock))
    lock["components"][component].pop(version, None)
    return lock


@pytest.mark.parametrize("component,version,checksum_file", [
    ("cni-plugins", "v1.10.0", "cni-plugins-linux-{arch}-v1.10.0.tgz.sha256"),  # per-asset .sha256
    ("cilium-cli", "v0.20.0", "cilium-linux-{arch}.tar.gz.sha256sum"),  # per-asset .sha256sum
    ("flannel-cni-plugin", "v1.9.1-flannel3", "cni-plugin-flannel-linux-{arch}-v1.9.1.tgz.sha256"),
    ("calicoctl", "v3.32.1", "SHA256SUMS"),  # combined
    ("kube-router", "v2.12.0", "checksums.txt"),  # goreleaser
    ("kube-router", "v2.10.0", "kube-router_2.10.0_checksums.txt"),  # older goreleaser naming
])
def test_pins_from_upstream_checksum_files(env, component, version, checksum_file):
    up = publish(env, component, version)
    before = lock_json(env.settings)
    catalog_before = (env.settings.catalog_dir / "catalog.yml").read_bytes()
    report = update_pins(env.settings, component, version)

    comp = load_catalog(env.settings.catalog_dir).component(component)
    after = lock_json(env.settings)
    assert without(after, component, version)["components"] == before["components"]  # nothing else touched
    entries = after["components"][component][version]
    assert sorted(entries) == sorted(a.k8s for a in comp.arches)
    for arch in comp.arches:
        url = comp.asset_url(arch, version)
        name = checksum_file.format(arch=comp.arch_name(arch))
        assert entries[arch.k8s] == {"sha256": up.digests[url], "source": f"upstream {name}"}
    assert {p.arch for p in report.pins} == set(comp.arches)
    # the pins came from the checksum files alone: no asset was downloaded
    asset_paths = {mirror_path(comp.asset_url(a, version)) for a in comp.arches}
    assert not [r for r in env.srv.requests if r[1] in asset_paths]
    if checksum_file.startswith(("SHA256SUMS", "checksums", "kube-router_")):
        assert len(env.srv.requests) == 1  # the combined file, read once for all arches
    assert (env.settings.catalog_dir / "catalog.yml").read_bytes() == catalog_before


def test_flannel_has_no_checksums_so_pins_are_computed_from_bytes(env):
    up = publish(env, "flannel", "v0.29.0")
    update_pins(env.settings, "flannel", "v0.29.0")
    entries = lock_json(env.settings)["components"]["flannel"]["v0.29.0"]
    for arch in ("amd64", "arm64", "arm", "ppc64le", "s390x"):
        url = load_catalog(env.settings.catalog_dir).component("flannel").asset_url(Arch.parse(arch), "v0.29.0")
        assert entries[arch] == {"sha256": up.digests[url], "source": SOURCE_COMPUTED}
        assert (env.settings.blob_dir / up.digests[url]).is_file()  # kept: fetch will not download again


def test_select_switches_version_and_fetch_then_needs_no_download(env):
    publish(env, "flannel", "v0.29.0")
    cat_file = env.settings.catalog_dir / "catalog.yml"
    before = cat_file.read_text().splitlines()
    update_pins(env.settings, "flannel", "v0.29.0", select=True)
    after = cat_file.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [("    version: v0.28.9", "    version: v0.29.0")]
    cat = load_catalog(env.settings.catalog_dir)
    assert cat.component("flannel").version == "v0.29.0"
    assert cat.component("cni-plugins").version == "v1.9.1"
    n = len(env.srv.requests)
    report = fetch(env.settings, cat.select(["flannel"]))
    assert len(env.srv.requests) == n  # blobs came with the pins; the tree is unpacked locally
    assert {a.version for a in report.assets} == {"v0.29.0"} and all(a.pinned for a in report.assets)


def _sha512(text: str) -> str:
    return text.replace('file: "{asset}.sha256", algorithm: sha256}\n\n  flannel:',
                        'file: "{asset}.sha512", algorithm: sha512}\n\n  flannel:')


def test_sha512_checksums_are_verified_and_sha256_computed(env):
    shutil.copy(env.settings.catalog_dir / "catalog.yml", env.tmp / "orig.yml")
    (env.settings.catalog_dir / "catalog.yml").write_text(_sha512((env.tmp / "orig.yml").read_text()))
    up = publish(env, "cni-plugins", "v1.10.0", _sha512)
    update_pins(env.settings, "cni-plugins", "v1.10.0")
    e = lock_json(env.settings)["components"]["cni-plugins"]["v1.10.0"]["arm64"]
    url = load_catalog(env.settings.catalog_dir).component("cni-plugins").asset_url(Arch.ARM64, "v1.10.0")
    assert e["sha256"] == up.digests[url]
    assert e["source"] == ("computed from downloaded bytes, verified against upstream "
                           "cni-plugins-linux-arm64-v1.10.0.tgz.sha512 (sha512)")


def test_sha512_mismatch_writes_nothing(env):
    (env.settings.catalog_dir / "catalog.yml").write_text(_sha512((env.settings.catalog_dir / "catalog.yml").read_text()))
    publish(env, "cni-plugins", "v1.10.0", _sha512)
    comp = load_catalog(env.settings.catalog_dir).component("cni-plugins")
    cs = env.mirror / mirror_path(comp.checksum_url(Arch.S390X, "v1.10.0"))
    cs.write_text("0" * 128 + "  " + comp.asset_name(Arch.S390X, "v1.10.0") + "\n")
    lock_before = (env.settings.catalog_dir / "pins.lock").read_bytes()
    with pytest.raises(ChecksumMismatch, match=r"cni-plugins/v1.10.0/s390x \(sha512 from .*expected sha256 0{128}"):
        update_pins(env.settings, "cni-plugins", "v1.10.0")
    assert (env.settings.catalog_dir / "pins.lock").read_bytes() == lock_before


def test_missing_checksum_file_is_an_error_and_lock_is_unchanged(env):
    lock_before = (env.settings.catalog_dir / "pins.lock").read_bytes()
    with pytest.raises(FetchError, match=r"checksum file https://github.com/projectcalico/calico/releases/"
                                         r"download/v9.9.9/SHA256SUMS: could not download from any mirror: .*HTTP 404"):
        update_pins(env.settings, "calicoctl", "v9.9.9")
    assert (env.settings.catalog_dir / "pins.lock").read_bytes() == lock_before


def test_combined_file_without_the_asset_is_an_error(env):
    publish(env, "calicoctl", "v3.32.1")
    comp = load_catalog(env.settings.catalog_dir).component("calicoctl")
    f = env.mirror / mirror_path(comp.checksum_url(Arch.AMD64, "v3.32.1"))
    f.write_text("\n".join(line for line in f.read_text().splitlines() if "arm64" not in line) + "\n")
    with pytest.raises(FetchError, match=r"SHA256SUMS: no checksum line for calicoctl-linux-arm64"):
        update_pins(env.settings, "calicoctl", "v3.32.1")


def test_malformed_checksum_line_is_an_error(env):
    publish(env, "cilium-cli", "v0.20.0")
    comp = load_catalog(env.settings.catalog_dir).component("cilium-cli")
    (env.mirror / mirror_path(comp.checksum_url(Arch.AMD64, "v0.20.0"))).write_text("deadbeef  cilium-linux-amd64.tar.gz\n")
    with pytest.raises(FetchError, match="sha256 must have 64 hex digits, got 8"):
        update_pins(env.settings, "cilium-cli", "v0.20.0")


def test_bsd_style_and_bare_checksum_lines_are_read(env):
    up = publish(env, "cilium-cli", "v0.20.0")
    comp = load_catalog(env.settings.catalog_dir).component("cilium-cli")
    amd, arm = (comp.asset_url(a, "v0.20.0") for a in (Arch.AMD64, Arch.ARM64))
    (env.mirror / mirror_path(comp.checksum_url(Arch.AMD64, "v0.20.0"))).write_text(
        f"SHA256 (cilium-linux-amd64.tar.gz) = {up.digests[amd]}\n")
    (env.mirror / mirror_path(comp.checksum_url(Arch.ARM64, "v0.20.0"))).write_text(up.digests[arm] + "\n")
    update_pins(env.settings, "cilium-cli", "v0.20.0")
    e = lock_json(env.settings)["components"]["cilium-cli"]["v0.20.0"]
    assert (e["amd64"]["sha256"], e["arm64"]["sha256"]) == (up.digests[amd], up.digests[arm])


def test_unknown_component_and_bad_version(env):
    with pytest.raises(ConfigError, match=r"unknown component 'flanel' \(did you mean 'flannel'\?\)"):
        update_pins(env.settings, "flanel", "v1.0.0")
    with pytest.raises(UsageError, match=r"--version: '../x' is not a release tag"):
        update_pins(env.settings, "flannel", "../x")
    assert env.srv.requests == []


def test_mirror_order_is_honoured(env, tmp_path):
    publish(env, "calicoctl", "v3.32.1")
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    with LoopbackServer(empty) as first:
        s = env.settings.replace(mirrors=(first.url, env.srv.url))
        report = update_pins(s, "calicoctl", "v3.32.1")
    assert len(first.requests) == 1 and report.pins[0].read_from.startswith(env.srv.url)


def test_select_version_keeps_every_other_byte(tmp_path):
    text = (REPO / "release" / "catalog.yml").read_text()
    f = tmp_path / "catalog.yml"
    f.write_text(text)
    comp = load_catalog(tmp_path).component("kube-router")
    select_version(f, comp, "v2.12.0")
    new = f.read_text()
    assert new == text.replace("version: v2.11.1", "version: v2.12.0")
    assert hashlib.sha256(new.encode()).hexdigest() != hashlib.sha256(text.encode()).hexdigest()


def test_real_lock_file_keeps_other_entries_byte_for_byte(env, tmp_path):
    """On the shipped pins.lock: remove the new version again and the text is what it was."""
    from netship.fsutil import dumps_json

    cat = tmp_path / "real"
    cat.mkdir()
    for name in ("catalog.yml", "pins.lock"):
        shutil.copy(REPO / "release" / name, cat / name)
    original = (cat / "pins.lock").read_text()
    publish(env, "calicoctl", "v3.32.1")
    update_pins(env.settings.replace(catalog_dir=cat), "calicoctl", "v3.32.1")
    new = json.loads((cat / "pins.lock").read_text())
    assert new["components"]["calicoctl"]["v3.31.7"]["s390x"] == {"sha256": None, "source": "unknown"}
    assert dumps_json(without(new, "calicoctl", "v3.32.1")) == original
