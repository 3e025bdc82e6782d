"""§1, ingest at parity: gunicorn + wrk, the receiver against the baseline (``http-*.json``)."""

from __future__ import annotations

from typing import Any

from bench.targets.rows import Row, Section, times

SECTION = "§1 Ingest at parity (gunicorn + wrk)"
DATABASES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
PATHS = {"new": "new event (sync)", "task": "new event (task mode)", "redelivery": "redelivery"}
#: klarefi/baseline requests/s at least this (the redelivery against the baseline's
#: duplicate path), and CPU per request at most this.
TARGET_RPS = {"new": 0.95, "task": 0.95, "redelivery": 1.0}
TARGET_CPU = {"new": 1.15, "task": 1.15}
CHECKS = "every answer 2xx; every accepted event stored exactly once; every redelivery counted"


def rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    found = []
    for db, name in DATABASES.items():
        section = Section(SECTION, f"http-{db}")
        data = results.get(section.source, {}).get("data")
        paths = data["paths"] if data else {}
        for path, title in PATHS.items():
            found += _path_rows(section, title, name, paths.get(path), path)
        problems = data["problems"] if data else None
        passed = None if problems is None else not problems
        shown = "; ".join(problems or []) or "all checks passed"
        found.append(section.check(CHECKS, name, passed, "no failed check", shown))
    return found


def _path_rows(section: Section, title: str, db: str, measured: dict[str, Any] | None,
               path: str) -> list[Row]:  # fmt: skip
    """Requests/s against its target; CPU per request against its target, or reported."""
    rps = cpu = None
    shown_rps = shown_cpu = ""
    if measured is not None:
        rps, cpu = measured["rps_ratio"], measured["cpu_ratio"]
        rounds = ", ".join(f"{ratio:.2f}" for ratio in measured["rounds"])
        shown_rps = (
            f"{times(rps)} (rounds {rounds}; baseline {measured['rps']['baseline']:.0f}/s, "
            f"klarefi {measured['rps']['klarefi']:.0f}/s)"
        )
        shown_cpu = (
            f"{times(cpu)} (baseline {measured['cpu_ms']['baseline']:.2f} ms, klarefi "
            f"{measured['cpu_ms']['klarefi']:.2f} ms of CPU per request)"
        )
    rps_limit, cpu_limit = TARGET_RPS[path], TARGET_CPU.get(path)
    what_rps = f"{title}: requests/s vs the baseline's"
    what_cpu = f"{title}: server CPU per request vs the baseline's"
    return [
        section.at_least(what_rps, db, rps, rps_limit, f"≥ {rps_limit}x", shown_rps),
        section.reported(what_cpu, db, shown_cpu if measured else None)
        if cpu_limit is None
        else section.at_most(what_cpu, db, cpu, cpu_limit, f"≤ {cpu_limit}x", shown_cpu),
    ]


def notes(results: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """How each database's run was set up."""
    lines = []
    for db, name in DATABASES.items():
        data = results.get(f"http-{db}", {}).get("data")
        if data:
            run = data["settings"]
            lines.append(
                f"{name}: gunicorn {run['workers']} sync workers, wrk {run['threads']} threads"
                f" / {run['connections']} connections, {run['rounds']} interleaved rounds of "
                f"{run['seconds']} s per target and path, events of {run['body_bytes']} bytes;"
                " the medians over rounds of klarefi/baseline."
            )
    lines.append(
        "The redelivery target compares klarefi's redelivery of a processed event with the "
        "baseline's duplicate path (its failed unique INSERT). Task mode enqueues on the "
        "DummyBackend: it measures the receiver's part, not a queue's."
    )
    return {SECTION: lines}
