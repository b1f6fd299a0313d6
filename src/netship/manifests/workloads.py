"""Where Kubernetes objects keep their pod specs and containers, for every workload kind."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")

# kind -> path of keys from the object to its pod spec
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    "Deployment": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


def _walk(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every pod spec in a document (``List`` items included), in document order."""
    kind = doc.get("kind")
    if kind == "List" or (isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list)):
        for item in doc.get("items") or []:
            if isinstance(item, dict):
                yield from pod_specs(item)
        return
    path = POD_SPEC_PATHS.get(str(kind))
    if path is None:
        return
    spec = _walk(doc, path)
    if isinstance(spec, dict):
        yield spec


def containers(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(field, container) for every init, regular and ephemeral container of a document."""
    for spec in pod_specs(doc):
        for fieldname in CONTAINER_FIELDS:
            for c in spec.get(fieldname) or []:
                if isinstance(c, dict):
                    yield fieldname, c


def set_env(container: dict[str, Any], name: str, value: str) -> None:
    """Set an env var by name, replacing an existing entry in place or appending it."""
    env = container.setdefault("env", [])
    for entry in env:
        if entry.get("name") == name:
            entry.clear()
            entry.update({"name": name, "value": value})
            return
    env.append({"name": name, "value": value})


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one document of that kind (and name); KeyError names what the template lacks."""
    hits = [d for d in docs if d.get("kind") == kind and (name is None or d.get("metadata", {}).get("name") == name)]
    if len(hits) != 1:
        raise KeyError(f"expected one {kind}{' ' + name if name else ''} in the template, found {len(hits)}")
    return hits[0]
