"""``release``: fetch, build, mirror, bundle and manifests as one job, into one release folder.

The folder (``release/out/VERSION`` or ``--out``) holds the per-arch bundles, the multi-arch
bundle, ``manifests/``, ``SHA256SUMS`` over every other file and ``RELEASE.md``. It is
assembled in a temporary folder beside it and swapped in only when every stage succeeded, so
a failure leaves the previous release intact and names the stage that failed.

Stages are skipped when their inputs did not change: fetch and build are no-ops on their own
caches (the fetch cache, the build state and report); mirror, each bundle and the manifests
are keyed by a hash of their inputs, recorded in the folder's ``.netship-release.json``; an
unchanged file is hard-linked from the previous folder (same inode, same timestamp), and a
run that changes nothing leaves the folder untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import filelock

from . import __version__, buildreport
from . import mirror as mirror_mod
from .arch import ALL_ARCHES, Arch
from .buildreport import BuildReport, ImageResult
from .catalog import Asset, load_catalog
from .digest import sha256_file
from .errors import NetshipError, UsageError
from .fsutil import atomic_write_json, atomic_write_text, dumps_json
from .output import note
from .registry import is_loopback_host
from .settings import Settings

STATE_FILE = ".netship-release.json"
LOCK_FILE = ".netship-release.lock"
# Not fsutil's TMP_PREFIX: bundle-offline removes those from its output folder as stale.
OWN_TMP = ".netship-release-tmp-"
SUMS = "SHA256SUMS"
NOTES = "RELEASE.md"
MANIFESTS_DIR = "manifests"
MANIFEST_NETWORKS = ("flannel", "kube-router")  # netship's own templates; calico needs upstream's file


class StageFailed(NetshipError):
    """A release stage failed; keeps the stage's own exit code."""

    def __init__(self, stage: str, error: BaseException):
        self.stage, self.error = stage, error
        self.exit_code = getattr(error, "exit_code", 1)
        super().__init__(f"release stage '{stage}' failed (previous release left intact): {error}")


# --- the plan ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReleasePlan:
    version: str
    out: Path
    registry: str
    push: bool
    arches: tuple[Arch, ...]
    explicit_arches: bool
    assets: tuple[Asset, ...]
    mirror: tuple[mirror_mod.MirrorStep, ...]
    compression: str
    bundles: tuple[str, ...]  # file names, per arch then multi-arch
    networks: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    build: Mapping[str, Any] | None = None  # buildx's plan (dry run), when docker answered

    def to_json(self, cached: Callable[[Asset], bool] | None = None) -> dict[str, Any]:
        return {
            "version": self.version, "out": str(self.out), "registry": self.registry, "push": self.push,
            "arches": [a.k8s for a in self.arches], "compression": self.compression,
            "fetch": [{"asset": a.key, "url": a.url, "sha256": a.pin.sha256.hex if a.pin.sha256 else None,
                       "cached": cached(a) if cached else None} for a in self.assets],
            "build": self.build,
            "mirror": [s.to_json() for s in self.mirror],
            "write": [*self.bundles, *(f"{MANIFESTS_DIR}/{n}.yml" for n in self.networks), SUMS, NOTES],
            "skipped": list(self.skipped),
        }


def bundle_names(version: str, arches: Sequence[Arch], compression: str) -> tuple[str, ...]:
    from .bundle import COMPRESSIONS, bundle_name

    ext = COMPRESSIONS[compression]
    return (*(bundle_name(version, a) + ext for a in arches), bundle_name(version, None) + ext)


