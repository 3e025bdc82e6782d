"""``klarefi_reprocess --failed`` over many failed events: memory and progress.

The command runs in process without ``--quiet``; its stderr is the write end of a real
pipe (so not a terminal: the plain progress lines, as under cron), read by a thread that
counts the lines. Its stdout, one line per event, goes to ``/dev/null``. Peak memory is
tracemalloc's (Python allocations), taken at moments that double through the run, so that
the peak reached early on (by a tenth of the run, and after at least :data:`EARLY_CHUNKS`
chunks of the command's keyset walk) can be set against the peak over the whole run.
"""

from __future__ import annotations

import os
import threading
import time
import tracemalloc
from typing import Any

from bench.tables.watch import LineClock, MemorySampler

#: The early peak is taken after at least this many chunks of the walk: the peak of a
#: keyset walk is reached when the first chunk gives way to the second.
EARLY_CHUNKS = 3


def make_failed(rows: int) -> int:
    """Exactly ``rows`` failed events (the lowest ids), every other event processed."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE django_klarefi_event SET status = 'processed' WHERE status <> 'processed'"
        )
        cursor.execute(
            "UPDATE django_klarefi_event SET status = 'failed', processed_at = NULL WHERE id IN "
            "(SELECT id FROM django_klarefi_event ORDER BY id LIMIT %s)",
            [rows],
        )
        failed: int = cursor.rowcount
        cursor.execute("ANALYZE django_klarefi_event")
    return failed


def reprocess_failed(rows: int) -> dict[str, Any]:
    """Make ``rows`` events failed, then reprocess them, watched."""
    from django.core.management import call_command
    from django.core.management.base import CommandError

    from django_klarefi.models import Event

    failed = make_failed(rows)
    read_end, write_end = os.pipe()
    progress = LineClock()

    def read_progress() -> None:
        with os.fdopen(read_end) as lines:
            for line in lines:
                progress.write(line)

    reader = threading.Thread(target=read_progress, daemon=True)
    reader.start()
    error = None
    tracemalloc.start()
    memory = MemorySampler()
    memory.start()
    began = time.perf_counter()
    try:
        with open(os.devnull, "w") as listing, os.fdopen(write_end, "w", buffering=1) as stderr:
            call_command("klarefi_reprocess", "--failed", stdout=listing, stderr=stderr)
    except CommandError as exc:  # some still failing: reported below
        error = str(exc)
    finally:
        seconds = time.perf_counter() - began
        memory.finish()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        reader.join(timeout=10)
    from django_klarefi.processing import CHUNK_SIZE

    rate = failed / seconds if seconds else 0
    early = memory.peak_by(max(seconds / 10, EARLY_CHUNKS * CHUNK_SIZE / rate if rate else 0))
    return {
        "failed_events": failed,
        "reprocessed": failed - Event.objects.filter(status="failed").count(),
        "seconds": seconds,
        "events_per_second": rate,
        "peak_mib": peak / 2**20,
        "early_peak_at_seconds": None if early is None else early[0],
        "early_peak_mib": None if early is None else early[1] / 2**20,
        "progress_lines": progress.lines,
        "first_progress_line": progress.first_line,
        "last_progress_line": progress.last_line,
        "error": error,
    }
