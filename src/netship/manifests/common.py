"""Shared steps for netship's own network manifests: per-arch DaemonSets, images, env."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from ..arch import Arch
from ..cluster import ClusterSettings
from ..errors import ConfigError
from ..imageref import ImageRef
from .images import ImageSet
from .workloads import containers, pod_specs, set_env

LAYOUTS = ("per-arch", "multi-arch")
ARCH_LABEL = "arch"  # pod/selector label that keeps the per-arch DaemonSets' pods apart
CNI_BIN = "/opt/cni/bin"
# netship's cni-plugins image (images/cni-plugins.yml) copies its plugins into this mount.
CNI_INSTALLER_MOUNT = "/host/opt/cni/bin"


def _os_only_affinity(spec: Mapping[str, Any]) -> bool:
    """True if the pod's affinity is only upstream's 'kubernetes.io/os In [linux]' term."""
    terms = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    if set(spec.get("affinity") or {}) != {"nodeAffinity"} or len(terms) != 1:
        return False
    exprs = terms[0].get("matchExpressions") or []
    return [(e.get("key"), e.get("operator"), e.get("values")) for e in exprs] == [("kubernetes.io/os", "In", ["linux"])]


def arch_daemonsets(ds: dict[str, Any], arches: Sequence[Arch], layout: str) -> list[tuple[Arch | None, dict[str, Any]]]:
    """The DaemonSet(s) for a layout: one per arch named NAME-ARCH, or one for all arches.

    per-arch pods select ``kubernetes.io/os: linux`` and ``kubernetes.io/arch: ARCH``;
    the multi-arch one requires ``kubernetes.io/arch`` In the arches that have images.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout: unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}")
    out: list[tuple[Arch | None, dict[str, Any]]] = []
    targets: list[Arch | None] = list(arches) if layout == "per-arch" else [None]
    for arch in targets:
        d = copy.deepcopy(ds)
        spec = d["spec"]["template"]["spec"]
        if _os_only_affinity(spec):
            del spec["affinity"]
        selector = {"kubernetes.io/os": "linux"}
        if arch is not None:
            d["metadata"]["name"] = f"{d['metadata']['name']}-{arch.k8s}"
            selector["kubernetes.io/arch"] = arch.k8s
            d["spec"]["selector"].setdefault("matchLabels", {})[ARCH_LABEL] = arch.k8s
            d["spec"]["template"]["metadata"].setdefault("labels", {})[ARCH_LABEL] = arch.k8s
        else:
            spec["affinity"] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/arch", "operator": "In", "values": [a.k8s for a in arches]},
                ]}]}}}
        spec["nodeSelector"] = selector
        out.append((arch, d))
    return out


def set_images(doc: dict[str, Any], mapping: Mapping[str, str], images: ImageSet, registry: str,
               arch: Arch | None, pin: bool, where: str) -> None:
    """Point every container at netship's image: ``mapping`` maps the template image's last
    path component (``flannel``, ``flannel-cni-plugin``) to netship's image name."""
    for _field, c in containers(doc):
        ref = ImageRef.parse(str(c.get("image", "")), f"{where} container {c.get('name')}")
        leaf = ref.path.rsplit("/", 1)[-1]
        if leaf not in mapping:
            raise ConfigError(f"{where}: container {c.get('name')} uses image {ref} that netship does not build")
        c["image"] = str(images.ref(mapping[leaf], registry, arch, pin))


def add_cni_plugins_installer(doc: dict[str, Any], images: ImageSet, registry: str, arch: Arch | None,
                              pin: bool, volume: str) -> None:
    """First init container: netship's cni-plugins image copies the standard CNI plugins
    (bridge, host-local, portmap, loopback, ...) to the host's /opt/cni/bin (its entrypoint
    writes to /host/opt/cni/bin, where the host's directory is mounted)."""
    for spec in pod_specs(doc):
        vols = spec.setdefault("volumes", [])
        if not any(v.get("name") == volume for v in vols):
            vols.append({"name": volume, "hostPath": {"path": CNI_BIN}})
        spec.setdefault("initContainers", []).insert(0, {
            "name": "install-cni-plugins",
            "image": str(images.ref("cni-plugins", registry, arch, pin)),
            "volumeMounts": [{"name": volume, "mountPath": CNI_INSTALLER_MOUNT}],
        })


def set_apiserver_env(doc: dict[str, Any], cluster: ClusterSettings) -> None:
    """With ``apiserver`` set, the (non-init) containers reach it directly, not via the service IP."""
    if not cluster.apiserver:
        return
    for fieldname, c in containers(doc):
        if fieldname == "containers":
            set_env(c, "KUBERNETES_SERVICE_HOST", str(cluster.apiserver_host))
            set_env(c, "KUBERNETES_SERVICE_PORT", str(cluster.apiserver_port))


def set_pull_policy(doc: dict[str, Any], policy: str = "IfNotPresent") -> None:
    """Air-gapped nodes may hold the images only locally (bundle import): never force a pull."""
    for _field, c in containers(doc):
        c["imagePullPolicy"] = policy


def set_flag(args: list[str], flag: str, values: Sequence[str]) -> list[str]:
    """Drop every ``flag`` / ``flag=...`` from args and append ``flag=value`` per value."""
    kept = [a for a in args if a != flag and not a.startswith(flag + "=")]
    return kept + [f"{flag}={v}" for v in values]
