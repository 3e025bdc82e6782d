"""Watching a management command from the side: its transactions, batches and lines.

Each watcher keeps running aggregates only (never a list that grows with the rows), so
that it does not add to the peak memory the command is measured at.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Seconds between two looks at the command's backend in ``pg_stat_activity``.
SAMPLE_INTERVAL = 0.02


class TransactionSampler(threading.Thread):
    """Look at one PostgreSQL backend every :data:`SAMPLE_INTERVAL` seconds, from a
    connection of its own, and keep the longest transaction seen open.

    A transaction that wrote has a ``backend_xid``; it holds the row locks of what it wrote
    until it ends. The durations are lower bounds (from ``xact_start`` to the last look
    that still saw the transaction), to within one interval.
    """

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.done = threading.Event()
        self.samples = 0
        self.transactions = 0
        self.longest_writing = 0.0
        self.longest_any = 0.0
        self._last_start: Any = None
        self.error: str | None = None

    def run(self) -> None:
        import psycopg
        from django.conf import settings

        database: dict[str, Any] = settings.DATABASES["default"]
        try:
            with psycopg.connect(
                host=database["HOST"],
                port=database["PORT"],
                user=database["USER"],
                password=database["PASSWORD"],
                dbname=database["NAME"],
                autocommit=True,  # each look is a fresh snapshot of pg_stat_activity
            ) as watcher:
                while not self.done.is_set():
                    row = watcher.execute(
                        "SELECT xact_start, EXTRACT(EPOCH FROM clock_timestamp() - xact_start),"
                        " backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = %s",
                        [self.pid],
                    ).fetchone()
                    self.samples += 1
                    if row is not None and row[0] is not None:
                        self._saw(row[0], float(row[1]), bool(row[2]))
                    time.sleep(SAMPLE_INTERVAL)
        except Exception as exc:  # reported, not raised: the run goes on
            self.error = repr(exc)

    def _saw(self, start: Any, open_for: float, wrote: bool) -> None:
        if start != self._last_start:
            self._last_start = start
            self.transactions += 1
        self.longest_any = max(self.longest_any, open_for)
        if wrote:
            self.longest_writing = max(self.longest_writing, open_for)

    def finish(self) -> dict[str, Any]:
        """Stop looking; what was seen."""
        self.done.set()
        self.join()
        return {
            "samples": self.samples,
            "interval_seconds": SAMPLE_INTERVAL,
            "transactions_seen": self.transactions,
            "longest_writing_transaction_seconds": self.longest_writing,
            "longest_transaction_seconds": self.longest_any,
            "sampler_error": self.error,
        }


class LineClock(io.TextIOBase):
    """A command's output stream that counts its lines and times those that start with
    ``prefix``: the longest and mean interval between two of them."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.lines = 0
        self.matched = 0
        self.first_line = ""
        self.last_line = ""
        self.last_match = ""
        self.longest_interval = 0.0
        self.intervals_total = 0.0
        self._last: float | None = None

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for line in text.splitlines():
            self.lines += 1
            self.first_line = self.first_line or line
            self.last_line = line
            if self.prefix and line.startswith(self.prefix):
                now = time.perf_counter()
                if self._last is not None:
                    self.longest_interval = max(self.longest_interval, now - self._last)
                    self.intervals_total += now - self._last
                self._last = now
                self.matched += 1
                self.last_match = line
        return len(text)

    @property
    def mean_interval(self) -> float | None:
        return self.intervals_total / (self.matched - 1) if self.matched > 1 else None


class MemorySampler(threading.Thread):
    """A peak-so-far reading (``read()``, in bytes) at moments that double (0.1 s, 0.2 s,
    0.4 s, ...) into the run: the peak reached by then, in a list of a dozen entries
    whatever the run's length. ``read`` returns None when there is nothing to read."""

    def __init__(self, read: Callable[[], int | None], first: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.read = read
        self.done = threading.Event()
        self.started = time.perf_counter()
        self.next_moment = first
        self.checkpoints: list[tuple[float, int]] = []

    def run(self) -> None:
        while not self.done.wait(0.02):
            elapsed = time.perf_counter() - self.started
            if elapsed >= self.next_moment:
                peak = self.read()
                if peak is not None:
                    self.checkpoints.append((elapsed, peak))
                self.next_moment *= 2

    def peak_by(self, moment: float) -> tuple[float, int] | None:
        """The last checkpoint at or before ``moment`` seconds (else the first): when it
        was taken and the peak reached by then."""
        before = [checkpoint for checkpoint in self.checkpoints if checkpoint[0] <= moment]
        if before:
            return before[-1]
        return self.checkpoints[0] if self.checkpoints else None

    def finish(self) -> None:
        self.done.set()
        self.join()


def peak_rss(pid: int) -> int | None:
    """The peak resident set size of process ``pid`` so far (``VmHWM``), in bytes."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None  # a zombie has no memory lines
