"""Checks of the build stack, each failing with one line that says what to do.

docker present and its daemon answering, buildx present, binfmt (qemu) registered for a
foreign arch, the registry answering.
"""

from __future__ import annotations

import platform as _platform
from collections.abc import Iterable
from pathlib import Path

from . import proc
from .arch import Arch
from .errors import BuildError, CommandError, MissingTool, RegistryError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
SETUP_HINT = "on Debian 12 as root, `bash scripts/setup-stack.sh` sets everything up"


def check_docker() -> None:
    try:
        proc.run(["docker", "version", "--format", "{{.Server.Version}}"], timeout=30,
                 hint="install Docker Engine (Debian: apt-get install docker.io)")
    except MissingTool:
        raise MissingTool(f"docker not found on PATH: install Docker Engine with buildx ({SETUP_HINT})") from None
    except CommandError as e:
        tail = (e.stderr.strip().splitlines() or ["no output"])[-1]
        raise BuildError(f"the Docker daemon does not answer ({tail}): start dockerd "
                         f"(`systemctl start docker`; {SETUP_HINT})") from None


def check_buildx() -> str:
    """Returns buildx's version line."""
    try:
        return proc.run(["docker", "buildx", "version"], timeout=30).stdout.strip()
    except CommandError:
        raise MissingTool("docker buildx is not installed: put the docker-buildx plugin in "
                          f"~/.docker/cli-plugins/ (Debian 13 package docker-buildx; {SETUP_HINT})") from None


def native_arch() -> Arch | None:
    try:
        return Arch.parse(_platform.machine())
    except Exception:
        return None


def qemu_entry(arch: Arch) -> str:
    return arch.qemu or "x86_64"


def check_binfmt(arches: Iterable[Arch], binfmt_dir: Path = BINFMT_DIR, native: Arch | None = None) -> None:
    """Every foreign arch needs an enabled qemu binfmt entry to run its RUN steps."""
    native = native if native is not None else native_arch()
    for arch in arches:
        if arch == native:
            continue
        entry = binfmt_dir / f"qemu-{qemu_entry(arch)}"
        try:
            enabled = entry.read_text().splitlines()[:1] == ["enabled"]
        except OSError:
            enabled = False
        if not enabled:
            raise BuildError(
                f"--arch {arch}: no binfmt for {arch.platform} ({entry} is missing or disabled): install "
                f"qemu-user-static and binfmt-support (or run `docker run --privileged tonistiigi/binfmt --install all`), "
                f"or build with --base-image so no RUN step runs for {arch}")


def check_builder_platforms(builder: str, builder_platforms: Iterable[str], wanted: Iterable[str]) -> None:
    have = {p.strip() for p in builder_platforms}
    if not have:
        return  # the builder did not say; let buildx decide
    for p in wanted:
        if p not in have and not (p == "linux/arm/v7" and "linux/arm" in have):
            raise BuildError(f"builder {builder} cannot build {p} (it lists {', '.join(sorted(have))}): "
                             f"add a node for {p} or register qemu binfmt on it")


def check_registry(registry: str, *, timeout: float = 5.0) -> None:
    """The push target answers ``/v2/`` (a 401 counts: it is there and wants a login)."""
    from .registry import client_for

    host = registry.split("/", 1)[0]
    try:
        client = client_for(host, timeout=timeout)
        resp = client.session.get(f"{client.base}/v2/", timeout=timeout)
    except Exception as e:  # requests' ConnectionError, Timeout, SSL errors
        raise RegistryError(
            f"registry {host} is unreachable ({type(e).__name__}): start it with `netship registry start` "
            f"or pass --registry HOST[:PORT]") from None
    if resp.status_code not in (200, 401):
        raise RegistryError(f"registry {host} answered HTTP {resp.status_code} on /v2/: is it a Docker registry?")


# ---------------------------------------------------------------------------- local registry
# netship's default push target: the Distribution registry on 127.0.0.1:5000, run from the
# `docker-registry` (Debian) or `registry` binary when present, else the `registry:2` container.

REGISTRY_BINARIES = ("docker-registry", "registry")
REGISTRY_CONTAINER = "netship-registry"
REGISTRY_IMAGE = "registry:2"


def registry_answers(registry: str, timeout: float = 2.0) -> bool:
    try:
        check_registry(registry, timeout=timeout)
        return True
    except RegistryError:
        return False


def _registry_config(addr: str, storage: Path) -> str:
    return (f"version: 0.1\nlog: {{level: warn, accesslog: {{disabled: true}}}}\n"
            f"storage:\n  filesystem: {{rootdirectory: {storage}}}\n  delete: {{enabled: true}}\n"
            f"http:\n  addr: {addr}\n")


def registry_start(registry: str, state_dir: Path, *, wait: float = 15.0) -> str:
    """Start the local registry unless it answers already; returns what was done."""
    import shutil
    import subprocess
    import time

    from .fsutil import atomic_write_text

    addr = registry.split("/", 1)[0]
    if registry_answers(addr):
        return f"registry {addr} is already running"
    host, _, port = addr.rpartition(":")
    if not port.isdigit() or host not in ("127.0.0.1", "localhost", "[::1]"):
        raise RegistryError(f"--registry {registry}: `netship registry` only runs a local registry on 127.0.0.1:PORT")
    state_dir.mkdir(parents=True, exist_ok=True)
    storage = state_dir / "data"
    binary = next((b for b in (shutil.which(n) for n in REGISTRY_BINARIES) if b), None)
    if binary:
        config = state_dir / "config.yml"
        atomic_write_text(config, _registry_config(addr, storage))
        # A daemon outlives this process, so it is spawned here rather than through
        # proc.run (which waits); argv is still a list and its output goes to a log file.
        with open(state_dir / "registry.log", "ab") as log:
            child = subprocess.Popen([binary, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log, start_new_session=True)
        (state_dir / "registry.pid").write_text(f"{child.pid}\n")
        how = f"{binary} (pid {child.pid}, log {state_dir / 'registry.log'})"
    else:
        proc.run(["docker", "rm", "-f", REGISTRY_CONTAINER], check=False)
        proc.run(["docker", "run", "-d", "--name", REGISTRY_CONTAINER, "--restart", "unless-stopped",
                  "-p", f"{host}:{port}:5000", "-v", f"{storage}:/var/lib/registry", REGISTRY_IMAGE],
                 hint="install Docker, or the docker-registry package")
        how = f"container {REGISTRY_CONTAINER} ({REGISTRY_IMAGE})"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if registry_answers(addr, timeout=1.0):
            return f"registry {addr} started: {how}"
        time.sleep(0.2)
    raise RegistryError(f"registry {addr} did not answer within {wait:.0f} s after starting {how}")


def registry_stop(registry: str, state_dir: Path) -> str:
    """Stop the registry this command started (by its recorded pid, or its container)."""
    import os
    import signal

    addr = registry.split("/", 1)[0]
    pidfile = state_dir / "registry.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text().strip() or 0)
        pidfile.unlink()
        try:
            os.kill(pid, signal.SIGTERM)
            return f"registry {addr} stopped (pid {pid})"
        except ProcessLookupError:
            return f"registry {addr} was not running (stale pid {pid})"
    try:
        out = proc.run(["docker", "rm", "-f", REGISTRY_CONTAINER], check=False)
    except MissingTool:
        out = None
    if out is not None and out.returncode == 0:
        return f"registry {addr} stopped (container {REGISTRY_CONTAINER})"
    if registry_answers(addr):
        return f"registry {addr} is running but was not started by `netship registry`: left alone"
    return f"registry {addr} is not running"
