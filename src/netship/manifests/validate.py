"""Schema validation of every document netship writes, with kubernetes-validate's bundled
OpenAPI schemas (offline), for the oldest and the newest Kubernetes minor versions that the
installed package ships and that are still supported upstream.

Strict schemas are used: an unknown field (a typo) is an error, as are a wrong type, a
missing required field, and a built-in kind whose apiVersion a version no longer serves.
Custom resources (API groups not ending in ``k8s.io``) have no schema and are listed as
unchecked rather than failing.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
import referencing
from kubernetes_validate import utils as kv_utils

from ..errors import NetshipError

# End of maintenance per Kubernetes minor (kubernetes.io/releases/patch-releases; 1.35 and
# later are projected from the 14-month cycle). Extend when kubernetes-validate ships newer.
END_OF_LIFE: dict[str, dt.date] = {
    "1.25": dt.date(2023, 10, 28),
    "1.26": dt.date(2024, 2, 28),
    "1.27": dt.date(2024, 6, 28),
    "1.28": dt.date(2024, 10, 28),
    "1.29": dt.date(2025, 2, 28),
    "1.30": dt.date(2025, 6, 28),
    "1.31": dt.date(2025, 10, 28),
    "1.32": dt.date(2026, 2, 28),
    "1.33": dt.date(2026, 6, 28),
    "1.34": dt.date(2026, 10, 27),
    "1.35": dt.date(2027, 2, 28),
    "1.36": dt.date(2027, 6, 28),
    "1.37": dt.date(2027, 10, 28),
}


class SchemaMissing(Exception):
    """kubernetes-validate has no schema for this kind/apiVersion at that version."""


class ManifestInvalid(NetshipError):
    """A document fails the Kubernetes schema: exit 1, one line naming file, object and field."""


def _minor_key(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def shipped_versions() -> list[str]:
    """Kubernetes minors the installed kubernetes-validate has schemas for, oldest first."""
    minors = {".".join(v.split(".")[:2]) for v in kv_utils.all_versions()}
    return sorted(minors, key=_minor_key)


@functools.cache
def _definitions(schema_dir: str) -> referencing.Resource:
    return referencing.Resource.from_contents(
        kv_utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", schema_dir))


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.protocols.Validator:
    """kubernetes-validate's strict schema for (version, kind, apiVersion), built once.

    Same lookup as ``kubernetes_validate.validate(strict=True)`` (the newest shipped schema
    not newer than ``version``), but the parsed schemas are kept: that call re-reads the
    large definitions file for every document.
    """
    shipped = [v for v in kv_utils.all_versions() if _minor_key(v) <= _minor_key(version)]
    if not shipped:
        raise ManifestInvalid(f"kubernetes-validate {kv_utils.__dict__.get('__version__', '')} has no schemas for {version}")
    schema_dir = f"v{shipped[-1]}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = kv_utils.schema_contents(
            f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError:
        raise SchemaMissing(f"{kind} {api_version}") from None
    registry = referencing.Resource.from_contents(schema) @ referencing.Registry()
    registry = _definitions(schema_dir) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def default_versions(today: dt.date | None = None, shipped: Sequence[str] | None = None) -> tuple[str, ...]:
    """(oldest still-supported shipped minor, newest shipped minor); one value if they match.

    A minor without a known end-of-life date is newer than this table, hence supported.
    """
    today = today or dt.date.today()
    shipped = list(shipped if shipped is not None else shipped_versions())
    if not shipped:
        raise NetshipError("kubernetes-validate ships no schemas")
    supported = [v for v in shipped if END_OF_LIFE.get(v, dt.date.max) >= today]
    chosen = [supported[0], supported[-1]] if supported else [shipped[-1]]
    return tuple(dict.fromkeys(chosen))


def is_builtin(api_version: str) -> bool:
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    return group == "" or "." not in group or group.endswith(".k8s.io")


def describe(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc.get('kind')} {ns}{meta.get('name')}"


@dataclass(frozen=True)
class ValidationReport:
    versions: tuple[str, ...]
    checked: int  # documents checked against every version
    unchecked: tuple[str, ...]  # custom resources without a bundled schema


def _flatten(docs: Iterable[Any]) -> list[Any]:
    """Documents with each ``kind: List`` replaced by its items (Lists have no schema)."""
    out: list[Any] = []
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            out.extend(_flatten(doc["items"]))
        else:
            out.append(doc)
    return out


def validate_documents(docs: Iterable[dict[str, Any]], versions: Sequence[str] | None = None,
                       where: str = "manifest") -> ValidationReport:
    versions = tuple(versions or default_versions())
    checked, unchecked = 0, []
    for i, doc in enumerate(_flatten(docs)):
        if not isinstance(doc, dict) or not doc.get("kind") or not doc.get("apiVersion"):
            raise ManifestInvalid(f"{where}: document {i + 1} has no kind/apiVersion")
        name = describe(doc)
        skipped = False
        for version in versions:
            try:
                _validator(version, str(doc["kind"]), str(doc["apiVersion"])).validate(doc)
            except jsonschema.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "(top)"
                raise ManifestInvalid(
                    f"{where}: {name} is invalid for Kubernetes {version}: {path}: {e.message}") from None
            except SchemaMissing:
                if is_builtin(str(doc["apiVersion"])):
                    raise ManifestInvalid(
                        f"{where}: {name}: Kubernetes {version} does not serve {doc['kind']} in {doc['apiVersion']}"
                    ) from None
                skipped = True
        if skipped:
            unchecked.append(f"{doc['apiVersion']} {name}")
        else:
            checked += 1
    return ValidationReport(versions, checked, tuple(unchecked))
