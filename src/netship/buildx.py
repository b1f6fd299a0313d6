"""Executing a build plan with ``docker buildx`` (every call through ``netship.proc.run``).

- ``inspect_builder`` asks ``docker buildx inspect`` which driver/nodes/platforms a builder has.
- ``execute`` runs the plan's calls and records, per per-arch tag and per list tag, the
  input hash and the digest pushed (``state``). A target whose input hash is unchanged and
  whose tag the registry still serves at the recorded digest is not built nor pushed again:
  a no-op rebuild runs no buildx call at all.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import proc
from .arch import Arch
from .buildplan import (
    MULTI_PLATFORM,
    PER_PLATFORM,
    ArchTarget,
    BuildCall,
    BuilderInfo,
    BuildPlan,
    FileHasher,
    ImagePlan,
    imagetools_create_argv,
    make_plan,
)
from .buildreport import ArchResult, BuildReport, ImageResult
from .buildreport import load as load_report
from .buildreport import save as save_report
from .catalog import load_catalog
from .digest import Digest
from .errors import (
    BuildError,
    CommandError,
    ConfigError,
    MissingTool,
    NetshipError,
    RegistryError,
    UsageError,
)
from .fsutil import atomic_write_json
from .imageref import ImageRef
from .images import default_images_dir, load_images
from .images import select as select_images
from .output import note
from .registry import is_loopback_host
from .settings import Settings
from .stack import check_binfmt, check_builder_platforms, check_buildx, check_docker, check_registry

# ---------------------------------------------------------------------------- builder


def parse_inspect(text: str) -> BuilderInfo:
    """Parse ``docker buildx inspect`` output (the text form; buildx 0.10 .. 0.13)."""
    name = driver = ""
    nodes = 0
    platforms: list[str] = []
    in_nodes = False
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "Nodes":
            in_nodes = True
        elif key == "Name" and not in_nodes and not name:
            name = value
        elif key == "Name" and in_nodes:
            nodes += 1
        elif key == "Driver" and not in_nodes:
            driver = value
        elif key == "Platforms" and in_nodes:
            for p in value.split(","):
                p = p.strip().rstrip("*")
                if p and p not in platforms:
                    platforms.append(p)
    if not name or not driver:
        raise BuildError("could not read `docker buildx inspect` output (no Name/Driver): is buildx too old?")
    return BuilderInfo(name, driver, max(nodes, 1), tuple(platforms))


def inspect_builder(builder: str | None = None) -> BuilderInfo:
    argv = ["docker", "buildx", "inspect", *([builder] if builder else [])]
    try:
        out = proc.run(argv, timeout=60).stdout
    except CommandError as e:
        tail = (e.stderr.strip().splitlines() or ["no output"])[-1]
        what = f"builder {builder!r}" if builder else "the default builder"
        raise BuildError(f"cannot inspect {what} ({tail}): list builders with `docker buildx ls`") from None
    return parse_inspect(out)


# ---------------------------------------------------------------------------- registry


class RegistryProbe:
    """Asks the registry what a tag points at (one client per host)."""

    def __init__(self, *, ca_bundle: Path | None = None, timeout: float = 30.0):
        self.ca_bundle, self.timeout = ca_bundle, timeout
        self._clients: dict[str, Any] = {}

    def _client(self, host: str) -> Any:
        if host not in self._clients:
            from .registry import client_for

            self._clients[host] = client_for(host, ca_bundle=self.ca_bundle, timeout=self.timeout)
        return self._clients[host]

    def digest(self, ref: str) -> Digest | None:
        """Digest the registry serves for ``ref`` (a tag), None if absent or unreadable."""
        r = ImageRef.parse(ref)
        try:
            desc = self._client(r.domain).head_manifest(r.path, r.reference)
        except (RegistryError, ConfigError, OSError):
            return None
        return desc.digest if desc else None

    def tag(self, source: str, tag: str) -> Digest:
        """Point ``tag`` at the manifest ``source`` (REPO@DIGEST) names, bytes unchanged."""
        src, dst = ImageRef.parse(source), ImageRef.parse(tag)
        client = self._client(src.domain)
        return client.put_manifest(dst.path, dst.tag, client.get_manifest(src.path, src.reference))

    def platform_digests(self, ref: str) -> dict[str, Digest]:
        """platform -> child digest of the manifest list at ``ref``."""
        r = ImageRef.parse(ref)
        m = self._client(r.domain).get_manifest(r.path, r.reference)
        return {c.platform_string: c.digest for c in m.children() if c.platform_string}


# ---------------------------------------------------------------------------- state


@dataclass
class BuildState:
    """What was pushed, keyed by tag, with the input hash that produced it. Also the
    file-hash memo of ``buildplan.FileHasher``. Persisted as JSON in the cache folder."""

    path: Path
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    lists: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> BuildState:
        try:
            raw = json.loads(Path(path).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return cls(Path(path))  # a lost or torn state only costs a rebuild
        return cls(Path(path), dict(raw.get("targets") or {}), dict(raw.get("lists") or {}),
                   dict(raw.get("files") or {}))

    def save(self) -> None:
        atomic_write_json(self.path, {"targets": self.targets, "lists": self.lists, "files": self.files})


# ---------------------------------------------------------------------------- execute


@dataclass(frozen=True)
class Action:
    image: str
    arch: str | None  # None: the manifest list
    kind: str  # build | cached | join | join-cached | tag
    pushed: bool
    seconds: float
    digest: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"image": self.image, "arch": self.arch, "kind": self.kind, "pushed": self.pushed,
                "seconds": round(self.seconds, 3), "digest": self.digest}


@dataclass(frozen=True)
class BuildOutcome:
    plan: BuildPlan
    report: BuildReport
    actions: tuple[Action, ...]

    @property
    def pushes(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.pushed)

    @property
    def builds(self) -> tuple[Action, ...]:
        return tuple(a for a in self.actions if a.kind == "build")

    def to_json(self) -> dict[str, Any]:
        return {"strategy": self.plan.strategy, "registry": self.plan.registry,
                "skipped": list(self.plan.skipped), "actions": [a.to_json() for a in self.actions],
                "built": len(self.builds), "pushed": len(self.pushes), "report": self.report.to_json()}


Runner = Callable[..., Any]


class Executor:
    def __init__(self, plan: BuildPlan, state: BuildState, probe: RegistryProbe | None = None,
                 runner: Runner | None = None, work_dir: Path | None = None, jobs: int = 1):
        self.plan, self.state = plan, state
        self.probe = probe or RegistryProbe()
        self.runner = runner
        self.work_dir = work_dir
        self.jobs = max(1, jobs)
        self.actions: list[Action] = []
        self._lock = threading.Lock()

    def _run(self, argv: list[str], what: str) -> None:
        run = self.runner or proc.run
        try:
            run(argv, timeout=3600)
        except CommandError as e:
            out = (e.stderr or e.stdout).strip().splitlines()
            errors = [line for line in out if "ERROR" in line or "error:" in line.lower()]
            tail = (errors or out or ["no output"])[-1].strip()
            raise BuildError(f"{what} failed: {tail} (`netship build --dry-run` shows the buildx command)") from None
        except MissingTool:
            raise MissingTool("docker not found on PATH: install Docker Engine with buildx") from None

    def _build(self, call: BuildCall, what: str) -> Digest | None:
        meta = Path(tempfile.mkstemp(prefix="netship-buildx-", suffix=".json", dir=self.work_dir)[1])
        try:
            self._run(call.argv(meta), what)
            try:
                raw = json.loads(meta.read_text() or "{}")
            except json.JSONDecodeError:
                raw = {}
        finally:
            meta.unlink(missing_ok=True)
        d = raw.get("containerimage.digest")
        if call.push and d:
            return Digest.parse(d, f"{what}: buildx metadata")
        if call.push:  # older buildx without metadata: ask the registry
            return self.probe.digest(call.tags[0])
        return None

    def _unchanged(self, record: Mapping[str, Any] | None, input_hash: str, tag: str) -> Digest | None:
        """The recorded digest if inputs are unchanged and the registry still serves it."""
        if not self.plan.push or not record or record.get("input_hash") != input_hash or not record.get("digest"):
            return None
        current = self.probe.digest(tag)
        return current if current is not None and str(current) == record["digest"] else None

    def run(self) -> BuildOutcome:
        images = {}
        if self.plan.strategy == PER_PLATFORM:
            # Every image x arch is its own buildx call: run up to `jobs` of them at once
            # (BuildKit solves them concurrently), then join each image's list.
            work = [(img, t, call) for img in self.plan.images for t, call in zip(img.targets, img.calls, strict=True)]
            digests: dict[tuple[str, Arch], Digest | None] = {}
            try:
                if self.jobs == 1 or len(work) <= 1:
                    for item in work:
                        digests[(item[0].name, item[1].arch)] = self._target(*item)
                else:
                    with ThreadPoolExecutor(max_workers=min(self.jobs, len(work))) as pool:
                        futures = [(item, pool.submit(self._target, *item)) for item in work]
                        for item, f in futures:
                            digests[(item[0].name, item[1].arch)] = f.result()
            finally:
                self.state.save()  # keep what did get pushed, even when one build failed
            for img in self.plan.images:
                images[img.name] = self._join(img, {t.arch: digests[(img.name, t.arch)] for t in img.targets})
                self.state.save()
        else:
            for img in self.plan.images:
                images[img.name] = self._multi_platform(img)
                self.state.save()
        # Plan order (image, then arch, the list last), whatever order the threads finished in.
        image_index = {img.name: i for i, img in enumerate(self.plan.images)}
        arch_index = {a.k8s: i for i, a in enumerate(Arch)}
        actions = sorted(self.actions, key=lambda a: (image_index[a.image], arch_index.get(a.arch or "", len(arch_index))))
        report = BuildReport(registry=self.plan.registry, images=images)
        return BuildOutcome(self.plan, report, tuple(actions))

    def _result(self, img: ImagePlan, list_digest: Digest | None, digests: Mapping[Arch, Digest | None]) -> ImageResult:
        return ImageResult(
            name=img.name, version=img.version, repository=img.repository, tag=img.tag, digest=list_digest,
            components=dict(img.components),
            arches={t.arch: ArchResult(t.arch, t.platform, t.tag, digests.get(t.arch)) for t in img.targets})

    def _target(self, img: ImagePlan, t: ArchTarget, call: BuildCall) -> Digest | None:
        """Build and push one image x arch unless the registry already holds it unchanged."""
        start = time.monotonic()
        cached = self._unchanged(self.state.targets.get(t.tag), t.input_hash, t.tag)
        if cached is not None:
            with self._lock:
                self.actions.append(Action(img.name, t.arch.k8s, "cached", False, time.monotonic() - start, str(cached)))
            return cached
        note(f"building {t.tag} ({t.platform})")
        d = self._build(call, f"building {img.name} for {t.platform}")
        with self._lock:
            if self.plan.push and d is not None:
                self.state.targets[t.tag] = {"input_hash": t.input_hash, "digest": str(d)}
            self.actions.append(Action(img.name, t.arch.k8s, "build", self.plan.push, time.monotonic() - start,
                                       str(d) if d else None))
        return d

    def _join(self, img: ImagePlan, digests: Mapping[Arch, Digest | None]) -> ImageResult:
        """Point the list tag at the per-arch images (imagetools create), unless it already does."""
        if not self.plan.push:
            return self._result(img, None, digests)
        start = time.monotonic()
        sources = [f"{img.repository}@{digests[t.arch]}" for t in img.targets]
        record = self.state.lists.get(img.tag)
        joined = self._unchanged(record, img.input_hash, img.tag)
        if joined is not None and record and record.get("sources") == sources:
            self.actions.append(Action(img.name, None, "join-cached", False, time.monotonic() - start, str(joined)))
            return self._result(img, joined, digests)
        note(f"joining {img.tag} from {len(sources)} platform(s)")
        self._run(imagetools_create_argv(img.tag, sources, self.plan.builder), f"joining {img.tag}")
        joined = self.probe.digest(img.tag)
        if joined is None:
            raise BuildError(f"{img.tag}: the registry does not serve the list just pushed")
        self.state.lists[img.tag] = {"input_hash": img.input_hash, "digest": str(joined), "sources": sources}
        self.actions.append(Action(img.name, None, "join", True, time.monotonic() - start, str(joined)))
        return self._result(img, joined, digests)

    def _multi_platform(self, img: ImagePlan) -> ImageResult:
        start = time.monotonic()
        record = self.state.lists.get(img.tag)
        listed = self._unchanged(record, img.input_hash, img.tag)
        if listed is not None and record:
            per_arch = record.get("arches") or {}
            digests = {t.arch: self.probe.digest(t.tag) for t in img.targets}
            if all(d is not None and str(d) == per_arch.get(t.arch.k8s) for t, d in zip(img.targets, digests.values(), strict=True)):
                self.actions.append(Action(img.name, None, "cached", False, time.monotonic() - start, str(listed)))
                return self._result(img, listed, digests)
        (call,) = img.calls
        note(f"building {img.tag} ({', '.join(call.platforms)})")
        listed = self._build(call, f"building {img.name} for {', '.join(call.platforms)}")
        self.actions.append(Action(img.name, None, "build", self.plan.push, time.monotonic() - start,
                                   str(listed) if listed else None))
        if not self.plan.push or listed is None:
            return self._result(img, None, {})
        children = self.probe.platform_digests(f"{img.repository}@{listed}")
        digests = {}
        for t in img.targets:
            child = children.get(t.platform)
            if child is None:
                raise BuildError(f"{img.tag}: the pushed list has no {t.platform} entry (it has {', '.join(sorted(children))})")
            s = time.monotonic()
            # Not `imagetools create` with one source: buildx 0.13 wraps a single image in a
            # new one-entry list, so the tag would not name the arch's image manifest itself.
            self.probe.tag(f"{img.repository}@{child}", t.tag)
            digests[t.arch] = child
            self.actions.append(Action(img.name, t.arch.k8s, "tag", True, time.monotonic() - s, str(child)))
        self.state.lists[img.tag] = {"input_hash": img.input_hash, "digest": str(listed),
                                     "arches": {a.k8s: str(d) for a, d in digests.items()}}
        return self._result(img, listed, digests)


def execute(plan: BuildPlan, state: BuildState, *, probe: RegistryProbe | None = None,
            runner: Runner | None = None, work_dir: Path | None = None, jobs: int = 1) -> BuildOutcome:
    if plan.strategy not in (PER_PLATFORM, MULTI_PLATFORM):
        raise BuildError(f"unknown build strategy {plan.strategy!r}")
    return Executor(plan, state, probe, runner, work_dir, jobs).run()


# ---------------------------------------------------------------------------- the whole job


def state_path(settings: Settings) -> Path:
    return settings.cache_dir / "build-state.json"


def _base_digest(base_image: str | None, probe: RegistryProbe) -> str | None:
    """What the prepared base resolves to now, so a moved base tag rebuilds its images."""
    if not base_image:
        return None
    ref = ImageRef.parse(base_image, "--base-image")
    if ref.digest:
        return str(ref.digest)
    d = probe.digest(base_image)
    return str(d) if d else None


def plan_build(
    settings: Settings,
    *,
    images: Sequence[str] | None = None,
    arches: Sequence[Arch] | None = None,
    explicit_arches: bool = False,
    push: bool = True,
    builder: BuilderInfo | None = None,
    probe: RegistryProbe | None = None,
    state: BuildState | None = None,
) -> BuildPlan:
    """Load catalog and image specs, pick images x arches, hash the inputs: the plan."""
    catalog = load_catalog(settings.catalog_dir)
    specs = load_images(settings.images_dir or default_images_dir(settings.catalog_dir), catalog)
    skipped: list[str] = []
    selection = select_images(specs, catalog, images, arches, explicit_arches=explicit_arches, skipped=skipped)
    if not selection:
        raise UsageError("nothing to build: no chosen image supports the chosen arches")
    builder = builder or inspect_builder(settings.builder)
    probe = probe or RegistryProbe(ca_bundle=settings.ca_bundle, timeout=settings.timeout)
    state = state or BuildState.load(state_path(settings))
    return make_plan(
        selection, catalog, context=settings.tree_dir, registry=settings.registry, strategy=builder.strategy,
        push=push, builder=settings.builder, base_image=settings.base_image,
        base_digest=_base_digest(settings.base_image, probe) if push else None,
        source_date_epoch=settings.source_date_epoch, skipped=skipped, hasher=FileHasher(state.files))


def build(
    settings: Settings,
    *,
    images: Sequence[str] | None = None,
    arches: Sequence[Arch] | None = None,
    explicit_arches: bool = False,
    push: bool = True,
    dry_run: bool = False,
) -> BuildPlan | BuildOutcome:
    """Check the stack, plan, and (unless dry_run) build, push and write the build report.

    ``dry_run`` works without Docker: the strategy is then the docker driver's."""
    if dry_run:
        try:
            builder = inspect_builder(settings.builder)
        except NetshipError as e:
            note(f"cannot inspect the builder ({e}); planning for the docker driver")
            builder = BuilderInfo(settings.builder or "default", "docker")
    else:
        check_docker()
        check_buildx()
        builder = inspect_builder(settings.builder)
    probe = RegistryProbe(ca_bundle=settings.ca_bundle, timeout=settings.timeout)
    state = BuildState.load(state_path(settings))
    plan = plan_build(settings, images=images, arches=arches, explicit_arches=explicit_arches, push=push,
                      builder=builder, probe=probe, state=state)
    for line in plan.skipped:
        note(f"skip: {line}")
    if dry_run:
        return plan
    wanted = [t.arch for img in plan.images for t in img.targets]
    if builder.strategy == PER_PLATFORM and not settings.base_image:
        check_binfmt(dict.fromkeys(wanted))  # the default runtime stage RUNs apk for the target arch
    if builder.strategy == MULTI_PLATFORM:
        check_builder_platforms(builder.name, builder.platforms, dict.fromkeys(a.platform for a in wanted))
    if push:
        check_registry(settings.registry, timeout=min(settings.timeout, 10.0))
    if settings.base_image and plan.push and _base_digest(settings.base_image, probe) is None:
        base = ImageRef.parse(settings.base_image, "--base-image")
        if is_loopback_host(base.domain):  # elsewhere it may just need a login buildx has
            raise BuildError(f"--base-image {settings.base_image}: not found in {base.domain}; push the prepared base first")
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    outcome = execute(plan, state, probe=probe, work_dir=settings.cache_dir, jobs=settings.jobs)
    path = settings.build_report
    previous = None
    if path.exists():
        try:
            previous = load_report(path)
        except ConfigError:
            previous = None  # a broken old report is replaced
    report = previous.merged(outcome.report) if previous else outcome.report
    save_report(path, report)
    return BuildOutcome(plan, report, outcome.actions)
