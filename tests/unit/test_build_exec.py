"""The executor's decisions (build, skip, join, push), builder inspection, the build report,
stack checks' messages. buildx is replaced by a recording runner and the registry by a
dictionary: what is tested is netship's logic, not Docker's (that is the integration tier)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from netship import buildreport, stack
from netship.arch import Arch
from netship.buildplan import MULTI_PLATFORM, PER_PLATFORM, make_plan
from netship.buildx import BuildState, execute, parse_inspect
from netship.catalog import load_catalog
from netship.digest import Digest
from netship.errors import BuildError, CommandError, ConfigError, RegistryError
from netship.images import load_images, select
from tests.support.fetchtree import write_fetch_tree

ROOT = Path(__file__).resolve().parents[2]
REG = "127.0.0.1:5000/t-unit"


def dg(text: str) -> Digest:
    return Digest("sha256", hashlib.sha256(text.encode()).hexdigest())


class FakeRegistry:
    """tag -> digest, and list digest -> {platform: child digest}."""

    def __init__(self):
        self.tags: dict[str, Digest] = {}
        self.lists: dict[str, dict[str, Digest]] = {}

    def digest(self, ref: str):
        return self.tags.get(ref)

    def tag(self, source: str, tag: str):
        self.tags[tag] = Digest.parse(source.split("@", 1)[1])
        return self.tags[tag]

    def platform_digests(self, ref: str):
        return self.lists[ref.split("@", 1)[1]]


class FakeBuildx:
    """Stands in for `docker buildx`: records argv, 'pushes' into FakeRegistry, writes metadata."""

    def __init__(self, reg: FakeRegistry, fail_on: str | None = None):
        self.reg, self.calls, self.fail_on, self.generation = reg, [], fail_on, 0

    def __call__(self, argv, **kw):
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        if self.fail_on and self.fail_on in " ".join(argv):
            raise CommandError(argv, 1, "", "#8 ERROR: failed to solve: x\nerror: failed to solve: boom here")
        tags = [argv[i + 1] for i, a in enumerate(argv) if a == "--tag"]
        if argv[2] == "build":
            platforms = argv[argv.index("--platform") + 1].split(",")
            d = dg(f"{tags}{platforms}{self.generation}")
            if len(platforms) > 1:
                self.reg.lists[str(d)] = {p: dg(f"{p}{d}") for p in platforms}
            if "--push" in argv:
                for t in tags:
                    self.reg.tags[t] = d
            meta = argv[argv.index("--metadata-file") + 1]
            Path(meta).write_text(json.dumps({"containerimage.digest": str(d)}))
        elif argv[2] == "imagetools":
            sources = argv[argv.index("--tag") + 2:]
            d = dg(f"list {sources}") if len(sources) > 1 else Digest.parse(sources[0].split("@")[1])
            self.reg.tags[tags[0]] = d


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(ROOT / "release")


@pytest.fixture()
def tree(tmp_path, catalog):
    return write_fetch_tree(tmp_path / "tree", load_images(ROOT / "images", catalog), catalog)


def make(catalog, tree, strategy=PER_PLATFORM, names=None, push=True):
    specs = load_images(ROOT / "images", catalog)
    return make_plan(select(specs, catalog, names, None), catalog, context=tree, registry=REG,
                     strategy=strategy, push=push, source_date_epoch=0)


def run(plan, tmp_path, reg, bx):
    state = BuildState.load(tmp_path / "state.json")
    return execute(plan, state, probe=reg, runner=bx, work_dir=tmp_path)


def test_per_platform_builds_each_arch_then_joins_and_reports(catalog, tree, tmp_path):
    reg = FakeRegistry()
    bx = FakeBuildx(reg)
    out = run(make(catalog, tree, names=["flannel"]), tmp_path, reg, bx)
    builds = [c for c in bx.calls if c[2] == "build"]
    joins = [c for c in bx.calls if c[2] == "imagetools"]
    assert len(builds) == 5 and len(joins) == 1
    img = out.report.images["flannel"]
    assert [a.k8s for a in img.arches] == ["amd64", "arm64", "arm", "ppc64le", "s390x"]
    # the list joins the per-arch images by digest, not by (movable) tag
    assert joins[0][joins[0].index("--tag") + 1:] == [img.tag, *[f"{REG}/flannel@{r.digest}" for r in img.arches.values()]]
    assert img.digest == reg.tags[img.tag]
    assert img.arches[Arch.ARM].digest == reg.tags[f"{REG}/flannel:v0.28.9-arm"]
    assert img.arches[Arch.ARM].platform == "linux/arm/v7"
    assert len(out.pushes) == 6


def test_noop_rebuild_runs_nothing(catalog, tree, tmp_path):
    reg, bx = FakeRegistry(), None
    bx = FakeBuildx(reg)
    first = run(make(catalog, tree), tmp_path, reg, bx)
    n = len(bx.calls)
    second = run(make(catalog, tree), tmp_path, reg, bx)
    assert len(bx.calls) == n, "a no-op rebuild must not call buildx"
    assert second.pushes == () and second.builds == ()
    assert second.report.to_json() == first.report.to_json()


def test_changed_binary_rebuilds_only_that_arch_and_rejoins(catalog, tree, tmp_path):
    reg = FakeRegistry()
    bx = FakeBuildx(reg)
    run(make(catalog, tree, names=["flannel"]), tmp_path, reg, bx)
    bx.calls.clear()
    bx.generation = 1
    (tree / "flannel/v0.28.9/ppc64le/flanneld").write_bytes(b"new")
    out = run(make(catalog, tree, names=["flannel"]), tmp_path, reg, bx)
    assert [c[c.index("--platform") + 1] for c in bx.calls if c[2] == "build"] == ["linux/ppc64le"]
    assert [a.kind for a in out.actions] == ["cached", "cached", "cached", "build", "cached", "join"]


def test_tag_moved_in_registry_is_rebuilt(catalog, tree, tmp_path):
    reg = FakeRegistry()
    bx = FakeBuildx(reg)
    run(make(catalog, tree, names=["flannel"]), tmp_path, reg, bx)
    bx.calls.clear()
    reg.tags[f"{REG}/flannel:v0.28.9-s390x"] = dg("someone else")  # overwritten behind our back
    del reg.tags[f"{REG}/flannel:v0.28.9-arm"]  # or deleted
    run(make(catalog, tree, names=["flannel"]), tmp_path, reg, bx)
    assert sorted(c[c.index("--platform") + 1] for c in bx.calls if c[2] == "build") == ["linux/arm/v7", "linux/s390x"]


def test_no_push_always_builds_and_reports_no_digests(catalog, tree, tmp_path):
    reg = FakeRegistry()
    bx = FakeBuildx(reg)
    out = run(make(catalog, tree, names=["cni-plugins"], push=False), tmp_path, reg, bx)
    assert all("--push" not in c for c in bx.calls) and len(bx.calls) == 5
    img = out.report.images["cni-plugins"]
    assert img.digest is None and all(r.digest is None for r in img.arches.values())
    assert reg.tags == {}


def test_multi_platform_one_build_then_per_arch_tags(catalog, tree, tmp_path):
    reg = FakeRegistry()
    bx = FakeBuildx(reg)
    out = run(make(catalog, tree, strategy=MULTI_PLATFORM, names=["kube-router"]), tmp_path, reg, bx)
    assert len(bx.calls) == 1 and bx.calls[0][2] == "build"  # per-arch tags via the registry, not buildx
    img = out.report.images["kube-router"]
    children = reg.lists[str(img.digest)]
    for arch, r in img.arches.items():
        assert r.digest == children[arch.platform] == reg.tags[r.tag]
    bx.calls.clear()
    again = run(make(catalog, tree, strategy=MULTI_PLATFORM, names=["kube-router"]), tmp_path, reg, bx)
    assert bx.calls == [] and again.pushes == ()


def test_buildx_failure_is_one_line_with_the_error(catalog, tree, tmp_path):
    reg = FakeRegistry()
    with pytest.raises(BuildError) as e:
        run(make(catalog, tree, names=["flannel"]), tmp_path, reg, FakeBuildx(reg, fail_on="linux/arm64"))
    assert str(e.value) == "building flannel for linux/arm64 failed: error: failed to solve: boom here (`netship build --dry-run` shows the buildx command)"


def test_parallel_builds_give_the_same_result_in_plan_order(catalog, tree, tmp_path):
    reg1, reg4 = FakeRegistry(), FakeRegistry()
    bx1, bx4 = FakeBuildx(reg1), FakeBuildx(reg4)
    one = execute(make(catalog, tree), BuildState.load(tmp_path / "s1.json"), probe=reg1, runner=bx1, work_dir=tmp_path)
    four = execute(make(catalog, tree), BuildState.load(tmp_path / "s4.json"), probe=reg4, runner=bx4,
                   work_dir=tmp_path, jobs=4)
    assert four.report == one.report and reg4.tags == reg1.tags
    def calls(bx):  # without the temporary metadata file names
        return sorted(tuple(a for a in c if "netship-buildx-" not in a) for c in bx.calls)

    assert calls(bx4) == calls(bx1)
    assert [(a.image, a.arch, a.kind) for a in four.actions] == [(a.image, a.arch, a.kind) for a in one.actions]
    assert [(a.image, a.arch) for a in four.actions][:6] == [
        ("cni-plugins", a) for a in ("amd64", "arm64", "arm", "ppc64le", "s390x")] + [("cni-plugins", None)]


def test_a_failed_build_keeps_the_others_state(catalog, tree, tmp_path):
    reg = FakeRegistry()
    with pytest.raises(BuildError):
        execute(make(catalog, tree, names=["flannel"]), BuildState.load(tmp_path / "s.json"), probe=reg,
                runner=FakeBuildx(reg, fail_on="linux/s390x"), work_dir=tmp_path)
    saved = BuildState.load(tmp_path / "s.json")
    assert sorted(saved.targets) == [f"{REG}/flannel:v0.28.9-{a}" for a in ("amd64", "arm", "arm64", "ppc64le")]
    bx = FakeBuildx(reg)
    execute(make(catalog, tree, names=["flannel"]), saved, probe=reg, runner=bx, work_dir=tmp_path)
    assert [c[c.index("--platform") + 1] for c in bx.calls if c[2] == "build"] == ["linux/s390x"]


def test_torn_state_file_costs_a_rebuild_not_an_error(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    assert BuildState.load(tmp_path / "state.json").targets == {}


# -- builder inspection ----------------------------------------------------------------

DOCKER_DRIVER = """Name:   default
Driver: docker

