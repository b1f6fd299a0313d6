"""Tasks for the release pipeline: ``mirror`` and ``release``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..arch import parse_arches
from ..catalog import load_catalog
from ..fsutil import remove_stale_temps
from ..output import emit, note
from . import netship_task, settings_from


@netship_task(
    help={
        "arch": "arches to copy: 'all' or a comma-separated list (amd64,arm64,arm,ppc64le,s390x)",
        "image": "images to copy (names from mirror-images.yml), comma-separated; default: all",
        "registry": "private registry to copy into (HOST[:PORT][/PREFIX]); default: settings.registry",
        "keep_all_platforms": "copy upstream's manifest list whole (keeps its digest) instead of "
                              "filtering it to --arch",
        "mirror_file": "the list of images to copy; default: mirror-images.yml beside the catalog",
        "dry_run": "print what would be copied, copy nothing",
        "json": "print a JSON summary on stdout",
    }
)
def mirror(ctx: Any, arch: str = "all", image: str = "", registry: str = "", keep_all_platforms: bool = False,
           mirror_file: str = "", dry_run: bool = False, json: bool = False) -> None:
    """Copy images netship does not build (calico, cilium) into the private registry."""
    settings = settings_from(ctx, registry=registry or None, mirror_file=mirror_file or None)
    arches = parse_arches(arch)
    from .. import buildreport  # imported here: keeps CLI start-up fast
    from .. import mirror as mirror_mod

    catalog = load_catalog(settings.catalog_dir)
    images = mirror_mod.load_mirror_images(mirror_mod.mirror_file(settings), catalog)
    skipped: list[str] = []
    names = [n for n in image.replace(" ", ",").split(",") if n] or None
    steps = mirror_mod.plan_mirror(images, arches, settings.registry, names=names,
                                   explicit_arches=arch.strip().lower() != "all",
                                   keep_all_platforms=keep_all_platforms, skipped=skipped)
    for s in skipped:
        note(f"skipped: {s}")
    if dry_run:
        emit({"dry_run": True, "mirror": [s.to_json() for s in steps], "skipped": skipped}, json,
             [f"would copy {s.source} -> {s.target} [{', '.join(a.k8s for a in s.arches)}]" for s in steps])
        return
    results = mirror_mod.mirror(steps, mirror_mod.default_clients(settings))
    path = mirror_mod.report_path(settings)
    remove_stale_temps(path.parent)
    buildreport.save(path, mirror_mod.report_of(results, settings.registry))
    emit({"images": [r.to_json() for r in results], "report": str(path), "skipped": skipped}, json,
         [f"{r.step.target}@{r.digest}" for r in results])


@netship_task(
    help={
        "arch": "arches to release: 'all' (default) or a comma-separated list (amd64,arm64,arm,ppc64le,s390x)",
        "registry": "where images are pushed and bundles read from (HOST[:PORT][/PREFIX]); "
                    "default: settings.registry, the local 127.0.0.1:5000",
        "push": "allow pushing to a non-loopback registry (the project's registry in CI); "
                "loopback registries are always pushed to",
        "out": "release folder; default: OUT_DIR/VERSION (release/out/VERSION)",
        "compression": "outer compression of the bundles: gzip (default), zstd or none",
        "mirror": "also copy the calico and cilium images (mirror-images.yml) and bundle them "
                  "(default; --no-mirror skips them)",
        "allow_unpinned": "fetch assets whose sha256 is not pinned yet (checked against upstream's checksum "
                          "file where one exists; marked UNPINNED in RELEASE.md)",
        "dry_run": "print the whole plan (downloads, builds, copies, files) and touch nothing",
        "json": "print a JSON summary on stdout",
    }
)
def release(ctx: Any, arch: str = "all", registry: str = "", push: bool = False, out: str = "",
            compression: str = "gzip", mirror: bool = True, allow_unpinned: bool = False, dry_run: bool = False,
            json: bool = False) -> None:
    """Fetch, build, mirror, bundle and write manifests: one release folder with SHA256SUMS and RELEASE.md."""
    from ..bundle import COMPRESSIONS
    from ..errors import unknown

    if compression not in COMPRESSIONS:
        raise unknown("compression", compression, COMPRESSIONS, "--compression")
    settings = settings_from(ctx, registry=registry or None, allow_unpinned=allow_unpinned or None)
    arches = parse_arches(arch)
    from .. import release as release_mod  # imported here: keeps CLI start-up fast

    plan = release_mod.plan_release(settings, arches=arches, explicit_arches=arch.strip().lower() != "all",
                                    out=Path(out) if out else None, push=push, compression=compression,
                                    mirror_images=mirror)
    for s in plan.skipped:
        note(f"skipped: {s}")
    if dry_run:
        build = release_mod.build_dry_run(settings, plan)
        payload = {"dry_run": True, **plan.to_json(release_mod.is_cached(settings)), "build": build}
        emit(payload, json, release_mod.describe(payload))
        return
    result = release_mod.release(settings, plan)
    emit(result.to_json(), json, [
        *(f"{name:10} {release_mod.stage_line(info)}" for name, info in result.stages.items()),
        f"{result.folder}: {'written' if result.changed else 'unchanged'} ({len(result.files)} files)",
    ])


TASKS: list = [mirror, release]
