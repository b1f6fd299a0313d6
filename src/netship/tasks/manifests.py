"""Tasks for manifests (filled in by its issue)."""

TASKS: list = []
