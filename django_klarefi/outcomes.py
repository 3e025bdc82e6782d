"""What a delivery or a processing attempt ends in: the :class:`Outcome` and its :class:`Result`."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["EnqueueFailed", "Outcome", "Result"]


class Outcome(enum.StrEnum):
    """What became of a delivery or a processing attempt."""

    #: The handlers ran now and succeeded.
    PROCESSED = "processed"
    #: The event had been processed before; nothing ran (a redelivery was counted).
    ALREADY_PROCESSED = "already_processed"
    #: Stored as pending, and a task was enqueued after commit.
    QUEUED = "queued"
    #: Stored as pending, but enqueueing the task raised: retry the delivery.
    NOT_QUEUED = "not_queued"
    #: A handler (or the commit of their writes) failed; stored as failed with the error.
    FAILED = "failed"
    #: Another process is running this event's handlers right now: retry later.
    IN_FLIGHT = "in_flight"
    #: The event's row no longer exists (deleted meanwhile); nothing ran.
    MISSING = "missing"
    #: The event's personal data was erased: it is never run again (a redelivery is
    #: counted, and answered 200).
    ERASED = "erased"


@dataclass(frozen=True)
class Result:
    """What a delivery or an attempt ended in, with the values it recorded (never read
    back from the ``Event`` object that receivers were given)."""

    outcome: Outcome
    event_id: str
    #: The attempt's number (the row's ``attempts`` as recorded), when an attempt ran.
    attempt: int | None = None
    #: The traceback recorded for a failed attempt.
    error: str = ""


class EnqueueFailed(Exception):
    """The task backend refused the task; the event stays pending."""
