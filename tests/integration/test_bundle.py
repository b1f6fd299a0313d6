"""Offline bundles on the real stack: the images built by the build issue's session fixture
(every image, all five arches, in the session registry) are bundled straight from the
registry and then read by the real docker 20.10, containerd 1.6 (ctr), skopeo, podman, install.sh,
and pushed into a second loopback registry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest
import requests

from netship import buildreport
from netship.arch import ALL_ARCHES, Arch
from netship.bundle import bundle_offline, push_bundle
from netship.errors import BundleError, RegistryError
from netship.fsutil import TMP_PREFIX
from netship.registry import DOCKER_LIST, OCI_INDEX
from netship.verify import verify_bundle
from tests.integration.conftest import TEST_EPOCH
from tests.support.loopback_registry import LoopbackRegistry

CTR_ADDRESS = "/var/run/docker/containerd/containerd.sock"
INSTALLER_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}


def sh(*argv: str | Path, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], check=check, capture_output=True, text=True, **kw)


def ctr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ctr", "--address", CTR_ADDRESS, "-n", "k8s.io", *args, check=check)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def bundle_settings(build_settings, built_images, tmp_path_factory):
    """Settings whose out_dir holds a copy of the session's build report."""
    out = tmp_path_factory.mktemp("bundle-out")
    settings = build_settings.replace(out_dir=out, source_date_epoch=TEST_EPOCH)
    buildreport.save(settings.build_report, built_images)
    return settings


@pytest.fixture(scope="module")
def bundles(bundle_settings):
    """Every per-arch bundle (gzip) and the multi-arch variant, written once."""
    results = bundle_offline(bundle_settings, None, compression="gzip", multiarch=True)
    return {r.arch: r for r in results}


@pytest.fixture(scope="module")
def unpacked(bundles, tmp_path_factory):
    """arch -> the unpacked bundle folder (the way a person unpacks it on the node)."""
    root = tmp_path_factory.mktemp("unpacked")
    out = {}
    for arch, r in bundles.items():
        sh("tar", "-xzf", r.path, "-C", root)
        out[arch] = root / r.path.name.removesuffix(".tar.gz")
    return out


def tags_of(folder: Path) -> list[str]:
    return (folder / "images" / "tags.txt").read_text().split()


def test_bundle_holds_every_image_of_every_built_arch(bundles, unpacked, built_images):
    built_arches = {a.k8s for img in built_images.images.values() for a in img.arches}
    assert set(bundles) == built_arches | {"multiarch"}
    for arch in built_arches:
        inv = json.loads((unpacked[arch] / "bundle.json").read_text())
        assert set(inv["images"]) == set(built_images.images)
        for name, img in built_images.images.items():
            per_arch = img.arches[Arch.parse(arch)]
            assert inv["images"][name]["digest"] == str(per_arch.digest)
            assert sorted(inv["images"][name]["tags"]) == sorted([img.tag, per_arch.tag])
        # every file of the folder is in SHA256SUMS and (but bundle.json itself) in the inventory
        files = {p.relative_to(unpacked[arch]).as_posix() for p in unpacked[arch].rglob("*") if p.is_file()}
        sums = {line.split("  ", 1)[1] for line in (unpacked[arch] / "SHA256SUMS").read_text().splitlines()}
        assert sums == files - {"SHA256SUMS"}
        assert set(inv["files"]) == files - {"SHA256SUMS", "bundle.json"}
        assert (unpacked[arch] / "manifests").is_dir()
        assert "bin/cni/bridge" in files and "bin/cni/flannel" in files
        # a blob shared by several images is stored once
        assert inv["images_archive"]["stored_bytes"] < inv["images_archive"]["referenced_bytes"]
        with tarfile.open(unpacked[arch] / "images" / "images.tar") as t:
            names = t.getnames()
        assert len(names) == len(set(names))


@pytest.mark.parametrize("arch", [a.k8s for a in ALL_ARCHES])
def test_docker_load_then_run_under_qemu(unpacked, arch):
    folder = unpacked[arch]
    tags = tags_of(folder)
    try:
        out = sh("docker", "load", "-i", folder / "images" / "images.tar").stdout
        for tag in tags:
            assert f"Loaded image: {tag}" in out
            info = json.loads(sh("docker", "image", "inspect", tag).stdout)[0]
            assert info["Architecture"] == Arch.parse(arch).oci_architecture
        # the busybox of the test base runs under qemu for foreign arches
        run = sh("docker", "run", "--rm", "--platform", Arch.parse(arch).platform,
                 "--entrypoint", "/bin/uname", tags[0], "-m")
        assert run.stdout.strip() == Arch.parse(arch).uname
    finally:
        sh("docker", "rmi", "-f", *tags, check=False)


