"""``make demo PORT=...``: the example project served on the port asked for, with printed
URLs and commands that follow it (8000 is often taken on a developer's machine).

It runs the Makefile's real recipe on a copy of example_project (DEMO_DIR), with this
interpreter's environment as the venv, so the clone's demo database is left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ROOT, free_port, wait_for_http

pytestmark = pytest.mark.slow


def _without_klarefi_env() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KLAREFI_", "DJANGO_"))
    }


def test_make_demo_serves_on_the_port_given_and_prints_urls_that_follow_it(tmp_path):
    demo = tmp_path / "example_project"
    shutil.copytree(
        ROOT / "example_project", demo, ignore=shutil.ignore_patterns("*.sqlite3", "__pycache__")
    )
    port = free_port()
    venv = Path(sys.prefix)
    make = subprocess.Popen(
        # -o: the venv is this one, already installed; do not rebuild it.
        [
            "make",
            "--no-print-directory",
            "-C",
            str(ROOT),
            "-o",
            f"{venv}/.demo-installed",
            "demo",
            f"PORT={port}",
            f"DEMO_DIR={demo}",
            f"VENV={venv}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_without_klarefi_env(),
        start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/admin/login/", make, timeout=120)
        os.killpg(make.pid, signal.SIGINT)
        output = make.communicate(timeout=30)[0].decode()
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    urls = re.findall(r"http://127\.0\.0\.1:\d+[^\s)]*", output)
    assert urls, output
    assert all(url.startswith(f"http://127.0.0.1:{port}") for url in urls), urls
    assert f"send_event.py {port}" in output
    assert f"--url http://127.0.0.1:{port}" in output
    assert f"Starting development server at http://127.0.0.1:{port}/" in output


def test_the_printed_send_command_reaches_the_demo(tmp_path):
    demo = tmp_path / "example_project"
    shutil.copytree(
        ROOT / "example_project", demo, ignore=shutil.ignore_patterns("*.sqlite3", "__pycache__")
    )
    port = free_port()
    venv = Path(sys.prefix)
    env = _without_klarefi_env()
    make = subprocess.Popen(
        [
            "make",
            "--no-print-directory",
            "-C",
            str(ROOT),
            "-o",
            f"{venv}/.demo-installed",
            "demo",
            f"PORT={port}",
            f"DEMO_DIR={demo}",
            f"VENV={venv}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/admin/login/", make, timeout=120)
        sent = subprocess.run(
            [
                sys.executable,
                "manage.py",
                "klarefi_send_test_event",
                "case.completed",
                "--url",
                f"http://127.0.0.1:{port}",
            ],
            cwd=demo,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        script = subprocess.run(
            [sys.executable, str(demo / "send_event.py"), str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.killpg(make.pid, signal.SIGINT)
        try:
            make.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert re.search(r"case\.completed\s+evt_test_\w+\s+200\s", sent.stdout), sent.stdout
    assert script.returncode == 0, script.stderr
    assert script.stdout.startswith("200 "), script.stdout
