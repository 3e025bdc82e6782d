"""Bulk-load the events table with ``COPY``: a realistic mix of types, statuses and dates."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta

COLUMNS = (
    "event_id", "event_type", "case_id", "session_id", "payload", "status", "error",
    "attempts", "deliveries", "signed_at", "is_test", "received_at", "last_received_at",
    "processed_at",
)  # fmt: skip


def load(start: int, count: int, days: int, seed: int) -> float:
    """COPY ``count`` events numbered from ``start``; seconds taken.

    The documented types in turn, 92% processed, 5% failed, 3% pending, received over the
    last ``days`` days, a third without ``case_id``, half without ``session_id``, payloads
    of about 700 bytes as the receiver stores them. Then ``ANALYZE``, as autovacuum would.
    """
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
