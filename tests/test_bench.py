"""The benchmarks run, and count what docs/performance.md says.

These tests check counts and checks, never timing: bench/run.py runs with a handful of
events, and the SQL statements and commits it counts per event for django-klarefi's view
must be the numbers in the page's "Statements and commits per event" table; bench/http.py
runs a short gunicorn + wrk round and must pass its own table checks and mark every target.
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


def bench_pg_name(suffix: str) -> str:
    """A database of this engineer's own, beside the test database (KLAREFI_PG_NAME)."""
    test_name = os.environ.get("KLAREFI_PG_TEST_NAME") or (
        "test_" + os.environ.get("KLAREFI_PG_NAME", "django_klarefi")
    )
    return f"{test_name}_{suffix}".lower()


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


def documented_counts() -> dict[str, dict[str, dict[str, float]]]:
    """docs/performance.md's per-event counts: {db: {path: {"statements": n, "commits": n}}}."""
    page = (ROOT / "docs" / "performance.md").read_text()
    section = page.split("\n## Statements and commits per event\n", 1)[1].split("\n## ", 1)[0]
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


def assert_counts_match_the_docs(result: dict[str, Any], db: str) -> None:
    claimed = documented_counts()[db]
    for path, scenario in result["scenarios"].items():
        ours = scenario["per_event"]["klarefi"]
        assert {"statements": ours["statements"], "commits": ours["commits"]} == claimed[path]
        # Every path was timed for both views (reported, never asserted on).
        assert isinstance(scenario["ratio"], float)
    # The baseline is one autocommitted INSERT: one statement, one commit per new event.
    baseline = result["scenarios"]["new"]["per_event"]["baseline"]
    assert baseline == {"statements": 1, "commits": 1, "rollbacks": 0}


def test_bench_runs_on_sqlite_and_counts_what_the_docs_say(tmp_path: Path) -> None:
    result = run_bench("--sqlite-path", str(tmp_path / "bench.sqlite3"))

    assert result["db"] == "sqlite"
    assert set(result["scenarios"]) == {"new", "redelivery", "task"}
    assert_counts_match_the_docs(result, "sqlite")


@pytest.mark.postgres
def test_bench_runs_on_postgres_and_counts_what_the_docs_say() -> None:
    name = bench_pg_name("bench")
    result = run_bench("--db", "postgres", "--pg-name", name)

    assert result["db"] == "postgres"
    assert_counts_match_the_docs(result, "postgres")


# -- The gunicorn + wrk mode: it runs, checks the tables, and reports every target --------

HTTP_PATHS = ("new event (sync)", "redelivery", "new event (task mode)")


def run_http_bench(tmp_path: Path, *db_args: str) -> str:
    output = tmp_path / "latest.md"
    completed = subprocess.run(
        [
            sys.executable,
            "bench/http.py",
            "--rounds",
            "1",
            "--seconds",
            "1",
            "--max-rate",
            "4000",
            "--output",
            str(output),
            *db_args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # Exit 0 means: no non-2xx answer, no socket error, no corpus ran out, and every
    # accepted event is stored exactly once with its redeliveries counted.
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return output.read_text()


def assert_every_target_is_marked(report: str, db: str) -> None:
    for title in HTTP_PATHS:
        [row] = [line for line in report.splitlines() if line.startswith(f"| {db} | {title} |")]
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert re.fullmatch(r"\*\*(met|missed)\*\* \(≥ [0-9.]+\)", cells[3]), row
        if title != "redelivery":
            assert re.fullmatch(r"\*\*(met|missed)\*\* \(≤ 1\.15\)", cells[5]), row
    assert (
        f"- {db}: every answer 2xx, no socket error, every accepted event stored exactly once"
        in report
    )
    assert "shared with other work" in report


@pytest.mark.slow
def test_http_bench_runs_on_sqlite_and_marks_every_target(tmp_path: Path) -> None:
    report = run_http_bench(tmp_path, "--db", "sqlite")

    assert_every_target_is_marked(report, "sqlite")


@pytest.mark.slow
@pytest.mark.postgres
def test_http_bench_runs_on_postgres_and_marks_every_target(tmp_path: Path) -> None:
    name = bench_pg_name("bench_http")
    report = run_http_bench(tmp_path, "--db", "postgres", "--pg-name", name)

    assert_every_target_is_marked(report, "postgres")


def test_the_docs_show_the_baseline_view_in_full() -> None:
    page = (ROOT / "docs" / "performance.md").read_text()
    shown = page.split("\n## The baseline, in full\n", 1)[1].split("```python\n", 1)[1]
    shown = shown.split("```", 1)[0]
    source = (ROOT / "bench" / "baseline.py").read_text()
    view = source[source.index("@csrf_exempt") :]

    assert shown == view
