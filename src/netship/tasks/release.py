"""Tasks for release (filled in by its issue)."""

TASKS: list = []
