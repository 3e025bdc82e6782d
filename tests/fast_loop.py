"""``pytest -p tests.fast_loop`` (``make test-fast``): the fast loop's promise, kept.

No test in the fast loop starts a server, a worker or a browser: such a test must be marked
``slow`` (or ``browser``), which the loop deselects. A process of that kind started anyway
fails the test that started it, naming the mark it needs.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

#: What a test of the fast loop may not start.
SERVERS_WORKERS_BROWSERS = (
    "gunicorn",
    "uvicorn",
    "runserver",
    "db_worker",
    "rqworker",
    "redis-server",
    "chromium",
    "playwright",
    "wrk",
)


def started(args: Any) -> str | None:
    """The server, worker or browser that ``args`` would start, if any."""
    words = [str(args)] if isinstance(args, str | bytes) else [str(arg) for arg in args]
    command = " ".join(words)
    return next((name for name in SERVERS_WORKERS_BROWSERS if name in command), None)


def pytest_configure(config: pytest.Config) -> None:
    popen_init = subprocess.Popen.__init__

    def refuse_servers(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        name = started(args)
        if name is not None:
            raise RuntimeError(
                f"The fast loop starts no {name} process: mark this test "
                "@pytest.mark.slow (or browser) so that only make test runs it."
            )
        popen_init(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = refuse_servers  # type: ignore[method-assign]