def plan_release(settings: Settings, *, arches: Sequence[Arch] = ALL_ARCHES, explicit_arches: bool = False,
                 out: Path | None = None, push: bool = False, compression: str = "gzip",
                 mirror_images: bool = True) -> ReleasePlan:
    """Everything the release will do, computed without touching anything."""
    if not push and not is_loopback_host(settings.registry.split("/", 1)[0]):
        raise UsageError(f"--registry {settings.registry}: publishing to a non-local registry needs --push "
                         f"(without it, release stages images in a loopback registry such as 127.0.0.1:5000)")
    catalog = load_catalog(settings.catalog_dir)
    skipped: list[str] = []
    assets = catalog.select(None, arches, explicit_arches=explicit_arches, skipped=skipped)
    steps: list[mirror_mod.MirrorStep] = []
    if mirror_images:
        path = mirror_mod.mirror_file(settings)
        images = mirror_mod.load_mirror_images(path, catalog)
        steps = mirror_mod.plan_mirror(images, arches, settings.registry, skipped=skipped)
    out = Path(out) if out else settings.out_dir / __version__
    return ReleasePlan(__version__, out, settings.registry, push, tuple(arches), explicit_arches, tuple(assets),
                       tuple(steps), compression, bundle_names(__version__, arches, compression),
                       MANIFEST_NETWORKS, tuple(skipped))


def build_dry_run(settings: Settings, plan: ReleasePlan) -> Mapping[str, Any] | str:
    """buildx's own plan for the release (read-only: it inspects docker, builds nothing)."""
    from . import buildx

    try:
        bp = buildx.build(settings, arches=plan.arches, explicit_arches=plan.explicit_arches, push=True,
                          dry_run=True)
        return bp.to_json()  # type: ignore[union-attr]
    except NetshipError as e:
        # Before the fetch (or without docker) buildx cannot hash its inputs: list what the
        # specs say will be built, and why the full plan is not available.
        from .images import default_images_dir, load_images, select

        catalog = load_catalog(settings.catalog_dir)
        specs = load_images(settings.images_dir or default_images_dir(settings.catalog_dir), catalog)
        images = []
        for spec, arches in select(specs, catalog, None, plan.arches, explicit_arches=plan.explicit_arches):
            tag = f"{settings.registry.rstrip('/')}/{spec.name}:{spec.version(catalog)}"
            images.append({"name": spec.name, "tag": tag, "targets": [
                {"arch": a.k8s, "platform": a.platform, "tag": f"{tag}-{a.k8s}"} for a in arches]})
        return {"images": images, "note": f"buildx plan after the fetch; now: {e}"}


def is_cached(settings: Settings) -> Callable[[Asset], bool]:
    return lambda a: bool(a.pin.sha256 and (settings.blob_dir / a.pin.sha256.hex).is_file())


# --- hashing inputs ---------------------------------------------------------------------------

def input_key(value: Any) -> str:
    return hashlib.sha256(dumps_json(value).encode()).hexdigest()


def images_for(report: BuildReport, arch: Arch | None) -> dict[str, ImageResult]:
    """The images an arch's bundle holds: every image that has the arch (all for multi-arch)."""
    return {n: i for n, i in sorted(report.images.items()) if arch is None or arch in i.arches}


def report_for(report: BuildReport, arch: Arch | None) -> BuildReport:
    imgs = images_for(report, arch)
    if arch is not None:
        imgs = {n: replace(i, arches={arch: i.arches[arch]}) for n, i in imgs.items()}
    return replace(report, images=imgs)


# --- state of the release folder --------------------------------------------------------------

@dataclass
class FolderState:
    """What each file of the folder was made from, and its digest (to skip re-hashing)."""

    inputs: dict[str, str] = field(default_factory=dict)  # file or stage -> input key
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # rel path -> {sha256,size,ino,mtime_ns}
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: Path) -> FolderState:
        try:
            raw = json.loads((folder / STATE_FILE).read_text())
            return cls(dict(raw.get("inputs", {})), dict(raw.get("files", {})), dict(raw.get("extra", {})))
        except (OSError, ValueError, AttributeError):
            return cls()

    def to_json(self) -> dict[str, Any]:
        return {"netship_version": __version__, "inputs": self.inputs, "files": self.files, "extra": self.extra}


