"""``mirror`` between two real loopback Distribution registries (no daemon involved)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netship import buildreport
from netship import mirror as mm
from netship import registry as reg
from netship.arch import ALL_ARCHES, Arch
from netship.catalog import load_catalog
from netship.errors import RegistryError
from netship.settings import Settings
from tests.support.loopback_registry import LoopbackRegistry, seed_multiarch

ROOT = Path(__file__).resolve().parents[2]
CALICO = (Arch.AMD64, Arch.ARM64, Arch.PPC64LE, Arch.S390X)
CILIUM = (Arch.AMD64, Arch.ARM64)


@pytest.fixture(scope="session")
def source(tmp_path_factory):
    """A registry playing docker.io/quay.io: calico and cilium images, multi-arch."""
    r = LoopbackRegistry(tmp_path_factory.mktemp("src-registry")).start()
    c = r.client()
    seeded = {
        "calico/node": seed_multiarch(c, "calico/node", "v3.31.7", CALICO),
        "calico/cni": seed_multiarch(c, "calico/cni", "v3.31.7", CALICO),
        "calico/kube-controllers": seed_multiarch(c, "calico/kube-controllers", "v3.31.7", CALICO, oci=True),
        "cilium/cilium": seed_multiarch(c, "cilium/cilium", "v1.18.6", CILIUM, shared=b"other base\n"),
        "cilium/operator-generic": seed_multiarch(c, "cilium/operator-generic", "v1.18.6", CILIUM,
                                                  shared=b"other base\n"),
    }
    yield r, seeded
    r.wipe()


@pytest.fixture
def target(tmp_path):
    r = LoopbackRegistry(tmp_path / "dst-registry").start()
    yield r
    r.wipe()


def _mirror_file(tmp_path: Path, src_host: str) -> Path:
    """The shipped mirror-images.yml with its sources moved to the loopback source registry."""
    import yaml

    raw = yaml.safe_load((ROOT / "release" / "mirror-images.yml").read_text())
    for entry in raw["images"].values():
        entry["source"] = entry["source"].replace("docker.io", src_host).replace("quay.io", src_host)
    path = tmp_path / "mirror-images.yml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _images(tmp_path, src_host):
    return mm.load_mirror_images(_mirror_file(tmp_path, src_host), load_catalog(ROOT / "release"))


def _settings(**kw) -> Settings:
    return Settings(catalog_dir=ROOT / "release", **kw)


def _run(images, arches, dst_host, names=None, keep_all=False, **kw):
    steps = mm.plan_mirror(images, arches, dst_host, names=names, keep_all_platforms=keep_all)
    return mm.mirror(steps, mm.default_clients(_settings(**kw)))


def test_mirror_filters_lists_to_the_requested_arches(source, target, tmp_path):
    src, seeded = source
    images = _images(tmp_path, src.host)
    results = _run(images, (Arch.AMD64, Arch.ARM64), target.host)
    assert [r.step.image.name for r in results] == [
        "calico-node", "calico-cni", "calico-kube-controllers", "cilium", "cilium-operator-generic"]
    dst = target.client()
    for r in results:
        s = seeded[r.step.target.path]
        index = dst.get_manifest(r.step.target.path, "v3.31.7" if "calico" in s.repo else "v1.18.6")
        assert index.digest == r.digest
        plats = [d.platform_string for d in index.children()]
        assert plats == ["linux/amd64", "linux/arm64"]  # attestation and other arches dropped
        assert index.digest != reg.Digest.parse(s.index_digest)  # a new, filtered list
        assert index.media_type == (reg.OCI_INDEX if "kube-controllers" in s.repo else reg.DOCKER_LIST)
        for child in index.children():
            arch = Arch.from_platform(child.platform_string)
            # per-arch manifests are upstream's bytes: same digest as in the source
            assert str(child.digest) == s.arch_digests[arch]
            tagged = dst.head_manifest(r.step.target.path, f"{r.step.target.tag}-{arch}")
            assert tagged is not None and tagged.digest == child.digest
            m = dst.get_manifest(r.step.target.path, child.digest)
            for blob in m.children():  # every blob is there and its digest checks out
                dst.read_blob(r.step.target.path, blob.digest, blob.size)
        assert {a.k8s for a in r.arches} == {"amd64", "arm64"}


def test_second_mirror_does_no_work_and_shared_blobs_are_mounted(source, target, tmp_path):
    src, _ = source
    images = _images(tmp_path, src.host)
    first = _run(images, ALL_ARCHES, target.host)
    # calico/cni's shared base layer was already in calico/node: mounted, not uploaded again
    cni = next(r for r in first if r.step.image.name == "calico-cni")
    assert cni.blobs.mounted >= 1
    assert not any(r.unchanged for r in first)
    second = _run(images, ALL_ARCHES, target.host)
    assert all(r.unchanged for r in second)
    assert sum(r.blobs.uploaded + r.blobs.mounted for r in second) == 0
    assert [r.digest for r in second] == [r.digest for r in first]


def test_keep_all_platforms_keeps_upstreams_list_and_digest(source, target, tmp_path):
    src, seeded = source
    images = _images(tmp_path, src.host)
    [r] = _run(images, (Arch.ARM64,), target.host, names=["calico-node"], keep_all=True)
    s = seeded["calico/node"]
    assert str(r.digest) == s.index_digest == str(r.source_digest)
    dst = target.client()
    index = dst.get_manifest("calico/node", "v3.31.7")
    assert str(index.digest) == s.index_digest
    # every entry is resolvable, the attestation manifest included
    for child in index.children():
        dst.get_manifest("calico/node", child.digest)
    assert dst.head_manifest("calico/node", s.attestation_digest) is not None
    assert set(r.arches) == {Arch.ARM64}


def test_report_has_the_build_report_shape(source, target, tmp_path):
    src, _ = source
    images = _images(tmp_path, src.host)
    results = _run(images, (Arch.AMD64,), target.host, names=["cilium"])
    path = tmp_path / "out" / mm.REPORT_FILE
    buildreport.save(path, mm.report_of(results, target.host))
    rep = buildreport.load(path)
    img = rep.image("cilium")
    assert img.tag == f"{target.host}/cilium/cilium:v1.18.6"
    assert img.arches[Arch.AMD64].tag == f"{target.host}/cilium/cilium:v1.18.6-amd64"
    assert img.digest == results[0].digest
    assert img.components == {"cilium": "v1.18.6"}


def test_missing_platform_in_source_is_a_clear_error(source, target, tmp_path):
    src, _ = source
    images = _images(tmp_path, src.host)
    # pretend upstream publishes s390x for cilium: the list does not have it
    bad = [i if i.name != "cilium" else mm.MirrorImage(i.name, i.source, ALL_ARCHES, i.path, i.version)
           for i in images]
    with pytest.raises(RegistryError, match=r"cilium/cilium:v1.18.6: manifest list has no s390x"):
        _run(bad, (Arch.S390X,), target.host, names=["cilium"])
    assert target.client().head_manifest("cilium/cilium", "v1.18.6") is None


def test_unreachable_source_names_the_registry(target, tmp_path):
    from tests.support.loopback_registry import free_port

    host = f"127.0.0.1:{free_port()}"
    images = _images(tmp_path, host)
    with pytest.raises(RegistryError, match=rf"http://{host}: registry unreachable"):
        _run(images, (Arch.AMD64,), target.host, names=["calico-node"])


def test_basic_auth_from_docker_config_and_credentials_never_printed(source, tmp_path, capfd, caplog):
    src, _ = source
    password = "pw-" + base64.b16encode(os.urandom(6)).decode()
    locked = LoopbackRegistry(tmp_path / "auth-registry", users={"alice": password}).start()
    try:
        images = _images(tmp_path, src.host)
        # no credentials: refused with a clear error
        with pytest.raises(RegistryError, match="HTTP 401"):
            _run(images, (Arch.AMD64,), locked.host, names=["calico-node"],
                 docker_config=tmp_path / "none.json")
        cfg = tmp_path / "docker-config.json"
        auth = base64.b64encode(f"alice:{password}".encode()).decode()
        cfg.write_text(json.dumps({"auths": {locked.host: {"auth": auth}}}))
        [r] = _run(images, (Arch.AMD64,), locked.host, names=["calico-node"], docker_config=cfg)
        assert not r.unchanged and r.blobs.uploaded >= 2
        assert locked.client(cfg).head_manifest("calico/node", "v3.31.7").digest == r.digest
        out, err = capfd.readouterr()
        assert password not in out + err + caplog.text
        assert auth not in out + err + caplog.text
    finally:
        locked.wipe()


def test_mirror_task_end_to_end(source, target, tmp_path):
    src, _ = source
    mfile = _mirror_file(tmp_path, src.host)
    env = {**os.environ, "NETSHIP_CATALOG_DIR": str(ROOT / "release"), "NETSHIP_OUT_DIR": str(tmp_path / "out")}
    argv = [sys.executable, "-m", "netship", "mirror", "--arch", "arm64,s390x", "--registry", target.host,
            "--mirror-file", str(mfile), "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    names = [i["name"] for i in summary["images"]]
    assert names == ["calico-node", "calico-cni", "calico-kube-controllers", "cilium", "cilium-operator-generic"]
    cil = next(i for i in summary["images"] if i["name"] == "cilium")
    assert cil["arches"] == ["arm64"]  # cilium publishes no s390x: skipped, with a note
    assert any("cilium v1.18.6 does not publish s390x" in s for s in summary["skipped"])
    rep = buildreport.load(tmp_path / "out" / mm.REPORT_FILE)
    assert set(rep.images["calico-node"].arches) == {Arch.ARM64, Arch.S390X}
    # dry run touches nothing
    dry_argv = [a if a != target.host else "127.0.0.1:1" for a in argv] + ["--dry-run"]
    dry = subprocess.run(dry_argv,
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["dry_run"] is True
