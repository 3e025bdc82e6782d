"""Durations written the short way, "90d", "12h", "10m", "30s", "2w", and the cutoffs they give.

Used by ``klarefi_prune_events --older-than``, ``klarefi_reprocess --older-than`` and the
``KLAREFI_EVENT_RETENTION`` setting (checked by ``django_klarefi.E009``).
"""

from __future__ import annotations

import argparse
import re
from datetime import datetime, timedelta

from django.utils import timezone

__all__ = ["UNITS", "InvalidDuration", "cutoff", "duration_argument", "parse_duration"]

#: Unit letter -> the ``timedelta`` keyword it stands for.
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

# ASCII digits only, and at most 12 of them: "٣d" and a 5,000-digit number are not durations.
_DURATION = re.compile(r"([0-9]{1,12})([smhdw])", re.ASCII)


class InvalidDuration(ValueError):
    """Text that is not a duration such as "90d"; the message says what is accepted."""


def parse_duration(text: str) -> timedelta:
    """The ``timedelta`` of ``text``: a whole number and one unit (s, m, h, d or w).

    Surrounding whitespace and upper case are allowed ("90D"). Zero, negative numbers,
    fractions and compound forms ("1d12h") are not: write "36h".
    """
    if not isinstance(text, str):
        raise InvalidDuration(
            f"A duration must be a string such as 90d, not {type(text).__name__}."
        )
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise InvalidDuration(
            f"{shown!r} is not a duration: use a whole number and a unit, such as "
            "90d, 12h, 10m or 30s (units: s, m, h, d, w)."
        )
    number, unit = int(match[1]), match[2]
    if number == 0:
        raise InvalidDuration(f"{text.strip()!r} is not a duration: it must be longer than zero.")
    try:
        return timedelta(**{UNITS[unit]: number})
    except OverflowError:
        raise InvalidDuration(f"{text.strip()!r} is too long to be a duration.") from None


def duration_argument(text: str) -> timedelta:
    """:func:`parse_duration` as an argparse ``type=``: errors become usage errors."""
    try:
        return parse_duration(text)
    except InvalidDuration as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cutoff(duration: timedelta, *, now: datetime | None = None) -> datetime:
    """The moment ``duration`` before ``now`` (default: ``timezone.now()``).

    Raises :class:`InvalidDuration` when that moment is before year 1.
    """
    moment = timezone.now() if now is None else now
    try:
        return moment - duration
    except OverflowError:
        raise InvalidDuration(f"{duration.days} days ago is before year 1.") from None
