"""The ``netship`` console script: ``invoke.Program`` over the same task collection."""

from __future__ import annotations

import os
import sys

from invoke import Collection, Program
from invoke.config import Config
from invoke.exceptions import ParseError

from . import __version__
from .tasks import ns


class NetshipProgram(Program):
    """Like ``invoke``, but with netship's collection, exit 2 on usage errors, and
    ``netship pins update`` accepted as well as ``netship pins.update``."""

    def update_config(self, merge: bool = True) -> None:
        # Load ./invoke.yaml as `invoke` does for the project holding tasks.py.
        self.config.set_project_location(os.getcwd())
        self.config.load_project(merge=False)
        super().update_config(merge)

    def run(self, argv=None, exit: bool = True) -> int:  # noqa: A002 - invoke's name
        """Run; exit with the code (``exit=True``) or return it (``exit=False``, for tests).

        invoke's own ``run(exit=False)`` swallows ``Exit`` codes, so run it with exit=True
        and turn its SystemExit into our code; invoke's parse errors become exit 2.
        """
        argv = list(sys.argv if argv is None else argv)
        # Bare `netship`: list the tasks (invoke would print only its core options).
        argv = [argv[0], *(join_subcommands(argv[1:], ns) if argv[1:] else ["--list"])]
        self._parse_failed = False
        try:
            super().run(argv, exit=True)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if self._parse_failed and code:
                code = 2
        if exit and code:
            sys.exit(code)
        return code

    def parse_core(self, argv) -> None:  # noqa: D102
        try:
            super().parse_core(argv)
        except ParseError:
            self._parse_failed = True
            raise

    def parse_tasks(self) -> None:  # noqa: D102
        try:
            super().parse_tasks()
        except ParseError:
            self._parse_failed = True
            raise


def join_subcommands(args: list[str], collection: Collection) -> list[str]:
    """Rewrite ``GROUP TASK`` as ``GROUP.TASK`` where GROUP is a sub-collection and TASK one
    of its tasks, so the console script reads like a CLI with subcommands."""
    out: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        sub = collection.collections.get(word)
        if sub is not None and i + 1 < len(args) and args[i + 1] in sub.task_names:
            out.append(f"{word}.{args[i + 1]}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


program = NetshipProgram(
    name="netship", binary="netship", version=__version__, namespace=ns, config_class=Config
)


def main() -> None:
    try:
        program.run()
    except BrokenPipeError:  # `netship ... | head`: the reader left; not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
