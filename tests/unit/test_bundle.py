"""Bundles and verify-bundle without docker: images from an in-memory registry on 127.0.0.1,
binaries from a temporary fetch tree."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from netship.arch import Arch
from netship.bundle import (
    GZIP_HEADER,
    bundle_offline,
    compression_of,
    open_bundle_stream,
    plan_bundles,
    push_bundle,
)
from netship.errors import BundleError, ConfigError, RegistryError
from netship.fsutil import TMP_PREFIX
from netship.settings import Settings
from netship.verify import verify_bundle
from tests.support.miniregistry import MiniRegistry

CATALOG = Path(__file__).resolve().parents[2] / "release"
ARCHES = ("amd64", "arm64")
BASE = b"\x1f\x8b" + os.urandom(2000) * 20


@pytest.fixture
def mini():
    with MiniRegistry() as reg:
        yield reg


def seed(mini: MiniRegistry, out_dir: Path) -> dict:
    """Two images x two arches sharing a base layer, and a build report naming them."""
    h = mini.host
    report = {"netship_version": "test", "registry": h, "images": {}}
    for name in ("flannel", "cni-plugins"):
        entries, arches = [], {}
        for arch in ARCHES:
            dg, size = mini.add_image(f"t/{name}", f"v1-{arch}", {name: f"{name} {arch}".encode() * 300},
                                      arch=arch, shared=BASE)
            entries.append((dg, size, arch))
            arches[arch] = {"platform": Arch.parse(arch).platform, "tag": f"{h}/t/{name}:v1-{arch}", "digest": dg}
        list_dg, _ = mini.add_list(f"t/{name}", "v1", entries)
        report["images"][name] = {"name": name, "version": "v1", "repository": f"{h}/t/{name}",
                                  "tag": f"{h}/t/{name}:v1", "digest": list_dg,
                                  "components": {name: "v1"}, "arches": arches}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "build-report.json").write_text(json.dumps(report))
    return report


@pytest.fixture
def env(mini, tmp_path):
    out = tmp_path / "out"
    report = seed(mini, out)
    tree = tmp_path / "tree"

    def tree_paths(asset):
        d = tree / asset.component.name / asset.version / asset.arch.k8s
        if not d.exists():
            d.mkdir(parents=True)
            exe = d / (asset.component.binary or asset.component.name.split("-")[0])
            exe.write_bytes(f"#!{asset.key}\n".encode() * 50)
            exe.chmod(0o755)
            (d / "README.md").write_text("not executable, not bundled\n")
        return d

    settings = Settings(catalog_dir=CATALOG, cache_dir=tmp_path / "cache", out_dir=out, source_date_epoch=1_700_000_000)
    return settings, report, tree_paths


def make(env, out=None, **kw):
    settings, _report, tree_paths = env
    kw.setdefault("manifest_writer", None)
    return bundle_offline(settings, kw.pop("arches", [Arch.AMD64]), out_dir=out, tree_paths=tree_paths, **kw)


def members(path: Path) -> dict[str, bytes]:
    with open_bundle_stream(path) as s, tarfile.open(fileobj=s, mode="r|") as t:
        return {m.name: (t.extractfile(m).read() if m.isfile() else None) for m in t}


def test_bundle_layout_inventory_and_sums(env):
    (r,) = make(env)
    assert r.path.name == "netship-offline-0.1.0-amd64.tar.gz"
    files = members(r.path)
    top = "netship-offline-0.1.0-amd64"
    names = list(files)
    assert names[0] == top and names[1:] == sorted(names[1:])  # sorted entries
    rel = {n[len(top) + 1:]: v for n, v in files.items() if v is not None}
    assert {"images/images.tar", "images/tags.txt", "bundle.json", "SHA256SUMS", "install.sh"} <= set(rel)
    assert files[f"{top}/manifests"] is None  # the slot (a folder) exists even without manifests
    assert any(k.startswith("bin/cni/") for k in rel) and "bin/cni/README.md" not in rel
    inv = json.loads(rel["bundle.json"])
    assert set(inv["images"]) == {"flannel", "cni-plugins"}
    assert inv["arch"] == "amd64" and inv["manifests"] == []
    assert inv["components"]["cni-plugins"]["url"].startswith("https://")
    sums = dict(reversed(line.split("  ", 1)) for line in rel["SHA256SUMS"].decode().splitlines())
    assert set(sums) == set(rel) - {"SHA256SUMS"}
    for name, data in rel.items():
        if name != "SHA256SUMS":
            import hashlib

            assert sums[name] == hashlib.sha256(data).hexdigest()
    assert r.deduplicated_bytes >= len(BASE)  # the base layer is stored once for two images
    assert rel["images/tags.txt"].decode().split() == sorted(
        t for img in inv["images"].values() for t in img["tags"])
    with tarfile.open(fileobj=io.BytesIO(rel["images/images.tar"])) as t:
        assert sum(1 for m in t if m.isfile() and t.extractfile(m).read() == BASE) == 1
    assert verify_bundle(r.path).ok


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_same_inputs_give_identical_bytes(env, tmp_path, compression):
    (a,) = make(env, tmp_path / "a", compression=compression)
    (b,) = make(env, tmp_path / "b", compression=compression)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert compression_of(a.path) == compression
    assert verify_bundle(a.path).ok


def test_gzip_is_standard_and_canonical(env):
    (r,) = make(env)
    data = r.path.read_bytes()
    assert data[:10] == GZIP_HEADER  # no file name, mtime 0
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as t:
        assert all(m.mtime == 1_700_000_000 and m.uid == 0 and m.gid == 0 for m in t)
    sidecar = r.path.with_name(r.path.name + ".sha256").read_text()
    assert sidecar == f"{r.sha256}  {r.path.name}\n"


def test_multiarch_variant_keeps_lists(env, mini, tmp_path):
    results = make(env, multiarch=True, per_arch=False)
    (r,) = results
    assert r.arch == "multiarch"
    _s, report, _t = env
    files = members(r.path)
    images_tar = next(v for k, v in files.items() if k.endswith("images/images.tar"))
    with tarfile.open(fileobj=io.BytesIO(images_tar)) as t:
        index = json.loads(t.extractfile("index.json").read())
    by_name = {e["annotations"]["io.containerd.image.name"]: e["digest"] for e in index["manifests"]}
    for img in report["images"].values():
        assert by_name[img["tag"]] == img["digest"]
        for a in img["arches"].values():
            assert by_name[a["tag"]] == a["digest"]
    with MiniRegistry() as target:
        summary = push_bundle(env[0], r.path, f"{target.host}/mirror")
        for img in report["images"].values():
            repo = "mirror/" + img["repository"].split("/", 1)[1]
            assert target.tags[(repo, "v1")] == img["digest"]
        assert summary["uploaded"] > 0


def test_arch_missing_from_report_and_unpushed_images_are_errors(env, tmp_path):
    settings, report, tree_paths = env
    with pytest.raises(BundleError, match=r"build-report.json: image cni-plugins has no arch s390x \(built: amd64, arm64\)"):
        plan_bundles(settings, [Arch.S390X], tree_paths=tree_paths)
    report["images"]["flannel"]["arches"]["amd64"]["digest"] = None
    settings.build_report.write_text(json.dumps(report))
    with pytest.raises(BundleError, match="flannel arch amd64 was not pushed"):
        plan_bundles(settings, [Arch.AMD64], tree_paths=tree_paths)
    with pytest.raises(ConfigError, match="unknown compression 'bzip2'"):
        plan_bundles(settings, [Arch.AMD64], compression="bzip2", tree_paths=tree_paths)
    with pytest.raises(BundleError, match="build report not found"):
        plan_bundles(settings.replace(out_dir=tmp_path / "empty"), None, tree_paths=tree_paths)


def test_failure_midway_leaves_no_bundle_and_no_temps(env, mini, tmp_path):
    out = tmp_path / "out2"
    layer = next(dg for dg, data in mini.blobs.items() if data == BASE)
    mini.corrupt.add(layer)
    with pytest.raises(RegistryError, match="digest mismatch"):
        make(env, out)
    assert sorted(p.name for p in out.iterdir()) == []
    mini.corrupt.clear()
    (out / (TMP_PREFIX + "left-by-a-crash")).write_bytes(b"x")
    make(env, out)
    assert not [p for p in out.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_a_second_writer_in_the_same_folder_is_refused(env, tmp_path):
    from netship.bundle import out_lock

    with out_lock(tmp_path / "o"):
        with pytest.raises(BundleError, match="another bundle run is writing here"):
            make(env, tmp_path / "o")
    make(env, tmp_path / "o")  # released


def test_unreachable_registry_is_a_clear_error(env, tmp_path):
    with pytest.raises(RegistryError, match="127.0.0.1:9: registry unreachable"):
        make(env, tmp_path / "o", registry="127.0.0.1:9")


# --- verify-bundle --------------------------------------------------------------------------

def unpack(path: Path, dest: Path) -> Path:
    with open_bundle_stream(path) as s, tarfile.open(fileobj=s, mode="r|") as t:
        t.extractall(dest, filter="tar")
    return next(dest.iterdir())


def problems(path) -> set[tuple[str, str]]:
    return {(p.kind, p.what) for p in verify_bundle(path).problems}


def test_verify_names_missing_extra_and_altered_files(env, tmp_path):
    (r,) = make(env)
    d = unpack(r.path, tmp_path / "u")
    assert verify_bundle(d).ok
    bridge = next((d / "bin" / "cni").iterdir())
    bridge.write_bytes(bridge.read_bytes() + b"!")
    (d / "images" / "tags.txt").unlink()
    (d / "bin" / "cni" / "intruder").write_bytes(b"x")
    got = problems(d)
    rel = bridge.relative_to(d).as_posix()
    assert ("altered", rel) in got
    assert ("missing", "images/tags.txt") in got
    assert ("extra", "bin/cni/intruder") in got


def _rewrite_images_tar(d: Path, edit) -> None:
    """Rewrite images/images.tar through ``edit(dict name->bytes)``; SHA256SUMS not updated."""
    p = d / "images" / "images.tar"
    with tarfile.open(p) as t:
        files = {m.name: t.extractfile(m).read() for m in t if m.isfile()}
    edit(files)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    p.write_bytes(buf.getvalue())


def test_verify_checks_blobs_and_references_inside_the_image_archive(env, tmp_path):
    (r,) = make(env)
    d = unpack(r.path, tmp_path / "u")
    base_hex = next(k.rsplit("/", 1)[1] for k, v in _tar_files(d).items() if v == BASE)

    _rewrite_images_tar(d, lambda f: f.pop(f"blobs/sha256/{base_hex}"))
    got = problems(d)
    assert ("missing", f"images/images.tar: blobs/sha256/{base_hex}") in got
    assert ("altered", "images/images.tar") in got  # its SHA256SUMS line

    d2 = unpack(r.path, tmp_path / "v")
    _rewrite_images_tar(d2, lambda f: f.update({f"blobs/sha256/{base_hex}": BASE[:-1] + b"?",
                                                f"blobs/sha256/{'0' * 64}": b"unreferenced"}))
    got = problems(d2)
    assert ("altered", f"images/images.tar: blobs/sha256/{base_hex}") in got
    assert ("extra", f"images/images.tar: blobs/sha256/{'0' * 64}") in got


def _tar_files(d: Path) -> dict[str, bytes]:
    with tarfile.open(d / "images" / "images.tar") as t:
        return {m.name: t.extractfile(m).read() for m in t if m.isfile()}


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_verify_catches_flipped_bytes_in_the_bundle_file(env, tmp_path, compression):
    (r,) = make(env, tmp_path / "o", compression=compression)
    data = r.path.read_bytes()
    lone = tmp_path / r.path.name  # without its sidecar
    step = max(1, len(data) // 25)
    spare = len(data) - 9 if compression == "gzip" else -1  # deflate's final byte may hold spare bits
    for off in [*range(0, len(data), step), len(data) - 1]:
        if off == spare:
            continue
        flipped = bytearray(data)
        flipped[off] ^= 0x04
        lone.write_bytes(bytes(flipped))
        assert not verify_bundle(lone).ok, f"{compression}: flip at {off}/{len(data)}"
        # beside the sidecar, the whole-file digest names the file itself
        r.path.write_bytes(bytes(flipped))
        assert ("altered", r.path.name) in problems(r.path)
    r.path.write_bytes(data)
    assert verify_bundle(r.path).ok


def test_mirrored_images_join_the_bundles_of_the_arches_they_have(env, mini):
    """`netship mirror`'s report beside the build report adds calico-like images; an arch
    upstream does not publish is left out of that arch's bundle with a note, not an error."""
    settings, _report, _tp = env
    h = mini.host
    dg, size = mini.add_image("calico/node", "v3-amd64", {"calico": b"node" * 300}, arch="amd64", shared=BASE)
    list_dg, _ = mini.add_list("calico/node", "v3", [(dg, size, "amd64")])
    mirror = {"registry": h, "images": {"calico-node": {
        "name": "calico-node", "version": "v3", "repository": f"{h}/calico/node", "tag": f"{h}/calico/node:v3",
        "digest": list_dg, "components": {"calicoctl": "v3"},
        "arches": {"amd64": {"platform": "linux/amd64", "tag": f"{h}/calico/node:v3-amd64", "digest": dg}}}}}
    (settings.out_dir / "mirror-report.json").write_text(json.dumps(mirror))
    skipped: list[str] = []
    amd, arm = make(env, arches=[Arch.AMD64, Arch.ARM64], skipped=skipped)
    inv_amd = json.loads(members(amd.path)[f"{amd.path.name.removesuffix('.tar.gz')}/bundle.json"])
    inv_arm = json.loads(members(arm.path)[f"{arm.path.name.removesuffix('.tar.gz')}/bundle.json"])
    assert inv_amd["images"]["calico-node"]["digest"] == dg
    assert "calico-node" not in inv_arm["images"] and set(inv_arm["images"]) == {"flannel", "cni-plugins"}
    assert any("mirrored image calico-node has no arm64" in s for s in skipped)
    # a mirror report for another registry is not this build's: ignored
    mirror["registry"] = "127.0.0.1:1"
    (settings.out_dir / "mirror-report.json").write_text(json.dumps(mirror))
    (again,) = make(env, out=settings.out_dir / "other")
    inv = json.loads(members(again.path)[f"{again.path.name.removesuffix('.tar.gz')}/bundle.json"])
    assert "calico-node" not in inv["images"]