@pytest.mark.parametrize("arch", [a.k8s for a in ALL_ARCHES])
def test_ctr_import_keeps_names_and_digests(unpacked, arch):
    folder = unpacked[arch]
    tags = tags_of(folder)
    inv = json.loads((folder / "bundle.json").read_text())
    want = {t: img["digest"] for img in inv["images"].values() for t in img["tags"]}
    try:
        ctr("images", "import", "--all-platforms", str(folder / "images" / "images.tar"))
        listed = {}
        for line in ctr("images", "ls").stdout.splitlines()[1:]:
            parts = line.split()
            listed[parts[0]] = parts[2]
        for tag in tags:
            assert listed.get(tag) == want[tag], tag
    finally:
        ctr("images", "rm", *tags, check=False)


@pytest.mark.parametrize("arch", ["amd64", "s390x"])
def test_skopeo_reads_every_image(unpacked, arch):
    archive = unpacked[arch] / "images" / "images.tar"
    for tag in tags_of(unpacked[arch]):
        info = json.loads(sh("skopeo", "inspect", f"docker-archive:{archive}:{tag}").stdout)
        assert info["Architecture"] == Arch.parse(arch).oci_architecture
        assert info["Name"] == tag.rsplit(":", 1)[0]


@pytest.mark.parametrize("arch", ["arm64", "s390x"])
def test_podman_load_reads_every_image(unpacked, arch, tmp_path):
    """podman (4.3, Debian's) loads the archive into a throw-away store of its own."""
    runroot = Path(tempfile.mkdtemp(prefix="podman-"))  # podman refuses a runroot over 50 characters
    store = ["--storage-driver", "vfs", "--root", str(tmp_path / "root"), "--runroot", str(runroot)]
    out = sh("podman", *store, "load", "-i", unpacked[arch] / "images" / "images.tar").stdout
    for tag in tags_of(unpacked[arch]):
        assert f"Loaded image: {tag}" in out
    listed = json.loads(sh("podman", *store, "images", "--format", "json").stdout)
    names = {n for img in listed for n in img.get("Names") or []}
    assert set(tags_of(unpacked[arch])) <= names
    for tag in tags_of(unpacked[arch])[:2]:
        info = json.loads(sh("podman", *store, "image", "inspect", tag).stdout)[0]
        assert info["Architecture"] == Arch.parse(arch).oci_architecture
    shutil.rmtree(runroot, ignore_errors=True)


def test_install_sh_against_real_docker_installs_binaries(unpacked, bundle_settings, tmp_path):
    folder = unpacked["amd64"]
    prefix = tmp_path / "cni"
    tags = tags_of(folder)
    try:
        r = sh("sh", folder / "install.sh", "--runtime", "docker", "--prefix", prefix, env=INSTALLER_ENV)
        assert "verified" in r.stderr
        installed = sorted(p.name for p in prefix.iterdir())
        assert installed == sorted(p.name for p in (folder / "bin" / "cni").iterdir())
        for p in prefix.iterdir():
            assert p.stat().st_mode & 0o777 == 0o755
            assert p.read_bytes() == (folder / "bin" / "cni" / p.name).read_bytes()
        # the binaries are the fetched, verified ones
        tree = bundle_settings.tree_dir / "cni-plugins"
        bridge = next(tree.glob("*/amd64/bridge"))
        assert sha256(prefix / "bridge") == sha256(bridge)
        for tag in tags:
            sh("docker", "image", "inspect", tag)  # loaded
        assert "next:" in r.stdout
    finally:
        sh("docker", "rmi", "-f", *tags, check=False)


def test_install_sh_with_containerd_and_dry_run(unpacked, tmp_path):
    folder = unpacked["arm64"]
    prefix = tmp_path / "cni"
    dry = sh("sh", folder / "install.sh", "--dry-run", "--runtime", "containerd", "--containerd-address",
             CTR_ADDRESS, "--prefix", prefix, env=INSTALLER_ENV)
    assert not prefix.exists()
    assert "+ ctr --address" in dry.stdout and "images import" in dry.stdout
    tags = tags_of(folder)
    try:
        sh("sh", folder / "install.sh", "--runtime", "containerd", "--containerd-address", CTR_ADDRESS,
           "--prefix", prefix, env=INSTALLER_ENV)
        listed = ctr("images", "ls", "-q").stdout.split()
        assert set(tags) <= set(listed)
        assert (prefix / "flannel").is_file()
    finally:
        ctr("images", "rm", *tags, check=False)


