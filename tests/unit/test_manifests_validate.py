"""Schema validation with kubernetes-validate's bundled schemas, offline, across versions."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path

import pytest

from netship.manifests.validate import (
    END_OF_LIFE,
    ManifestInvalid,
    default_versions,
    shipped_versions,
    validate_documents,
)
from netship.manifests.yamlio import load_file

GOLDEN = Path(__file__).parent / "data" / "manifests" / "golden"
SHIPPED = ("1.25", "1.26", "1.27", "1.28", "1.29", "1.30", "1.31", "1.32", "1.33", "1.34", "1.35", "1.36", "1.37")


def test_package_ships_schemas_offline():
    shipped = shipped_versions()
    assert shipped[0] <= "1.25" and len(shipped) >= 2
    assert all(v in END_OF_LIFE for v in shipped), "extend END_OF_LIFE for the newer kubernetes-validate"


@pytest.mark.parametrize(
    "today, expected",
    [
        (dt.date(2026, 12, 3), ("1.35", "1.37")),  # 1.34 ended 2026-10-27
        (dt.date(2026, 10, 27), ("1.34", "1.37")),
        (dt.date(2027, 3, 1), ("1.36", "1.37")),
        (dt.date(2030, 1, 1), ("1.37",)),  # nothing shipped is supported: the newest only
    ],
)
def test_default_versions_oldest_supported_and_newest(today, expected):
    assert default_versions(today, SHIPPED) == expected


def test_unknown_newer_minor_counts_as_supported():
    assert default_versions(dt.date(2030, 1, 1), (*SHIPPED, "1.40")) == ("1.40",)


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.yml")), ids=lambda p: p.stem)
def test_goldens_valid_for_every_shipped_version(golden):
    report = validate_documents(load_file(golden), shipped_versions(), golden.name)
    assert report.checked >= 4


def _daemonset():
    return copy.deepcopy(next(d for d in load_file(GOLDEN / "flannel-multi-arch.yml") if d["kind"] == "DaemonSet"))


def test_unknown_field_is_an_error():
    ds = _daemonset()
    ds["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(ManifestInvalid, match=r"^f.yml: DaemonSet kube-flannel/kube-flannel-ds is invalid for Kubernetes "
                                              r"1.35: spec.template.spec.containers.0: Additional properties .*imagePullPolcy"):
        validate_documents([ds], ("1.35",), "f.yml")


def test_wrong_type_and_missing_field_are_errors():
    ds = _daemonset()
    ds["spec"]["template"]["spec"]["hostNetwork"] = "yes"
    with pytest.raises(ManifestInvalid, match=r"spec.template.spec.hostNetwork: 'yes' is not of type 'boolean'"):
        validate_documents([ds], ("1.37",))
    ds = _daemonset()
    del ds["spec"]["template"]["spec"]["containers"]
    with pytest.raises(ManifestInvalid, match=r"'containers' is a required property"):
        validate_documents([ds], ("1.37",))


def test_removed_builtin_api_is_an_error():
    ds = _daemonset()
    ds["apiVersion"] = "extensions/v1beta1"
    with pytest.raises(ManifestInvalid, match=r"Kubernetes 1.35 does not serve DaemonSet in extensions/v1beta1"):
        validate_documents([ds], ("1.35",))


def test_custom_resources_are_listed_not_failed():
    cr = {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "p"}, "spec": {"cidr": "x"}}
    report = validate_documents([cr, _daemonset()], ("1.35", "1.37"))
    assert report.unchecked == ("crd.projectcalico.org/v1 IPPool p",) and report.checked == 1


def test_document_without_kind():
    with pytest.raises(ManifestInvalid, match=r"document 1 has no kind/apiVersion"):
        validate_documents([{"metadata": {}}], ("1.35",))