def _file_id(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "ino": st.st_ino, "mtime_ns": st.st_mtime_ns}


def digest_of(path: Path, rel: str, known: Mapping[str, Mapping[str, Any]]) -> str:
    """sha256 hex, re-using the recorded one when the file is the very same (inode, size, mtime)."""
    rec = known.get(rel)
    if rec and all(rec.get(k) == v for k, v in _file_id(path).items()):
        return str(rec["sha256"])
    return sha256_file(path).hex


# --- the result -------------------------------------------------------------------------------

@dataclass
class ReleaseResult:
    plan: ReleasePlan
    folder: Path
    changed: bool
    stages: dict[str, dict[str, Any]]
    files: dict[str, tuple[int, str]]  # rel path -> (size, sha256)

    def to_json(self) -> dict[str, Any]:
        return {"version": self.plan.version, "folder": str(self.folder), "changed": self.changed,
                "registry": self.plan.registry, "arches": [a.k8s for a in self.plan.arches],
                "stages": self.stages, "stage_order": list(self.stages),
                "files": {p: {"size": s, "sha256": h} for p, (s, h) in sorted(self.files.items())},
                "skipped": list(self.plan.skipped)}


# --- running ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _stage(name: str, stages: dict[str, dict[str, Any]]):
    started = time.monotonic()
    note(f"release: {name} ...")
    info: dict[str, Any] = {}
    try:
        yield info
    except StageFailed:
        raise
    except NetshipError as e:
        raise StageFailed(name, e) from e
    except OSError as e:
        raise StageFailed(name, NetshipError(f"{type(e).__name__}: {e}")) from e
    info["seconds"] = round(time.monotonic() - started, 3)
    stages[name] = info


def _reuse(old: Path, new: Path) -> bool:
    """Hard-link an unchanged file from the previous release (keeps inode and mtime)."""
    if not old.is_file():
        return False
    new.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(old, new)
    except OSError:
        shutil.copy2(old, new)
    return True


