"""What happens when a delivery is refused: a log record (rate-limited), the
``webhook_rejected`` signal, and the rejections metric.

The receiver, the DRF API view and the DRF authentication class call
:func:`report_rejection` for every delivery they answer 4xx or 503 before anything is
stored. It never raises, and nothing it calls changes the answer.

Rejections of one kind from one client can come by the thousand (a sender with a stale
secret, a scanner): each is counted and signalled, but logged at most once per client and
reason per minute. The next record of that client and reason, or a summary record, says how
many were left unlogged (``klarefi_summarised``). The limit is per process: each server
worker keeps its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django_klarefi import metrics
from django_klarefi.log_fields import log_extra
from django_klarefi.signal_sending import send_robustly
from django_klarefi.signals import webhook_rejected

__all__ = ["REJECTION_LOG", "RejectionLog", "Summary", "report_rejection"]

logger = logging.getLogger("django_klarefi.rejections")

#: Seconds during which repeated rejections of one client and reason are summarised.
WINDOW = 60.0

#: How many clients and reasons are tracked at once; past that, new clients share one
#: entry per reason (client ``"(many clients)"``), so memory stays bounded under a flood.
CAPACITY = 1024

OVERFLOW_CLIENT = "(many clients)"


@dataclass(frozen=True)
class Summary:
    """Rejections of one client and reason that were counted but not logged."""

    client: str
    reason: str
    count: int


@dataclass
class Decision:
    """What to log for one rejection."""

    #: Log this rejection now.
    log: bool
    #: The client it is logged under (``OVERFLOW_CLIENT`` when too many are tracked).
    client: str
    #: When logged: how many like it were left unlogged since the last record.
    summarised: int = 0
    #: Summaries of other clients and reasons whose minute is over.
    summaries: list[Summary] = field(default_factory=list)


class RejectionLog:
    """Decides which rejections are logged: at most one per client and reason per
    ``window`` seconds, read from ``clock`` (``time.monotonic``; tests pass their own)."""

    def __init__(
        self,
        *,
        window: float = WINDOW,
        capacity: int = CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window, self.capacity, self.clock = window, capacity, clock
        self._lock = threading.Lock()
        # (client, reason) -> [when its record was logged, how many were not since]
        self._entries: dict[tuple[str, str], list[float]] = {}
        self._next_sweep = float("-inf")

    def clear(self) -> None:
        """Forget every client (tests, between cases)."""
        with self._lock:
            self._entries.clear()
            self._next_sweep = float("-inf")

    def admit(self, client: str, reason: str) -> Decision:
        """Record one rejection of ``client`` for ``reason``, and say what to log."""
        with self._lock:
            now = self.clock()
            summaries = self._sweep(now, keep=(client, reason))
            key = (client, reason)
            if key not in self._entries and len(self._entries) >= self.capacity:
                key = (OVERFLOW_CLIENT, reason)
            entry = self._entries.get(key)
            if entry is not None and now - entry[0] < self.window:
                entry[1] += 1
                return Decision(log=False, client=key[0], summaries=summaries)
            summarised = int(entry[1]) if entry is not None else 0
            self._entries[key] = [now, 0]
            return Decision(log=True, client=key[0], summarised=summarised, summaries=summaries)

    def _sweep(self, now: float, *, keep: tuple[str, str]) -> list[Summary]:
        """Once per window: forget the entries whose window is over, and return the
        summaries of those that left rejections unlogged (``keep``'s comes with its record)."""
        if now < self._next_sweep:
            return []
        self._next_sweep = now + self.window
        summaries = []
        for key, (logged_at, count) in list(self._entries.items()):
            if now - logged_at >= self.window and key != keep:
                del self._entries[key]
                if count:
                    summaries.append(Summary(key[0], key[1], int(count)))
        return summaries


#: The process's rejection log.
REJECTION_LOG = RejectionLog()


def report_rejection(
    *,
    client: str,
    status: int,
    reason: str,
    detail: str,
    sender: Any,
    endpoint: str | None = None,
    path: str | None = None,
) -> None:
    """Report one delivery answered ``status`` (4xx or 503) before anything was stored.

    ``reason`` is the answer's JSON ``error`` and ``detail`` its ``detail`` (neither may
    hold the body or a secret); ``client`` the remote address; ``endpoint`` the endpoint's
    configured name, None when not known (never a name taken unchecked from the URL);
    ``path`` the request's path, for the log line; ``sender`` the view or class that
    answered. Logs a warning (rate-limited, see :class:`RejectionLog`), sends
    ``webhook_rejected`` and counts ``klarefi_webhook_rejections_total``. Never raises.
    """
    try:
        _log(client, reason, detail, endpoint, path)
    except Exception:  # a broken handler of the project's logging must not change the answer
        logger.exception("Could not log a rejected Klarefi webhook.")
    send_robustly(
        webhook_rejected,
        "webhook_rejected",
        sender,
        log_extra(endpoint=endpoint, reason=reason, client=client),
        client=client,
        status=status,
        reason=reason,
        endpoint=endpoint,
        detail=detail,
    )
    try:
        metrics.count_rejection(endpoint, reason)
    except Exception:
        logger.exception("Could not count a rejected Klarefi webhook.")


def _log(client: str, reason: str, detail: str, endpoint: str | None, path: str | None) -> None:
    decision = REJECTION_LOG.admit(client, reason)
    for summary in decision.summaries:
        logger.warning(
            "Rejected %d more Klarefi webhooks from %s: %s (not logged one by one).",
            summary.count,
            summary.client,
            summary.reason,
            extra=log_extra(reason=summary.reason, client=summary.client, summarised=summary.count),
        )
    if not decision.log:
        return
    where = f" to {path}" if path else ""
    repeated = (
        f"; {decision.summarised} more like it since the last record were not logged"
        if decision.summarised
        else ""
    )
    logger.warning(
        "Rejected Klarefi webhook%s from %s: %s (%s)%s",
        where,
        decision.client,
        reason,
        detail,
        repeated,
        extra=log_extra(
            endpoint=endpoint,
            reason=reason,
            client=decision.client,
            summarised=decision.summarised,
        ),
    )