Nodes:
Name:             default
Endpoint:         default
Status:           running
BuildKit version: v0.8+unknown
Platforms:        linux/amd64, linux/arm64, linux/ppc64le, linux/s390x, linux/386, linux/arm/v7, linux/arm/v6
"""

MULTI_NODE = """Name:          fleet
Driver:        remote
Last Activity: 2026-03-01 10:00:00 +0000 UTC

Nodes:
Name:      fleet0
Endpoint:  tcp://10.0.0.5:1234
Status:    running
BuildKit version: v0.13.1
Platforms: linux/arm64*

Name:      fleet1
Endpoint:  tcp://10.0.0.6:1234
Status:    running
BuildKit version: v0.13.1
Platforms: linux/s390x*, linux/amd64
"""


def test_parse_inspect_docker_driver():
    b = parse_inspect(DOCKER_DRIVER)
    assert (b.name, b.driver, b.nodes, b.strategy) == ("default", "docker", 1, PER_PLATFORM)
    assert "linux/arm/v7" in b.platforms


def test_parse_inspect_multi_node():
    b = parse_inspect(MULTI_NODE)
    assert (b.name, b.driver, b.nodes, b.strategy) == ("fleet", "remote", 2, MULTI_PLATFORM)
    assert b.platforms == ("linux/arm64", "linux/s390x", "linux/amd64")


def test_parse_inspect_garbage():
    with pytest.raises(BuildError, match="could not read `docker buildx inspect`"):
        parse_inspect("hello")


def test_builder_without_a_platform_is_a_clear_error():
    with pytest.raises(BuildError, match=r"builder fleet cannot build linux/ppc64le .*add a node for linux/ppc64le"):
        stack.check_builder_platforms("fleet", ("linux/arm64", "linux/amd64"), ["linux/arm64", "linux/ppc64le"])


# -- stack checks -----------------------------------------------------------------------


def test_binfmt_missing_for_foreign_arch(tmp_path):
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/bin/qemu-aarch64-static\n")
    (tmp_path / "qemu-s390x").write_text("disabled\n")
    stack.check_binfmt([Arch.AMD64, Arch.ARM64], tmp_path, native=Arch.AMD64)
    with pytest.raises(BuildError) as e:
        stack.check_binfmt([Arch.S390X], tmp_path, native=Arch.AMD64)
    assert str(e.value).startswith(f"--arch s390x: no binfmt for linux/s390x ({tmp_path}/qemu-s390x is missing or disabled)")
    assert "qemu-user-static" in str(e.value)
    with pytest.raises(BuildError, match="qemu-ppc64le"):
        stack.check_binfmt([Arch.PPC64LE], tmp_path, native=Arch.AMD64)


def test_registry_unreachable_says_what_to_do():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(RegistryError) as e:
        stack.check_registry(f"127.0.0.1:{port}/prefix", timeout=2)
    assert str(e.value).startswith(f"registry 127.0.0.1:{port} is unreachable")
    assert "netship registry start" in str(e.value)


# -- build report ----------------------------------------------------------------------


def _report():
    a = buildreport.ArchResult(Arch.ARM, "linux/arm/v7", f"{REG}/flannel:v0.28.9-arm", dg("arm"))
    img = buildreport.ImageResult("flannel", "v0.28.9", f"{REG}/flannel", f"{REG}/flannel:v0.28.9", dg("list"),
                                  {"flannel": "v0.28.9"}, {Arch.ARM: a})
    return buildreport.BuildReport(registry=REG, images={"flannel": img})


def test_report_round_trip_and_shape(tmp_path):
    path = tmp_path / "out" / "build-report.json"
    buildreport.save(path, _report())
    raw = json.loads(path.read_text())
    assert raw["registry"] == REG and raw["netship_version"]
    assert raw["images"]["flannel"]["arches"]["arm"] == {
        "platform": "linux/arm/v7", "tag": f"{REG}/flannel:v0.28.9-arm", "digest": str(dg("arm"))}
    assert raw["images"]["flannel"]["digest"] == str(dg("list"))
    back = buildreport.load(path)
    assert back == _report()
    assert str(back.image("flannel").arches[Arch.ARM].ref) == f"{REG}/flannel:v0.28.9-arm@{dg('arm')}"


def test_report_errors(tmp_path):
    with pytest.raises(ConfigError, match="no build report; run `netship build` first"):
        buildreport.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text('{"registry": "r", "images": {"x": {"name": "x"}}}')
    with pytest.raises(ConfigError, match="malformed build report"):
        buildreport.load(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match=r"unknown image 'flanel' \(did you mean 'flannel'\?\)"):
        _report().image("flanel")


def test_report_merge_keeps_other_images():
    r = _report()
    other = buildreport.BuildReport(registry=REG, images={"x": r.images["flannel"]})
    merged = r.merged(other)
    assert sorted(merged.images) == ["flannel", "x"]
    assert buildreport.BuildReport(registry="elsewhere").merged(other) == other


def test_no_docker_no_daemon_no_buildx_messages(monkeypatch):
    import netship.proc
    from netship.errors import MissingTool

    def missing(argv, **kw):
        raise MissingTool("docker not found on PATH")

    monkeypatch.setattr(netship.proc, "run", missing)
    with pytest.raises(MissingTool, match=r"^docker not found on PATH: install Docker Engine with buildx"):
        stack.check_docker()

    def no_daemon(argv, **kw):
        raise CommandError(list(argv), 1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.")

    monkeypatch.setattr(netship.proc, "run", no_daemon)
    with pytest.raises(BuildError, match=r"^the Docker daemon does not answer \(Cannot connect.*\): start dockerd"):
        stack.check_docker()
    with pytest.raises(MissingTool, match=r"^docker buildx is not installed: put the docker-buildx plugin in ~/.docker/cli-plugins/"):
        stack.check_buildx()


def test_dry_run_needs_no_docker(monkeypatch, tmp_path, catalog, tree):
    import netship.proc
    from netship import buildx
    from netship.buildplan import BuildPlan
    from netship.errors import MissingTool
    from netship.settings import Settings

    def missing(argv, **kw):
        raise MissingTool("docker not found on PATH")

    monkeypatch.setattr(netship.proc, "run", missing)
    cache = tmp_path / "cache"
    cache.mkdir()
    tree.rename(cache / "tree")
    s = Settings(catalog_dir=ROOT / "release", cache_dir=cache, out_dir=tmp_path / "out", registry=REG,
                 source_date_epoch=0)
    plan = buildx.build(s, images=["flannel-cni-plugin"], arches=[Arch.ARM64], dry_run=True)
    assert isinstance(plan, BuildPlan) and plan.strategy == PER_PLATFORM
    assert [t.tag for t in plan.images[0].targets] == [f"{REG}/flannel-cni-plugin:v1.9.1-flannel1-arm64"]
    assert not (tmp_path / "out").exists()  # a dry run writes no report
    with pytest.raises(MissingTool):
        buildx.build(s, images=["flannel-cni-plugin"], arches=[Arch.ARM64])
