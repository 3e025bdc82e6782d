#!/usr/bin/env python
"""CPU per call of the receiver's parts, beside the baseline's, in one process.

Where does the receiver's extra CPU per request go? This times (``time.process_time``,
this process only: the database server's work is not counted) each part of a delivery on
its own, many times over, and prints microseconds per call: the verifier, the row's
construction and its compiled INSERT, the transaction, the signals, the answer, then the
whole of ``receive_event`` beside the baseline's ``objects.create()``. Numbers move from
run to run on a busy machine; compare the lines of one run.

Usage::

    .venv/bin/python bench/components.py                 # SQLite, temporary file
    .venv/bin/python bench/components.py --db postgres   # creates and drops its database
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(ROOT)]

from bench.run import SAFE_PG_NAME, bench_database  # noqa: E402


def per_call(calls: int, function: Callable[[], object]) -> float:
    """CPU microseconds per call of ``function``, after one warm-up call."""
    function()
    start = time.process_time()
    for _ in range(calls):
        function()
    return (time.process_time() - start) / calls * 1e6


def parts(calls: int) -> list[tuple[str, float]]:
    from django.conf import settings
    from django.db import IntegrityError, connection, transaction
    from django.db.models.sql import InsertQuery
    from django.http import HttpResponse, JsonResponse
    from django.utils import timezone

    from bench.models import BaselineEvent
    from django_klarefi.attempts import send_event_signals
    from django_klarefi.conf import conf
    from django_klarefi.models import Event
    from django_klarefi.payloads import event_fields
    from django_klarefi.processing import receive_event
    from django_klarefi.samples import sample_event
    from django_klarefi.signature import sign_webhook_payload, verify_webhook

    payload = sample_event("document.processed", event_id="evt_components")
    body = json.dumps(payload, separators=(",", ":")).encode()
    header = sign_webhook_payload(body, settings.KLAREFI_WEBHOOK_SECRET)
    fields = event_fields(payload, body, int(time.time()))
    numbers = itertools.count()

    def compiled_insert(model: Any, row: Any) -> object:
        query = InsertQuery(model)
        columns = [field for field in model._meta.local_concrete_fields if not field.primary_key]
        query.insert_values(columns, [row])
        return query.get_compiler(connection=connection).as_sql()

    def event_row() -> Event:
        now = timezone.now()
        return Event(**fields, deliveries=1, received_at=now, last_received_at=now)

    def in_transaction() -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    def in_autocommit() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")

    def new_event() -> None:
        receive_event(dict(payload, id=f"evt_new_{next(numbers)}"), raw_body=body, signed_at=1)

    def baseline_new() -> None:
        BaselineEvent.objects.create(
            event_id=f"evt_base_{next(numbers)}", event_type="document.processed", payload=payload
        )

    receive_event(dict(payload, id="evt_again"), raw_body=body, signed_at=1)
    BaselineEvent.objects.create(event_id="evt_again", event_type="x", payload=payload)

    def baseline_duplicate() -> None:
        with contextlib.suppress(IntegrityError):
            BaselineEvent.objects.create(event_id="evt_again", event_type="x", payload=payload)

    row = event_row()
    timed: list[tuple[str, Callable[[], object]]] = [
        (
            "verify_webhook (header, window, HMAC, JSON)",
            lambda: verify_webhook(
                body, header, conf.WEBHOOK_SECRETS, tolerance=conf.WEBHOOK_TOLERANCE
            ),
        ),
        ("baseline's check: json.loads alone", lambda: json.loads(body)),
        (
            "conf: four settings read",
            lambda: (
                conf.PROCESSING,
                conf.WEBHOOK_SECRETS,
                conf.WEBHOOK_TOLERANCE,
                conf.MAX_BODY_BYTES,
            ),
        ),
        ("event_fields (the row's columns)", lambda: event_fields(payload, body, 1)),
        (
            "Event(...) and its compiled INSERT (14 columns)",
            lambda: compiled_insert(Event, event_row()),
        ),
        (
            "BaselineEvent(...) and its INSERT (3 columns)",
            lambda: compiled_insert(
                BaselineEvent, BaselineEvent(event_id="e", event_type="t", payload=payload)
            ),
        ),
        ("SELECT 1 in autocommit (one round trip)", in_autocommit),
        ("SELECT 1 in transaction.atomic() (BEGIN, SELECT, COMMIT)", in_transaction),
        ("send_event_signals (one no-op receiver)", lambda: send_event_signals(row)),
        (
            "JsonResponse (the receiver's answer)",
            lambda: JsonResponse({"status": "processed", "event_id": "evt_components"}),
        ),
        (
            "HttpResponse of bytes (the baseline's answer)",
            lambda: HttpResponse(b'{"status":"ok"}', content_type="application/json"),
        ),
        ("receive_event: new event, sync", new_event),
        ("baseline: objects.create()", baseline_new),
        (
            "receive_event: redelivery of a processed event",
            lambda: receive_event(dict(payload, id="evt_again"), raw_body=body, signed_at=1),
        ),
        ("baseline: duplicate (failed INSERT)", baseline_duplicate),
    ]
    return [(name, per_call(calls, function)) for name, function in timed]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-name", default="klarefi_bench_components")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args(argv)
    if not SAFE_PG_NAME.fullmatch(args.pg_name):
        parser.error("--pg-name must be a plain lower-case name containing 'bench'")
    with bench_database(argparse.Namespace(db=args.db, pg_name=args.pg_name, sqlite_path=None)):
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", run_syncdb=True, verbosity=0, interactive=False)
        print(f"CPU microseconds per call ({args.db}, {args.calls} calls each):")
        for name, micros in parts(args.calls):
            print(f"  {micros:8.1f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
