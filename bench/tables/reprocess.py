"""``klarefi_reprocess --failed`` over many failed events: memory and progress.

The command runs as cron would run it: its own process (``python -m django
klarefi_reprocess --failed`` with the bench's settings), without ``--quiet``, its stderr
a pipe (not a terminal: the plain progress lines) read here line by line, its stdout (one
line per event) to ``/dev/null``. Its memory is its resident set: the peak reached early
on (``VmHWM`` at moments that double through the run; early means by a tenth of the run,
and after at least :data:`EARLY_CHUNKS` chunks of the command's keyset walk) against its
peak over the whole run (``ru_maxrss``). Not under tracemalloc, which would make the run
about three times as long.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.tables.watch import LineClock, MemorySampler, peak_rss

ROOT = Path(__file__).resolve().parent.parent.parent
#: The early peak is taken after at least this many chunks of the walk: the peak of a
#: keyset walk is reached when the first chunk gives way to the second.
EARLY_CHUNKS = 3
PROGRESS_PREFIX = "reprocess: "


def make_failed(rows: int) -> int:
    """Exactly ``rows`` failed events (the lowest ids whose payload was not erased: an
    erased event is never run again), every other event processed."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE django_klarefi_event SET status = 'processed' WHERE status <> 'processed'"
        )
        cursor.execute(
            "UPDATE django_klarefi_event SET status = 'failed', processed_at = NULL WHERE id IN "
            "(SELECT id FROM django_klarefi_event WHERE payload_erased_at IS NULL "
            "ORDER BY id LIMIT %s)",
            [rows],
        )
        failed: int = cursor.rowcount
        cursor.execute("ANALYZE django_klarefi_event")
    return failed


def reprocess_failed(rows: int) -> dict[str, Any]:
    """Make ``rows`` events failed, then reprocess them in a process of their own, watched.

    The settings are this process's (``DJANGO_SETTINGS_MODULE`` and the bench's database,
    from the environment).
    """
    from django_klarefi.models import Event
    from django_klarefi.processing import CHUNK_SIZE

    failed = make_failed(rows)
    progress = LineClock(prefix=PROGRESS_PREFIX)
    command = [sys.executable, "-m", "django", "klarefi_reprocess", "--failed"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    began = time.perf_counter()
    with open(os.devnull, "wb") as listing:
        child = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=listing, stderr=subprocess.PIPE, text=True
        )
    memory = MemorySampler(lambda: peak_rss(child.pid))
    memory.start()
    assert child.stderr is not None
    for line in child.stderr:
        progress.write(line)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - began
    memory.finish()
    rate = failed / seconds if seconds else 0
    early = memory.peak_by(max(seconds / 10, EARLY_CHUNKS * CHUNK_SIZE / rate if rate else 0))
    return {
        "command": " ".join(["python", *command[1:]]),
        "failed_events": failed,
        "reprocessed": failed - Event.objects.filter(status="failed").count(),
        "seconds": seconds,
        "events_per_second": rate,
        "peak_rss_mib": usage.ru_maxrss / 1024,  # KiB on Linux
        "early_peak_at_seconds": None if early is None else early[0],
        "early_peak_rss_mib": None if early is None else early[1] / 2**20,
        "progress_lines": progress.matched,
        "first_progress_line": progress.first_line,
        "last_progress_line": progress.last_match,
        "exit_code": child.returncode,
        "last_stderr_line": progress.last_line,
    }
