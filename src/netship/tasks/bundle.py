"""Tasks for bundle (filled in by its issue)."""

TASKS: list = []
