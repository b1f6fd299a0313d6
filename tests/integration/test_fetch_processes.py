"""Two `netship fetch` processes on one cache at the same time: both succeed, each blob is
downloaded once (the per-blob file lock), and the cache holds only verified bytes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from netship.digest import sha256_file
from tests.support.httpserver import LoopbackServer, SlowDrip
from tests.support.upstream import make_upstream


def test_two_fetch_processes_share_one_cache(tmp_path):
    mirror, catalog_dir, cache = tmp_path / "mirror", tmp_path / "catalog", tmp_path / "cache"
    up = make_upstream(mirror, catalog_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETSHIP_")}
    env.update(NETSHIP_BACKOFF="0.05", PYTHONPATH=os.pathsep.join(sys.path))
    with LoopbackServer(mirror) as srv:
        for path in up.paths.values():  # slow every asset down so the two runs overlap
            srv.faults[path] = SlowDrip(chunk=64, delay=0.002, times=None)
        argv = [sys.executable, "-m", "netship", "fetch", "--catalog-dir", str(catalog_dir), "--cache-dir",
                str(cache), "--mirror", srv.url, "--jobs", "3", "--json"]
        procs = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (_out, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err
        asset_requests = [r for r in srv.requests if r[1] in set(up.paths.values())]
    reports = [json.loads(out) for out, _ in outs]
    for report in reports:
        assert len(report["assets"]) == 26
    # every asset was downloaded by exactly one of the two processes; the other found it cached
    for i in range(26):
        statuses = sorted(r["assets"][i]["status"] for r in reports)
        assert statuses == ["cached", "downloaded"], reports[0]["assets"][i]["key"]
    assert sorted(r[1] for r in asset_requests) == sorted(up.paths.values())
    for blob in (cache / "sha256").iterdir():
        assert sha256_file(blob).hex == blob.name
    assert not list((cache / "tree").rglob(".netship-*"))
    assert sorted(p.name for p in (cache / "tree" / "cni-plugins" / "v1.9.1").iterdir()) == [
        "amd64", "arm", "arm64", "ppc64le", "s390x"]
