"""The benchmark (bench/run.py) runs, and counts what the docs' Performance page says.

These tests check counts, never timing: the script runs with a handful of events, and the
SQL statements and commits it counts per event for django-klarefi's view must be the
numbers in the "Statements and commits per event" table of docs/performance.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PATH_ROWS = {"new event": "new", "redelivery": "redelivery", "new event, task mode": "task"}


def run_bench(*db_args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            "--events",
            "4",
            "--rounds",
            "2",
            "--chunk",
            "2",
            "--count-events",
            "3",
            "--json",
            *db_args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)  # type: ignore[no-any-return]


def readme_counts() -> dict[str, dict[str, dict[str, float]]]:
    """The documented per-event counts: {db: {path: {"statements": n, "commits": n}}}."""
    section = (ROOT / "docs" / "performance.md").read_text()
    counts: dict[str, dict[str, dict[str, float]]] = {"sqlite": {}, "postgres": {}}
    for title, path in PATH_ROWS.items():
        row = re.search(
            rf"^\| {re.escape(title)} \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", section, re.M
        )
        assert row, f"docs/performance.md has no count row for {title!r}"
        sqlite_statements, sqlite_commits, pg_statements, pg_commits = map(int, row.groups())
        counts["sqlite"][path] = {"statements": sqlite_statements, "commits": sqlite_commits}
        counts["postgres"][path] = {"statements": pg_statements, "commits": pg_commits}
    return counts


def assert_counts_match_readme(result: dict[str, Any], db: str) -> None:
    claimed = readme_counts()[db]
    for path, scenario in result["scenarios"].items():
        ours = scenario["per_event"]["klarefi"]
        assert {"statements": ours["statements"], "commits": ours["commits"]} == claimed[path]
        # Every path was timed for both views (reported, never asserted on).
        assert isinstance(scenario["ratio"], float)
    # The baseline is one autocommitted INSERT: one statement, one commit per new event.
    baseline = result["scenarios"]["new"]["per_event"]["baseline"]
    assert baseline == {"statements": 1, "commits": 1, "rollbacks": 0}


def test_bench_runs_on_sqlite_and_counts_what_the_readme_says(tmp_path: Path) -> None:
    result = run_bench("--sqlite-path", str(tmp_path / "bench.sqlite3"))

    assert result["db"] == "sqlite"
    assert set(result["scenarios"]) == {"new", "redelivery", "task"}
    assert_counts_match_readme(result, "sqlite")


@pytest.mark.postgres
def test_bench_runs_on_postgres_and_counts_what_the_readme_says() -> None:
    name = (os.environ.get("KLAREFI_PG_TEST_NAME") or "test_django_klarefi") + "_bench"
    result = run_bench("--db", "postgres", "--pg-name", name.lower())

    assert result["db"] == "postgres"
    assert_counts_match_readme(result, "postgres")
