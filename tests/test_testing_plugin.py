"""The pytest plugin, as a user gets it: the example project in examples/typed_usage is
copied to a temporary folder and its tests run by pytest, with no conftest, so the
``klarefi_signals`` fixture can only come from the ``pytest11`` entry point."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "typed_usage"

pytestmark = pytest.mark.slow


def test_plugin_is_registered_through_the_entry_point():
    plugins = {entry.name: entry.value for entry in entry_points(group="pytest11")}
    assert plugins["django_klarefi"] == "django_klarefi.pytest_plugin"


def run_pytest(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env.pop("PYTHONPATH", None)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_user_project_gets_the_fixture_without_importing_anything(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", ".mypy_cache"))
    assert not list(project.rglob("conftest.py"))
    (project / "test_fixture_only.py").write_text(
        "def test_nothing_sent_yet(klarefi_signals):\n    assert klarefi_signals == []\n"
    )
    result = run_pytest(project)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout


def test_fixture_is_missing_when_the_plugin_is_disabled(tmp_path):
    # Proves the fixture above came from the plugin and nothing else.
    (tmp_path / "test_fixture_only.py").write_text(
        "def test_nothing_sent_yet(klarefi_signals):\n    assert klarefi_signals == []\n"
    )
    result = run_pytest(tmp_path, "-p", "no:django_klarefi", "-p", "no:django")
    assert result.returncode == 1
    assert "fixture 'klarefi_signals' not found" in result.stdout
