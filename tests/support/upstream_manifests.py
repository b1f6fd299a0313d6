"""The real upstream manifests used as test input.

``../shared/data/upstream/`` beside the checkout when present (as on developers' machines
and in CI); otherwise the verbatim copies in ``manifests/`` (plus a provenance comment).
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_SHARED = REPO.parent / "shared" / "data" / "upstream"
UPSTREAM_DIR = _SHARED if _SHARED.is_dir() else REPO / "manifests"
FLANNEL = next(UPSTREAM_DIR.glob("*flannel*.y*ml"))
KUBE_ROUTER = next(UPSTREAM_DIR.glob("*kube-router*.y*ml"))
