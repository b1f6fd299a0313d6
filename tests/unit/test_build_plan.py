"""Image specs, build plans for both strategies, tags, labels, arch skipping, input hashes. No Docker."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from netship.arch import ALL_ARCHES, Arch
from netship.buildplan import (
    MULTI_PLATFORM,
    PER_PLATFORM,
    BuilderInfo,
    FileHasher,
    arg_name,
    created_timestamp,
    describe,
    make_plan,
)
from netship.catalog import load_catalog
from netship.errors import BuildError, ConfigError, UsageError
from netship.images import dockerfile_mismatches, load_images, select
from tests.support.fetchtree import write_fetch_tree

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
REG = "127.0.0.1:5000/t-unit"
EPOCH = 1_767_225_600


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(ROOT / "release")


@pytest.fixture(scope="module")
def specs(catalog):
    return load_images(IMAGES, catalog)


@pytest.fixture()
def tree(tmp_path, specs, catalog):
    """A fetch tree holding every file the specs name, for every arch."""
    return write_fetch_tree(tmp_path / "tree", specs, catalog)


def plan(specs, catalog, tree, strategy=PER_PLATFORM, names=None, arches=None, **kw):
    sel = select(specs, catalog, names, arches)
    return make_plan(sel, catalog, context=tree, registry=REG, strategy=strategy, source_date_epoch=EPOCH, **kw)


# -- specs ---------------------------------------------------------------------------------


def test_the_four_images_and_their_versions(specs, catalog):
    assert sorted(specs) == ["cni-plugins", "flannel", "flannel-cni-plugin", "kube-router"]
    assert {n: s.version(catalog) for n, s in specs.items()} == {
        "cni-plugins": "v1.9.1", "flannel": "v0.28.9", "flannel-cni-plugin": "v1.9.1-flannel1",
        "kube-router": "v2.11.1"}
    assert specs["kube-router"].components == ("kube-router", "cni-plugins")
    assert specs["flannel"].entrypoint == ("/opt/bin/flanneld",)


@pytest.mark.parametrize("name", ["cni-plugins", "flannel", "flannel-cni-plugin", "kube-router"])
def test_dockerfile_agrees_with_spec(specs, name):
    assert dockerfile_mismatches(specs[name]) == []


@pytest.mark.parametrize("name", ["cni-plugins", "flannel", "flannel-cni-plugin", "kube-router"])
def test_dockerfile_is_copy_only_with_labels_and_one_base_argument(specs, name):
    text = specs[name].dockerfile.read_text()
    final = text.split("FROM ${BASE_IMAGE}", 1)[1]
    assert "ARG BASE_IMAGE=runtime-alpine" in text
    assert " AS runtime-alpine" in text
    assert not re.search(r"^\s*(RUN|ADD)\b", final, re.MULTILINE), "the target stage must only COPY"
    assert not re.search(r"curl|wget", text)
    assert not text.lstrip().startswith("# syntax")
    for label in ("source", "version", "revision", "created"):
        assert f"org.opencontainers.image.{label}=" in final
    # the Alpine stage is pinned by digest
    assert re.search(r"^FROM \S+@sha256:[0-9a-f]{64} AS runtime-alpine$", text, re.MULTILINE)


def test_dockerfile_mismatch_is_reported(specs, tmp_path):
    spec = specs["flannel"]
    bad = tmp_path / "flannel.Dockerfile"
    bad.write_text(spec.dockerfile.read_text().replace("/flanneld /opt/bin/flanneld", "/flanneld /flanneld"))
    from dataclasses import replace

    problems = dockerfile_mismatches(replace(spec, dockerfile=bad))
    assert any("no COPY to /opt/bin/flanneld" in p for p in problems)
    assert any("/flanneld is not in flannel.yml" in p for p in problems)


def _spec_dir(tmp_path: Path, text: str, name: str = "x") -> Path:
    d = tmp_path / "images"
    d.mkdir()
    (tmp_path / "dockerfiles").mkdir()
    (tmp_path / "dockerfiles" / "x.Dockerfile").write_text("FROM scratch\n")
    (d / f"{name}.yml").write_text(text)
    return d


GOOD = """name: x
dockerfile: x.Dockerfile
version_from: calicoctl
binaries: [{component: calicoctl, file: calicoctl, dest: /usr/bin/calicoctl}]
entrypoint: [/usr/bin/calicoctl]
"""


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("entrypoint", "entrypiont"), "unknown key 'entrypiont' (did you mean 'entrypoint'?)"),
    (GOOD.replace("component: calicoctl", "component: calico"), "unknown component 'calico'"),
    (GOOD.replace("dest: /usr/bin/calicoctl", "dest: usr/bin/calicoctl"), "must be an absolute path"),
    (GOOD.replace("file: calicoctl", "file: ../calicoctl"), "relative path inside the fetch tree"),
    (GOOD.replace("name: x", "name: y"), "must match the file name"),
    (GOOD.replace("dockerfile: x.Dockerfile", "dockerfile: nope.Dockerfile"), "nope.Dockerfile not found"),
    (GOOD.replace("version_from: calicoctl\n", ""), "missing key 'version_from'"),
    (GOOD.replace("file: calicoctl", 'file: "*"'), "file '*' (the whole tree) goes with a folder dest ending in '/'"),
])
def test_spec_errors_name_file_and_key(tmp_path, catalog, text, message):
    d = _spec_dir(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_images(d, catalog)
    assert message in str(e.value)
    assert str(d / "x.yml") in str(e.value)


def test_arch_a_component_does_not_publish_is_skipped_with_a_note(tmp_path, catalog):
    specs = load_images(_spec_dir(tmp_path, GOOD), catalog)
    skipped: list[str] = []
    sel = select(specs, catalog, None, ALL_ARCHES, skipped=skipped)
    assert sel == [(specs["x"], (Arch.AMD64, Arch.ARM64, Arch.PPC64LE, Arch.S390X))]
    assert skipped == ["image x skipped for arm: component calicoctl v3.31.7 does not publish it "
                       "(it publishes amd64, arm64, ppc64le, s390x)"]


def test_arch_asked_for_explicitly_with_the_image_is_an_error(tmp_path, catalog):
    specs = load_images(_spec_dir(tmp_path, GOOD), catalog)
    with pytest.raises(UsageError, match=r"--arch arm: image x skipped for arm: component calicoctl"):
        select(specs, catalog, ["x"], [Arch.ARM], explicit_arches=True)
    # not explicit arches: just a note
    assert select(specs, catalog, ["x"], [Arch.ARM, Arch.S390X]) == [(specs["x"], (Arch.S390X,))]


def test_unknown_image_suggests(specs, catalog):
    with pytest.raises(ConfigError, match=r"unknown image 'flanel' \(did you mean 'flannel'\?\)"):
        select(specs, catalog, ["flanel"], None)


# -- plans ---------------------------------------------------------------------------------


def test_per_platform_plan_one_call_per_arch_then_join(specs, catalog, tree):
    p = plan(specs, catalog, tree, names=["flannel"], base_image=f"{REG}/base:multi")
    (img,) = p.images
    assert img.tag == f"{REG}/flannel:v0.28.9"
    assert [t.tag for t in img.targets] == [f"{REG}/flannel:v0.28.9-{a}" for a in ("amd64", "arm64", "arm", "ppc64le", "s390x")]
    assert [c.platforms for c in img.calls] == [(a.platform,) for a in ALL_ARCHES]
    argv = img.calls[2].argv()
    assert argv[:3] == ["docker", "buildx", "build"]
    assert argv[argv.index("--platform") + 1] == "linux/arm/v7"
    assert argv[argv.index("--tag") + 1] == f"{REG}/flannel:v0.28.9-arm"
    assert argv.count("--tag") == 1
    assert "--push" in argv and argv[-1] == str(tree)
    args = [argv[i + 1] for i, a in enumerate(argv) if a == "--build-arg"]
    assert f"BASE_IMAGE={REG}/base:multi" in args
    assert "FLANNEL_VERSION=v0.28.9" in args
    assert "OCI_CREATED=2026-01-01T00:00:00Z" in args
    assert "OCI_SOURCE=https://github.com/flannel-io/flannel" in args
    assert f"SOURCE_DATE_EPOCH={EPOCH}" in args
    lines = describe(p)
    join = [line for line in lines if "imagetools create" in line]
    assert len(join) == 1 and f"--tag {REG}/flannel:v0.28.9 {REG}/flannel@<amd64 digest>" in join[0]


def test_multi_platform_plan_one_call_for_all_arches(specs, catalog, tree):
    p = plan(specs, catalog, tree, strategy=MULTI_PLATFORM, builder="multi")
    assert len(p.images) == 4
    for img in p.images:
        (call,) = img.calls
        argv = call.argv()
        assert argv[argv.index("--builder") + 1] == "multi"
        assert argv[argv.index("--platform") + 1] == "linux/amd64,linux/arm64,linux/arm/v7,linux/ppc64le,linux/s390x"
        assert [argv[i + 1] for i, a in enumerate(argv) if a == "--tag"] == [img.tag]
        assert "--provenance=false" in argv  # no attestation entry in the list
        assert not any(a.startswith("BASE_IMAGE=") for a in argv)  # default: the Alpine stage
    assert not [line for line in describe(p) if "imagetools create" in line]
    per_arch_tags = [line for line in describe(p) if line.startswith("  registry: tag ")]
    assert len(per_arch_tags) == 20


def test_no_push_plan(specs, catalog, tree):
    p = plan(specs, catalog, tree, names=["cni-plugins"], arches=[Arch.S390X], push=False)
    (call,) = p.images[0].calls
    assert "--push" not in call.argv()
    assert not [line for line in describe(p) if "imagetools" in line]


def test_kube_router_carries_both_component_versions(specs, catalog, tree):
    p = plan(specs, catalog, tree, names=["kube-router"], arches=[Arch.ARM64])
    args = dict(p.images[0].calls[0].build_args)
    assert args["KUBE_ROUTER_VERSION"] == "v2.11.1" and args["CNI_PLUGINS_VERSION"] == "v1.9.1"
    assert dict(p.images[0].components) == {"kube-router": "v2.11.1", "cni-plugins": "v1.9.1"}
    assert [f for f, _ in p.images[0].targets[0].files][:2] == [
        "kube-router/v2.11.1/arm64/kube-router", "cni-plugins/v1.9.1/arm64/bridge"]


def test_missing_fetched_binary_says_what_to_run(specs, catalog, tree):
    (tree / "flannel/v0.28.9/s390x/flanneld").unlink()
    with pytest.raises(BuildError) as e:
        plan(specs, catalog, tree, names=["flannel"])
    msg = str(e.value)
    assert "flannel s390x" in msg and "flannel/v0.28.9/s390x/flanneld is missing" in msg
    assert "netship fetch --component flannel --arch s390x" in msg


def _hashes(p):
    return {t.tag: t.input_hash for img in p.images for t in img.targets}


def test_input_hash_follows_every_input(specs, catalog, tree, tmp_path):
    base = _hashes(plan(specs, catalog, tree))
    assert _hashes(plan(specs, catalog, tree)) == base  # stable
    assert len(set(base.values())) == 20  # every image x arch differs
    # one binary changes: only that image/arch (and kube-router, which holds the same plugin)
    (tree / "cni-plugins/v1.9.1/arm/bridge").write_bytes(b"changed")
    changed = {k for k, v in _hashes(plan(specs, catalog, tree)).items() if base[k] != v}
    assert changed == {f"{REG}/cni-plugins:v1.9.1-arm", f"{REG}/kube-router:v2.11.1-arm"}
    (tree / "cni-plugins/v1.9.1/arm/bridge").write_bytes(b"cni-plugins bridge arm")
    assert _hashes(plan(specs, catalog, tree)) == base
    # the base image moved, the epoch changed: everything rebuilds
    assert not set(_hashes(plan(specs, catalog, tree, base_image="b:1", base_digest="sha256:" + "1" * 64)).values()) & set(base.values())
    other = make_plan(select(specs, catalog, None, None), catalog, context=tree, registry=REG,
                      strategy=PER_PLATFORM, source_date_epoch=EPOCH + 1)
    assert not set(_hashes(other).values()) & set(base.values())


def test_whole_tree_image_takes_every_file_of_the_arch(specs, catalog, tree):
    p = plan(specs, catalog, tree, names=["cni-plugins"], arches=[Arch.PPC64LE])
    files = [f for f, _ in p.images[0].targets[0].files]
    assert files == sorted(f"cni-plugins/v1.9.1/ppc64le/{n}" for n in ("README.md", "bridge", "host-local", "loopback", "portmap"))
    before = p.images[0].targets[0].input_hash
    (tree / "cni-plugins/v1.9.1/ppc64le/vrf").write_bytes(b"a plugin the next release adds")
    after = plan(specs, catalog, tree, names=["cni-plugins"], arches=[Arch.PPC64LE])
    assert "cni-plugins/v1.9.1/ppc64le/vrf" in [f for f, _ in after.images[0].targets[0].files]
    assert after.images[0].targets[0].input_hash != before
    import shutil as sh

    sh.rmtree(tree / "cni-plugins/v1.9.1/ppc64le")
    with pytest.raises(BuildError, match=r"fetched tree .*cni-plugins/v1.9.1/ppc64le is missing or empty; run `netship fetch --component cni-plugins --arch ppc64le`"):
        plan(specs, catalog, tree, names=["cni-plugins"], arches=[Arch.PPC64LE])


def test_dockerfile_change_changes_the_hash(specs, catalog, tree, tmp_path):
    from dataclasses import replace

    df = tmp_path / "f.Dockerfile"
    shutil.copy(specs["flannel"].dockerfile, df)
    s2 = {"flannel": replace(specs["flannel"], dockerfile=df)}
    a = _hashes(make_plan(select(s2, catalog, None, None), catalog, context=tree, registry=REG,
                          strategy=PER_PLATFORM, source_date_epoch=EPOCH))
    df.write_text(df.read_text() + "\n# edit\n")
    b = _hashes(make_plan(select(s2, catalog, None, None), catalog, context=tree, registry=REG,
                          strategy=PER_PLATFORM, source_date_epoch=EPOCH))
    assert a.keys() == b.keys() and not set(a.values()) & set(b.values())


def test_file_hasher_memo_is_keyed_by_stat(tmp_path):
    f = tmp_path / "b"
    f.write_bytes(b"one")
    memo: dict[str, str] = {}
    h1 = FileHasher(memo)(f)
    assert len(memo) == 1 and FileHasher(memo)(f) == h1
    f.write_bytes(b"two!")
    assert FileHasher(memo)(f) != h1


def test_strategy_from_builder():
    assert BuilderInfo("default", "docker").strategy == PER_PLATFORM
    assert BuilderInfo("b", "docker-container").strategy == MULTI_PLATFORM
    assert BuilderInfo("b", "remote").strategy == MULTI_PLATFORM
    assert BuilderInfo("b", "docker", nodes=2).strategy == MULTI_PLATFORM


def test_helpers():
    assert arg_name("flannel-cni-plugin") == "FLANNEL_CNI_PLUGIN_VERSION"
    assert created_timestamp(0) == "1970-01-01T00:00:00Z"
    assert created_timestamp(EPOCH) == "2026-01-01T00:00:00Z"


def test_plan_json_is_plain_data(specs, catalog, tree):
    import json

    doc = plan(specs, catalog, tree, names=["flannel"], arches=[Arch.AMD64]).to_json()
    again = json.loads(json.dumps(doc))
    assert again["strategy"] == PER_PLATFORM and again["images"][0]["targets"][0]["platform"] == "linux/amd64"
