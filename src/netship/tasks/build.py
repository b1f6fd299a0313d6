"""Tasks for build (filled in by its issue)."""

TASKS: list = []
