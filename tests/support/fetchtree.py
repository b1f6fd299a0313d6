"""A fake fetch tree for build unit tests: every file the image specs name, for every arch."""

from __future__ import annotations

from pathlib import Path

from netship.arch import ALL_ARCHES


def write_fetch_tree(root: Path, specs, catalog) -> Path:
    for spec in specs.values():
        for b in spec.binaries:
            for arch in ALL_ARCHES:
                p = root / b.component / catalog.component(b.component).version / arch.k8s / (
                    "README.md" if b.whole_tree else b.file)
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_bytes(f"{b.component} {b.file} {arch}".encode())
    return root
