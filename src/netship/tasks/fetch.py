"""Tasks for fetch and pins (filled in by its issue)."""

TASKS: list = []
