"""Move every image reference of any manifest to a private registry, changing nothing else.

All documents; init, regular and ephemeral containers of Pods, Deployments, DaemonSets,
StatefulSets, ReplicaSets, Jobs, CronJobs and PodTemplates (``List`` items too). Each
reference is parsed by ``netship.imageref`` (no tag, implied docker.io, digests, ports in
the host) and moved keeping its path: ``ghcr.io/flannel-io/flannel:v0.28.9`` becomes
``REG/flannel-io/flannel:v0.28.9``, ``busybox`` becomes ``REG/busybox``. With pinning, each
moved reference gets the digest the resolver gives (build report, else the registry).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..digest import Digest
from ..imageref import ImageRef
from .workloads import containers

DigestResolver = Callable[[ImageRef], Digest]


@dataclass(frozen=True)
class ImageChange:
    document: int  # index of the document in its stream
    kind: str
    name: str
    container: str
    field: str  # containers | initContainers | ephemeralContainers
    old: str
    new: str


def move(ref: ImageRef, registry: str, resolve: DigestResolver | None = None) -> ImageRef:
    moved = ref.with_registry(registry)
    if resolve is not None and moved.digest is None:
        moved = moved.with_digest(resolve(moved))
    return moved


def rewrite_documents(docs: list[dict[str, Any]], registry: str, resolve: DigestResolver | None = None,
                      where: str = "manifest") -> tuple[list[dict[str, Any]], list[ImageChange]]:
    """A rewritten deep copy of ``docs`` and the list of image changes made."""
    out = copy.deepcopy(docs)
    changes: list[ImageChange] = []
    for i, doc in enumerate(out):
        for fieldname, c in containers(doc):
            if "image" not in c:
                continue
            old = str(c["image"])
            ref = ImageRef.parse(old, f"{where}: document {i + 1} container {c.get('name')}")
            new = str(move(ref, registry, resolve))
            c["image"] = new
            meta = doc.get("metadata") or {}
            changes.append(ImageChange(i, str(doc.get("kind")), str(meta.get("name")), str(c.get("name")),
                                       fieldname, old, new))
    return out, changes
