#!/usr/bin/env python
"""Benchmark django-klarefi's receiver against a minimal verify-and-insert view.

One process, one database, two views behind the same middleware and URLconf:

* **baseline**: ``bench/baseline.py``, HMAC check, ``json.loads``, one autocommitted INSERT.
* **klarefi**: ``django_klarefi.urls`` with one no-op receiver on ``event_received``.

Every request goes through Django's WSGI handler (what gunicorn calls), carries a new,
distinct, signed event (signed before the clock starts), and must answer 200. Within each
round the two views take turns every ``--chunk`` requests (A, B, B, A, A, B, ...), so that
drift and load spikes on a busy machine hit both; the reported ratio is the median over
rounds of klarefi's events/second divided by the baseline's. Absolute events/second are
printed, but only the ratio is comparable between runs. A slow disk ends the run early:
no round starts after ``--max-seconds`` once three are done.

Paths measured:

* ``new``: a new event, processed synchronously (the default ``KLAREFI_PROCESSING``).
* ``redelivery``: each event of that round's ``new`` run delivered again (already processed).
* ``task``: a new event with ``KLAREFI_PROCESSING = "task"`` on the Tasks framework's
  dummy backend (klarefi only; the baseline does its usual insert).

SQL statements, commits and rollbacks per event are counted in a separate, untimed pass
(``connection.execute_wrapper`` plus wrapped ``commit``/``rollback``): an autocommitted
write outside a transaction counts as one commit, as it is one to the database.

Usage::

    .venv/bin/python bench/run.py                     # SQLite file database in a temp dir
    .venv/bin/python bench/run.py --db postgres       # creates and drops klarefi_bench
    .venv/bin/python bench/run.py --json              # machine-readable results
    .venv/bin/python bench/run.py --show-sql          # the statements of one event per path
    .venv/bin/python bench/run.py --profile 300       # then cProfile 300 requests per path
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.util
import io
import json
import os
import platform
import pstats
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, sys.path[0] is bench/; the package must be imported as ``bench``.
sys.path[:1] = [str(ROOT)]

VIEWS = ("baseline", "klarefi")
PATHS = {"baseline": "/baseline/", "klarefi": "/webhooks/klarefi"}
SCENARIOS = ("new", "redelivery", "task")
SCENARIO_TITLES = {
    "new": "new event",
    "redelivery": "redelivery",
    "task": "new event, task mode",
}
# A write: INSERT, UPDATE, DELETE, or a WITH whose parts do one (PostgreSQL's delivery).
WRITE_STATEMENT = re.compile(
    r"\s*(INSERT|UPDATE|DELETE|REPLACE)\b"
    r"|\s*WITH\b.*\b(INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM)\b",
    re.IGNORECASE | re.DOTALL,
)
MIN_ROUNDS = 3
SAFE_PG_NAME = re.compile(r"[a-z_][a-z0-9_]*bench[a-z0-9_]*")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--events", type=int, default=100, help="events per view per round (default 100)"
    )
    parser.add_argument("--rounds", type=int, default=16, help="timed rounds (default 16)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=40,
        help="start no new round after this many seconds of timed rounds, once "
        f"{MIN_ROUNDS} are done (default 40)",
    )
    parser.add_argument(
        "--chunk", type=int, default=10, help="requests per view before switching (default 10)"
    )
    parser.add_argument(
        "--count-events", type=int, default=5, help="events per path in the counting pass"
    )
    parser.add_argument(
        "--sqlite-path", help="SQLite file to create (default: a new temporary directory)"
    )
    parser.add_argument(
        "--pg-name",
        default="klarefi_bench",
        help="PostgreSQL database to create and drop; must contain 'bench'",
    )
    parser.add_argument("--no-task", action="store_true", help="skip the task mode path")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--show-sql", action="store_true", help="print the SQL of one event per path"
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="after the run, cProfile N requests per view and path, and print the top",
    )
    args = parser.parse_args(argv)
    args.rounds_done = 0
    if min(args.events, args.rounds, args.count_events, args.chunk) < 1:
        parser.error("--events, --rounds, --chunk and --count-events must be positive")
    if args.db == "postgres" and not SAFE_PG_NAME.fullmatch(args.pg_name):
        parser.error("--pg-name must be a plain lower-case name containing 'bench'")
    return args


# --- the database the run creates and removes -------------------------------------------


@contextmanager
def bench_database(args: argparse.Namespace) -> Iterator[str]:
    """Point bench.settings at a fresh database; remove it afterwards. Yields a label."""
    os.environ["KLAREFI_BENCH_DB"] = args.db
    if args.db == "postgres":
        os.environ["KLAREFI_BENCH_PG_NAME"] = args.pg_name
        _pg_admin(f'DROP DATABASE IF EXISTS "{args.pg_name}" WITH (FORCE)')
        _pg_admin(f'CREATE DATABASE "{args.pg_name}"')
        try:
            yield f"PostgreSQL database {args.pg_name}"
        finally:
            from django.db import connections

            connections.close_all()
            _pg_admin(f'DROP DATABASE IF EXISTS "{args.pg_name}" WITH (FORCE)')
        return
    if args.sqlite_path:
        path = Path(args.sqlite_path)
        path.unlink(missing_ok=True)
        os.environ["KLAREFI_BENCH_SQLITE_PATH"] = str(path)
        yield f"SQLite file {path}"
        return
    directory = tempfile.mkdtemp(prefix="klarefi_bench_")
    os.environ["KLAREFI_BENCH_SQLITE_PATH"] = str(Path(directory) / "bench.sqlite3")
    try:
        yield "SQLite file in a temporary directory"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(
        host=os.environ.get("KLAREFI_PG_HOST", "127.0.0.1"),
        port=os.environ.get("KLAREFI_PG_PORT", "5432"),
        user=os.environ.get("KLAREFI_PG_USER", "klarefi"),
        password=os.environ.get("KLAREFI_PG_PASSWORD", "klarefi"),
        dbname="postgres",
        autocommit=True,
    ) as admin:
        admin.execute(statement)  # type: ignore[arg-type,unused-ignore]


# --- requests ----------------------------------------------------------------------------


class Requests:
    """Signed, distinct events as WSGI environs, built before any clock starts."""

    def __init__(self) -> None:
        from django.conf import settings

        from django_klarefi.samples import sample_event
        from django_klarefi.signature import sign_webhook_payload

        self._secret = settings.KLAREFI_WEBHOOK_SECRET
        self._sign = sign_webhook_payload
        self._sample = sample_event
        self._run = datetime.now(UTC).strftime("%H%M%S")
        self._next = 0

    def new_bodies(self, count: int) -> list[bytes]:
        bodies = []
        for _ in range(count):
            self._next += 1
            payload = self._sample(
                "document.processed", event_id=f"evt_bench_{self._run}_{self._next}"
            )
            bodies.append(json.dumps(payload, separators=(",", ":")).encode())
        return bodies

    def environs(self, view: str, bodies: list[bytes]) -> list[dict[str, Any]]:
        """One request per body, each with a signature made now."""
        return [self._environ(PATHS[view], body, self._sign(body, self._secret)) for body in bodies]

    @staticmethod
    def _environ(path: str, body: bytes, signature: str) -> dict[str, Any]:
        return {
            "REQUEST_METHOD": "POST",
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": "",
            "SERVER_NAME": "testserver",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_HOST": "testserver",
            "HTTP_USER_AGENT": "Klarefi-Webhooks/1.0",
            "HTTP_X_KLAREFI_SIGNATURE": signature,
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
        }


def send_all(handler: Callable[..., Any], environs: list[dict[str, Any]]) -> list[str]:
    """Send each request through the WSGI handler, as a WSGI server would; the statuses."""
    statuses: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        statuses.append(status)

    for environ in environs:
        response = handler(environ, start_response)
        try:
            for _chunk in response:
                pass
        finally:
            response.close()  # request_finished, as a WSGI server does
    return statuses


def expect_ok(statuses: list[str], what: str) -> None:
    bad = [status for status in statuses if not status.startswith("200")]
    if bad:
        raise SystemExit(f"{what}: {len(bad)} of {len(statuses)} requests failed, e.g. {bad[0]}")


@contextmanager
def task_mode(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    from django.test import override_settings

    with override_settings(KLAREFI_PROCESSING="task"):
        yield
    _task_backend().clear()  # the dummy backend keeps every enqueued task in memory


def _task_backend() -> Any:
    try:
        from django.tasks import task_backends
    except ImportError:
        from django_tasks import task_backends  # type: ignore[assignment,unused-ignore]
    return task_backends["default"]


# --- counting SQL, commits and rollbacks --------------------------------------------------


@dataclass
class Counts:
    statements: list[str] = field(default_factory=list)
    commits: int = 0
    rollbacks: int = 0


@contextmanager
def counting(connection: Any) -> Iterator[Counts]:
    """Count every statement, and every commit: explicit, or an autocommitted write."""
    counts = Counts()

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        counts.statements.append(sql)
        result = execute(sql, params, many, context)
        if not context["connection"].in_atomic_block and WRITE_STATEMENT.match(sql):
            counts.commits += 1
        return result

    real_commit, real_rollback = connection.commit, connection.rollback

    def commit() -> None:
        counts.commits += 1
        real_commit()

    def rollback() -> None:
        counts.rollbacks += 1
        real_rollback()

    connection.commit, connection.rollback = commit, rollback
    try:
        with connection.execute_wrapper(wrapper):
            yield counts
    finally:
        del connection.commit, connection.rollback


# --- the run ------------------------------------------------------------------------------


@dataclass
class Measured:
    rates: dict[str, list[float]] = field(default_factory=lambda: {v: [] for v in VIEWS})
    ratios: list[float] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=lambda: {v: [] for v in VIEWS})
    cpu_ratios: list[float] = field(default_factory=list)
    per_event: dict[str, dict[str, float]] = field(default_factory=dict)
    sql: dict[str, list[str]] = field(default_factory=dict)


def setup_django() -> Callable[..., Any]:
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command

    from django_klarefi.signals import event_received

    call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)
    event_received.connect(_no_op_receiver, dispatch_uid="bench-no-op")
    return WSGIHandler()


def _no_op_receiver(sender: Any, event: Any, **kwargs: Any) -> None:
    pass


def run(args: argparse.Namespace, handler: Callable[..., Any]) -> dict[str, Measured]:
    from django.db import connection

    tasks_installed = any(
        importlib.util.find_spec(name) is not None for name in ("django.tasks", "django_tasks")
    )
    if not (args.no_task or tasks_installed):
        print("No Tasks framework is installed: skipping task mode.", file=sys.stderr)
        args.no_task = True
    scenarios = [s for s in SCENARIOS if not (s == "task" and args.no_task)]
    requests = Requests()
    results = {scenario: Measured() for scenario in scenarios}

    def one_pass(view: str, scenario: str, bodies: list[bytes]) -> list[str]:
        environs = requests.environs(view, bodies)
        with task_mode(scenario == "task" and view == "klarefi"):
            statuses = send_all(handler, environs)
        return statuses

    def paths(view: str, count: int) -> Iterator[tuple[str, list[bytes]]]:
        bodies = requests.new_bodies(count)
        yield "new", bodies
        yield "redelivery", bodies
        if "task" in scenarios:
            yield "task", requests.new_bodies(count)

    # Warm up: import and cache everything on every path, untimed.
    for view in VIEWS:
        for scenario, bodies in paths(view, 20):
            expect_ok(one_pass(view, scenario, bodies), f"warm-up {view} {scenario}")

    # Count statements per event, untimed (the wrappers cost time).
    for view in VIEWS:
        for scenario, bodies in paths(view, args.count_events):
            with counting(connection) as counts:
                expect_ok(one_pass(view, scenario, bodies), f"counting {view} {scenario}")
            n = len(bodies)
            results[scenario].per_event[view] = {
                "statements": len(counts.statements) / n,
                "commits": counts.commits / n,
                "rollbacks": counts.rollbacks / n,
            }
            per_event = len(counts.statements) // n
            results[scenario].sql[view] = counts.statements[:per_event]

    # Timed rounds. Within a round the views alternate every `chunk` requests, and the
    # view that goes first alternates too, so that drift and load spikes hit both.
    deadline = time.monotonic() + args.max_seconds
    for round_number in range(args.rounds):
        if round_number >= MIN_ROUNDS and time.monotonic() > deadline:
            break  # a slow disk: fewer rounds rather than an unbounded run
        args.rounds_done = round_number + 1
        first = VIEWS if round_number % 2 == 0 else VIEWS[::-1]
        round_bodies = {view: requests.new_bodies(args.events) for view in VIEWS}
        for scenario in scenarios:
            environs = {
                view: requests.environs(
                    view,
                    requests.new_bodies(args.events) if scenario == "task" else round_bodies[view],
                )
                for view in VIEWS
            }
            wall = dict.fromkeys(VIEWS, 0.0)
            cpu = dict.fromkeys(VIEWS, 0.0)
            gc.collect()
            for start in range(0, args.events, args.chunk):
                order = first if (start // args.chunk) % 2 == 0 else first[::-1]
                for view in order:
                    chunk = environs[view][start : start + args.chunk]
                    with task_mode(scenario == "task" and view == "klarefi"):
                        started, started_cpu = time.perf_counter(), time.process_time()
                        statuses = send_all(handler, chunk)
                        wall[view] += time.perf_counter() - started
                        cpu[view] += time.process_time() - started_cpu
                    expect_ok(statuses, f"round {round_number + 1} {view} {scenario}")
            measured = results[scenario]
            for view in VIEWS:
                measured.rates[view].append(args.events / wall[view])
                measured.cpu[view].append(cpu[view] / args.events)
            measured.ratios.append(wall["baseline"] / wall["klarefi"])
            measured.cpu_ratios.append(cpu["baseline"] / cpu["klarefi"])

    check_rows(args, scenarios)
    return results


def check_rows(args: argparse.Namespace, scenarios: list[str]) -> None:
    """Every new event was stored once; every redelivery was counted, not stored again."""
    from bench.models import BaselineEvent
    from django_klarefi.models import Event

    per_run = 20 + args.count_events + args.events * args.rounds_done
    task_runs = per_run if "task" in scenarios else 0
    stored = BaselineEvent.objects.count()
    assert stored == per_run + task_runs, (stored, per_run + task_runs)
    assert Event.objects.count() == per_run + task_runs
    processed = Event.objects.filter(status=Event.Status.PROCESSED)
    assert processed.count() == per_run
    assert processed.filter(deliveries=2).count() == per_run
    assert Event.objects.filter(status=Event.Status.PENDING).count() == task_runs


def profile(handler: Callable[..., Any], count: int, with_task: bool) -> str:
    """cProfile ``count`` requests per view and path; the top functions of each, as text."""
    requests = Requests()
    out = io.StringIO()
    runs = [(view, scenario) for scenario in ("new", "redelivery") for view in VIEWS]
    if with_task:
        runs.append(("klarefi", "task"))
    delivered: dict[str, list[bytes]] = {}
    for view, scenario in runs:
        if scenario == "redelivery":
            bodies = delivered[view]
        else:
            bodies = delivered[view] = requests.new_bodies(count)
        environs = requests.environs(view, bodies)
        profiler = cProfile.Profile()
        with task_mode(scenario == "task"):
            profiler.enable()
            statuses = send_all(handler, environs)
            profiler.disable()
        expect_ok(statuses, f"profile {view} {scenario}")
        stats = pstats.Stats(profiler, stream=out)
        title = f"{view}, {count} x {SCENARIO_TITLES[scenario]}"
        out.write(f"\n=== {title}, by internal time ===\n")
        stats.sort_stats("tottime").print_stats(25)
        out.write(f"\n=== {title}, by cumulative time ===\n")
        stats.sort_stats("cumulative").print_stats(50)
    return out.getvalue()


# --- output -------------------------------------------------------------------------------


def summary(args: argparse.Namespace, results: dict[str, Measured]) -> dict[str, Any]:
    import django

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "db": args.db,
        "django": django.get_version(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "rounds": args.rounds_done,
        "events_per_round": args.events,
        "scenarios": {
            name: {
                "baseline_events_per_second": round(statistics.median(m.rates["baseline"]), 1),
                "klarefi_events_per_second": round(statistics.median(m.rates["klarefi"]), 1),
                "ratio": round(statistics.median(m.ratios), 3),
                "ratio_min": round(min(m.ratios), 3),
                "ratio_max": round(max(m.ratios), 3),
                "cpu_ratio": round(statistics.median(m.cpu_ratios), 3),
                "baseline_cpu_ms_per_event": round(statistics.median(m.cpu["baseline"]) * 1e3, 3),
                "klarefi_cpu_ms_per_event": round(statistics.median(m.cpu["klarefi"]) * 1e3, 3),
                "per_event": m.per_event,
            }
            for name, m in results.items()
        },
    }


def table(data: dict[str, Any]) -> str:
    header = (
        f"django-klarefi benchmark, {data['date']}: {data['db']}, Django {data['django']}, "
        f"Python {data['python']}, {data['cpus']} CPUs\n"
        f"{data['rounds']} rounds x {data['events_per_round']} events per view, interleaved; "
        "ratio = klarefi / baseline events per second, median of rounds [min-max];\n"
        "CPU ratio = the same for CPU time. SQL, commits and rollbacks are per event, "
        "baseline / klarefi.\n\n"
    )
    rows = [
        (
            "path",
            "baseline ev/s",
            "klarefi ev/s",
            "ratio",
            "CPU ratio",
            "SQL",
            "commits",
            "rollbacks",
        )
    ]
    for name, s in data["scenarios"].items():
        base, ours = s["per_event"]["baseline"], s["per_event"]["klarefi"]
        rows.append(
            (
                SCENARIO_TITLES[name],
                f"{s['baseline_events_per_second']:.0f}",
                f"{s['klarefi_events_per_second']:.0f}",
                f"{s['ratio']:.2f} [{s['ratio_min']:.2f}-{s['ratio_max']:.2f}]",
                f"{s['cpu_ratio']:.2f}",
                f"{base['statements']:g} / {ours['statements']:g}",
                f"{base['commits']:g} / {ours['commits']:g}",
                f"{base['rollbacks']:g} / {ours['rollbacks']:g}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    return header + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with bench_database(args) as where:
        handler = setup_django()
        if not args.json:
            print(f"Running on {where} ...", file=sys.stderr, flush=True)
        results = run(args, handler)
        data = summary(args, results)
        if args.show_sql:
            data["sql"] = {name: m.sql for name, m in results.items()}
        profiled = profile(handler, args.profile, not args.no_task) if args.profile else ""
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(table(data))
        if args.show_sql:
            for name, by_view in data["sql"].items():
                for view, statements in by_view.items():
                    print(f"\n{SCENARIO_TITLES[name]}, {view}:")
                    for statement in statements:
                        print(f"  {statement}")
    if profiled:
        print(profiled, file=sys.stderr if args.json else sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
