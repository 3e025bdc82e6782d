"""``klarefi_prune_events`` over a large table: time, memory, transactions, ingest meanwhile.

The command runs in process (``call_command``) without ``--quiet``, its stdout and stderr
going to streams that time its ``batch N`` lines and count its progress lines. Meanwhile
:class:`~bench.tables.watch.TransactionSampler` looks at its backend in
``pg_stat_activity`` from another connection: the longest transaction it holds, against
the longest interval between two batch lines (one batch).
"""

from __future__ import annotations

import os
import re
import threading
import time
import tracemalloc
from typing import Any

from bench.run import Requests
from bench.tables.ingest import IngestSamples
from bench.tables.watch import LineClock, TransactionSampler

#: Events per view per chunk pair while the prune runs.
DURING_CHUNK_EVENTS = 20


def run_prune(older_than_days: int, batch_size: int, *, trace_memory: bool) -> dict[str, Any]:
    """Prune the processed events older than ``older_than_days`` days, watched."""
    from django.core.management import call_command
    from django.db import connection

    connection.ensure_connection()
    assert connection.connection is not None
    sampler = TransactionSampler(connection.connection.info.backend_pid)
    stdout, stderr = LineClock(prefix="batch "), LineClock()
    sampler.start()
    if trace_memory:
        tracemalloc.start()
    began = time.perf_counter()
    try:
        call_command(
            "klarefi_prune_events",
            "--older-than",
            f"{older_than_days}d",
            "--batch-size",
            str(batch_size),
            stdout=stdout,
            stderr=stderr,
        )
    finally:
        seconds = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1] if trace_memory else None
        if trace_memory:
            tracemalloc.stop()
        transactions = sampler.finish()
    summary = re.search(r"Deleted (\d+) events?", stdout.last_line)
    deleted = int(summary.group(1)) if summary else 0
    return {
        "older_than_days": older_than_days,
        "batch_size": batch_size,
        "deleted": deleted,
        "seconds": seconds,
        "ms_per_1000_rows": 1000 * 1000 * seconds / max(1, deleted),
        "peak_mib": None if peak is None else peak / 2**20,
        "batches": stdout.matched,
        # The interval between two "batch N" lines: one batch's DELETE and COMMIT.
        "longest_batch_seconds": stdout.longest_interval or None,
        "mean_batch_seconds": stdout.mean_interval,
        "progress_lines": stderr.lines,
        "last_progress_line": stderr.last_line,
        **transactions,
    }


def prune_slices(days: int, batch_size: int) -> list[dict[str, Any]]:
    """A thin slice (the oldest 10 days), then a thick one (the next 30), each alone.

    A dry run first, so that neither pays for importing the command or the first queries.
    """
    from django.core.management import call_command

    with open(os.devnull, "w") as discard:
        call_command(
            "klarefi_prune_events",
            "--older-than",
            f"{days - 10}d",
            "--dry-run",
            stdout=discard,
            stderr=discard,
        )
    return [
        run_prune(older_than, batch_size, trace_memory=True)
        for older_than in (days - 10, days - 40)
    ]


def prune_during_ingest(
    handler: Any, requests: Requests, older_than_days: int, batch_size: int, before_events: int
) -> dict[str, Any]:
    """Ingest (the receiver and the baseline in turns) while a prune runs in another thread,
    with its own connection; against the same ingest just before."""
    from django.db import connections

    before = IngestSamples()
    before.run(handler, requests, before_events)
    pruned: dict[str, Any] = {}
    finished = threading.Event()

    def prune() -> None:
        try:
            pruned.update(run_prune(older_than_days, batch_size, trace_memory=False))
        except Exception as exc:
            pruned["prune_error"] = repr(exc)
        finally:
            connections.close_all()
            finished.set()

    worker = threading.Thread(target=prune)
    worker.start()
    during = IngestSamples()
    while True:  # at least one chunk pair, even if the prune is quick
        during.run(handler, requests, DURING_CHUNK_EVENTS)
        if finished.is_set():
            break
    worker.join()
    before_summary, during_summary = before.summary(), during.summary()
    return {
        "prune": pruned,
        "before": before_summary,
        "during": during_summary,
        "klarefi_rate_during_vs_before": during_summary["klarefi_per_second"]
        / before_summary["klarefi_per_second"],
        "baseline_rate_during_vs_before": during_summary["baseline_per_second"]
        / before_summary["baseline_per_second"],
    }
