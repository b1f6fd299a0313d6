"""Every image built for all five arches on the real stack (docker driver: one platform per
call, then imagetools), checked from the registry and by running each arch under qemu."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netship import buildx
from netship.arch import ALL_ARCHES, Arch
from netship.catalog import load_catalog
from netship.digest import Digest
from netship.images import load_images
from netship.registry import client_for

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("cni-plugins", "flannel", "flannel-cni-plugin", "kube-router")
VERSIONS = {"cni-plugins": "v1.9.1", "flannel": "v0.28.9", "flannel-cni-plugin": "v1.9.1-flannel1",
            "kube-router": "v2.11.1"}


def docker(*args: str, timeout: float = 300) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"docker {' '.join(args)} failed: {out.stderr.strip()[-500:]}"
    return out.stdout


def skopeo_raw(ref: str) -> dict:
    out = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def registry_digests(report) -> dict[str, str]:
    """Every tag of the report -> the digest the registry serves for it now."""
    out = {}
    for img in report.images.values():
        for tag in [img.tag, *(r.tag for r in img.arches.values())]:
            host, _, rest = tag.partition("/")
            repo, _, ref = rest.rpartition(":")
            desc = client_for(host).head_manifest(repo, ref)
            out[tag] = str(desc.digest) if desc else None
    return out


def elf_header(head: bytes) -> tuple[int, bool, int]:
    """(class, big endian, e_machine) from the first 20 bytes of an ELF file."""
    assert head[:4] == b"\x7fELF", f"not an ELF file: {head[:4]!r}"
    big = head[5] == 2
    return head[4], big, int.from_bytes(head[18:20], "big" if big else "little")


def test_report_has_every_image_and_arch(built_images, registry_prefix):
    assert sorted(built_images.images) == sorted(IMAGES)
    assert built_images.registry == registry_prefix
    for name, img in built_images.images.items():
        assert img.version == VERSIONS[name]
        assert img.tag == f"{registry_prefix}/{name}:{img.version}"
        assert img.digest is not None
        assert list(img.arches) == list(ALL_ARCHES)
        for arch, r in img.arches.items():
            assert r.tag == f"{img.tag}-{arch.k8s}" and r.platform == arch.platform and r.digest is not None
    assert dict(built_images.images["kube-router"].components) == {"kube-router": "v2.11.1", "cni-plugins": "v1.9.1"}


def test_report_file_is_loadable(build_settings, built_images):
    from netship.buildreport import load

    assert load(build_settings.build_report) == built_images


def test_registry_holds_a_list_with_exactly_the_five_platforms(built_images):
    """Read by skopeo (not netship's own client): the list, its platforms, and that each
    per-arch tag and the report agree with the list's entries."""
    for img in built_images.images.values():
        raw = skopeo_raw(img.tag)
        assert raw["mediaType"] in ("application/vnd.docker.distribution.manifest.list.v2+json",
                                    "application/vnd.oci.image.index.v1+json")
        entries = {}
        for m in raw["manifests"]:
            p = m["platform"]
            entries["/".join(filter(None, [p["os"], p["architecture"], p.get("variant")]))] = m["digest"]
        assert sorted(entries) == sorted(a.platform for a in ALL_ARCHES)
        for arch, r in img.arches.items():
            assert entries[arch.platform] == str(r.digest)
        assert client_for(img.tag.split("/")[0]).head_manifest(img.repository.split("/", 1)[1], img.version).digest == img.digest


def test_image_config_says_its_platform_and_labels(built_images):
    reg = client_for(built_images.registry.split("/")[0])
    for name, img in built_images.images.items():
        repo = img.repository.split("/", 1)[1]
        for arch, r in img.arches.items():
            manifest = reg.get_manifest(repo, r.digest).json
            config = json.loads(reg.read_blob(repo, Digest.parse(manifest["config"]["digest"])))
            assert (config["architecture"], config.get("variant")) == (arch.oci_architecture, arch.oci_variant), (name, arch)
            labels = config["config"]["Labels"]
            assert labels["org.opencontainers.image.created"] == "2026-01-01T00:00:00Z"
            assert labels["org.opencontainers.image.version"] == img.version
            assert labels["org.opencontainers.image.revision"] == img.version
            assert labels["org.opencontainers.image.source"].startswith("https://github.com/")
            assert config["config"]["Entrypoint"]


@pytest.mark.parametrize("arch", ALL_ARCHES, ids=lambda a: a.k8s)
def test_each_arch_runs_under_qemu_with_binaries_where_the_spec_says(arch: Arch, built_images, build_settings):
    catalog = load_catalog(build_settings.catalog_dir)
    specs = load_images(build_settings.images_dir, catalog)
    for name, img in built_images.images.items():
        spec = specs[name]
        ref = f"{img.repository}@{img.arches[arch].digest}"  # pulled from the registry by digest
        expected = []  # (path in the image, must be an ELF of the arch)
        for b in spec.binaries:
            if b.whole_tree:  # every executable of the fetched tree, in the dest folder
                tree = build_settings.tree_dir / b.component / catalog.component(b.component).version / arch.k8s
                exes = sorted(p.name for p in tree.iterdir() if p.is_file() and p.stat().st_mode & 0o111)
                assert len(exes) >= 7, exes
                expected += [(b.dest + n, True) for n in exes]
            else:
                expected.append((b.dest, b.elf))
        script = "uname -m; " + "; ".join(
            f'echo "== {d}"; test -f {d} && test -x {d} && od -An -tu1 -N20 {d}' if elf
            else f'echo "== {d}"; test -f {d} && echo 0' for d, elf in expected) + "; true"
        out = docker("run", "--rm", "--platform", arch.platform, "--entrypoint", "/bin/sh", ref, "-c", script)
        first, *rest = out.strip().split("== ")
        assert first.strip() == arch.uname, f"{name} {arch}: uname -m said {first.strip()!r}"
        found = {}
        for chunk in rest:
            dest, _, dump = chunk.partition("\n")
            found[dest.strip()] = bytes(int(x) for x in dump.split())
        for dest, elf in expected:
            head = found.get(dest, b"")
            assert head, f"{name} {arch}: {dest} missing or not executable"
            if elf:
                assert elf_header(head) == (arch.elf_class, arch.elf_big_endian, arch.elf_machine), (name, arch, dest)


def test_noop_rebuild_pushes_nothing(build_settings, first_build, built_images):
    before = registry_digests(built_images)
    again = buildx.build(build_settings)
    assert again.builds == () and again.pushes == (), [a.to_json() for a in again.actions if a.kind != "cached"]
    assert {a.kind for a in again.actions} == {"cached", "join-cached"}
    assert registry_digests(again.report) == before
    assert again.report.images == built_images.images


def _cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NETSHIP_CATALOG_DIR": str(settings.catalog_dir), "NETSHIP_CACHE_DIR": str(settings.cache_dir),
           "NETSHIP_OUT_DIR": str(settings.out_dir), "NETSHIP_REGISTRY": settings.registry,
           "NETSHIP_BASE_IMAGE": settings.base_image, "NETSHIP_IMAGES_DIR": str(settings.images_dir),
           "SOURCE_DATE_EPOCH": str(settings.source_date_epoch)}
    return subprocess.run([sys.executable, "-m", "netship", *args], capture_output=True, text=True, env=env, timeout=600)


