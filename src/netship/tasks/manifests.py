"""Tasks ``manifests`` (and ``manifests.rewrite``), ``flannel-etcd-config``, ``docker-opts``:
thin edges over netship.manifests, netship.cluster and netship.dockeropts.

``invoke manifests.rewrite`` takes files as ``--file F`` (repeatable) and, because invoke
has no variadic positionals, also one optional positional file:
``invoke manifests.rewrite a.yml --file b.yml --registry REG`` (``netship manifests rewrite ...``).
invoke positionals are required (one with a non-None default is never filled), so the
first file is the positional (or ``--path F``) and more come with ``--file``; as invoke
gives an unfilled positional the next word, ask for help with ``invoke --help manifests.rewrite``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from invoke import Collection

from ..errors import ConfigError, UsageError
from ..output import emit, note
from . import netship_task, settings_from

_DEFAULT_CLUSTER_FILE = Path("release/cluster.yml")

_COMMON_HELP = {
    "json": "Print a machine-readable summary on stdout (notes stay on stderr).",
    "cluster-file": "Cluster settings file (default: settings.cluster_file, release/cluster.yml; "
                    "absent default file means the documented defaults).",
}


def _cluster(settings: Any):
    from ..cluster import load_cluster

    path = settings.cluster_file
    if path != _DEFAULT_CLUSTER_FILE and not Path(path).exists():
        raise ConfigError(f"cluster_file: {path}: file not found")
    return load_cluster(path)


@netship_task(
    name="manifests",
    default=True,
    auto_shortflags=False,
    help={
        "network": "flannel | kube-router | calico (cilium: installed by cilium-cli, no manifests). "
                   "Default: cluster_network from the cluster settings.",
        "arch": "'all' (default: every arch the images have, others skipped with a note) or a "
                "comma-separated list (each must have every image, else an error).",
        "layout": "per-arch: one DaemonSet per arch (NAME-ARCH, images REG/NAME:VERSION-ARCH, nodes "
                  "selected by kubernetes.io/arch); multi-arch: one DaemonSet using the manifest lists.",
        "registry": "Registry the nodes pull from (host[:port][/prefix]); default: private_registry "
                    "from the cluster settings.",
        "pin-digests": "Reference images by digest (tag@sha256:...) from the build report.",
        "out": "Output folder (default: OUT_DIR/manifests, OUT_DIR from settings.out_dir).",
        "calico-manifest": "calico only: upstream calico.yaml (from calico's release-TAG.tgz) to rewrite.",
        "k8s-version": "Kubernetes minor(s) to validate against, comma-separated (default: the oldest "
                       "still-supported and the newest that kubernetes-validate ships).",
        **_COMMON_HELP,
    },
)
def manifests_(
    ctx: Any, network: str | None = None, arch: str | None = None, layout: str = "per-arch",
    registry: str | None = None, pin_digests: bool = False, out: str | None = None,
    calico_manifest: str | None = None, k8s_version: str | None = None, cluster_file: str | None = None,
    json: bool = False,
) -> None:
    """Write the cluster network's Kubernetes manifests, schema-validated and deterministic.

    Base templates (manifests/) are changed as data from the cluster settings
    (release/cluster.yml) and the build report (else the catalog versions), validated with
    kubernetes-validate (strict), and written with sorted keys: the same inputs give the same
    bytes. An invalid document is an error and nothing is written.
    """
    from ..arch import parse_arches
    from ..fsutil import atomic_write_text
    from ..manifests import plan_manifests

    settings = settings_from(ctx, cluster_file=cluster_file)
    cluster = _cluster(settings)
    arches = None if arch is None or arch.strip().lower() == "all" else parse_arches(arch)
    versions = [v.strip() for v in k8s_version.split(",") if v.strip()] if k8s_version else None
    calico_path = Path(calico_manifest) if calico_manifest else None
    if calico_path is not None and not calico_path.is_file():
        raise UsageError(f"--calico-manifest: {calico_path}: file not found")
    rendered, report = plan_manifests(
        settings, network=network, arches=arches, layout=layout, registry=registry,
        pin_digests=pin_digests, cluster=cluster, calico_manifest=calico_path, validate_versions=versions,
        resolve=_registry_resolver(settings) if calico_path is not None else None,
    )
    out_dir = Path(out) if out else settings.out_dir / "manifests"
    files = []
    for r in rendered:
        path = out_dir / r.filename
        atomic_write_text(path, r.text())
        files.append({"path": str(path), "network": r.network, "layout": r.layout,
                      "arches": [a.k8s for a in r.arches], "images": list(r.images),
                      "documents": len(r.documents)})
        note(f"wrote {path} ({len(r.documents)} documents, validated for Kubernetes {', '.join(report.versions)})")
    for item in report.unchecked:
        note(f"not schema-checked (custom resource): {item}")
    emit({"files": files, "validated_for": list(report.versions), "unchecked": list(report.unchecked)},
         json, [f["path"] for f in files])


def _registry_resolver(settings: Any):
    """Digest of REG/PATH:TAG: the build report's when it names that exact tag, else the registry's."""
    from ..digest import Digest
    from ..errors import RegistryError
    from ..imageref import ImageRef

    known: dict[str, Digest] = {}
    if settings.build_report.exists():
        from .. import buildreport

        report = buildreport.load(settings.build_report)
        for img in report.images.values():
            if img.digest:
                known[img.tag] = img.digest
            for r in img.arches.values():
                if r.digest:
                    known[r.tag] = r.digest

    def resolve(ref: ImageRef) -> Digest:
        plain = str(ref.with_digest(None))
        if plain in known:
            return known[plain]
        from .. import registry

        desc = registry.client_for(ref.domain, ca_bundle=settings.ca_bundle,
                                   timeout=settings.timeout).head_manifest(ref.path, ref.tag or "latest")
        if desc is None:
            raise RegistryError(f"--pin-digests: {plain}: not in the build report nor in the registry")
        return desc.digest

    return resolve


@netship_task(
    name="rewrite",
    iterable=["file"],
    positional=["path"],
    auto_shortflags=False,
    help={
        "path": "The (first) manifest file, positional and required; more with --file.",
        "file": "Manifest file to rewrite; repeat for several (YAML streams, any number of documents).",
        "registry": "Registry to move every image to (host[:port][/prefix]); default: private_registry "
                    "from the cluster settings.",
        "pin-digests": "Replace tags by digests: the build report's for images it names, else the "
                       "registry's (HEAD of REG/PATH:TAG).",
        "out": "Folder for the rewritten files (same file names). Default: print the YAML on stdout.",
        "k8s-version": "Kubernetes minor(s) to validate against, comma-separated (default: oldest "
                       "supported and newest shipped by kubernetes-validate).",
        **_COMMON_HELP,
    },
)
def rewrite_(
    ctx: Any, path: str | None = None, file: Any = None, registry: str | None = None,
    pin_digests: bool = False, out: str | None = None, k8s_version: str | None = None,
    cluster_file: str | None = None, json: bool = False,
) -> None:
    """Move every image of any manifest to the private registry; nothing else changes.

    Every document; init, regular and ephemeral containers of Pods, Deployments, DaemonSets,
    StatefulSets, ReplicaSets, Jobs and CronJobs. Paths are kept (ghcr.io/flannel-io/flannel:TAG
    -> REG/flannel-io/flannel:TAG). Output is validated like `manifests` (custom resources are
    listed as unchecked) and written with sorted keys; comments are not kept.
    """
    from ..fsutil import atomic_write_text
    from ..manifests.rewrite import rewrite_documents
    from ..manifests.validate import validate_documents
    from ..manifests.yamlio import dump_documents, load_file

    if path in ("-h", "--help"):  # invoke hands a free positional the help flag
        raise UsageError("for help run: netship --help manifests.rewrite (or invoke --help manifests.rewrite)")
    files = ([path] if path else []) + list(file or [])
    if not files:
        raise UsageError("manifests.rewrite: name at least one manifest (positional or --file)")
    names = [Path(f).name for f in files]
    if out and len(set(names)) != len(names):
        raise UsageError("--out: two input files share a file name; rewrite them in separate runs")
    settings = settings_from(ctx, cluster_file=cluster_file)
    if registry is None:
        registry = _cluster(settings).private_registry
    resolve = _registry_resolver(settings) if pin_digests else None
    versions = [v.strip() for v in k8s_version.split(",") if v.strip()] if k8s_version else None
    results, texts = [], []
    for f in files:
        docs, changes = rewrite_documents(load_file(f), registry.rstrip("/"), resolve, f)
        report = validate_documents(docs, versions, f)
        text = dump_documents(docs)
        target = Path(out) / Path(f).name if out else None
        if target is not None:
            atomic_write_text(target, text)
            note(f"wrote {target} ({len(changes)} images moved)")
        else:
            texts.append(text)
        for item in report.unchecked:
            note(f"{f}: not schema-checked (custom resource): {item}")
        results.append({"input": str(f), "output": str(target) if target else None,
                         "validated_for": list(report.versions),
                         "images": [{"document": c.document, "kind": c.kind, "name": c.name,
                                     "container": c.container, "field": c.field, "old": c.old, "new": c.new}
                                    for c in changes]})
    if json:
        emit({"files": results}, True)
    elif texts:
        sys.stdout.write("".join(texts))
        sys.stdout.flush()


@netship_task(
    name="flannel-etcd-config",
    auto_shortflags=False,
    help={
        "etcd-prefix": "flanneld's -etcd-prefix (default /coreos.com/network); the config goes at PREFIX/config.",
        "out": "Write the JSON to this file instead of stdout.",
        **_COMMON_HELP,
    },
)
def flannel_etcd_config(
    ctx: Any, etcd_prefix: str = "/coreos.com/network", out: str | None = None,
    cluster_file: str | None = None, json: bool = False,
) -> None:
    """The JSON that flanneld reads from etcd at PREFIX/config (Network, SubnetLen, Backend.Type),
    from the cluster settings; e.g. `etcdctl put /coreos.com/network/config "$(invoke flannel-etcd-config)"`."""
    from ..fsutil import atomic_write_text, dumps_json
    from ..manifests.flannel import etcd_config

    settings = settings_from(ctx, cluster_file=cluster_file)
    config = etcd_config(_cluster(settings))
    key = etcd_prefix.rstrip("/") + "/config"
    if out:
        atomic_write_text(out, dumps_json(config))
        note(f"wrote {out} (put it at etcd key {key})")
    if json:
        emit({"etcd_key": key, "config": config, "out": out}, True)
    elif not out:
        sys.stdout.write(dumps_json(config))


@netship_task(
    name="docker-opts",
    auto_shortflags=False,
    help={
        "subnet-env": "flanneld's subnet file (default /run/flannel/subnet.env).",
        "format": "env: DOCKER_OPT_BIP/IPMASQ/MTU and DOCKER_OPTS lines (mk-docker-opts.sh); "
                  "daemon-json: the daemon.json with bip, ip-masq, mtu set.",
        "daemon-json": "daemon-json format: existing daemon.json to merge into (its other keys are kept); "
                       "default /etc/docker/daemon.json (absent = empty).",
        "key": "env format: name of the combined variable (default DOCKER_OPTS).",
        "out": "Write the result to this file (atomically) instead of stdout.",
        "json": "Print a machine-readable summary on stdout.",
    },
)
def docker_opts(
    ctx: Any, subnet_env: str | None = None, format: str = "env",  # noqa: A002 - the flag's name
    daemon_json: str | None = None, key: str = "DOCKER_OPTS", out: str | None = None, json: bool = False,
) -> None:
    """Docker options from flannel's subnet: --bip, --mtu, and --ip-masq inverted from
    FLANNEL_IPMASQ (flannel masquerades, so docker must not), as mk-docker-opts.sh does."""
    from .. import dockeropts
    from ..errors import unknown
    from ..fsutil import atomic_write_text, dumps_json

    if format not in dockeropts.FORMATS:
        raise unknown("format", format, dockeropts.FORMATS, "--format")
    subnet = dockeropts.load_subnet_env(subnet_env or dockeropts.DEFAULT_SUBNET_ENV)
    if format == "env":
        text = "\n".join(dockeropts.env_lines(subnet, key)) + "\n"
        result: Any = dockeropts.docker_options(subnet)
    else:
        base = dockeropts.load_daemon_json(daemon_json or "/etc/docker/daemon.json")
        result = dockeropts.daemon_json(subnet, base)
        text = dumps_json(result)
    if out:
        atomic_write_text(out, text)
        note(f"wrote {out}")
    if json:
        emit({"format": format, "options": dockeropts.docker_options(subnet), "result": result, "out": out}, True)
    elif not out:
        sys.stdout.write(text)


manifests_collection = Collection("manifests")
manifests_collection.add_task(manifests_, name="manifests", default=True)
manifests_collection.add_task(rewrite_, name="rewrite")

TASKS: list = [manifests_collection, flannel_etcd_config, docker_opts]
