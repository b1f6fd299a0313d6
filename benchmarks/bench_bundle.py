"""Benchmark: netship bundle-offline vs `docker save IMAGES | gzip` vs one `docker save` per image.

Run by hand on the real stack (scripts/setup-stack.sh): ``python benchmarks/bench_bundle.py``.

The image set imitates the four netship images of one arch: every image shares one base
layer (like the Alpine/busybox base of the real images) and adds its own binaries layer.
Layer contents are half incompressible, half text, so gzip has real work. The images are
built with buildx (FROM scratch + COPY), pushed to the loopback registry under a random
prefix, pulled into docker for the docker-save baselines, and deleted from docker at the end.

Reported: wall time, output size, ratios, bytes deduplicated by the bundle, and netship's
peak RSS (measured in a child process that does only the bundling).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
REGISTRY = "127.0.0.1:5000"
NAMES = ("flannel", "flannel-cni-plugin", "kube-router", "cni-plugins")


def sh(*argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, **kw)


def payload(path: Path, size: int, seed: int) -> None:
    """Half random bytes, half text (compresses roughly like real binaries + files)."""
    rnd = random.Random(seed)
    words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rnd.randint(3, 12))) for _ in range(4000)]
    with open(path, "wb") as f:
        written = 0
        while written < size:
            if (written // (1 << 20)) % 2:
                chunk = rnd.randbytes(1 << 16)
            else:
                chunk = b" ".join(rnd.choice(words) for _ in range(9000))[: 1 << 16]
            f.write(chunk)
            written += len(chunk)


def make_images(work: Path, prefix: str, base_mb: int, own_mb: int) -> dict:
    ctx = work / "ctx"
    ctx.mkdir()
    payload(ctx / "base.bin", base_mb << 20, 1)
    for i, n in enumerate(NAMES):
        payload(ctx / f"{n}.bin", own_mb << 20, 100 + i)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY base.bin /base.bin\nARG OWN\nCOPY ${OWN}.bin /own.bin\n")
    images = {}
    for n in NAMES:
        tag = f"{prefix}/{n}:v1"
        sh("docker", "buildx", "build", "--platform", "linux/amd64", "--build-arg", f"OWN={n}",
           "-t", f"{tag}-amd64", "--push", ctx)
        sh("docker", "buildx", "imagetools", "create", "-t", tag, f"{tag}-amd64")
        images[n] = tag
    return images


def head_digest(ref: str, accept: str) -> str:
    import requests

    repo, tag = ref.split("/", 1)[1].rsplit(":", 1)
    r = requests.head(f"http://{REGISTRY}/v2/{repo}/manifests/{tag}", headers={"Accept": accept}, timeout=10)
    r.raise_for_status()
    return r.headers["Docker-Content-Digest"]


def build_report(images: dict, path: Path) -> None:
    lst = "application/vnd.docker.distribution.manifest.list.v2+json"
    man = "application/vnd.docker.distribution.manifest.v2+json"
    rep = {"netship_version": "bench", "registry": REGISTRY, "images": {}}
    for n, tag in images.items():
        rep["images"][n] = {
            "name": n, "version": "v1", "repository": tag.rsplit(":", 1)[0], "tag": tag,
            "digest": head_digest(tag, lst), "components": {},
            "arches": {"amd64": {"platform": "linux/amd64", "tag": f"{tag}-amd64",
                                 "digest": head_digest(f"{tag}-amd64", man)}},
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rep))


CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from netship.settings import Settings
from netship.arch import Arch
from netship.bundle import bundle_offline
cfg = json.loads(sys.argv[1])
s = Settings(catalog_dir=Path(cfg["catalog"]), cache_dir=Path(cfg["cache"]), out_dir=Path(cfg["out"]),
             mirrors=("http://127.0.0.1:9",), source_date_epoch=0)
t = time.perf_counter()
r = bundle_offline(s, [Arch.AMD64], compression=cfg["compression"], manifest_writer=None)[0]
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "size": r.size, "images_tar": r.images_tar_size,
                  "referenced": r.referenced_bytes, "stored": r.stored_bytes,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run_netship(work: Path, compression: str, cache: Path, catalog: Path) -> dict:
    out = work / f"out-{compression}"
    out.mkdir()
    shutil.copy(work / "out" / "build-report.json", out / "build-report.json")
    cfg = {"catalog": str(catalog), "cache": str(cache), "out": str(out), "compression": compression}
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfg)], check=True, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-mb", type=int, default=48, help="size of the shared base layer's file")
    ap.add_argument("--own-mb", type=int, default=16, help="size of each image's own layer file")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="netship-bench-"))
    prefix = f"{REGISTRY}/bench-{secrets.token_hex(4)}"
    tags: list[str] = []
    try:
        images = make_images(work, prefix, args.base_mb, args.own_mb)
        build_report(images, work / "out" / "build-report.json")
        # a fetch tree for bin/ (tiny test binaries from the loopback test mirror)
        from tests.support.httpserver import LoopbackServer
        from tests.support.upstream import make_upstream

        from netship.catalog import load_catalog
        from netship.fetch import fetch
        from netship.settings import Settings

        make_upstream(work / "mirror", work / "catalog")
        with LoopbackServer(work / "mirror") as srv:
            s = Settings(catalog_dir=work / "catalog", cache_dir=work / "cache", mirrors=(srv.url,))
            fetch(s, load_catalog(s.catalog_dir).select(None, None))

        results: dict[str, dict] = {}
        for comp in ("gzip", "zstd", "none"):
            results[f"netship ({comp})"] = run_netship(work, comp, work / "cache", work / "catalog")

        # baselines need the images in docker
        tags = [f"{t}-amd64" for t in images.values()]
        for t in tags:
            sh("docker", "pull", "-q", t)
        t0 = time.perf_counter()
        with open(work / "all.tar.gz", "wb") as f:
            save = subprocess.Popen(["docker", "save", *tags], stdout=subprocess.PIPE)
            subprocess.run(["gzip", "-c"], stdin=save.stdout, stdout=f, check=True)
            save.stdout.close()
            assert save.wait() == 0
        results["docker save | gzip"] = {"seconds": time.perf_counter() - t0,
                                         "size": (work / "all.tar.gz").stat().st_size}
        t0 = time.perf_counter()
        per = 0
        for i, t in enumerate(tags):
            sh("docker", "save", "-o", work / f"img{i}.tar", t)
            per += (work / f"img{i}.tar").stat().st_size
        results["docker save per image"] = {"seconds": time.perf_counter() - t0, "size": per}

        ref = results["docker save | gzip"]
        ng = results["netship (gzip)"]
        summary = {
            "image_set": {"images": len(tags), "base_mb": args.base_mb, "own_mb": args.own_mb},
            "results": results,
            "speedup_vs_docker_save_gzip": ref["seconds"] / ng["seconds"],
            "speedup_vs_docker_save_per_image": results["docker save per image"]["seconds"] / ng["seconds"],
            "size_ratio_vs_docker_save_gzip": ng["size"] / ref["size"],
            "size_ratio_vs_docker_save_per_image": ng["size"] / results["docker save per image"]["size"],
            "deduplicated_bytes": ng["referenced"] - ng["stored"],
            "peak_rss_mb": max(r.get("maxrss_kb", 0) for r in results.values()) / 1024,
        }
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            for name, r in results.items():
                extra = f"  peak RSS {r['maxrss_kb'] / 1024:.0f} MB" if "maxrss_kb" in r else ""
                print(f"{name:26s} {r['seconds']:7.2f} s  {r['size'] / 1e6:8.1f} MB{extra}")
            print(f"speed-up vs docker save | gzip: {summary['speedup_vs_docker_save_gzip']:.1f}x; "
                  f"vs docker save per image: {summary['speedup_vs_docker_save_per_image']:.1f}x")
            print(f"size vs docker save | gzip: {summary['size_ratio_vs_docker_save_gzip']:.2f}; "
                  f"vs per image: {summary['size_ratio_vs_docker_save_per_image']:.2f}")
            print(f"deduplicated: {summary['deduplicated_bytes'] / 1e6:.1f} MB; "
                  f"peak RSS (netship child): {summary['peak_rss_mb']:.0f} MB")
    finally:
        if tags:
            subprocess.run(["docker", "rmi", "-f", *tags], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
