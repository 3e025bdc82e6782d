"""§1, ingest at parity: gunicorn + wrk, the receiver against the baseline (``http-*.json``)."""

from __future__ import annotations

from typing import Any

from bench.targets.rows import Row, checked, judged, reported, times

SECTION = "§1 Ingest at parity (gunicorn + wrk)"
DATABASES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
PATHS = {"new": "new event (sync)", "task": "new event (task mode)", "redelivery": "redelivery"}
#: klarefi/baseline requests/s at least this (the redelivery against the baseline's
#: duplicate path), and CPU per request at most this.
TARGET_RPS = {"new": 0.95, "task": 0.95, "redelivery": 1.0}
TARGET_CPU = {"new": 1.15, "task": 1.15}


def rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    found = []
    for db, name in DATABASES.items():
        source = f"http-{db}"
        data = results.get(source, {}).get("data")
        paths = data["paths"] if data else {}
        for path, title in PATHS.items():
            measured = paths.get(path)
            found.append(_rps_row(title, name, measured, TARGET_RPS[path], source))
            found.append(_cpu_row(title, name, measured, TARGET_CPU.get(path), source))
        problems = data["problems"] if data else None
        found.append(
            checked(
                SECTION,
                "every answer 2xx; every accepted event stored exactly once; every "
                "redelivery counted",
                name,
                None if problems is None else not problems,
                shown="all checks passed" if not problems else "; ".join(problems or []),
                target="no failed check",
                source=source,
            )
        )
    return found


def _rps_row(title: str, db: str, measured: dict[str, Any] | None, limit: float,
             source: str) -> Row:  # fmt: skip
    what = f"{title}: requests/s vs the baseline's"
    if measured is None:
        return judged(
            SECTION,
            what,
            db,
            None,
            limit=limit,
            at_least=True,
            shown="",
            target=f"≥ {limit}x",
            source=source,
        )
    rounds = ", ".join(f"{ratio:.2f}" for ratio in measured["rounds"])
    shown = (
        f"{times(measured['rps_ratio'])} (rounds {rounds}; baseline "
        f"{measured['rps']['baseline']:.0f}/s, klarefi {measured['rps']['klarefi']:.0f}/s)"
    )
    return judged(
        SECTION,
        what,
        db,
        measured["rps_ratio"],
        limit=limit,
        at_least=True,
        shown=shown,
        target=f"≥ {limit}x",
        source=source,
    )


def _cpu_row(title: str, db: str, measured: dict[str, Any] | None, limit: float | None,
             source: str) -> Row:  # fmt: skip
    """CPU per request: a target on the new-event paths, reported on the redelivery."""
    what = f"{title}: server CPU per request vs the baseline's"
    shown = None
    if measured is not None:
        shown = (
            f"{times(measured['cpu_ratio'])} (baseline {measured['cpu_ms']['baseline']:.2f} ms,"
            f" klarefi {measured['cpu_ms']['klarefi']:.2f} ms of CPU per request)"
        )
    if limit is None:
        return reported(SECTION, what, db, shown, source=source)
    return judged(
        SECTION,
        what,
        db,
        None if measured is None else measured["cpu_ratio"],
        limit=limit,
        at_least=False,
        shown=shown or "",
        target=f"≤ {limit}x",
        source=source,
    )


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
