"""Tasks: bundle-offline, verify-bundle, push-bundle (the work lives in netship.bundle/verify)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..arch import parse_arches
from ..errors import VerificationError
from ..output import emit, note
from . import netship_task, settings_from


@netship_task(
    name="bundle-offline",
    help={
        "arch": "arches to bundle: 'all' (every arch in the build report) or a comma-separated list",
        "registry": "read the images from this registry (HOST[:PORT]) instead of the build report's; names are kept",
        "compression": "outer compression: gzip (default; any node can read it), zstd, none",
        "out": "folder for the bundles (default: the out_dir setting)",
        "multiarch": "also write netship-offline-VERSION-multiarch (every platform, manifest lists kept) for push-bundle",
        "only_multiarch": "write only the multi-arch variant",
        "json": "print a JSON summary on stdout",
    },
)
def bundle_offline(c: Any, arch: str = "all", registry: str = "", compression: str = "gzip",
                   out: str = "", multiarch: bool = False, only_multiarch: bool = False,
                   json: bool = False) -> None:
    """Write one offline bundle per arch: images, CNI binaries, manifests, inventory, installer."""
    settings = settings_from(c)
    arches = None if arch.strip().lower() in ("", "all") else parse_arches(arch)
    skipped: list[str] = []
    from .. import bundle as bundle_mod  # imported here: keeps CLI start-up fast

    results = bundle_mod.bundle_offline(
        settings, arches, compression=compression, multiarch=multiarch or only_multiarch,
        per_arch=not only_multiarch, out_dir=Path(out) if out else None,
        registry=registry or None, skipped=skipped,
    )
    for s in skipped:
        note(f"skipped: {s}")
    emit({"bundles": [r.to_json() for r in results], "skipped": skipped}, json,
         [f"{r.path}  {r.size} bytes  {r.images} images, {r.blobs} blobs "
          f"({r.deduplicated_bytes} bytes deduplicated)  sha256:{r.sha256}" for r in results])


@netship_task(
    name="verify-bundle",
    help={"file": "bundle file (.tar, .tar.gz, .tar.zst) or unpacked bundle folder",
          "json": "print a JSON report on stdout"},
)
def verify_bundle(c: Any, file: str, json: bool = False) -> None:
    """Recompute every digest in a bundle; name what is missing, extra or altered."""
    from ..verify import verify_bundle as verify

    report = verify(Path(file))
    emit(report.to_json(), json,
         [f"{file}: OK ({report.files} files, {report.blobs} blobs, {report.images} image entries)"]
         if report.ok else [str(p) for p in report.problems])
    if not report.ok:
        raise VerificationError(f"{file}: {len(report.problems)} problem(s): {report.problems[0]}")


@netship_task(
    name="push-bundle",
    help={"file": "bundle file or folder (the multi-arch variant keeps its manifest lists)",
          "registry": "target registry HOST[:PORT][/PREFIX] (plain http only for loopback hosts)",
          "no_verify": "skip verify-bundle before pushing",
          "json": "print a JSON summary on stdout"},
)
def push_bundle(c: Any, file: str, registry: str = "", no_verify: bool = False, json: bool = False) -> None:
    """Push a bundle's images to a registry through its HTTP API, skipping blobs it has."""
    settings = settings_from(c)
    target = registry or settings.registry
    from .. import bundle as bundle_mod  # imported here: keeps CLI start-up fast

    summary = bundle_mod.push_bundle(settings, Path(file), target, verify=not no_verify)
    emit(summary, json,
         [f"pushed {len(summary['tags'])} tags to {target}: {summary['uploaded']} blobs uploaded, "
          f"{summary['mounted']} mounted, {summary['existing']} already there"]
         + [f"  {t}" for t in summary["tags"]])


TASKS: list = [bundle_offline, verify_bundle, push_bundle]
