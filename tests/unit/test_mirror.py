"""mirror: the data file, the plan and manifest-list filtering, without any registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from netship import mirror as mm
from netship import registry as reg
from netship.arch import ALL_ARCHES, Arch
from netship.catalog import load_catalog
from netship.digest import sha256_bytes
from netship.errors import ConfigError, RegistryError, UsageError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(ROOT / "release")


@pytest.fixture(scope="module")
def images(catalog):
    return mm.load_mirror_images(ROOT / "release" / "mirror-images.yml", catalog)


def test_shipped_list_follows_the_catalog(images, catalog):
    by = {i.name: i for i in images}
    assert set(by) == {"calico-node", "calico-cni", "calico-kube-controllers", "cilium", "cilium-operator-generic"}
    calicoctl = catalog.component("calicoctl")
    for n in ("calico-node", "calico-cni", "calico-kube-controllers"):
        assert by[n].version == calicoctl.version  # calico images in step with calicoctl
        assert by[n].source.domain == "docker.io" and by[n].source.tag == calicoctl.version
        assert Arch.ARM not in by[n].arches  # calico publishes no 32-bit arm, like calicoctl
        assert by[n].arches == calicoctl.arches
    assert by["calico-node"].path == "calico/node"
    assert by["cilium"].source.repository == "quay.io/cilium/cilium"
    assert by["cilium"].arches == (Arch.AMD64, Arch.ARM64)


@pytest.mark.parametrize("entry, message", [
    ({"source": "x/y", "arches": ["amd64"]}, "exactly one of 'version_of'"),
    ({"source": "x/y", "tag": "v1", "version_of": "calicoctl", "arches": ["amd64"]}, "exactly one of"),
    ({"source": "x/y", "version_of": "calicoctll", "arches": ["amd64"]}, "did you mean 'calicoctl'"),
    ({"source": "x/y:v1", "tag": "v1", "arches": ["amd64"]}, "without tag or digest"),
    ({"source": "x/y", "tag": "v1", "arches": ["sparc"]}, "unknown architecture 'sparc'"),
    ({"source": "x/y", "tag": "v1", "arches": []}, "non-empty list"),
    ({"source": "x/y", "tag": "v1", "arches": ["amd64"], "platforms": 1}, "unknown key 'platforms'"),
    ({"tag": "v1", "arches": ["amd64"]}, "missing key 'source'"),
])
def test_bad_entries_are_config_errors_naming_the_key(tmp_path, catalog, entry, message):
    f = tmp_path / "m.yml"
    f.write_text(json.dumps({"images": {"bad": entry}}))
    with pytest.raises(ConfigError, match=message) as e:
        mm.load_mirror_images(f, catalog)
    assert str(f) in str(e.value) and "images.bad" in str(e.value)


def test_plan_skips_arches_an_image_does_not_publish(images):
    skipped: list[str] = []
    steps = mm.plan_mirror(images, (Arch.ARM, Arch.S390X), "reg.example:5000/mirror", skipped=skipped)
    assert [s.image.name for s in steps] == ["calico-node", "calico-cni", "calico-kube-controllers"]
    assert all(s.arches == (Arch.S390X,) for s in steps)
    assert str(steps[0].target) == "reg.example:5000/mirror/calico/node:v3.31.7"
    assert len(skipped) == 5 + 2  # arm for all five, s390x for the two cilium images
    assert "cilium v1.18.6 does not publish arm (it publishes amd64, arm64)" in skipped


def test_plan_explicit_image_and_arch_is_an_error(images):
    with pytest.raises(UsageError, match="--arch arm: calico-node v3.31.7 does not publish arm"):
        mm.plan_mirror(images, (Arch.ARM,), "r:5000", names=["calico-node"], explicit_arches=True)
    with pytest.raises(ConfigError, match="unknown mirror image 'calico'"):
        mm.plan_mirror(images, ALL_ARCHES, "r:5000", names=["calico"])


@pytest.mark.parametrize("platform, arch", [
    ({"os": "linux", "architecture": "amd64"}, Arch.AMD64),
    ({"os": "linux", "architecture": "arm", "variant": "v7"}, Arch.ARM),
    ({"os": "linux", "architecture": "arm"}, Arch.ARM),
    ({"os": "linux", "architecture": "arm", "variant": "v6"}, None),
    ({"os": "linux", "architecture": "arm64", "variant": "v8"}, Arch.ARM64),
    ({"os": "unknown", "architecture": "unknown"}, None),
    ({"os": "windows", "architecture": "amd64"}, None),
    ({"os": "linux", "architecture": "riscv64"}, None),
    (None, None),
])
def test_arch_of_platform(platform, arch):
    assert mm.arch_of_platform(platform) is arch


def _index(platforms, media_type=reg.DOCKER_LIST):
    entries = [{"mediaType": reg.DOCKER_MANIFEST, "digest": str(sha256_bytes(json.dumps(p).encode())),
                "size": 100 + i, "platform": p} for i, p in enumerate(platforms)]
    data = json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}).encode()
    return reg.Manifest(media_type, sha256_bytes(data), data)


PLATS = [{"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm", "variant": "v6"},
         {"os": "linux", "architecture": "arm", "variant": "v7"}, {"os": "linux", "architecture": "s390x"},
         {"os": "unknown", "architecture": "unknown"}]


def test_filter_index_keeps_only_requested_entries_unchanged():
    idx = _index(PLATS)
    new, picked = mm.filter_index(idx, (Arch.S390X, Arch.ARM), False, "src")
    assert set(picked) == {Arch.S390X, Arch.ARM}
    entries = new.json["manifests"]
    assert entries == [idx.json["manifests"][2], idx.json["manifests"][3]]  # source order, bytes kept
    assert new.digest == sha256_bytes(new.data) and new.digest != idx.digest
    assert new.media_type == reg.DOCKER_LIST and new.json["schemaVersion"] == 2
    again, _ = mm.filter_index(idx, (Arch.ARM, Arch.S390X), False, "src")
    assert again.data == new.data  # deterministic: reruns compare digests


def test_filter_index_keep_all_and_exact_lists_keep_upstream_bytes():
    idx = _index(PLATS)
    kept, picked = mm.filter_index(idx, (Arch.AMD64,), True, "src")
    assert kept.data == idx.data and set(picked) == {Arch.AMD64}
    exact = _index(PLATS[:1] + PLATS[2:4], reg.OCI_INDEX)
    same, _ = mm.filter_index(exact, (Arch.AMD64, Arch.ARM, Arch.S390X), False, "src")
    assert same.digest == exact.digest


def test_filter_index_missing_arch_names_what_the_list_has():
    with pytest.raises(RegistryError, match=r"src: manifest list has no arm64, ppc64le \(it has linux/amd64"):
        mm.filter_index(_index(PLATS), (Arch.ARM64, Arch.PPC64LE), False, "src")


def test_docker_hub_api_host():
    assert mm.api_host("docker.io") == "registry-1.docker.io"
    assert mm.api_host("quay.io") == "quay.io"


def test_docker_hub_credentials_from_docker_login_key(tmp_path):
    import base64

    cfg = tmp_path / "config.json"
    auth = base64.b64encode(b"bob:hunter2").decode()
    cfg.write_text(json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": auth},
                                         "quay.io": {"auth": base64.b64encode(b"q:p").decode()}}}))
    hub = reg.Registry(mm.api_host("docker.io"), docker_config=cfg)
    assert hub._creds == ("bob", "hunter2")
    assert reg.Registry("quay.io", docker_config=cfg)._creds == ("q", "p")
    assert reg.Registry("ghcr.io", docker_config=cfg)._creds is None
    assert "hunter2" not in repr(hub)