def release(settings: Settings, plan: ReleasePlan, *, fetcher: Callable | None = None,
            builder: Callable | None = None, mirrorer: Callable | None = None,
            bundler: Callable | None = None, manifest_writer: Callable | None = None,
            mirror_present: Callable[[Settings, BuildReport], bool] | None = None) -> ReleaseResult:
    """Run the plan. The callables default to the real stages (tests may pass their own)."""
    from . import buildx, bundle, fetch, manifests

    fetcher = fetcher or (lambda s, assets: fetch.fetch(s, assets))
    builder = builder or (lambda s, p: _build(s, p, buildx))
    mirrorer = mirrorer or (lambda s, steps: mirror_mod.mirror(steps, mirror_mod.default_clients(s)))
    bundler = bundler or (lambda s, arches, out, multiarch, compression: bundle.bundle_offline(
        s, arches, compression=compression, multiarch=multiarch, per_arch=not multiarch, out_dir=out))
    manifest_writer = manifest_writer or (lambda s, network, out, registry: manifests.write_manifests(
        s, network=network, layout="per-arch", registry=registry, out_dir=out))

    final = plan.out
    final.parent.mkdir(parents=True, exist_ok=True)
    prev = FolderState.load(final)
    state = FolderState()
    stages: dict[str, dict[str, Any]] = {}
    lock = filelock.FileLock(str(final.parent / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise StageFailed("start", NetshipError(f"{final.parent}: another release is running here")) from None
    for stale in final.parent.glob(OWN_TMP + "*"):  # an interrupted run's leftovers
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=OWN_TMP + "folder-", dir=final.parent))
    work = Path(tempfile.mkdtemp(prefix=OWN_TMP + "work-", dir=final.parent))
    try:
        with _stage("fetch", stages) as info:
            freport = fetcher(settings, list(plan.assets))
            info.update(downloaded=sum(a.status == "downloaded" for a in freport.assets),
                        cached=sum(a.status == "cached" for a in freport.assets))
            asset_digests = {a.key: str(a.digest) for a in freport.assets}

        with _stage("build", stages) as info:
            outcome = builder(settings, plan)
            built: BuildReport = outcome.report
            info.update(builds=len(outcome.builds), pushes=len(outcome.pushes),
                        images=sorted(built.images))

        with _stage("mirror", stages) as info:
            key = input_key({"steps": [s.to_json() for s in plan.mirror]})
            mpath = mirror_mod.report_path(settings)
            cached_report = prev.extra.get("mirror_report")
            previous = (BuildReport.from_json(cached_report, f"{final / STATE_FILE}: mirror_report")
                        if plan.mirror and prev.inputs.get("mirror") == key and cached_report else None)
            if previous is not None and (mirror_present or _still_there)(settings, previous):
                mirrored = previous
                info["skipped"] = "inputs unchanged"
            elif plan.mirror:
                results = mirrorer(settings, list(plan.mirror))
                mirrored = mirror_mod.report_of(results, plan.registry)
                buildreport.save(mpath, mirrored)
                info.update(copied=sum(not r.unchanged for r in results),
                            blobs_uploaded=sum(r.blobs.uploaded for r in results))
            else:
                mirrored = BuildReport(registry=plan.registry)
            state.inputs["mirror"] = key
            state.extra["mirror_report"] = mirrored.to_json()
            merged = built.merged(mirrored) if mirrored.images else built
            info["images"] = sorted(mirrored.images)

        common = {"netship": __version__, "compression": plan.compression,
                  "epoch": settings.source_date_epoch, "registry": plan.registry}
        with _stage("bundle", stages) as info:
            wrote, reused = [], []
            for arch, name in zip([*plan.arches, None], plan.bundles, strict=True):
                sub = report_for(merged, arch)
                arch_assets = {k: v for k, v in asset_digests.items() if arch is None or k.endswith(f"/{arch.k8s}")}
                key = input_key({**common, "arch": arch.k8s if arch else None, "images": sub.to_json()["images"],
                                 "assets": arch_assets if arch else {}, "cluster": _file_text(settings.cluster_file)})
                state.inputs[name] = key
                if prev.inputs.get(name) == key and _reuse(final / name, tmp / name):
                    for side in final.glob(f"{name}.*"):  # the bundle's sidecars (NAME.sha256)
                        _reuse(side, tmp / side.name)
                    reused.append(name)
                    continue
                rdir = work / (arch.k8s if arch else "multi")
                buildreport.save(rdir / "build-report.json", sub)
                s_arch = settings.replace(out_dir=rdir)
                results = bundler(s_arch, [arch] if arch else None, tmp, arch is None, plan.compression)
                got = {Path(r.path).name for r in results}
                if name not in got:
                    raise NetshipError(f"bundle wrote {', '.join(sorted(got))}, expected {name}")
                wrote.append(name)
            info.update(written=wrote, reused=reused)

        with _stage("manifests", stages) as info:
            key = input_key({**common, "images": merged.to_json()["images"],
                             "arches": [a.k8s for a in plan.arches], "cluster": _file_text(settings.cluster_file)})
            names = [f"{MANIFESTS_DIR}/{n}.yml" for n in plan.networks]
            if prev.inputs.get("manifests") == key and all(_reuse(final / n, tmp / n) for n in names):
                info["skipped"] = "inputs unchanged"
            else:
                mdir = work / "manifests-report"
                buildreport.save(mdir / "build-report.json", merged)
                s_m = settings.replace(out_dir=mdir)
                for n in names:
                    with contextlib.suppress(FileNotFoundError):
                        (tmp / n).unlink()
                written = []
                for network in plan.networks:
                    written += [Path(p).name for p in manifest_writer(s_m, network, tmp / MANIFESTS_DIR, plan.registry)]
                info["written"] = written
            state.inputs["manifests"] = key

        with _stage("finish", stages) as info:
            files: dict[str, tuple[int, str]] = {}
            for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
                rel = path.relative_to(tmp).as_posix()
                if rel in (SUMS, NOTES) or any(part.startswith(".") for part in Path(rel).parts):
                    continue
                old_rec = prev.files if (final / rel).exists() and (final / rel).samefile(path) else {}
                files[rel] = (path.stat().st_size, digest_of(path, rel, old_rec))
            sums = "".join(f"{h}  {rel}\n" for rel, (_s, h) in sorted(files.items()))
            notes = release_notes(plan, freport, built, mirrored, files)
            for name, text in ((SUMS, sums), (NOTES, notes)):
                old = final / name
                if old.is_file() and old.read_text() == text:
                    _reuse(old, tmp / name)
                else:
                    atomic_write_text(tmp / name, text)
                files[name] = ((tmp / name).stat().st_size, sha256_file(tmp / name).hex)
            for rel in files:
                state.files[rel] = {"sha256": files[rel][1], **_file_id(tmp / rel)}
            for junk in [p for p in tmp.rglob(".*") if p.is_file()]:  # locks of the writers
                junk.unlink()
            changed = _differs(final, tmp)
            info["changed"] = changed
            if changed:
                atomic_write_json(tmp / STATE_FILE, state.to_json())
                _swap(tmp, final)
            else:
                note(f"release: {final} is up to date; nothing rewritten")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        lock.release()
    return ReleaseResult(plan, final, changed, stages, files)


