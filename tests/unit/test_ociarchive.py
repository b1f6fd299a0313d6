"""The daemon-less image archive: content, dedup, determinism, streaming failures, push."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from netship.errors import BundleError, RegistryError
from netship.ociarchive import (
    ANN_CONTAINERD_NAME,
    ANN_REF_NAME,
    SourceImage,
    plan_archive,
    push_layout,
    write_archive,
)
from netship.registry import Registry
from tests.support.miniregistry import MiniRegistry

SHARED = b"\x1f\x8b" + b"shared base layer " * 4000  # stands for a compressed base layer


@pytest.fixture
def seeded():
    with MiniRegistry() as mini:
        a, a_size = mini.add_image("t/flannel", "v1-amd64", {"flanneld": b"A" * 3000}, shared=SHARED)
        b, b_size = mini.add_image("t/cni", "v2-amd64", {"bridge": b"B" * 3000}, shared=SHARED)
        a_arm, a_arm_size = mini.add_image("t/flannel", "v1-arm64", {"flanneld": b"a" * 3000},
                                           arch="arm64", shared=SHARED)
        mini.add_list("t/flannel", "v1", [(a, a_size, "amd64"), (a_arm, a_arm_size, "arm64")])
        yield mini, {"a": a, "b": b, "a_arm": a_arm}


def sources(mini, d):
    h = mini.host
    return [
        SourceImage(f"{h}/t/flannel", d["a"], (f"{h}/t/flannel:v1", f"{h}/t/flannel:v1-amd64")),
        SourceImage(f"{h}/t/cni", d["b"], (f"{h}/t/cni:v2",)),
    ]


def write(mini, plan, mtime=1234) -> bytes:
    out = io.BytesIO()
    write_archive({mini.host: Registry(mini.host)}, plan, out, mtime=mtime)
    return out.getvalue()


def test_archive_is_docker_and_oci_with_each_blob_once(seeded):
    mini, d = seeded
    regs = {mini.host: Registry(mini.host)}
    plan = plan_archive(regs, sources(mini, d))
    data = write(mini, plan)
    assert len(data) == plan.archive_size()
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        members = t.getmembers()
        names = [m.name for m in members]
        files = {m.name: t.extractfile(m).read() for m in members if m.isfile()}
    assert names == sorted(names) and len(names) == len(set(names))
    assert all(m.uid == 0 and m.gid == 0 and m.mtime == 1234 and m.uname == "" for m in members)
    assert {m.mode for m in members if m.isfile()} == {0o644}
    # the shared layer is stored once although two images use it
    shared = [n for n, v in files.items() if v == SHARED]
    assert len(shared) == 1
    # (the two amd64 configs are identical too: both deduplicated)
    assert plan.stored_bytes == sum(len(v) for n, v in files.items() if n.startswith("blobs/"))
    assert plan.deduplicated_bytes >= len(SHARED)
    # blobs are byte-identical to the registry's and named by their digest
    for name, blob in files.items():
        if name.startswith("blobs/sha256/"):
            assert mini.blobs.get("sha256:" + name.rsplit("/", 1)[1], None) in (blob, None)
    index = json.loads(files["index.json"])
    entries = {e["annotations"][ANN_CONTAINERD_NAME]: e for e in index["manifests"]}
    h = mini.host
    assert set(entries) == {f"{h}/t/flannel:v1", f"{h}/t/flannel:v1-amd64", f"{h}/t/cni:v2"}
    assert entries[f"{h}/t/flannel:v1"]["annotations"][ANN_REF_NAME] == "v1"
    assert entries[f"{h}/t/flannel:v1"]["digest"] == d["a"]
    docker = json.loads(files["manifest.json"])
    by_tags = {tuple(e["RepoTags"]): e for e in docker}
    flannel = by_tags[(f"{h}/t/flannel:v1", f"{h}/t/flannel:v1-amd64")]
    manifest = json.loads(files[f"blobs/sha256/{d['a'].split(':')[1]}"])
    assert flannel["Config"] == "blobs/sha256/" + manifest["config"]["digest"].split(":")[1]
    assert flannel["Layers"] == ["blobs/sha256/" + layer["digest"].split(":")[1] for layer in manifest["layers"]]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}


def test_same_inputs_same_bytes_other_mtime_other_bytes(seeded):
    mini, d = seeded
    regs = {mini.host: Registry(mini.host)}
    one = write(mini, plan_archive(regs, sources(mini, d)))
    two = write(mini, plan_archive(regs, list(reversed(sources(mini, d)))))
    assert one == two
    assert write(mini, plan_archive(regs, sources(mini, d)), mtime=99) != one


def test_corrupt_or_short_blob_stops_the_archive(seeded):
    mini, d = seeded
    regs = {mini.host: Registry(mini.host)}
    plan = plan_archive(regs, sources(mini, d))
    layer = next(dg for dg, data in mini.blobs.items() if data == SHARED)
    mini.corrupt.add(layer)
    with pytest.raises(RegistryError, match="digest mismatch"):
        write(mini, plan)
    mini.corrupt.clear()
    mini.truncate.add(layer)
    with pytest.raises((BundleError, RegistryError)):
        write(mini, plan)


def test_per_arch_archive_refuses_a_manifest_list(seeded):
    mini, _d = seeded
    with pytest.raises(BundleError, match="is a manifest list"):
        plan_archive({mini.host: Registry(mini.host)}, [SourceImage(f"{mini.host}/t/flannel", "v1", ("x/y:z",))])


def test_multiarch_archive_keeps_the_list_and_pushes_it_unchanged(seeded, tmp_path):
    mini, d = seeded
    h = mini.host
    regs = {h: Registry(h)}
    list_digest = mini.tags[("t/flannel", "v1")]
    plan = plan_archive(regs, [SourceImage(f"{h}/t/flannel", list_digest, (f"{h}/t/flannel:v1",)),
                               SourceImage(f"{h}/t/cni", d["b"], (f"{h}/t/cni:v2",))], platform_only=False)
    archive = tmp_path / "images.tar"
    archive.write_bytes(write(mini, plan))
    with MiniRegistry() as target:
        stats = push_layout(archive, Registry(target.host),
                            lambda name: (name.split("/", 1)[1].rsplit(":", 1)[0], name.rsplit(":", 1)[1]))
        assert target.tags[("t/flannel", "v1")] == list_digest
        assert target.tags[("t/cni", "v2")] == d["b"]
        for child in (d["a"], d["a_arm"]):
            assert ("t/flannel", child) in target.manifests
        # every distinct blob went up once; the shared base (and the identical amd64 config)
        # were mounted into the second repository, not uploaded again
        assert stats.uploaded == len(plan.blobs)
        assert stats.mounted >= 1
        assert sum(1 for v in target.blobs.values() if v == SHARED) == 1
        again = push_layout(archive, Registry(target.host),
                            lambda name: (name.split("/", 1)[1].rsplit(":", 1)[0], name.rsplit(":", 1)[1]))
        assert again.uploaded == 0 and again.mounted == 0
        assert again.existing == stats.uploaded + stats.mounted + stats.existing
