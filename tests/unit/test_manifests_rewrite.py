"""Registry rewrite of any manifest: the two real upstream manifests and every workload kind."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from netship.digest import Digest
from netship.errors import ConfigError
from netship.imageref import ImageRef
from netship.manifests.rewrite import rewrite_documents
from netship.manifests.validate import validate_documents
from netship.manifests.workloads import containers
from netship.manifests.yamlio import dump_documents, load_file
from tests.support.upstream_manifests import FLANNEL, KUBE_ROUTER

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data" / "manifests"
REG = "127.0.0.1:5000"


def _restore(rewritten, original):
    """rewritten documents with every image put back as in original (to compare the rest)."""
    back = copy.deepcopy(rewritten)
    for d, o in zip(back, original, strict=True):
        for (_f, c), (_g, oc) in zip(containers(d), containers(o), strict=True):
            c["image"] = oc["image"]
    return back


@pytest.mark.parametrize("path", [FLANNEL, KUBE_ROUTER], ids=["flannel", "kube-router"])
def test_upstream_every_image_moved_nothing_else_changed(path):
    original = load_file(path)
    docs, changes = rewrite_documents(original, REG)
    images = [c["image"] for d in docs for _f, c in containers(d)]
    assert images and all(i.startswith(REG + "/") for i in images)
    assert len(changes) == len(images)
    assert _restore(docs, original) == original
    assert original == load_file(path)  # the input was not modified in place
    # the text round-trips: what we print parses to the same documents
    assert [d for d in yaml.safe_load_all(dump_documents(docs)) if d] == docs
    validate_documents(docs, ("1.35", "1.37"), path.name)


def test_upstream_flannel_references():
    docs, changes = rewrite_documents(load_file(FLANNEL), REG)
    assert [(c.field, c.container, c.old, c.new) for c in changes] == [
        ("initContainers", "install-cni-plugin", "ghcr.io/flannel-io/flannel-cni-plugin:v1.9.1-flannel3",
         f"{REG}/flannel-io/flannel-cni-plugin:v1.9.1-flannel3"),
        ("initContainers", "install-cni", "ghcr.io/flannel-io/flannel:v0.28.9", f"{REG}/flannel-io/flannel:v0.28.9"),
        ("containers", "kube-flannel", "ghcr.io/flannel-io/flannel:v0.28.9", f"{REG}/flannel-io/flannel:v0.28.9"),
    ]


def test_upstream_kube_router_untagged_reference_stays_untagged():
    _docs, changes = rewrite_documents(load_file(KUBE_ROUTER), "reg.example:5000/mirror")
    # kube-router lists its containers before its init containers; order follows the pod spec fields
    assert {(c.field, c.old, c.new) for c in changes} == {
        ("containers", "docker.io/cloudnativelabs/kube-router", "reg.example:5000/mirror/cloudnativelabs/kube-router"),
        ("initContainers", "docker.io/cloudnativelabs/kube-router", "reg.example:5000/mirror/cloudnativelabs/kube-router"),
    }


def test_every_workload_kind_and_tricky_reference():
    original = load_file(DATA / "workloads.yaml")
    docs, changes = rewrite_documents(original, REG)
    d1 = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    d2 = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
    assert [(c.kind, c.container, c.new) for c in changes] == [
        ("Pod", "init", f"{REG}/busybox:1.36@{d1}"),
        ("Pod", "main", f"{REG}/busybox"),
        ("Pod", "shell", f"{REG}/tools/shell:v1"),
        ("CronJob", "wait", f"{REG}/pause:3.10"),
        ("CronJob", "job", f"{REG}/org/tool@{d2}"),
        ("Job", "job", f"{REG}/myuser/myimage:2.0"),
        ("StatefulSet", "db", f"{REG}/db/postgres:16"),
        ("Deployment", "web", f"{REG}/nginx:1.27"),
        ("Deployment", "sidecar", f"{REG}/example/sidecar"),
        ("List", "c", f"{REG}/x/y:z"),
    ]
    assert _restore(docs, original) == original
    # the Service's annotation mentioning an image is not an image field
    assert docs[-1] == original[-1]
    report = validate_documents(docs, ("1.35",), "workloads.yaml")
    assert report.checked == len(original)  # the List's one item replaces the List


def test_pinning_uses_the_resolver_and_keeps_existing_digests():
    asked = []

    def resolve(ref: ImageRef) -> Digest:
        asked.append(str(ref))
        return Digest.parse("sha256:" + "ab" * 32)

    docs, changes = rewrite_documents(load_file(DATA / "workloads.yaml"), REG, resolve)
    assert f"{REG}/busybox" in asked and f"{REG}/nginx:1.27" in asked
    assert not any("@" in a for a in asked)  # already pinned references are not asked for
    assert all("@sha256:" in c.new for c in changes)
    assert f"{REG}/nginx:1.27@sha256:{'ab' * 32}" in [c.new for c in changes]


def test_bad_reference_names_document_and_container():
    docs = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
             "spec": {"containers": [{"name": "c", "image": "Bad Image"}]}}]
    with pytest.raises(ConfigError, match=r"^x.yml: document 1 container c: invalid image reference 'Bad Image'$"):
        rewrite_documents(docs, REG, where="x.yml")
