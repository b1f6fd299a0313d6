"""Fetch benchmark (run by hand, not in CI; needs curl and xargs):

    python benchmarks/bench_fetch.py [--size-mb 50] [--big-mb 1024] [--jobs 4] [--workdir DIR] [--keep] [--json]

1. cold `netship fetch` (a whole process, fresh cache) of every asset of the catalog (26
   assets over 6 components and their arches, ~SIZE MB each, gzip'd tarballs of ELF files
   for the right arch, or raw binaries) from a loopback HTTP server, against `curl` with the
   same parallelism (`xargs -P JOBS`) downloading the same files; ratio netship / curl
   (goal: <= 1.10). netship also verifies, unpacks and ELF-checks; curl only downloads, so
   "curl + sha256sum + tar x" is timed as a second reference;
2. warm `netship fetch` right after (everything cached; goal < 0.5 s): whole process, and
   the `fetch()` call alone;
3. peak RSS (ru_maxrss of the child) of `netship fetch` of one ~BIG MB raw binary (goal < 100 MB).

The server is a small threaded HTTP/1.1 server using sendfile(2) (Range supported) instead
of tests/support/httpserver.py, which reads each file into memory and would be the
bottleneck for both clients. Both clients talk to the same server on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.upstream import MEMBERS, make_elf, mirror_path  # noqa: E402

from netship.arch import Arch  # noqa: E402
from netship.catalog import load_catalog  # noqa: E402

# -- a fast loopback server -----------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadingHTTPServer

    def log_message(self, *a) -> None:
        pass

    def do_GET(self) -> None:
        path = (self.server.root / self.path.split("?", 1)[0].lstrip("/")).resolve()  # type: ignore[attr-defined]
        if not path.is_file():
            self.send_error(404)
            return
        size = path.stat().st_size
        start, status = 0, 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0] or 0)
            status = 206
        self.send_response(status)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        self.wfile.flush()
        with open(path, "rb") as f:
            self.connection.sendfile(f, offset=start, count=size - start)


def serve(root: Path) -> tuple[ThreadingHTTPServer, str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.root = root.resolve()  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


# -- assets of realistic size ------------------------------------------------------------------

def _binary(arch: Arch, size: int, seed: str) -> bytes:
    """ELF header of ``arch``, then a body that gzip shrinks about 2x (like Go binaries)."""
    head = make_elf(arch, 64, seed)
    rnd = hashlib.sha256(seed.encode()).digest()
    block = os.urandom(16384) + (rnd * 512)  # 16 KiB random + 16 KiB repetitive
    body = (block * (size // len(block) + 1))[: size - len(head)]
    return head + body


def make_assets(mirror: Path, catalog_dir: Path, size_mb: int) -> dict[str, int]:
    """Upstream-shaped assets (~size_mb each) for every catalog asset; writes pins.lock."""
    catalog_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "release" / "catalog.yml", catalog_dir / "catalog.yml")
    cat = load_catalog(catalog_dir)
    lock: dict = {"components": {}}
    sizes: dict[str, int] = {}
    for comp in cat.components.values():
        for arch in comp.arches:
            url = comp.asset_url(arch)
            dest = mirror / mirror_path(url)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if comp.format == "binary":
                data = _binary(arch, size_mb << 20, url)
            else:
                elf_members = [m for m, kind in MEMBERS[comp.name] if kind == "elf"]
                each = (size_mb << 20) * 2 // len(elf_members)  # ~2x compression
                buf = io.BytesIO()
                with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=1, mtime=0) as gz:
                    with tarfile.open(fileobj=gz, mode="w") as tar:
                        for member, kind in MEMBERS[comp.name]:
                            member = member.format(arch=comp.arch_name(arch))
                            payload = _binary(arch, each, url + member) if kind == "elf" else b"text\n"
                            info = tarfile.TarInfo(member)
                            info.size, info.mode = len(payload), 0o755 if kind == "elf" else 0o644
                            tar.addfile(info, io.BytesIO(payload))
                data = buf.getvalue()
            dest.write_bytes(data)
            sizes[url] = len(data)
            lock["components"].setdefault(comp.name, {}).setdefault(comp.version, {})[arch.k8s] = {
                "sha256": hashlib.sha256(data).hexdigest(), "source": "benchmark"}
    (catalog_dir / "pins.lock").write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n")
    return sizes


# -- measurements ------------------------------------------------------------------------------

def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETSHIP_")}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return env


# A small fresh process runs the measured command and reports its wall time, the CPU time
# of it and all its descendants, and their peak RSS (ru_maxrss of RUSAGE_CHILDREN): measured
# from the benchmark process itself, a forked child would count the parent's pages.
_WRAP = r"""
import json, resource, subprocess, sys, time
out = open(sys.argv[1], "wb")
t = time.perf_counter()
p = subprocess.run(sys.argv[2:], stdout=out, stdin=sys.stdin)
wall = time.perf_counter() - t
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": p.returncode, "wall": wall, "cpu": r.ru_utime + r.ru_stime, "maxrss_mb": r.ru_maxrss / 1024}))
"""


def measure(argv: list[str], cwd: Path, stdin: Path | None = None) -> tuple[dict, str]:
    """({wall, cpu, maxrss_mb}, stdout of argv); exits when argv fails."""
    out = cwd / "measure.out"
    with open(stdin or os.devnull) as fin:
        p = subprocess.run([sys.executable, "-c", _WRAP, str(out), *argv], cwd=cwd, env=_env(),
                           stdin=fin, capture_output=True)
    stats = json.loads(p.stdout.decode().strip().splitlines()[-1]) if p.returncode == 0 else {"rc": -1}
    if stats["rc"] != 0:
        raise SystemExit(f"{argv[:4]} failed: {p.stderr.decode()[-2000:]}")
    return stats, out.read_text()


def netship_fetch(catalog_dir: Path, cache: Path, url: str, jobs: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "netship", "fetch", "--catalog-dir", str(catalog_dir), "--cache-dir",
            str(cache), "--mirror", url, "--jobs", str(jobs), "--json", *extra]


def curl_all(urls: list[str], out: Path, jobs: int, work: Path, verify_and_unpack: bool) -> dict:
    """curl with xargs -P JOBS over the same URLs; optionally then sha256sum and tar x each file."""
    listing = work / "curl-list.txt"
    listing.write_text("".join(f"-o {out / str(i)} {u}\n" for i, u in enumerate(urls)))
    stats, _ = measure(["xargs", "-P", str(jobs), "-L", "1", "curl", "-sSf", "--create-dirs"], work, listing)
    if verify_and_unpack:
        files = work / "curl-files.txt"
        files.write_text("".join(f"{out / str(i)}\n" for i in range(len(urls))))
        script = 'sha256sum "$1" >/dev/null; d="$1.x"; mkdir -p "$d"; tar -xzf "$1" -C "$d" 2>/dev/null || cp "$1" "$d/bin"'
        more, _ = measure(["xargs", "-P", str(jobs), "-n", "1", "sh", "-c", script, "sh"], work, files)
        stats = {k: stats[k] + more[k] if k in ("wall", "cpu") else max(stats[k], more[k]) for k in stats}
    return stats


def download_only(urls_file: Path, out: Path, jobs: int) -> None:
    """Child mode: netship's HTTP path alone (stream, sha256, fsync, verify, rename) over the
    same URLs and parallelism as curl, without unpacking."""
    from concurrent.futures import ThreadPoolExecutor

    from netship.digest import Digest
    from netship.download import Downloader
    from netship.settings import Settings

    pairs = [line.split() for line in urls_file.read_text().splitlines()]
    dl = Downloader(Settings(jobs=jobs))
    out.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> None:
        url, hexd = pairs[i]
        part = out / f"{i}.part"
        dl.download([url], part, what=url, expected=Digest("sha256", hexd))
        os.replace(part, out / hexd)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, range(len(pairs))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=50, help="size of each asset (default 50)")
    ap.add_argument("--big-mb", type=int, default=1024, help="size of the single asset for peak memory (default 1024)")
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3, help="cold runs of each client; the median is reported")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work folder (assets are reused next time)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--download-only-child", nargs=3, metavar=("PAIRS", "OUT", "JOBS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.download_only_child:
        pairs, out, jobs = args.download_only_child
        download_only(Path(pairs), Path(out), int(jobs))
        return

    work = args.workdir or Path(tempfile.mkdtemp(prefix="netship-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    mirror, catalog_dir = work / "mirror", work / f"catalog-{args.size_mb}"
    stamp = work / f"assets-{args.size_mb}.done"
    if not stamp.exists():
        print(f"generating assets of ~{args.size_mb} MB in {mirror} ...", file=sys.stderr)
        shutil.rmtree(mirror, ignore_errors=True)
        make_assets(mirror, catalog_dir, args.size_mb)
        stamp.touch()
    cat = load_catalog(catalog_dir)
    assets = cat.select()
    urls_up = [a.url for a in assets]
    total = sum((mirror / mirror_path(u)).stat().st_size for u in urls_up)
    httpd, base = serve(mirror)
    results: dict = {"assets": len(assets), "total_mb": round(total / 2**20, 1), "jobs": args.jobs,
                     "server": "threaded http.server + sendfile(2) on 127.0.0.1", "cpus": os.cpu_count(),
                     "load_avg_at_start": round(os.getloadavg()[0], 2)}
    try:
        mirror_urls = [f"{base}/{mirror_path(u)}" for u in urls_up]
        pairs = work / "download-only.txt"
        pairs.write_text("".join(f"{u} {a.pin.sha256.hex}\n" for u, a in zip(mirror_urls, assets, strict=True)))
        runs: dict[str, list[dict]] = {"curl": [], "curl_verify_unpack": [], "netship_download_only": [],
                                       "netship_fetch": []}
        for r in range(args.rounds):
            out = work / "curl-out"
            shutil.rmtree(out, ignore_errors=True)
            runs["curl"].append(curl_all(mirror_urls, out, args.jobs, work, verify_and_unpack=False))
            shutil.rmtree(out, ignore_errors=True)
            runs["curl_verify_unpack"].append(curl_all(mirror_urls, out, args.jobs, work, verify_and_unpack=True))
            shutil.rmtree(out, ignore_errors=True)
            stats, _ = measure([sys.executable, str(Path(__file__).resolve()), "--download-only-child", str(pairs),
                                str(out), str(args.jobs)], work)
            runs["netship_download_only"].append(stats)
            shutil.rmtree(out, ignore_errors=True)
            cache = work / "cache"
            shutil.rmtree(cache, ignore_errors=True)
            stats, stdout = measure(netship_fetch(catalog_dir, cache, base, args.jobs), work)
            runs["netship_fetch"].append(stats)
            assert json.loads(stdout)["downloaded"] == len(assets)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]['wall']:.2f} s ({v[-1]['cpu']:.1f} s CPU)"
                                                 for k, v in runs.items()), file=sys.stderr)

        def med(xs: list[float]) -> float:
            return sorted(xs)[len(xs) // 2]

        for k, v in runs.items():
            results[f"{k}_s"] = round(med([x["wall"] for x in v]), 2)
            results[f"{k}_cpu_s"] = round(med([x["cpu"] for x in v]), 2)
        results["ratio_download_only_vs_curl"] = round(results["netship_download_only_s"] / results["curl_s"], 3)
        results["ratio_fetch_vs_curl"] = round(results["netship_fetch_s"] / results["curl_s"], 3)
        results["ratio_fetch_vs_curl_verify_unpack"] = round(
            results["netship_fetch_s"] / results["curl_verify_unpack_s"], 3)
        # warm: everything cached
        warm = [measure(netship_fetch(catalog_dir, work / "cache", base, args.jobs), work)[0]["wall"]
                for _ in range(3)]
        code = (f"import time,sys; from netship.settings import Settings; from netship.catalog import load_catalog;"
                f"from netship.fetch import fetch; from pathlib import Path;"
                f"s=Settings(catalog_dir=Path({str(catalog_dir)!r}), cache_dir=Path({str(work / 'cache')!r}),"
                f"mirrors=({base!r},)); t=time.perf_counter(); r=fetch(s, load_catalog(s.catalog_dir).select());"
                f"print(time.perf_counter()-t, r.requests)")
        _, out_text = measure([sys.executable, "-c", code], work)
        call_s, reqs = out_text.split()
        imports = measure([sys.executable, "-c", "import netship.cli"], work)[0]["wall"]
        results.update(warm_process_s=round(med(warm), 3), warm_fetch_call_s=round(float(call_s), 4),
                       warm_requests=int(reqs), cli_import_only_s=round(imports, 3))
        # peak memory for one big asset (raw binary: calicoctl amd64 replaced by BIG MB)
        big_cat = work / "catalog-big"
        big_cat.mkdir(exist_ok=True)
        shutil.copy(catalog_dir / "catalog.yml", big_cat / "catalog.yml")
        comp = cat.component("calicoctl")
        big_url = comp.asset_url(Arch.AMD64)
        big = work / "mirror-big" / mirror_path(big_url)
        if not big.exists() or big.stat().st_size != args.big_mb << 20:
            big.parent.mkdir(parents=True, exist_ok=True)
            with open(big, "wb") as f:
                f.write(make_elf(Arch.AMD64, 64, "big"))
                for _ in range(args.big_mb):
                    f.write(os.urandom(1 << 20))
                f.truncate(args.big_mb << 20)
        h = hashlib.sha256()
        with open(big, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        (big_cat / "pins.lock").write_text(json.dumps({"components": {"calicoctl": {comp.version: {
            "amd64": {"sha256": h.hexdigest(), "source": "benchmark"}}}}}))
        httpd_big, base_big = serve(work / "mirror-big")
        try:
            big_cache = work / "cache-big"
            shutil.rmtree(big_cache, ignore_errors=True)
            big_stats, _ = measure(netship_fetch(big_cat, big_cache, base_big, 1, "--component", "calicoctl",
                                                 "--arch", "amd64"), work)
            idle, _ = measure([sys.executable, "-c", "import netship.cli, netship.fetch"], work)
        finally:
            httpd_big.shutdown()
            shutil.rmtree(work / "cache-big", ignore_errors=True)
        results.update(big_asset_mb=args.big_mb, big_fetch_s=round(big_stats["wall"], 2),
                       big_peak_rss_mb=round(big_stats["maxrss_mb"], 1),
                       import_only_peak_rss_mb=round(idle["maxrss_mb"], 1))
    finally:
        httpd.shutdown()
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(work / "cache", ignore_errors=True)
            shutil.rmtree(work / "curl-out", ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
    else:
        for k, v in results.items():
            print(f"{k:32} {v}")


if __name__ == "__main__":
    main()