def test_cli_noop_build_and_dry_run(build_settings, first_build):
    out = _cli(build_settings, "build", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert (doc["built"], doc["pushed"]) == (0, 0)
    dry = _cli(build_settings, "build", "--dry-run", "--json", "--image", "flannel", "--arch", "arm64,s390x")
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["strategy"] == "per-platform"
    assert [t["platform"] for t in plan["images"][0]["targets"]] == ["linux/arm64", "linux/s390x"]


def test_cli_errors_are_one_line(build_settings, first_build):
    bad = _cli(build_settings, "build", "--image", "flannel", "--arch", "mips")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("netship: error: --arch: unknown architecture 'mips'")
    nobase = _cli(build_settings, "build", "--image", "flannel", "--base-image", f"{build_settings.registry}/nope:1")
    assert nobase.returncode == 1 and nobase.stderr.strip().splitlines()[-1] == (
        f"netship: error: --base-image {build_settings.registry}/nope:1: not found in 127.0.0.1:5000; "
        "push the prepared base first")
    down = _cli(build_settings, "build", "--image", "flannel", "--registry", "127.0.0.1:9")
    assert down.returncode == 1
    assert down.stderr.strip().splitlines()[-1] == (
        "netship: error: registry 127.0.0.1:9 is unreachable (ConnectionError): start it with "
        "`netship registry start` or pass --registry HOST[:PORT]")


def test_registry_task_starts_and_stops_a_local_registry(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    addr = f"127.0.0.1:{s.getsockname()[1]}"
    s.close()
    env = {**os.environ, "NETSHIP_CACHE_DIR": str(tmp_path), "NETSHIP_REGISTRY": addr}

    def task(*args):
        return subprocess.run([sys.executable, "-m", "netship", *args, "--json"], capture_output=True, text=True,
                              env=env, timeout=60)

    try:
        started = task("registry", "start")
        assert started.returncode == 0, started.stderr
        assert json.loads(started.stdout)["up"] is True
        assert "already running" in json.loads(task("registry", "start").stdout)["message"]
    finally:
        stopped = task("registry", "stop")
    assert stopped.returncode == 0 and "stopped" in json.loads(stopped.stdout)["message"]


def test_registry_tagging_keeps_the_arch_manifest_itself(built_images):
    """The multi-platform strategy points per-arch tags at list entries through the registry
    (buildx 0.13's one-source `imagetools create` would wrap the image in a new list)."""
    img = built_images.images["flannel-cni-plugin"]
    child = img.arches[Arch.S390X].digest
    probe = buildx.RegistryProbe()
    tag = f"{img.repository}:copy-s390x"
    assert probe.tag(f"{img.repository}@{child}", tag) == child
    assert probe.digest(tag) == child
    assert skopeo_raw(tag)["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
