"""Real servers and processes for tests whose claims are about HTTP or separate processes.

Use with ``pytest.mark.django_db(transaction=True)``: the subprocesses see committed data
only. They use the test database that pytest-django created, by its name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def subprocess_env(settings_module: str = "tests.settings", **extra: str) -> dict[str, str]:
    """The environment for a Django subprocess on the current test database."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = settings_module
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    name = str(connection.settings_dict["NAME"])
    if connection.vendor == "postgresql":
        env["KLAREFI_TEST_DB"] = "postgres"
        env["KLAREFI_PG_NAME"] = name
    else:
        env["KLAREFI_TEST_DB"] = "sqlite"
        env["KLAREFI_SQLITE_NAME"] = name
    env.update(extra)
    return env


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def gunicorn(
    *,
    workers: int = 2,
    settings_module: str = "tests.settings",
    env: Mapping[str, str] | None = None,
    timeout: int = 60,
    extra_args: tuple[str, ...] = (),
) -> Iterator[str]:
    """Run gunicorn on 127.0.0.1 with ``workers`` sync workers; yield the base URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "tests.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--timeout",
        str(timeout),
        "--graceful-timeout",
        "5",
        *extra_args,
    ]
    with _process(command, subprocess_env(settings_module, **(env or {}))) as process:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/webhooks/klarefi/", process)
        yield base


@contextlib.contextmanager
def uvicorn(
    *, settings_module: str = "tests.settings", env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Run uvicorn (ASGI) on 127.0.0.1 with one worker; yield the base URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
    ]
    with _process(command, subprocess_env(settings_module, **(env or {}))) as process:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/webhooks/klarefi/", process)
        yield base


@contextlib.contextmanager
def runserver(
    *, settings_module: str = "tests.settings", env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Run ``manage.py runserver`` (no reloader) on 127.0.0.1; yield the base URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "django",
        "runserver",
        f"127.0.0.1:{port}",
        "--noreload",
        "--skip-checks",
    ]
    with _process(command, subprocess_env(settings_module, **(env or {}))) as process:
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base + "/webhooks/klarefi/", process)
        yield base


@contextlib.contextmanager
def django_process(
    *args: str, settings_module: str = "tests.settings", env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``python -m django <args>`` (a worker, say) for the duration of the block."""
    command = [sys.executable, "-m", "django", *args]
    with _process(command, subprocess_env(settings_module, **(env or {}))) as process:
        yield process


@contextlib.contextmanager
def _process(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    # Each process's output goes to a log under the git-ignored .artifacts/, for debugging.
    (ROOT / ".artifacts").mkdir(exist_ok=True)
    log = open(ROOT / ".artifacts" / f"proc-{os.getpid()}-{free_port()}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
