"""Tasks ``build`` (multi-arch images with docker buildx) and ``registry`` (the local push target)."""

from __future__ import annotations

from typing import Any

from invoke import Collection

from .. import output
from ..arch import parse_arches
from . import netship_task, settings_from


def _split(value: str | None) -> list[str] | None:
    if not value:
        return None
    return [p for p in value.replace(" ", ",").split(",") if p]


@netship_task(
    name="build",
    help={
        "arch": "arches to build: 'all' (default) or a list, e.g. amd64,arm64 (any spelling: arm, armhf, linux/arm/v7)",
        "image": "images to build, comma-separated (default: every spec in images/): flannel,flannel-cni-plugin,kube-router,cni-plugins",
        "registry": "push target HOST[:PORT][/PREFIX] (default 127.0.0.1:5000, see `netship registry`)",
        "push": "push the per-arch images and the manifest list (default); --no-push builds into the local daemon only",
        "builder": "buildx builder name (default: the current one); a docker-container/remote/multi-node builder builds all platforms in one call",
        "base-image": "prepared multi-arch runtime base (e.g. for air-gapped builders); default: the Alpine stage pinned by digest",
        "dry-run": "print the plan (buildx calls) and do nothing",
        "json": "print a machine-readable summary on stdout",
    },
)
def build(ctx: Any, arch: str | None = None, image: str | None = None, registry: str | None = None,
          push: bool = True, builder: str | None = None, base_image: str | None = None,
          dry_run: bool = False, json: bool = False) -> None:
    """Build the add-on images for every arch from the fetch tree; push them and write the build report."""
    from .. import buildplan, buildx  # imported here: `netship --help` and other tasks skip their cost
    settings = settings_from(ctx, registry=registry, builder=builder, base_image=base_image)
    arches = parse_arches(arch)
    explicit = bool(arch) and arch.strip().lower() != "all"
    result = buildx.build(settings, images=_split(image), arches=arches, explicit_arches=explicit,
                          push=push, dry_run=dry_run)
    if isinstance(result, buildplan.BuildPlan):
        output.emit(result.to_json(), json, buildplan.describe(result))
        return
    human = []
    for planned in result.plan.images:
        img = result.report.images[planned.name]
        human.append(f"{img.tag}@{img.digest}" if img.digest else f"{img.tag} (not pushed)")
    built, pushed = len(result.builds), len(result.pushes)
    human.append(f"{built} build(s), {pushed} push(es), {len(result.actions) - built} cached step(s); "
                 f"report: {settings.build_report}")
    output.emit(result.to_json(), json, human)


def _registry_task(action: str):
    @netship_task(name=action, default=(action == "start"), help={
        "registry": "registry address 127.0.0.1:PORT (default 127.0.0.1:5000)",
        "json": "print a machine-readable summary on stdout"})
    def task(ctx: Any, registry: str | None = None, json: bool = False) -> None:
        from .. import stack  # imported here: keeps CLI start-up fast
        settings = settings_from(ctx, registry=registry)
        state_dir = settings.cache_dir / "registry"
        if action == "start":
            message = stack.registry_start(settings.registry, state_dir)
        elif action == "stop":
            message = stack.registry_stop(settings.registry, state_dir)
        else:
            up = stack.registry_answers(settings.registry)
            message = f"registry {settings.registry} is {'up' if up else 'down'}"
        output.emit({"registry": settings.registry, "action": action, "message": message,
                     "up": stack.registry_answers(settings.registry)}, json, [message])

    task.__doc__ = {"start": "Start the local registry (127.0.0.1:5000): docker-registry binary, else registry:2 container.",
                    "stop": "Stop the local registry that `registry start` started.",
                    "status": "Say whether the registry answers."}[action]
    return task


registry = Collection("registry")
for _action in ("start", "stop", "status"):
    registry.add_task(_registry_task(_action))

TASKS: list = [build, registry]
