"""Session fixtures on the real stack (dockerd, buildx, qemu binfmt, registry at 127.0.0.1:5000),
started by scripts/setup-stack.sh. Everything is built once per session and shared:

- ``registry_prefix``: ``127.0.0.1:5000/t-<random>``, unique per session (the registry and
  dockerd are shared with other sessions: never delete what is not ours).
- ``test_base``: the multi-arch busybox base (built FROM scratch per platform, no emulation)
  as a manifest list tag.
- ``fetched_settings``: Settings whose fetch tree holds every catalog component for every arch,
  fetched by ``netship.fetch.fetch`` from a loopback test mirror.
- ``build_settings``: those settings pointed at the session registry and test base.
- ``first_build``: the BuildOutcome of building every image for all five arches.
- ``built_images``: its BuildReport (what bundle/release tests should use).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from netship.settings import Settings
from tests.support.httpserver import LoopbackServer
from tests.support.upstream import make_upstream

REGISTRY = "127.0.0.1:5000"
# A fixed SOURCE_DATE_EPOCH so labels (and so input hashes) do not depend on file times.
TEST_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z


def _stack_up() -> str | None:
    """Why the stack is not usable, or None."""
    if shutil.which("docker") is None:
        return "docker not installed"
    try:
        subprocess.run(["docker", "buildx", "version"], check=True, capture_output=True, timeout=30)
        subprocess.run(["docker", "info"], check=True, capture_output=True, timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        return f"docker/buildx not usable: {e}"
    return None


@pytest.fixture(scope="session")
def stack() -> None:
    """Fail (not skip) when the real stack is missing: CI must run these tests."""
    why = _stack_up()
    if why:
        pytest.fail(f"the real stack is not up ({why}): run `bash scripts/setup-stack.sh` as root")


@pytest.fixture(scope="session")
def registry_prefix(stack) -> str:
    return f"{REGISTRY}/t-{secrets.token_hex(4)}"


@pytest.fixture(scope="session")
def test_base(registry_prefix, tmp_path_factory) -> str:
    from tests.support.testbase import build_base

    return build_base(f"{registry_prefix}/base", tmp_path_factory.mktemp("testbase"))


def fetch_tree(settings: Settings) -> None:
    """Fill ``settings.tree_dir`` from the mirror in ``settings.mirrors`` with netship.fetch."""
    from netship.catalog import load_catalog
    from netship.fetch import fetch

    catalog = load_catalog(settings.catalog_dir)
    fetch(settings, catalog.select())


@pytest.fixture(scope="session")
def fetched_settings(tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("fetched")
    mirror, catalog_dir = root / "mirror", root / "catalog"
    make_upstream(mirror, catalog_dir)
    with LoopbackServer(mirror) as srv:
        settings = Settings(catalog_dir=catalog_dir, cache_dir=root / "cache", out_dir=root / "out",
                            mirrors=(srv.url,), retries=1, timeout=10.0)
        fetch_tree(settings)
    return settings


@pytest.fixture(scope="session")
def build_settings(fetched_settings, registry_prefix, test_base) -> Settings:
    return fetched_settings.replace(registry=registry_prefix, base_image=test_base,
                                    source_date_epoch=TEST_EPOCH,
                                    images_dir=Path(__file__).resolve().parents[2] / "images")


@pytest.fixture(scope="session")
def first_build(build_settings):
    from netship import buildx

    return buildx.build(build_settings)


@pytest.fixture(scope="session")
def built_images(first_build):
    """The BuildReport of every image built for all five arches and pushed to the session registry."""
    return first_build.report
