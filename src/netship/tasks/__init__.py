"""netship's task collection: thin invoke tasks over the library.

``tasks.py`` at the repository root and the ``netship`` console script both use ``ns``,
so ``invoke fetch`` and ``netship fetch`` are one code path. Each area's tasks live in
its own module here; the library modules under ``netship`` do the work.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from invoke import Collection, Exit, task

from ..errors import NetshipError
from ..output import setup_logging
from ..settings import Settings, load_settings


def settings_from(ctx: Any, **flags: Any) -> Settings:
    """The edge: invoke config + process environment + this task's flags -> Settings."""
    section = ctx.config.get("netship", None) if ctx is not None else None
    config = dict(section) if section else {}
    return load_settings(config=config, env=os.environ, flags=flags)


def netship_task(*args: Any, **kwargs: Any) -> Callable:
    """``invoke.task`` whose errors are caught in this one place: one line, exit code.

    NetshipError -> ``netship: error: MESSAGE`` and its exit code (2 usage/config, 1 failure).
    """

    def decorate(fn: Callable) -> Any:
        @functools.wraps(fn)
        def wrapper(ctx: Any, *a: Any, **kw: Any) -> Any:
            setup_logging(verbose=bool(os.environ.get("NETSHIP_DEBUG")))
            try:
                return fn(ctx, *a, **kw)
            except NetshipError as e:
                raise Exit(f"netship: error: {e}", code=e.exit_code) from None
            except KeyboardInterrupt:
                raise Exit("netship: interrupted", code=130) from None

        return task(*args, **kwargs)(wrapper)

    return decorate


def _collection() -> Collection:
    from . import build, bundle, fetch, manifests, release

    ns = Collection()
    for module in (fetch, build, bundle, manifests, release):
        for item in module.TASKS:
            if isinstance(item, Collection):
                ns.add_collection(item)
            else:
                ns.add_task(item)
    ns.configure({"netship": {}})
    return ns


ns = _collection()
