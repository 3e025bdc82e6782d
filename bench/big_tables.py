#!/usr/bin/env python
"""The events table at 1M and 3M rows on PostgreSQL: ingest, admin, API, prune, reprocess.

Creates its own database (``--pg-name``, dropped at the end unless ``--keep``), migrates
it, and bulk-loads events with ``COPY`` (``bench/tables/load.py``: the documented types,
92% processed, 5% failed, 3% pending, received over ``--days`` days). On the empty table,
then at each size in ``--sizes``:

* ingest: the receiver's events/second over the baseline's, interleaved, in process,
  relative to the same ratio on the empty table (``bench/tables/ingest.py``);
* the server time of the admin changelist (unfiltered, by status, by type, each level of
  the date drill-down, searched by case id, page 50) and of the DRF events list (first
  page, page 20 by ``next``, a cursor a tenth of the way from the oldest event), whether
  any of them counts the whole table (``bench/tables/lists.py``);

then, on the largest table: ``klarefi_prune_events`` over a thin and a thick slice of old
rows (time per row, peak memory, the longest transaction it holds against one batch),
then over a third slice while the receiver and the baseline ingest in turns
(``bench/tables/prune.py``); the same command erasing old processed payloads with
``KLAREFI_PAYLOAD_RETENTION``, over a thin and a thick slice, measured as the prune is
(``bench/tables/erase.py``); and ``klarefi_reprocess --failed`` over ``--failed-rows``
failed events (peak memory, progress lines; ``bench/tables/reprocess.py``).

Writes ``big-tables-postgres.json`` under ``--results`` after every stage, so an
interrupted run keeps what it measured; ``bench/report.py`` renders it.

Usage::

    .venv/bin/python bench/big_tables.py                                   # 1M, 3M, 100k
    .venv/bin/python bench/big_tables.py --sizes 20000 60000 --failed-rows 2000
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(ROOT)]

from bench import recorded  # noqa: E402
from bench.run import SAFE_PG_NAME, Requests, _pg_admin  # noqa: E402

RESULT_NAME = "big-tables-postgres"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000])
    parser.add_argument("--days", type=int, default=120, help="received over this many days")
    parser.add_argument("--repeat", type=int, default=5, help="timed requests per list view")
    parser.add_argument("--failed-rows", type=int, default=100_000)
    parser.add_argument("--ingest-events", type=int, default=300, help="per view and size")
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="klarefi_prune_events --batch-size"
    )
    parser.add_argument("--pg-name", default="klarefi_bench_big")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--skip-reprocess", action="store_true")
    recorded.add_results_argument(parser)
    args = parser.parse_args(argv)
    if not SAFE_PG_NAME.fullmatch(args.pg_name):
        parser.error("--pg-name must be a plain lower-case name containing 'bench'")
    if min(args.sizes) < 5000:
        parser.error("--sizes must be at least 5000 (page 50 of the admin's changelist)")
    if args.days < 80:
        parser.error("--days must be at least 80 (the prune slices are 10, 30 and 30 days)")
    return args


def setup(args: argparse.Namespace) -> Any:
    """Django on the new database, migrated, with a superuser; the WSGI handler."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.settings_big",
        KLAREFI_BENCH_DB="postgres",
        KLAREFI_BENCH_PG_NAME=args.pg_name,
    )
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)
    User.objects.create_superuser("bench", "bench@example.com", "bench")
    return WSGIHandler()


def measure_size(args: argparse.Namespace, size: int, copied: int, handler: Any,
                 requests: Requests, empty_ratio: float) -> dict[str, Any]:  # fmt: skip
    """Load the table up to ``size`` rows (numbering the new ones from ``copied``, the rows
    loaded so far), then ingest and the list views on it."""
    from django.test import Client

    from bench.tables import lists
    from bench.tables.ingest import measure_ingest
    from bench.tables.load import load
    from bench.tables.status import time_status
    from django_klarefi.models import Event

    count = max(0, size - Event.objects.count())
    seconds = load(copied, count, args.days, seed=size)
    rows = Event.objects.count()
    print(f"loaded {rows} rows ({seconds:.0f} s)", file=sys.stderr, flush=True)
    ingest = measure_ingest(handler, requests, args.ingest_events)
    client = Client()
    client.login(username="bench", password="bench")
    api_urls = lists.api_urls(client)
    return {
        "rows": rows,
        "copied": copied + count,
        "load_seconds": seconds,
        "ingest": ingest,
        "ingest_vs_empty": ingest["ratio"] / empty_ratio,
        "admin": lists.time_views(client, lists.admin_urls(), args.repeat),
        "api": lists.time_views(client, api_urls, args.repeat),
        "api_deep_position": lists.cursor_position(api_urls["deep cursor (oldest tenth)"]),
        "api_deep_rows": lists.api_rows_shown(client, api_urls["deep cursor (oldest tenth)"]),
        "status": time_status(args.repeat),
    }


def measure(args: argparse.Namespace, data: dict[str, Any], save: Any) -> None:
    """Every stage in turn, saving the results after each."""
    from bench.tables.erase import erasure_slices
    from bench.tables.ingest import measure_ingest
    from bench.tables.prune import prune_during_ingest, prune_slices
    from bench.tables.reprocess import reprocess_failed

    handler = setup(args)
    requests = Requests()
    measure_ingest(handler, requests, 40)  # warm-up: imports, caches, connections
    data["empty"] = {"ingest": measure_ingest(handler, requests, args.ingest_events)}
    save()
    copied = 0
    for size in sorted(args.sizes):
        measured = measure_size(
            args, size, copied, handler, requests, data["empty"]["ingest"]["ratio"]
        )
        data["sizes"][str(size)], copied = measured, measured["copied"]
        save()
    print("pruning ...", file=sys.stderr, flush=True)
    data["prune"] = {"slices": prune_slices(args.days, args.batch_size)}
    save()
    data["prune"]["during_ingest"] = prune_during_ingest(
        handler, requests, args.days - 70, args.batch_size, before_events=200
    )
    save()
    print("erasing old payloads (KLAREFI_PAYLOAD_RETENTION) ...", file=sys.stderr, flush=True)
    data["payload_erasure"] = {"slices": erasure_slices(args.days, args.batch_size)}
    save()
    if not args.skip_reprocess:
        print(f"reprocessing {args.failed_rows} failed events ...", file=sys.stderr, flush=True)
        data["reprocess"] = reprocess_failed(args.failed_rows)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('django_klarefi_event'))")
        data["table_size_at_end"] = cursor.fetchone()[0]
    save()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    given = argv if argv is not None else sys.argv[1:]
    command = recorded.command_line(__file__, given)
    data: dict[str, Any] = {
        "sizes_asked": sorted(args.sizes),
        "days": args.days,
        "repeat": args.repeat,
        "batch_size": args.batch_size,
        "failed_rows_asked": args.failed_rows,
        "sizes": {},
    }

    def save() -> None:
        recorded.write(args.results, RESULT_NAME, data, command)

    _pg_admin(f'DROP DATABASE IF EXISTS "{args.pg_name}" WITH (FORCE)')
    _pg_admin(f'CREATE DATABASE "{args.pg_name}"')
    try:
        measure(args, data, save)
    finally:
        from django.db import connections

        connections.close_all()
        if not args.keep:
            _pg_admin(f'DROP DATABASE IF EXISTS "{args.pg_name}" WITH (FORCE)')
    print(f"wrote {args.results / (RESULT_NAME + '.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
