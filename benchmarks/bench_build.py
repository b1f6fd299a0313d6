"""Build benchmark (run by hand on the real stack; `bash scripts/setup-stack.sh` first):

    python benchmarks/bench_build.py [--json]

1. cold `netship build` of every image for all five arches (whole process), with binaries of
   fresh content so BuildKit's cache cannot help; once with --jobs 4 (default), once serial;
2. the no-op rebuild right after it (whole process; goal < 5 s);
3. for both, the share of wall time during which a qemu-user process was running (sampled
   from /proc every 20 ms);
4. a COPY-only component build (flannel, 5 arches, --no-cache) against the same image with a
   package-install-sized RUN step in its target stage (unpacking a ~1 MB gzip'd tarball and
   running a binary of the target arch: what `apk add` does, minus the network), as a ratio.

Uses a unique registry prefix on 127.0.0.1:5000 and temporary folders; leaves images behind
under that prefix only.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import secrets
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.httpserver import LoopbackServer  # noqa: E402
from tests.support.testbase import build_base, busybox_from_deb, deb_for  # noqa: E402
from tests.support.upstream import make_upstream  # noqa: E402

from netship.arch import ALL_ARCHES  # noqa: E402
from netship.settings import Settings  # noqa: E402


class QemuSampler:
    """Fraction of samples during which a BuildKit step (cgroup .../buildkit/...) runs under a
    qemu-user interpreter. Other sessions' builds on the same dockerd count too: a cross-check
    only; the RUN-step timings from BuildKit's own progress are the attributable figure."""

    def __init__(self, period: float = 0.02):
        self.period, self.samples, self.hits = period, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _qemu_running(self) -> bool:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                if "qemu-" in os.readlink(f"/proc/{pid}/exe") and "buildkit" in Path(f"/proc/{pid}/cgroup").read_text():
                    return True
            except OSError:
                continue
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples += 1
            self.hits += self._qemu_running()
            time.sleep(self.period)

    def __enter__(self) -> QemuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def share(self) -> float:
        return self.hits / self.samples if self.samples else 0.0


def netship_build(settings: Settings, *args: str) -> tuple[float, float, dict]:
    env = {**os.environ, "NETSHIP_CATALOG_DIR": str(settings.catalog_dir), "NETSHIP_CACHE_DIR": str(settings.cache_dir),
           "NETSHIP_OUT_DIR": str(settings.out_dir), "NETSHIP_REGISTRY": settings.registry,
           "NETSHIP_BASE_IMAGE": settings.base_image or "", "SOURCE_DATE_EPOCH": "1767225600",
           "NETSHIP_JOBS": str(settings.jobs)}
    with QemuSampler() as q:
        t = time.monotonic()
        out = subprocess.run([sys.executable, "-m", "netship", "build", "--json", *args], capture_output=True,
                             text=True, env=env)
        elapsed = time.monotonic() - t
    if out.returncode != 0:
        raise SystemExit(f"netship build failed: {out.stderr.strip()[-800:]}")
    return elapsed, q.share, json.loads(out.stdout)


def run_step_seconds(progress: str) -> float:
    """Sum of the durations BuildKit reports (``--progress=plain``) for RUN steps."""
    run_ids, total = set(), 0.0
    for line in progress.splitlines():
        m = re.match(r"^#(\d+) \[.*\] RUN ", line)
        if m:
            run_ids.add(m.group(1))
        m = re.match(r"^#(\d+) DONE ([0-9.]+)s", line)
        if m and m.group(1) in run_ids:
            total += float(m.group(2))
    return total


