"""release: the plan, the folder, stage skipping and failure handling, with stand-in stages.

The stand-ins are plain functions passed to ``release.release`` (its seams for the fetch,
build, mirror, bundle and manifests stages); the real stages run in
tests/integration/test_release.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from netship import __version__, buildreport
from netship import release as rel
from netship.arch import ALL_ARCHES, Arch
from netship.buildreport import ArchResult, BuildReport, ImageResult
from netship.digest import Digest, sha256_bytes
from netship.errors import RegistryError, UsageError
from netship.mirror import MirrorResult
from netship.registry import TransferStats
from netship.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
REG = "127.0.0.1:5000"


def dg(text: str) -> Digest:
    return sha256_bytes(text.encode())


def built_report(tag_salt: str = "") -> BuildReport:
    images = {}
    for name, version in (("flannel", "v0.28.9"), ("kube-router", "v2.11.1")):
        tag = f"{REG}/{name}:{version}"
        images[name] = ImageResult(name, version, f"{REG}/{name}", tag, dg(name + tag_salt), {name: version},
                                   {a: ArchResult(a, a.platform, f"{tag}-{a.k8s}", dg(f"{name}{a}{tag_salt}"))
                                    for a in ALL_ARCHES})
    return BuildReport(REG, images)


class Stages:
    """Stand-in stages that record their calls."""

    def __init__(self, report: BuildReport | None = None):
        self.report = report or built_report()
        self.calls: list[tuple] = []
        self.fail: dict[str, Exception] = {}
        self.mirrored_present = True  # the mirrored tags still in the registry

    def _check(self, stage):
        if stage in self.fail:
            raise self.fail[stage]

    def fetch(self, settings, assets):
        self.calls.append(("fetch", len(assets)))
        self._check("fetch")
        return SimpleNamespace(assets=[SimpleNamespace(
            key=a.key, component=a.component.name, version=a.version, arch=a.arch, url=a.url,
            digest=a.pin.sha256 or dg(a.key), pinned=a.pin.known, pin_source=a.pin.source, status="cached")
            for a in assets])

    def build(self, settings, plan):
        self.calls.append(("build",))
        self._check("build")
        return SimpleNamespace(report=self.report, builds=(), pushes=())

    def mirror(self, settings, steps):
        self.calls.append(("mirror", [s.image.name for s in steps]))
        self._check("mirror")
        return [MirrorResult(s, dg(str(s.target)), dg(str(s.source)),
                             {a: (a.platform, dg(f"{s.target}{a}")) for a in s.arches}, False, TransferStats())
                for s in steps]

    def bundle(self, settings, arches, out, multiarch, compression):
        self.calls.append(("bundle", [a.k8s for a in arches] if arches else None))
        self._check("bundle")
        report = buildreport.load(settings.build_report)  # the per-arch merged report
        arch = arches[0] if arches else None
        from netship.bundle import bundle_name

        path = out / (bundle_name(__version__, arch) + ".tar.gz")
        path.write_text(json.dumps(report.to_json(), sort_keys=True))
        (out / (path.name + ".sha256")).write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "\n")
        return [SimpleNamespace(path=path)]

    def manifests(self, settings, network, out, registry):
        self.calls.append(("manifests", network))
        self._check("manifests")
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{network}.yml"
        path.write_text(f"# {network} for {registry}\n")
        return [path]

    def run(self, settings, plan):
        return rel.release(settings, plan, fetcher=self.fetch, builder=self.build, mirrorer=self.mirror,
                           bundler=self.bundle, manifest_writer=self.manifests,
                           mirror_present=lambda s, r: self.mirrored_present)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(catalog_dir=ROOT / "release", cache_dir=tmp_path / "cache", out_dir=tmp_path / "out",
                    cluster_file=ROOT / "release" / "cluster.yml", source_date_epoch=1)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def test_plan_is_data_and_names_every_output(settings):
    plan = rel.plan_release(settings)
    assert plan.out == settings.out_dir / __version__
    assert plan.bundles == tuple(f"netship-offline-{__version__}-{a}.tar.gz"
                                 for a in ["amd64", "arm64", "arm", "ppc64le", "s390x", "multiarch"])
    assert {a.key for a in plan.assets} >= {"flannel/v0.28.9/s390x", "calicoctl/v3.31.7/amd64"}
    assert "calicoctl/v3.31.7/arm" not in {a.key for a in plan.assets}
    assert any("calicoctl v3.31.7 does not publish arm" in s for s in plan.skipped)
    assert [s.image.name for s in plan.mirror][:3] == ["calico-node", "calico-cni", "calico-kube-controllers"]
    js = plan.to_json(lambda a: False)
    assert js["write"][-2:] == ["SHA256SUMS", "RELEASE.md"] and "manifests/flannel.yml" in js["write"]
    lines = rel.describe({**js, "build": {"images": [], "note": "n"}})
    assert any(line.startswith("  fetch    download flannel/v0.28.9/amd64") for line in lines)
    # the real catalog: flannel has no known pin, the amd64 CNI tarball has kubespray's
    flannel = next(x for x in lines if "flannel/v0.28.9/amd64" in x)
    cni = next(x for x in lines if "cni-plugins/v1.9.1/amd64" in x)
    assert flannel.endswith("UNPINNED") and not cni.endswith("UNPINNED")
    unpinned = sum(1 for a in plan.assets if not a.pin.known)
    assert any(x.startswith(f"  note     {unpinned} asset(s) have no pinned sha256") for x in lines)
    assert any("mirror   docker.io/calico/node:v3.31.7 -> 127.0.0.1:5000/calico/node:v3.31.7" in x for x in lines)
    assert not settings.out_dir.exists()  # planning touches nothing


def test_remote_registry_needs_push(settings):
    remote = settings.replace(registry="ghcr.io/example")
    with pytest.raises(UsageError, match="--registry ghcr.io/example: publishing to a non-local registry needs --push"):
        rel.plan_release(remote)
    assert rel.plan_release(remote, push=True).push


def test_release_writes_a_complete_folder(settings):
    stages = Stages()
    plan = rel.plan_release(settings, arches=(Arch.AMD64, Arch.ARM))
    result = stages.run(settings, plan)
    folder = plan.out
    assert result.changed and folder.is_dir()
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == sorted([".netship-release.json", "RELEASE.md", "SHA256SUMS", "manifests/flannel.yml",
                            "manifests/kube-router.yml", *plan.bundles, *(b + ".sha256" for b in plan.bundles)])
    # SHA256SUMS: every file but itself, RELEASE.md and the hidden state
    sums = dict(reversed(line.split("  ", 1)) for line in (folder / "SHA256SUMS").read_text().splitlines())
    assert set(sums) == set(files) - {".netship-release.json", "RELEASE.md", "SHA256SUMS"}
    for name, hexd in sums.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == hexd
    # per-arch bundles got the arch's images only: calico for amd64, not for arm
    amd64 = json.loads((folder / plan.bundles[0]).read_text())["images"]
    arm = json.loads((folder / plan.bundles[1]).read_text())["images"]
    assert {"calico-node", "cilium", "flannel"} <= set(amd64) and set(amd64["calico-node"]["arches"]) == {"amd64"}
    assert set(arm) == {"flannel", "kube-router"}
    multi = json.loads((folder / plan.bundles[-1]).read_text())["images"]
    assert set(multi["flannel"]["arches"]) == {"amd64", "arm64", "arm", "ppc64le", "s390x"}
    notes = (folder / "RELEASE.md").read_text()
    assert f"| flannel | v0.28.9 | built by netship | `{REG}/flannel:v0.28.9-arm` | arm | `{dg('flannelarm')}` |" in notes
    assert "| calico-node | v3.31.7 | mirrored from docker.io/calico/node |" in notes
    assert "| cni-plugins | v1.9.1 | amd64 | https://github.com/containernetworking/plugins/releases/download/v1.9.1/cni-plugins-linux-amd64-v1.9.1.tgz | `b98f74a0f8522f0a83867178729c1aa70f2158f90c45a2ca8fa791db1c76b303` |" in notes
    size = (folder / plan.bundles[0]).stat().st_size
    assert f"| {plan.bundles[0]} | {size} | `{sums[plan.bundles[0]]}` |" in notes
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(rel.OWN_TMP)]


def test_unchanged_rerun_rewrites_nothing_and_skips_stages(settings):
    stages = Stages()
    plan = rel.plan_release(settings, arches=(Arch.AMD64, Arch.ARM))
    stages.run(settings, plan)
    before = snapshot(plan.out)
    stages.calls.clear()
    result = stages.run(settings, plan)
    assert result.changed is False
    assert [c[0] for c in stages.calls] == ["fetch", "build"]  # no mirror, bundle or manifests call
    assert result.stages["mirror"]["skipped"] == "inputs unchanged"
    assert result.stages["bundle"]["written"] == [] and len(result.stages["bundle"]["reused"]) == 3
    assert snapshot(plan.out) == before


def test_changed_image_rewrites_only_the_bundles_that_hold_it(settings):
    stages = Stages()
    plan = rel.plan_release(settings, arches=(Arch.AMD64, Arch.ARM))
    stages.run(settings, plan)
    before = snapshot(plan.out)
    # a new image built for arm only: the amd64 bundle's inputs did not change
    report = built_report()
    tag = f"{REG}/extra:v1"
    extra = ImageResult("extra", "v1", f"{REG}/extra", tag, dg("extra list"), {"extra": "v1"},
                        {Arch.ARM: ArchResult(Arch.ARM, "linux/arm/v7", f"{tag}-arm", dg("extra arm"))})
    stages.report = BuildReport(REG, {**report.images, "extra": extra})
    stages.calls.clear()
    result = stages.run(settings, plan)
    assert result.changed
    assert [c for c in stages.calls if c[0] == "bundle"] == [("bundle", ["arm"]), ("bundle", None)]
    after = snapshot(plan.out)
    amd64 = plan.bundles[0]
    assert after[amd64] == before[amd64]  # hard-linked from the previous folder
    assert after[plan.bundles[1]] != before[plan.bundles[1]]
    assert after["manifests/flannel.yml"] != before["manifests/flannel.yml"]  # images changed: re-rendered
    sums = (plan.out / "SHA256SUMS").read_text()
    assert hashlib.sha256((plan.out / plan.bundles[1]).read_bytes()).hexdigest() in sums


@pytest.mark.parametrize("stage, error, code", [
    ("fetch", RegistryError("x"), 1), ("build", RegistryError("registry down"), 1),
    ("mirror", RegistryError("quay.io: unreachable"), 1), ("bundle", UsageError("bad arch"), 2),
    ("manifests", UsageError("bad cidr"), 2),
])
def test_failed_stage_keeps_previous_release_and_names_the_stage(settings, stage, error, code):
    stages = Stages()
    plan = rel.plan_release(settings, arches=(Arch.AMD64,))
    stages.run(settings, plan)
    before = {n: (plan.out / n).read_bytes() for n in snapshot(plan.out)}
    inodes = snapshot(plan.out)
    stages.report = built_report("changed")  # something would be rewritten...
    stages.fail[stage] = error  # ...but a stage fails
    if stage == "mirror":  # unchanged mirror inputs skip the stage: change them
        from dataclasses import replace

        plan = replace(plan, mirror=plan.mirror[:1])
    with pytest.raises(rel.StageFailed) as e:
        stages.run(settings, plan)
    assert e.value.stage == stage and e.value.exit_code == code
    assert str(e.value).startswith(f"release stage '{stage}' failed (previous release left intact): ")
    assert snapshot(plan.out) == inodes
    assert {n: (plan.out / n).read_bytes() for n in snapshot(plan.out)} == before
    assert not [p for p in plan.out.parent.iterdir() if p.name.startswith(rel.OWN_TMP)]


def test_first_release_failing_leaves_no_folder(settings):
    stages = Stages()
    stages.fail["bundle"] = RegistryError("down")
    plan = rel.plan_release(settings, arches=(Arch.AMD64,))
    with pytest.raises(rel.StageFailed, match="'bundle'"):
        stages.run(settings, plan)
    assert not plan.out.exists()
    # only the lock and the mirror stage's report (out_dir/mirror-report.json, as `mirror` writes)
    assert sorted(p.name for p in plan.out.parent.iterdir()) == [rel.LOCK_FILE, "mirror-report.json"]


def test_leftovers_of_an_interrupted_run_are_removed(settings):
    plan = rel.plan_release(settings, arches=(Arch.AMD64,))
    stale = plan.out.parent / (rel.OWN_TMP + "folder-abc")
    (stale / "x").mkdir(parents=True)
    Stages().run(settings, plan)
    assert not stale.exists()


def test_mirror_copies_again_when_the_registry_lost_the_images(settings):
    stages = Stages()
    plan = rel.plan_release(settings, arches=(Arch.AMD64,))
    stages.run(settings, plan)
    stages.calls.clear()
    stages.mirrored_present = False  # e.g. the registry was wiped: the recorded copy is not there
    result = stages.run(settings, plan)
    assert ("mirror", [s.image.name for s in plan.mirror]) in stages.calls
    assert "skipped" not in result.stages["mirror"]
    assert result.changed is False  # same digests again: the folder stays as it was
