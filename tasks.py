"""invoke entry point: only collects netship's tasks (the work lives in src/netship/)."""

from netship.tasks import ns  # noqa: F401  (invoke looks for `ns`)
