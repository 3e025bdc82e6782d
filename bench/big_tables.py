#!/usr/bin/env python
"""The events table at 1M and 3M rows on PostgreSQL: admin, ingest, prune, reprocess.

Creates its own database (``--pg-name``, dropped at the end unless ``--keep``), migrates
it, and bulk-loads events with ``COPY``: the documented types, 92% processed, 5% failed, 3%
pending, received over ``--days`` days, a third without ``case_id``, half without
``session_id``, payloads of about 700 bytes, as the receiver stores them. Then, at each
size in ``--sizes``:

* the admin changelist's server time (Django's test client, a logged-in superuser, the
  median of ``--repeat`` requests): unfiltered, by status, by type, each level of the date
  drill-down, searched by case id; and whether its SQL has a ``COUNT(*)`` without WHERE;
* ingest: the receiver's events/second over the baseline's, interleaved, in process,
  relative to the same ratio measured on the empty table at the start;

and once, at the end: ``klarefi_prune_events`` deleting two slices of old rows of different
sizes (time per row, peak Python memory), and ``klarefi_reprocess --failed`` over
``--failed-rows`` failed events (time, peak memory).

Usage::

    .venv/bin/python bench/big_tables.py --sizes 1000000 3000000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(ROOT)]

from bench.run import SAFE_PG_NAME, Requests, _pg_admin, send_all  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--days", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--failed-rows", type=int, default=100_000)
    parser.add_argument("--ingest-events", type=int, default=300)
    parser.add_argument("--pg-name", default="klarefi_bench_big")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--skip-reprocess", action="store_true")
    parser.add_argument(
        "--prune-ingest-only",
        action="store_true",
        help="load the first size, then only measure ingest while a prune runs",
    )
    args = parser.parse_args(argv)
    if not SAFE_PG_NAME.fullmatch(args.pg_name):
        parser.error("--pg-name must be a plain lower-case name containing 'bench'")
    return args


def setup(args: argparse.Namespace) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.settings_big",
        KLAREFI_BENCH_DB="postgres",
        KLAREFI_BENCH_PG_NAME=args.pg_name,
    )
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)
    User.objects.create_superuser("bench", "bench@example.com", "bench")


# --- bulk load -------------------------------------------------------------------------------

COLUMNS = (
    "event_id", "event_type", "case_id", "session_id", "payload", "status", "error",
    "attempts", "deliveries", "signed_at", "is_test", "received_at", "last_received_at",
    "processed_at",
)  # fmt: skip


def load(start: int, count: int, days: int, seed: int) -> float:
    """COPY ``count`` events numbered from ``start``; seconds taken."""
    from django.db import connection

    from django_klarefi.event_types import EVENT_TYPES

    types = sorted(EVENT_TYPES)
    rng = random.Random(seed)
    now = datetime.now(UTC)
    began = time.perf_counter()
    with connection.cursor() as cursor:
        copy_sql = f"COPY django_klarefi_event ({', '.join(COLUMNS)}) FROM STDIN"
        with cursor.cursor.copy(copy_sql) as copy:
            for number in range(start, start + count):
                event_type = types[number % len(types)]
                draw = rng.random()
                status = "processed" if draw < 0.92 else "failed" if draw < 0.97 else "pending"
                received = now - timedelta(seconds=rng.random() * days * 86400)
                case_id = f"case_{number:09d}" if number % 3 else ""
                session_id = f"sess_{number:09d}" if number % 2 else ""
                event_id = f"evt_big_{number:09d}"
                payload = {
                    "id": event_id,
                    "event": event_type,
                    "created_at": received.isoformat(),
                    "case_id": case_id,
                    "session_id": session_id,
                    "data": {"document_type": "payslip", "confidence": 0.97, "pages": 2,
                             "text": "x" * 400},
                }  # fmt: skip
                copy.write_row(
                    (
                        event_id,
                        event_type,
                        case_id,
                        session_id,
                        json.dumps(payload),
                        status,
                        "Traceback...\nRuntimeError: broke" if status == "failed" else "",
                        0 if status == "pending" else 1,
                        1,
                        received,
                        False,
                        received,
                        received,
                        received if status == "processed" else None,
                    )
                )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE django_klarefi_event")
    return time.perf_counter() - began


# --- the admin --------------------------------------------------------------------------------


def admin_views() -> dict[str, str]:
    from django.db.models import Max

    from django_klarefi.models import Event

    latest = Event.objects.aggregate(latest=Max("received_at"))["latest"]
    y, m, d = latest.year, latest.month, latest.day
    base = "/admin/django_klarefi/event/"
    return {
        "unfiltered": base,
        "status = failed": base + "?status=failed",
        "status = processed": base + "?status=processed",
        "type = case.completed": base + "?event_type=case.completed",
        "date: year": base + f"?received_at__year={y}",
        "date: month": base + f"?received_at__year={y}&received_at__month={m}",
        "date: day": base + f"?received_at__year={y}&received_at__month={m}&received_at__day={d}",
        "search case id": base + "?q=case_000000301",
        "page 50": base + "?p=50",
    }


def time_admin(repeat: int) -> dict[str, Any]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.login(username="bench", password="bench")
    results = {}
    for name, url in admin_views().items():
        assert client.get(url).status_code == 200, url  # warm
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - began)
            assert response.status_code == 200, url
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        sqls = [q["sql"] for q in queries]
        whole_counts = [s for s in sqls if "COUNT(*)" in s.upper() and "WHERE" not in s.upper()]
        slowest = max(queries.captured_queries, key=lambda q: float(q["time"]))
        results[name] = {
            "seconds": statistics.median(times),
            "queries": len(sqls),
            "count_over_table": bool(whole_counts),
            "slowest_sql": slowest["sql"][:300],
            "slowest_seconds": float(slowest["time"]),
        }
    return results


# --- ingest -----------------------------------------------------------------------------------


def ingest_ratio(handler: Any, requests: Requests, events: int, chunk: int = 10) -> float:
    """Median over chunks of klarefi's events/s over the baseline's, interleaved."""
    ratios = []
    for number in range(events // chunk):
        rates = {}
        views = ("baseline", "klarefi") if number % 2 == 0 else ("klarefi", "baseline")
        for view in views:
            environs = requests.environs(view, requests.new_bodies(chunk))
            began = time.perf_counter()
            statuses = send_all(handler, environs)
            rates[view] = chunk / (time.perf_counter() - began)
            assert all(s.startswith("200") for s in statuses), statuses
        ratios.append(rates["klarefi"] / rates["baseline"])
    return statistics.median(ratios)


# --- prune and reprocess ----------------------------------------------------------------------


def run_command(*args: str) -> dict[str, float]:
    from django.core.management import call_command

    with open(os.devnull, "w") as discard:
        tracemalloc.start()
        began = time.perf_counter()
        try:
            call_command(*args, stdout=discard, stderr=discard)
        finally:
            seconds = time.perf_counter() - began
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    return {"seconds": seconds, "peak_mib": peak / 2**20}


def prune_slices(days: int) -> list[dict[str, float]]:
    from django_klarefi.models import Event

    results = []
    for older_than in (days - 10, days - 40):  # a thin slice, then a thick one
        before = Event.objects.count()
        measured = run_command("klarefi_prune_events", "--older-than", f"{older_than}d", "--quiet")
        measured["deleted"] = before - Event.objects.count()
        measured["ms_per_1000_rows"] = (
            1000 * 1000 * measured["seconds"] / max(1, measured["deleted"])
        )
        results.append(measured)
    return results


def reprocess_failed(rows: int) -> dict[str, float]:
    from django.db import connection

    from django_klarefi.models import Event

    with connection.cursor() as cursor:  # exactly ``rows`` failed events, the rest processed
        cursor.execute(
            "UPDATE django_klarefi_event SET status = 'processed' WHERE status <> 'processed'"
        )
        cursor.execute(
            "UPDATE django_klarefi_event SET status = 'failed' WHERE id IN "
            "(SELECT id FROM django_klarefi_event ORDER BY id LIMIT %s)",
            [rows],
        )
    measured = run_command("klarefi_reprocess", "--failed", "--quiet")
    measured["reprocessed"] = rows - Event.objects.filter(status="failed").count()
    return measured


def ingest_during_prune(handler: Any, requests: Requests, days: int) -> dict[str, Any]:
    """Receiver/baseline ratio while ``klarefi_prune_events`` deletes the old rows, in
    another thread (its own connection), against the same ratio just before."""
    import threading

    from django.core.management import call_command
    from django.db import connections

    from django_klarefi.models import Event

    before = ingest_ratio(handler, requests, 200)
    rows = Event.objects.count()
    done = threading.Event()

    def prune() -> None:
        try:
            with open(os.devnull, "w") as discard:
                call_command(
                    "klarefi_prune_events", "--older-than", f"{days // 4}d", "--quiet",
                    stdout=discard, stderr=discard,
                )  # fmt: skip
        finally:
            connections.close_all()
            done.set()

    worker = threading.Thread(target=prune)
    began = time.perf_counter()
    worker.start()
    ratios = []
    while not done.is_set():
        ratios.append(ingest_ratio(handler, requests, 20))  # asserts every answer is 200
    worker.join()
    return {
        "ratio_before": before,
        "ratio_during": statistics.median(ratios),
        "during_vs_before": statistics.median(ratios) / before,
        "chunks_during": len(ratios),
        "prune_seconds": time.perf_counter() - began,
        "deleted": rows - Event.objects.count(),
    }


# --- the run ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _pg_admin(f'DROP DATABASE IF EXISTS "{args.pg_name}" WITH (FORCE)')
    _pg_admin(f'CREATE DATABASE "{args.pg_name}"')
    report: dict[str, Any] = {"sizes": {}}
    try:
        setup(args)
        from django.core.handlers.wsgi import WSGIHandler

        from django_klarefi.models import Event

        handler = WSGIHandler()
        requests = Requests()
        if args.prune_ingest_only:
            load(0, args.sizes[0], args.days, seed=1)
            report["ingest_during_prune"] = ingest_during_prune(handler, requests, args.days)
            print(json.dumps(report, indent=1))
            return 0
        report["empty_ingest_ratio"] = ingest_ratio(handler, requests, args.ingest_events)
        loaded = Event.objects.count()
        for size in sorted(args.sizes):
            seconds = load(loaded, size - Event.objects.count(), args.days, seed=size)
            loaded = Event.objects.count()
            print(f"loaded {loaded} rows ({seconds:.0f} s)", file=sys.stderr, flush=True)
            ratio = ingest_ratio(handler, requests, args.ingest_events)
            report["sizes"][str(size)] = {
                "rows": loaded,
                "load_seconds": seconds,
                "ingest_ratio": ratio,
                "ingest_vs_empty": ratio / report["empty_ingest_ratio"],
                "admin": time_admin(args.repeat),
            }
            print(json.dumps(report["sizes"][str(size)], indent=1), file=sys.stderr, flush=True)
        report["prune"] = prune_slices(args.days)
        print(json.dumps(report["prune"]), file=sys.stderr, flush=True)
        if not args.skip_reprocess:
            report["reprocess"] = reprocess_failed(args.failed_rows)
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('django_klarefi_event'))")
            report["table_size_at_end"] = cursor.fetchone()[0]
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            _pg_admin(f'DROP DATABASE IF EXISTS "{args.pg_name}" WITH (FORCE)')
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
