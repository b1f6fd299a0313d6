"""``netship release`` end to end on the real stack.

One release for all five arches: fetched from a loopback upstream mirror into a fresh cache,
built with buildx (docker driver, qemu) on the session's test base, pushed into a loopback
registry of its own, calico and cilium images mirrored from a second loopback registry
playing docker.io/quay.io. Then, from the release folder alone with both registries stopped
and the mirror gone: install.sh loads one arch's bundle into the real docker and the real
containerd, the images run under qemu, verify-bundle passes, the manifests validate; a
failing release leaves the folder intact; and a second release with nothing changed
rebuilds and rewrites nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import yaml

from netship import __version__, buildreport
from netship.arch import ALL_ARCHES, Arch
from netship.catalog import load_catalog
from netship.manifests.validate import validate_documents
from netship.verify import verify_bundle
from tests.integration.conftest import TEST_EPOCH
from tests.support.httpserver import LoopbackServer
from tests.support.loopback_registry import LoopbackRegistry, seed_multiarch

ROOT = Path(__file__).resolve().parents[2]
CTR_ADDRESS = "/var/run/docker/containerd/containerd.sock"
INSTALLER_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
CALICO = (Arch.AMD64, Arch.ARM64, Arch.PPC64LE, Arch.S390X)
CILIUM = (Arch.AMD64, Arch.ARM64)
BUNDLE = "netship-offline-{v}-{a}.tar.gz"


def sh(*argv, check=True, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], check=check, capture_output=True, text=True, **kw)


class Env:
    """Everything one release needs: upstream mirror, image source, target registry, settings."""

    def __init__(self, root: Path, build_settings, test_base: str):
        self.root = root
        self.mirror_dir = build_settings.catalog_dir.parent / "mirror"  # the session's upstream files
        self.server = LoopbackServer(self.mirror_dir).__enter__()
        self.target = LoopbackRegistry(root / "target-registry").start()
        self.source = LoopbackRegistry(root / "upstream-images").start()
        c = self.source.client()
        for repo in ("calico/node", "calico/cni", "calico/kube-controllers"):
            seed_multiarch(c, repo, "v3.31.7", CALICO)
        for repo in ("cilium/cilium", "cilium/operator-generic"):
            seed_multiarch(c, repo, "v1.18.6", CILIUM, shared=b"cilium base\n")
        raw = yaml.safe_load((ROOT / "release" / "mirror-images.yml").read_text())
        for entry in raw["images"].values():
            entry["source"] = entry["source"].replace("docker.io", self.source.host).replace("quay.io", self.source.host)
        self.mirror_file = root / "mirror-images.yml"
        self.mirror_file.write_text(yaml.safe_dump(raw, sort_keys=False))
        self.out_dir = root / "out"
        self.folder = self.out_dir / __version__
        self.env = {
            **os.environ,
            "NETSHIP_CATALOG_DIR": str(build_settings.catalog_dir),
            "NETSHIP_CACHE_DIR": str(root / "cache"),  # a fresh cache: fetch really downloads
            "NETSHIP_OUT_DIR": str(self.out_dir),
            "NETSHIP_MIRRORS": self.server.url,
            "NETSHIP_REGISTRY": self.target.host,
            "NETSHIP_BASE_IMAGE": test_base,
            "NETSHIP_IMAGES_DIR": str(ROOT / "images"),
            "NETSHIP_MIRROR_FILE": str(self.mirror_file),
            "NETSHIP_CLUSTER_FILE": str(ROOT / "release" / "cluster.yml"),
            "NETSHIP_SOURCE_DATE_EPOCH": str(TEST_EPOCH),
            "NETSHIP_RETRIES": "1",
            "NETSHIP_DOCKER_CONFIG": str(root / "no-docker-config.json"),
        }

    def release(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(sys.executable, "-m", "netship", "release", *args, check=check, env=self.env, cwd=self.root)

    def close(self) -> None:
        self.server.__exit__(None, None, None)
        self.target.wipe()
        self.source.wipe()


@pytest.fixture(scope="module")
def env(build_settings, test_base, tmp_path_factory):
    e = Env(tmp_path_factory.mktemp("release"), build_settings, test_base)
    yield e
    e.close()


@pytest.fixture(scope="module")
def first(env):
    proc = env.release("--arch", "all", "--json", check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout)
    print("first release stages:", json.dumps(summary["stages"], sort_keys=True))  # figures for the notes (-s)
    return summary


def _snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
            for p in folder.rglob("*") if p.is_file()}


def test_dry_run_prints_the_plan_and_touches_nothing(env, tmp_path):
    fresh = {**env.env, "NETSHIP_CACHE_DIR": str(tmp_path / "cache"), "NETSHIP_OUT_DIR": str(tmp_path / "out")}
    proc = sh(sys.executable, "-m", "netship", "release", "--dry-run", "--json", env=fresh, cwd=env.root)
    plan = json.loads(proc.stdout)
    assert plan["dry_run"] is True and plan["registry"] == env.target.host
    assert {a["asset"] for a in plan["fetch"]} >= {"flannel/v0.28.9/s390x", "cni-plugins/v1.9.1/arm"}
    assert not any(a["cached"] for a in plan["fetch"])
    assert [m["name"] for m in plan["mirror"]][:1] == ["calico-node"]
    assert {img["name"] for img in plan["build"]["images"]} == {"flannel", "flannel-cni-plugin", "kube-router", "cni-plugins"}
    assert f"netship-offline-{__version__}-multiarch.tar.gz" in plan["write"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


def test_release_folder_is_complete(env, first):
    folder = env.folder
    assert first["changed"] is True and first["folder"] == str(folder)
    stages = first["stages"]
    assert first["stage_order"] == ["fetch", "build", "mirror", "bundle", "manifests", "finish"]
    assert stages["fetch"]["downloaded"] > 0  # from the loopback mirror, into a fresh cache
    assert stages["build"]["images"] == ["cni-plugins", "flannel", "flannel-cni-plugin", "kube-router"]
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()
                   and not p.name.startswith("."))
    bundles = [BUNDLE.format(v=__version__, a=a) for a in [*(x.k8s for x in ALL_ARCHES), "multiarch"]]
    sidecars = [n for n in names if n.endswith(".tar.gz.sha256")]  # bundle-offline's NAME.sha256
    assert sorted(sidecars) in ([], sorted(b + ".sha256" for b in bundles))
    assert names == sorted([*bundles, *sidecars, "manifests/flannel.yml", "manifests/kube-router.yml",
                            "SHA256SUMS", "RELEASE.md"])
    # SHA256SUMS covers every other file and checks with coreutils
    sums = (folder / "SHA256SUMS").read_text().splitlines()
    assert sorted(line.split("  ", 1)[1] for line in sums) == sorted(set(names) - {"SHA256SUMS", "RELEASE.md"})
    sh("sha256sum", "-c", "SHA256SUMS", cwd=folder)


def test_release_notes_list_components_images_and_files(env, first):
    notes = (env.folder / "RELEASE.md").read_text()
    for comp in ("cni-plugins", "flannel", "flannel-cni-plugin", "calicoctl", "kube-router", "cilium-cli"):
        assert f"| {comp} |" in notes
    catalog = load_catalog(env.env["NETSHIP_CATALOG_DIR"])
    for (comp, version, arch), pin in catalog.pins.items():  # version, source, pin and its origin
        if comp in catalog.components and catalog.components[comp].version == version:
            url = catalog.components[comp].asset_url(arch)
            assert f"| {comp} | {version} | {arch.k8s} | {url} | `{pin.sha256.hex}` | {pin.source} |" in notes
    report = buildreport.load(env.out_dir / "build-report.json")
    for img in ("flannel", "kube-router", "cni-plugins", "flannel-cni-plugin"):
        res = report.image(img)
        assert str(res.digest) in notes
        for arch, r in res.arches.items():
            assert f"`{r.tag}` | {arch.k8s} | `{r.digest}` |" in notes
    mirrored = buildreport.load(env.out_dir / "mirror-report.json")
    assert f"mirrored from {env.source.host}/calico/node" in notes
    assert str(mirrored.image("cilium").arches[Arch.ARM64].digest) in notes
    for name, info in first["files"].items():
        if name not in ("SHA256SUMS", "RELEASE.md"):
            assert f"| {name} | {info['size']} | `{info['sha256']}` |" in notes


def test_bundles_hold_built_and_mirrored_images_for_their_arch(env, first):
    def images_of(arch: str) -> dict:
        path = env.folder / BUNDLE.format(v=__version__, a=arch)
        with tarfile.open(path) as t:
            member = next(m for m in t.getmembers() if m.name.endswith("/bundle.json") or m.name == "bundle.json")
            return json.load(t.extractfile(member))["images"]

    assert set(images_of("arm64")) == {"flannel", "flannel-cni-plugin", "kube-router", "cni-plugins", "calico-node",
                                       "calico-cni", "calico-kube-controllers", "cilium", "cilium-operator-generic"}
    assert set(images_of("s390x")) == {"flannel", "flannel-cni-plugin", "kube-router", "cni-plugins", "calico-node",
                                       "calico-cni", "calico-kube-controllers"}  # cilium has no s390x
    assert set(images_of("arm")) == {"flannel", "flannel-cni-plugin", "kube-router", "cni-plugins"}


@pytest.fixture(scope="module")
def offline(env, first):
    """The registries stopped and the mirror gone: only the release folder is left."""
    env.server.__exit__(None, None, None)
    env.target.stop()
    env.source.stop()
    return env.folder


def test_offline_install_loads_into_docker_and_containerd_and_runs_under_qemu(offline, tmp_path):
    sh("tar", "-xzf", offline / BUNDLE.format(v=__version__, a="arm64"), "-C", tmp_path)
    folder = tmp_path / f"netship-offline-{__version__}-arm64"
    tags = (folder / "images" / "tags.txt").read_text().split()
    flannel = next(t for t in tags if "/flannel:" in t and t.endswith("-arm64"))
    calico = next(t for t in tags if "/calico/node:" in t)
    try:
        r = sh("sh", folder / "install.sh", "--runtime", "docker", "--prefix", tmp_path / "cni", env=INSTALLER_ENV)
        assert "verified" in r.stderr
        assert (tmp_path / "cni" / "flannel").is_file() and (tmp_path / "cni" / "bridge").is_file()
        run = sh("docker", "run", "--rm", "--platform", "linux/arm64", "--entrypoint", "/bin/uname", flannel, "-m")
        assert run.stdout.strip() == "aarch64"
        info = json.loads(sh("docker", "image", "inspect", calico).stdout)[0]
        assert info["Architecture"] == "arm64"  # the mirrored image, loaded offline
        sh("sh", folder / "install.sh", "--runtime", "containerd", "--containerd-address", CTR_ADDRESS,
           "--skip-binaries", env=INSTALLER_ENV)
        listed = sh("ctr", "--address", CTR_ADDRESS, "-n", "k8s.io", "images", "ls", "-q").stdout.split()
        assert set(tags) <= set(listed)
    finally:
        sh("docker", "rmi", "-f", *tags, check=False)
        sh("ctr", "--address", CTR_ADDRESS, "-n", "k8s.io", "images", "rm", *tags, check=False)


def test_offline_verify_bundle_and_manifests(offline):
    for bundle in sorted(offline.glob("*.tar.gz")):
        report = verify_bundle(bundle)
        assert report.ok, [str(p) for p in report.problems]
    for name in ("flannel.yml", "kube-router.yml"):
        docs = [d for d in yaml.safe_load_all((offline / "manifests" / name).read_text()) if d]
        assert validate_documents(docs, where=name).checked == len(docs)
        images = {c["image"] for d in docs if d["kind"] == "DaemonSet"
                  for c in d["spec"]["template"]["spec"]["containers"]}
        assert images and all(i.startswith("127.0.0.1:") for i in images)


def test_failed_stage_leaves_the_previous_release_intact(env, offline):
    before = _snapshot(offline)
    proc = env.release("--json", check=False)  # the target registry is down: build fails
    assert proc.returncode == 1
    assert "release stage 'build' failed (previous release left intact)" in proc.stderr
    assert _snapshot(offline) == before
    assert not [p for p in offline.parent.iterdir() if p.name.startswith(".netship-release-tmp-")]


def test_second_release_with_nothing_changed_rebuilds_and_rewrites_nothing(env, offline):
    before = _snapshot(offline)
    env.target.start()  # same port and storage; the image source and the mirror stay gone
    started = time.monotonic()
    try:
        proc = env.release("--json", check=False)
    finally:
        env.target.stop()
    print(f"second release, whole process: {time.monotonic() - started:.2f} s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = json.loads(proc.stdout)
    print("second release stages:", json.dumps(again["stages"], sort_keys=True))
    assert again["changed"] is False
    stages = again["stages"]
    assert stages["fetch"]["downloaded"] == 0
    assert stages["build"]["builds"] == 0 and stages["build"]["pushes"] == 0
    assert stages["mirror"]["skipped"] == "inputs unchanged"
    assert stages["bundle"]["written"] == [] and len(stages["bundle"]["reused"]) == 6
    assert stages["manifests"]["skipped"] == "inputs unchanged"
    assert _snapshot(offline) == before  # same inodes, same timestamps
