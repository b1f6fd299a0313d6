"""Tasks ``fetch`` and ``pins update``: thin edges over netship.fetch and netship.pins."""

from __future__ import annotations

from typing import Any

from invoke import Collection

from ..errors import UsageError
from ..output import emit, note
from . import netship_task, settings_from

_COMMON_HELP = {
    "mirror": "Base URL to try, in order; repeat the flag for several. 'upstream' means the catalog's "
              "own URL (put it last). A mirror M serves https://HOST/PATH at M/HOST/PATH "
              "(kubespray's files_repo layout). Default: settings.mirrors (upstream).",
    "jobs": "Parallel downloads (default: settings.jobs, 4).",
    "json": "Print a machine-readable summary on stdout (notes and progress stay on stderr).",
    "ca-bundle": "PEM file of the CA certificates to verify HTTPS servers with, instead of the default "
                 "bundle (e.g. an internal mirror's CA). TLS is always verified.",
    "cache-dir": "Cache folder: sha256/<hex> blobs, tree/COMPONENT/VERSION/ARCH (default ~/.cache/netship).",
    "catalog-dir": "Folder holding catalog.yml and pins.lock (default: ./release).",
    "retries": "Retries per URL after the first attempt, on connection errors, resets, timeouts, 5xx "
               "and 429 (default 5); other 4xx are never retried.",
    "timeout": "Connect and read timeout in seconds (default 30).",
}


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [p for p in text.replace(",", " ").split() if p]
    return items or None


@netship_task(
    name="fetch",
    iterable=["mirror"],
    auto_shortflags=False,
    help={
        "arch": "'all' (default) or a comma-separated list in any spelling (amd64, aarch64, "
                "linux/arm/v7, ppc64el, s390x). An arch a named component does not publish is an "
                "error; otherwise such pairs are skipped with a note.",
        "component": "Comma-separated components from catalog.yml (default: all of them).",
        "verify": "Re-hash everything already cached (blobs and unpacked trees) and replace what is corrupt.",
        "allow-unpinned": "Fetch assets with no pin in pins.lock anyway: checked against upstream's "
                          "checksum file where one exists, and reported as UNPINNED in every output.",
        **_COMMON_HELP,
    },
)
def fetch_(
    ctx: Any, arch: str | None = None, component: str | None = None, mirror: Any = None,
    jobs: str | None = None, verify: bool = False, json: bool = False, allow_unpinned: bool = False,
    ca_bundle: str | None = None, cache_dir: str | None = None, catalog_dir: str | None = None,
    retries: str | None = None, timeout: str | None = None,
) -> None:
    """Download, verify and unpack the pinned release assets.

    Each asset (component x arch from release/catalog.yml) is downloaded from the first
    mirror that serves the right bytes, streamed while its sha256 is computed, and renamed
    into CACHE/sha256/<hex> only when the digest matches its pin in pins.lock. It is then
    unpacked (with path checks) into CACHE/tree/COMPONENT/VERSION/ARCH/ and every ELF
    binary is checked against the arch. Interrupted downloads resume with HTTP Range;
    failures are retried with backoff (honouring Retry-After). Cached assets make no
    network request. Exit codes: 0 ok, 1 download/verification failure, 2 usage or
    configuration error (including an asset with no pin). Proxies come from the
    environment (HTTPS_PROXY, NO_PROXY); settings also from invoke.yaml and NETSHIP_*.
    """
    from ..arch import parse_arches
    from ..catalog import load_catalog
    from ..fetch import fetch as do_fetch

    settings = settings_from(
        ctx, mirrors=list(mirror or []), jobs=jobs, ca_bundle=ca_bundle, cache_dir=cache_dir,
        catalog_dir=catalog_dir, retries=retries, timeout=timeout,
        allow_unpinned=True if allow_unpinned else None,
    )
    if settings.ca_bundle is not None and not settings.ca_bundle.is_file():
        raise UsageError(f"--ca-bundle: {settings.ca_bundle}: file not found")
    arches = parse_arches(arch)
    explicit = arch is not None and arch.strip().lower() != "all"
    catalog = load_catalog(settings.catalog_dir)
    skipped: list[str] = []
    assets = catalog.select(_split(component), arches, explicit_arches=explicit, skipped=skipped)
    for s in skipped:
        note(f"skipping: {s}")
    report = do_fetch(settings, assets, verify=verify, allow_unpinned=settings.allow_unpinned, skipped=skipped)
    emit(report.to_json(), json, report.human())


@netship_task(
    name="update",
    iterable=["mirror"],
    auto_shortflags=False,
    help={
        "component": "The component in catalog.yml whose pins to record (required).",
        "version": "The upstream release tag to pin, e.g. v1.9.1 (required).",
        "select": "Also make VERSION the one fetch uses (edits only that component's version: line "
                  "in catalog.yml).",
        **_COMMON_HELP,
    },
)
def update(
    ctx: Any, component: str | None = None, version: str | None = None, select: bool = False,
    mirror: Any = None, jobs: str | None = None, json: bool = False, ca_bundle: str | None = None,
    cache_dir: str | None = None, catalog_dir: str | None = None, retries: str | None = None,
    timeout: str | None = None,
) -> None:
    """Record the sha256 of every asset of COMPONENT at VERSION in pins.lock.

    Reads upstream's checksum file in the component's layout (per-asset .sha256, combined
    SHA256SUMS, goreleaser checksums.txt, NAME_VERSION_checksums.txt) through the mirrors;
    where upstream publishes none (flannel) each asset is downloaded and hashed, and the
    pin's source says "computed from downloaded bytes". Pins of other versions and
    components are never changed. Needs upstream or a mirror to be reachable.
    """
    from ..pins import update_pins

    if not component:
        raise UsageError("--component is required (a component of catalog.yml)")
    if not version:
        raise UsageError("--version is required (an upstream release tag, e.g. v1.9.1)")
    settings = settings_from(
        ctx, mirrors=list(mirror or []), jobs=jobs, ca_bundle=ca_bundle, cache_dir=cache_dir,
        catalog_dir=catalog_dir, retries=retries, timeout=timeout,
    )
    report = update_pins(settings, component, version, select=select)
    emit(report.to_json(), json, report.human())


pins = Collection("pins")
pins.add_task(update)

TASKS: list = [fetch_, pins]