def buildx_timed(argv: list[str]) -> tuple[float, float, float]:
    """(wall seconds, sampled qemu share, seconds in RUN steps)."""
    with QemuSampler() as q:
        t = time.monotonic()
        out = subprocess.run([*argv[:3], "--progress=plain", *argv[3:]], capture_output=True, text=True)
        elapsed = time.monotonic() - t
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:6])} failed: {out.stderr.strip()[-800:]}")
    return elapsed, q.share, run_step_seconds(out.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    opts = ap.parse_args()
    prefix = f"127.0.0.1:5000/bench-{secrets.token_hex(4)}"
    work = Path(tempfile.mkdtemp(prefix="netship-bench-"))
    figures: dict = {"registry_prefix": prefix}

    t = time.monotonic()
    base = build_base(f"{prefix}/base", work / "base")
    figures["test_base_build_s"] = round(time.monotonic() - t, 2)

    from netship.catalog import load_catalog
    from netship.fetch import fetch

    def fresh_tree(name: str, jobs: int) -> Settings:
        # Fresh binary content (size differs per tree), so nothing is a BuildKit cache hit.
        d = work / name
        make_upstream(d / "mirror", d / "catalog", elf_size=4096 + random.randrange(1, 1 << 16))
        with LoopbackServer(d / "mirror") as srv:
            s = Settings(catalog_dir=d / "catalog", cache_dir=d / "cache", out_dir=d / "out", mirrors=(srv.url,),
                         registry=f"{prefix}/{name}", base_image=base, jobs=jobs)
            fetch(s, load_catalog(s.catalog_dir).select())
        return s

    serial, _, _ = netship_build(fresh_tree("serial", jobs=1))
    figures["cold_build_jobs1_s"] = round(serial, 2)
    settings = fresh_tree("main", jobs=4)
    cold, cold_q, doc = netship_build(settings)
    # No RUN step executes in the target stage with a prepared base (and the Alpine stage is
    # unreachable), so the emulated share of the cold build is 0 by construction; the sampler
    # is a cross-check that also sees other sessions' builds on the same dockerd.
    figures.update(cold_build_s=round(cold, 2), cold_builds=doc["built"], cold_pushes=doc["pushed"],
                   cold_qemu_sampled=round(cold_q, 3))
    noop, noop_q, doc = netship_build(settings)
    figures.update(noop_rebuild_s=round(noop, 2), noop_builds=doc["built"], noop_pushes=doc["pushed"],
                   noop_qemu_sampled=round(noop_q, 3))

    # COPY-only vs the same image with a package-install step in the target stage.
    tree = settings.tree_dir
    flannel_df = (ROOT / "dockerfiles" / "flannel.Dockerfile").read_text()
    run_df = work / "flannel-run.Dockerfile"
    run_df.write_text(flannel_df.replace(
        'ENTRYPOINT ["/opt/bin/flanneld"]',
        "COPY pkgs/${TARGETARCH}.tgz /tmp/pkg.tgz\n"
        "RUN mkdir -p /opt/pkg && tar -xzf /tmp/pkg.tgz -C /opt/pkg && /opt/pkg/busybox --list >/opt/pkg/applets"
        " && rm /tmp/pkg.tgz\n"
        'ENTRYPOINT ["/opt/bin/flanneld"]'))
    (tree / "pkgs").mkdir(exist_ok=True)
    for arch in ALL_ARCHES:
        buf = io.BytesIO()
        data = busybox_from_deb(deb_for(arch))
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            info = tarfile.TarInfo("busybox")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        (tree / "pkgs" / f"{arch.k8s}.tgz").write_bytes(buf.getvalue())
    args = ["--build-arg", f"BASE_IMAGE={base}", "--build-arg", "FLANNEL_VERSION=v0.28.9"]
    copy_total = run_total = copy_run_s = run_run_s = run_run_foreign_s = 0.0
    per_arch = {}
    for arch in ALL_ARCHES:
        common = ["docker", "buildx", "build", "--no-cache", "--provenance=false", "--platform", arch.platform, *args]
        c, cq, crun = buildx_timed([*common, "-f", str(ROOT / "dockerfiles" / "flannel.Dockerfile"),
                                    "-t", f"{prefix}/copy:{arch.k8s}", str(tree)])
        r, rq, rrun = buildx_timed([*common, "-f", str(run_df), "-t", f"{prefix}/run:{arch.k8s}", str(tree)])
        per_arch[arch.k8s] = {"copy_only_s": round(c, 2), "copy_only_run_steps_s": crun,
                              "with_run_s": round(r, 2), "with_run_run_step_s": rrun,
                              "copy_only_qemu_sampled": round(cq, 3), "with_run_qemu_sampled": round(rq, 3)}
        copy_total += c
        run_total += r
        copy_run_s += crun
        run_run_s += rrun
        run_run_foreign_s += rrun if arch.qemu else 0.0
    figures.update(copy_only_5_arches_s=round(copy_total, 2), with_run_step_5_arches_s=round(run_total, 2),
                   run_vs_copy_ratio=round(run_total / copy_total, 2),
                   copy_only_emulated_run_s=round(copy_run_s, 2),
                   with_run_emulated_share=round(run_run_foreign_s / run_total, 3), per_arch=per_arch)
    if opts.json:
        print(json.dumps(figures, indent=2, sort_keys=True))
    else:
        for k, v in figures.items():
            print(f"{k}: {v}")


if __name__ == "__main__":
    main()