def _build(settings: Settings, plan: ReleasePlan, buildx: Any) -> Any:
    """buildx.build, after starting netship's default local registry if it is the target and down
    (so the first `netship release` on a machine with Docker needs nothing else)."""
    from . import stack
    from .settings import DEFAULT_REGISTRY

    if plan.registry.split("/", 1)[0] == DEFAULT_REGISTRY and not stack.registry_answers(DEFAULT_REGISTRY):
        note(stack.registry_start(DEFAULT_REGISTRY, settings.cache_dir / "registry"))
    return buildx.build(settings, arches=plan.arches, explicit_arches=plan.explicit_arches, push=True)


def _still_there(settings: Settings, report: BuildReport) -> bool:
    """Every mirrored tag still names the recorded digest in the target registry (HEAD only)."""
    from .imageref import ImageRef

    clients = mirror_mod.default_clients(settings)
    try:
        for img in report.images.values():
            refs = [(img.tag, img.digest), *((r.tag, r.digest) for r in img.arches.values())]
            for tag, digest in refs:
                ref = ImageRef.parse(tag)
                head = clients(ref.domain).head_manifest(ref.path, ref.tag or "latest")
                if head is None or head.digest != digest:
                    note(f"release: {tag} is no longer in the registry; copying the mirrored images again")
                    return False
    except NetshipError:
        return False
    return True


def _file_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _differs(old: Path, new: Path) -> bool:
    """True unless every file of ``new`` is the same inode in ``old`` and nothing else is there."""
    def listing(root: Path) -> set[str]:
        return {p.relative_to(root).as_posix() for p in root.rglob("*")
                if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}

    if not old.is_dir():
        return True
    names = listing(new)
    if names != listing(old):
        return True
    return not all((old / n).samefile(new / n) for n in names)


def _swap(tmp: Path, final: Path) -> None:
    """Put ``tmp`` at ``final``; the old folder is renamed away first and removed last."""
    backup = None
    if final.exists():
        backup = final.parent / f"{OWN_TMP}old-{final.name}-{os.getpid()}"
        os.rename(final, backup)
    try:
        os.rename(tmp, final)
    except OSError:
        if backup is not None:
            os.rename(backup, final)
        raise
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


# --- RELEASE.md -------------------------------------------------------------------------------