def test_install_sh_retags_and_pushes_to_a_private_registry(unpacked, tmp_path):
    folder = unpacked["amd64"]
    tags = tags_of(folder)
    private = LoopbackRegistry(tmp_path / "private").start()
    pushed = [f"{private.host}/{t.split('/', 1)[1]}" for t in tags]
    try:
        r = sh("sh", folder / "install.sh", "--runtime", "docker", "--skip-binaries", "--registry", private.host,
               env=INSTALLER_ENV)
        assert f"images were pushed to {private.host}" in r.stdout
        for ref in pushed:
            repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
            got = requests.head(f"http://{private.host}/v2/{repo}/manifests/{tag}", timeout=10, headers={
                "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
            assert got.status_code == 200, ref
    finally:
        sh("docker", "rmi", "-f", *tags, *pushed, check=False)
        private.wipe()


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x20]))


def test_one_flipped_byte_anywhere_in_the_bundle_file_is_caught(bundles, tmp_path):
    src = bundles["arm64"].path
    data = src.read_bytes()
    size = len(data)
    offsets = sorted({0, 3, 4, 9, 10, size - 9, size - 8, size - 4, size - 1,
                      *range(11, size - 9, max(1, size // 40))})
    # 1. beside its .sha256 sidecar (as bundle-offline writes it): every byte is covered
    with_sidecar = tmp_path / "a" / src.name
    with_sidecar.parent.mkdir()
    (with_sidecar.parent / (src.name + ".sha256")).write_bytes(src.with_name(src.name + ".sha256").read_bytes())
    # 2. alone: the content checks (gzip header/CRC/length, tar headers and padding, every
    # digest) must catch it, except in the spare bits of deflate's last byte (size - 9), which
    # no decompressor reads
    alone = tmp_path / "b" / src.name
    alone.parent.mkdir()
    for off in offsets:
        for work in (with_sidecar, alone):
            if work is alone and off == size - 9:
                continue
            work.write_bytes(data)
            _flip(work, off)
            report = verify_bundle(work)
            assert not report.ok, f"flip at offset {off} of {size} not caught ({work.parent.name})"
    with_sidecar.write_bytes(data)
    assert verify_bundle(with_sidecar).ok
    _flip(with_sidecar, size - 9)
    assert ("altered", src.name) in {(p.kind, p.what) for p in verify_bundle(with_sidecar).problems}


def test_flipped_byte_in_a_plain_tar_bundle_is_caught_even_in_padding(bundle_settings, tmp_path):
    res = bundle_offline(bundle_settings, [Arch.S390X], compression="none", out_dir=tmp_path / "plain")
    src = res[0].path
    data = src.read_bytes()
    # every byte no file digest covers: headers, block padding, the trailer; plus data bytes
    zero_runs = [i for i in range(0, len(data), 509) if data[i] == 0][:60]
    for off in sorted({0, 100, 148, 257, len(data) - 1, *zero_runs, *range(512, len(data), len(data) // 30)}):
        work = tmp_path / "w.tar"
        work.write_bytes(data)
        _flip(work, off)
        assert not verify_bundle(work).ok, f"flip at offset {off} not caught"


def test_flips_in_unpacked_files_are_named_and_install_sh_refuses(unpacked, tmp_path):
    folder = unpacked["ppc64le"]
    for rel in ("images/images.tar", "bin/cni/bridge", "bundle.json", "SHA256SUMS", "images/tags.txt",
                "install.sh"):
        copy = tmp_path / rel.replace("/", "_")
        sh("cp", "-a", folder, copy)
        target = copy / rel
        # install.sh: flip inside its comment header so the script still parses and must refuse itself
        _flip(target, 40 if rel == "install.sh" else target.stat().st_size // 2)
        report = verify_bundle(copy)
        assert not report.ok
        assert any(p.what.startswith(rel) or rel in (p.what, "SHA256SUMS") for p in report.problems), report.problems
        r = sh("sh", copy / "install.sh", "--dry-run", "--prefix", tmp_path / "never", check=False, env=INSTALLER_ENV)
        assert r.returncode != 0, rel
        assert "refusing" in r.stderr
        assert not (tmp_path / "never").exists()
    # extra and missing files are named too
    copy = tmp_path / "extra"
    sh("cp", "-a", folder, copy)
    (copy / "bin" / "cni" / "evil").write_bytes(b"x")
    (copy / "images" / "tags.txt").unlink()
    problems = {(p.kind, p.what) for p in verify_bundle(copy).problems}
    assert ("extra", "bin/cni/evil") in problems
    assert ("missing", "images/tags.txt") in problems
    r = sh("sh", copy / "install.sh", "--dry-run", check=False, env=INSTALLER_ENV)
    assert r.returncode != 0 and "extra file: bin/cni/evil" in r.stderr


def test_two_runs_give_identical_bytes(bundle_settings, bundles, tmp_path):
    again = bundle_offline(bundle_settings, None, compression="gzip", multiarch=True, out_dir=tmp_path / "again")
    for r in again:
        assert r.path.read_bytes() == bundles[r.arch].path.read_bytes(), r.arch
    z1 = bundle_offline(bundle_settings, [Arch.ARM], compression="zstd", out_dir=tmp_path / "z1")[0]
    z2 = bundle_offline(bundle_settings, [Arch.ARM], compression="zstd", out_dir=tmp_path / "z2")[0]
    assert z1.path.read_bytes() == z2.path.read_bytes()
    assert verify_bundle(z1.path).ok


def test_push_multiarch_into_second_registry_keeps_manifest_lists(bundle_settings, bundles, built_images, tmp_path):
    second = LoopbackRegistry(tmp_path / "reg2").start()
    try:
        summary = push_bundle(bundle_settings, bundles["multiarch"].path, second.host)
        assert summary["uploaded"] > 0
        for name, img in built_images.images.items():
            path = img.repository.split("/", 1)[1]
            version_tag = img.tag.rsplit(":", 1)[1]
            r = requests.get(f"http://{second.host}/v2/{path}/manifests/{version_tag}",
                             headers={"Accept": f"{DOCKER_LIST}, {OCI_INDEX}"}, timeout=10)
            assert r.status_code == 200, name
            assert r.headers["Docker-Content-Digest"] == str(img.digest), name
            for a, per in img.arches.items():
                got = requests.head(f"http://{second.host}/v2/{path}/manifests/{per.tag.rsplit(':', 1)[1]}",
                                    headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                                             "application/vnd.oci.image.manifest.v1+json"}, timeout=10)
                assert got.headers["Docker-Content-Digest"] == str(per.digest), (name, a)
        again = push_bundle(bundle_settings, bundles["multiarch"].path, second.host)
        assert again["uploaded"] == 0 and again["existing"] > 0
    finally:
        second.wipe()


def test_unreachable_registry_leaves_no_partial_bundle(bundle_settings, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RegistryError, match="unreachable"):
        bundle_offline(bundle_settings, [Arch.AMD64], registry="127.0.0.1:9", out_dir=out)
    assert list(out.iterdir()) == []


def test_interrupted_run_leaves_no_bundle_and_next_run_cleans_temps(bundle_settings, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / f"{TMP_PREFIX}stale").write_bytes(b"half a bundle")
    (out / f"{TMP_PREFIX}dir").mkdir()
    bundle_offline(bundle_settings, [Arch.AMD64], compression="none", out_dir=out)
    assert not [p for p in out.iterdir() if p.name.startswith(TMP_PREFIX)]


def test_arch_missing_from_build_report_is_a_clear_error(bundle_settings, built_images, tmp_path):
    img = next(iter(built_images.images.values()))
    trimmed = buildreport.BuildReport(
        built_images.registry,
        {**built_images.images, img.name: type(img)(**{**img.__dict__, "arches": {
            a: r for a, r in img.arches.items() if a is not Arch.S390X}})})
    settings = bundle_settings.replace(out_dir=tmp_path / "out")
    buildreport.save(settings.build_report, trimmed)
    with pytest.raises(BundleError, match=f"image {img.name} has no arch s390x"):
        bundle_offline(settings, [Arch.S390X])
    assert not list((tmp_path / "out").glob("netship-offline-*"))


def test_cli_verify_bundle_json(bundles):
    r = sh("python", "-m", "netship", "verify-bundle", "--json", str(bundles["amd64"].path), check=False)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["blobs"] > 0
