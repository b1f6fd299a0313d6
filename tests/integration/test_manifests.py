"""Manifests against the real stack: digests pinned from the session's real build (and from the
registry for images netship does not build) name manifests the registry really holds, for the
arch each DaemonSet selects."""

from __future__ import annotations

import json

import pytest
import yaml

from netship import registry as reg
from netship.arch import ALL_ARCHES, Arch
from netship.cluster import parse_cluster
from netship.imageref import ImageRef
from netship.manifests import write_manifests
from netship.manifests.workloads import containers
from tests.support.loopback_registry import seed_multiarch

DATA_CALICO = __import__("pathlib").Path(__file__).resolve().parents[1] / "unit" / "data" / "manifests" / "calico-mini.yaml"


def _image_arch(client: reg.Registry, ref: ImageRef) -> str:
    m = client.get_manifest(ref.path, ref.digest)
    assert not m.is_index, f"{ref} is a manifest list, expected one image"
    cfg = json.loads(client.read_blob(ref.path, reg.Descriptor.from_json(m.json["config"], str(ref)).digest))
    return cfg["architecture"] + (f"/{cfg['variant']}" if cfg.get("variant") else "")


@pytest.mark.parametrize("network", ["flannel", "kube-router"])
def test_pinned_per_arch_images_exist_for_their_arch(build_settings, built_images, tmp_path, network):
    cluster = parse_cluster({"private_registry": build_settings.registry})
    (path,) = write_manifests(build_settings, network=network, out_dir=tmp_path, pin_digests=True, cluster=cluster)
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    daemonsets = [d for d in docs if d["kind"] == "DaemonSet"]
    assert len(daemonsets) == len(ALL_ARCHES)
    client = reg.Registry(build_settings.registry.split("/")[0])
    for ds in daemonsets:
        arch = Arch.parse(ds["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/arch"])
        for _f, c in containers(ds):
            ref = ImageRef.parse(c["image"])
            assert ref.digest is not None and ref.tag and ref.tag.endswith(f"-{arch.k8s}")
            assert _image_arch(client, ref) == arch.platform.removeprefix("linux/"), c["image"]


def test_pinned_multi_arch_images_are_the_built_manifest_lists(build_settings, built_images, tmp_path):
    cluster = parse_cluster({"private_registry": build_settings.registry})
    (path,) = write_manifests(build_settings, network="flannel", layout="multi-arch", out_dir=tmp_path,
                              pin_digests=True, cluster=cluster)
    refs = {ImageRef.parse(c["image"]) for d in yaml.safe_load_all(path.read_text()) if d for _f, c in containers(d)}
    client = reg.Registry(build_settings.registry.split("/")[0])
    for ref in refs:
        name = ref.path.rsplit("/", 1)[-1]
        assert ref.digest == built_images.image(name).digest
        assert client.get_manifest(ref.path, ref.digest).is_index


def test_calico_digests_come_from_the_registry(registry_prefix, tmp_path, monkeypatch, capsys):
    from netship.cli import program

    client = reg.Registry("127.0.0.1:5000")
    prefix_path = registry_prefix.split("/", 1)[1]
    seeded = {name: seed_multiarch(client, f"{prefix_path}/calico/{name}", "v3.31.7", (Arch.AMD64, Arch.ARM64))
              for name in ("cni", "node", "kube-controllers")}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NETSHIP_OUT_DIR", str(tmp_path / "out"))
    assert program.run(["netship", "manifests", "--network", "calico", "--calico-manifest", str(DATA_CALICO),
                        "--registry", registry_prefix, "--pin-digests", "--json"], exit=False) == 0
    images = json.loads(capsys.readouterr().out)["files"][0]["images"]
    assert sorted(images) == sorted(f"{registry_prefix}/calico/{n}:v3.31.7@{s.index_digest}" for n, s in seeded.items())