def release_notes(plan: ReleasePlan, freport: Any, built: BuildReport, mirrored: BuildReport,
                  files: Mapping[str, tuple[int, str]]) -> str:
    catalog_sources: dict[str, str] = {}
    lines = [f"# netship {plan.version}", "",
             f"Images pushed to `{plan.registry}` for {', '.join(a.k8s for a in plan.arches)}.",
             "Verify the downloads with `sha256sum -c SHA256SUMS`; each bundle with "
             "`netship verify-bundle FILE` or its own `install.sh`.", "",
             "## Components", "",
             "| component | version | arch | source | sha256 pin | pin source |",
             "| --- | --- | --- | --- | --- | --- |"]
    for a in sorted(freport.assets, key=lambda a: (a.component, ALL_ARCHES.index(a.arch))):
        pin = a.digest.hex if a.pinned else f"UNPINNED ({a.digest.hex})"
        lines.append(f"| {a.component} | {a.version} | {a.arch.k8s} | {a.url} | `{pin}` | {a.pin_source} |")
        catalog_sources.setdefault(a.component, a.url)
    lines += ["", "## Images", "",
              "| image | version | origin | tag | arch | digest |", "| --- | --- | --- | --- | --- | --- |"]
    origins = {s.image.name: f"mirrored from {s.source.repository}" for s in plan.mirror}
    for rep in (built, mirrored):
        for name, img in sorted(rep.images.items()):
            origin = origins.get(name, "built by netship")
            lines.append(f"| {name} | {img.version} | {origin} | `{img.tag}` | list | `{img.digest}` |")
            for arch in ALL_ARCHES:
                r = img.arches.get(arch)
                if r is not None:
                    lines.append(f"| {name} | {img.version} | {origin} | `{r.tag}` | {arch.k8s} | `{r.digest}` |")
    if plan.skipped:
        lines += ["", "## Skipped", ""] + [f"- {s}" for s in plan.skipped]
    lines += ["", "## Files", "", "| file | size (bytes) | sha256 |", "| --- | ---: | --- |"]
    for rel, (size, digest) in sorted(files.items()):
        lines.append(f"| {rel} | {size} | `{digest}` |")
    lines += ["", f"`{SUMS}` covers every file above; this file is not in it.", ""]
    return "\n".join(lines)


# --- human output -----------------------------------------------------------------------------

def describe(plan_json: Mapping[str, Any]) -> list[str]:
    """The dry-run plan as lines: downloads, builds, copies, files."""
    lines = [f"release {plan_json['version']} -> {plan_json['out']} (registry {plan_json['registry']}, "
             f"arches {', '.join(plan_json['arches'])})"]
    unpinned = []
    for a in plan_json["fetch"]:
        state = "cached" if a["cached"] else "download"
        pin = "" if a.get("sha256") else "  UNPINNED"
        unpinned += [a["asset"]] if pin else []
        lines.append(f"  fetch    {state:8} {a['asset']:44} {a['url']}{pin}")
    if unpinned:
        lines.append(f"  note     {len(unpinned)} asset(s) have no pinned sha256: fetch refuses them unless "
                     "--allow-unpinned; pin them with `netship pins update --component NAME --version TAG`")
    build = plan_json.get("build")
    if isinstance(build, Mapping):
        for img in build.get("images", []):
            for t in img.get("targets", []):
                lines.append(f"  build+push {t['tag']} ({t['platform']})")
            lines.append(f"  push     {img['tag']} (manifest list)")
        if build.get("note"):
            lines.append(f"  note     {build['note']}")
    for m in plan_json["mirror"]:
        lines.append(f"  mirror   {m['source']} -> {m['target']} [{', '.join(m['arches'])}]")
    for f in plan_json["write"]:
        lines.append(f"  write    {Path(plan_json['out']) / f}")
    lines += [f"  skip     {s}" for s in plan_json.get("skipped", [])]
    return lines


def stage_line(info: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in info.items() if k != "seconds") + f" ({info.get('seconds', 0)} s)"
