"""``KLAREFI_PAYLOAD_RETENTION`` in ``klarefi_prune_events`` over a large table: the
erasure of old processed payloads, measured as the prune is (``bench/tables/prune.py``):
time per 1,000 rows, peak memory, and the longest transaction it holds against one batch.

The command runs in process with only ``KLAREFI_PAYLOAD_RETENTION`` set, so that it
erases and deletes nothing; its ``batch N`` lines time the batches, and
:class:`~bench.tables.watch.TransactionSampler` watches its backend.
"""

from __future__ import annotations

import os
import re
import time
import tracemalloc
from datetime import timedelta
from typing import Any

from bench.tables.watch import LineClock, TransactionSampler


def run_erasure(older_than_hours: int, batch_size: int, *, trace_memory: bool) -> dict[str, Any]:
    """Erase the payloads of the processed events older than ``older_than_hours`` hours."""
    from django.core.management import call_command
    from django.db import connection
    from django.test import override_settings

    connection.ensure_connection()
    assert connection.connection is not None
    sampler = TransactionSampler(connection.connection.info.backend_pid)
    stdout, stderr = LineClock(prefix="batch "), LineClock()
    retention = override_settings(
        KLAREFI_PAYLOAD_RETENTION=timedelta(hours=older_than_hours), KLAREFI_EVENT_RETENTION=None
    )
    sampler.start()
    if trace_memory:
        tracemalloc.start()
    began = time.perf_counter()
    try:
        with retention:
            call_command(
                "klarefi_prune_events", "--batch-size", str(batch_size), stdout=stdout,
                stderr=stderr,
            )  # fmt: skip
    finally:
        seconds = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1] if trace_memory else None
        if trace_memory:
            tracemalloc.stop()
        transactions = sampler.finish()
    summary = re.search(r"Erased the payload data of (\d+) events?", stdout.last_line)
    erased = int(summary.group(1)) if summary else 0
    return {
        "older_than_hours": older_than_hours,
        "batch_size": batch_size,
        "erased": erased,
        "seconds": seconds,
        "ms_per_1000_rows": 1000 * 1000 * seconds / max(1, erased),
        "peak_mib": None if peak is None else peak / 2**20,
        "batches": stdout.matched,
        # The interval between two "batch N" lines: one batch's SELECT, UPDATE and COMMIT.
        "longest_batch_seconds": stdout.longest_interval or None,
        "mean_batch_seconds": stdout.mean_interval,
        "progress_lines": stderr.lines,
        "last_progress_line": stderr.last_line,
        **transactions,
    }


def erasure_slices(days: int, batch_size: int) -> list[dict[str, Any]]:
    """A thin slice, then a thick one three times its span, each alone, over the events the
    prune stages left (received in the last ``days - 70`` days): the oldest fifth of that
    span, then the next three fifths. The thick run walks past the thin one's erased rows
    too, as a daily run does.

    A dry run first, so that neither pays for importing the command or the first queries.
    """
    from django.core.management import call_command
    from django.test import override_settings

    left = (days - 70) * 24
    thin, thick = left * 4 // 5, left // 5
    with (
        open(os.devnull, "w") as discard,
        override_settings(
            KLAREFI_PAYLOAD_RETENTION=timedelta(hours=thin), KLAREFI_EVENT_RETENTION=None
        ),
    ):
        call_command("klarefi_prune_events", "--dry-run", stdout=discard, stderr=discard)
    return [run_erasure(older, batch_size, trace_memory=True) for older in (thin, thick)]
