"""``manage.py klarefi_status``: does anything about the Klarefi events need a person?

Per endpoint: the counts by status, the oldest pending and failed events, the last
delivery, and the failed events whose Klarefi retries are over. Exit status 0 (nothing
needs a person), 1 (something does) or 2 (it could not tell: the database is down, say),
for cron, a Kubernetes probe or Nagios. ``--json`` prints the same as one JSON object.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from django_klarefi.durations import duration_argument
from django_klarefi.health import (
    DEFAULT_MAX_PENDING_AGE,
    EndpointHealth,
    EventBrief,
    endpoint_health,
    endpoint_names,
)
from django_klarefi.log_fields import log_extra

logger = logging.getLogger("django_klarefi.status")

#: Exit statuses.
OK, NEEDS_ATTENTION, UNKNOWN = 0, 1, 2


@dataclass(frozen=True)
class Problem:
    """Something that needs a person."""

    endpoint: str
    #: ``retries_over``, ``pending_too_old`` or ``silence``.
    kind: str
    message: str


class Command(BaseCommand):
    help = (
        "Report on the Klarefi events, per endpoint: counts by status, the oldest pending "
        "and failed events, the last delivery, the failed events whose Klarefi retries are "
        "over. Exits 0 when nothing needs a person, 1 when something does, 2 when it could "
        "not tell (the database is down, say)."
    )
    requires_system_checks: list[str] = []  # a probe: never fails on a check of its own

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print one JSON object.")
        parser.add_argument(
            "--max-pending-age",
            type=duration_argument,
            default=DEFAULT_MAX_PENDING_AGE,
            metavar="DURATION",
            help="A pending event older than this needs a person (default: 10m).",
        )
        parser.add_argument(
            "--max-silence",
            type=duration_argument,
            metavar="DURATION",
            help="No delivery for longer than this needs a person (default: not checked).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        max_pending_age: timedelta = options["max_pending_age"]
        max_silence: timedelta | None = options["max_silence"]
        try:
            healths = [endpoint_health(name, now) for name in endpoint_names()]
        except Exception as exc:  # the database is down, or anything else: cannot tell
            logger.error("klarefi_status could not tell: %s", exc, exc_info=True)
            self._unknown(exc, as_json=options["json"])
            raise SystemExit(UNKNOWN) from None
        problems = [
            problem
            for health in healths
            for problem in _problems(health, now, max_pending_age, max_silence)
        ]
        for problem in problems:
            logger.warning(
                "klarefi_status: %s",
                problem.message,
                extra=log_extra(endpoint=problem.endpoint, reason=problem.kind),
            )
        if options["json"]:
            report = _as_json(healths, problems, now, max_pending_age, max_silence)
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self._write(healths, problems, now)
        if problems:
            raise SystemExit(NEEDS_ATTENTION)

    def _unknown(self, exc: Exception, *, as_json: bool) -> None:
        detail = f"{type(exc).__name__}: {exc}".strip()
        if as_json:
            self.stdout.write(json.dumps({"status": "unknown", "error": detail}, indent=2))
        else:
            self.stderr.write(f"Could not tell whether anything needs a person: {detail}")

    def _write(self, healths: list[EndpointHealth], problems: list[Problem], now: datetime) -> None:
        write = self.stdout.write
        for health in healths:
            write(f"Endpoint {health.endpoint}")
            for status, count in health.counts.items():
                write(f"  {status + ':':<11} {_count(count.value, count.estimated)}")
            write(f"  oldest pending: {_brief(health.oldest_pending, now)}")
            write(f"  oldest failed:  {_brief(health.oldest_failed, now)}")
            write(f"  last delivery:  {_moment(health.last_delivery_at, now)}")
            over = health.retries_over
            write(f"  failed, Klarefi's retries over: {_count(over.value, over.estimated)}")
            for event in health.retries_over_events:
                write(f"    {_brief(event, now)}")
        if problems:
            write(self.style.ERROR("Needs attention:"))
            for problem in problems:
                write(self.style.ERROR(f"  {problem.endpoint}: {problem.message}"))
        else:
            write(self.style.SUCCESS("Nothing needs a person."))


def _problems(
    health: EndpointHealth, now: datetime, max_pending_age: timedelta, max_silence: timedelta | None
) -> list[Problem]:
    problems = []
    over = health.retries_over
    if over.value:
        problems.append(
            Problem(
                health.endpoint,
                "retries_over",
                f"{_count(over.value, over.estimated)} failed event(s) that Klarefi will not "
                "deliver again: fix the cause, then run klarefi_reprocess --failed.",
            )
        )
    pending = health.oldest_pending
    if pending is not None and now - pending.received_at > max_pending_age:
        problems.append(
            Problem(
                health.endpoint,
                "pending_too_old",
                f"event {pending.event_id} has been pending for {_age(now - pending.received_at)}"
                f" (over {_age(max_pending_age)}): is the task worker running?",
            )
        )
    if max_silence is not None:
        last = health.last_delivery_at
        if last is None or now - last > max_silence:
            since = "ever" if last is None else f"for {_age(now - last)}"
            problems.append(
                Problem(
                    health.endpoint,
                    "silence",
                    f"no delivery {since} (over {_age(max_silence)}).",
                )
            )
    return problems


def _as_json(
    healths: list[EndpointHealth],
    problems: list[Problem],
    now: datetime,
    max_pending_age: timedelta,
    max_silence: timedelta | None,
) -> dict[str, Any]:
    return {
        "status": "needs_attention" if problems else "ok",
        "now": now.isoformat(),
        "max_pending_age_seconds": max_pending_age.total_seconds(),
        "max_silence_seconds": max_silence.total_seconds() if max_silence else None,
        "problems": [
            {"endpoint": p.endpoint, "kind": p.kind, "message": p.message} for p in problems
        ],
        "endpoints": {
            health.endpoint: {
                "counts": {status: count.value for status, count in health.counts.items()},
                "estimated": [s for s, count in health.counts.items() if count.estimated],
                "oldest_pending": _brief_json(health.oldest_pending),
                "oldest_failed": _brief_json(health.oldest_failed),
                "last_delivery_at": (
                    health.last_delivery_at.isoformat() if health.last_delivery_at else None
                ),
                "retries_over": {
                    "count": health.retries_over.value,
                    "estimated": health.retries_over.estimated,
                    "latest": [_brief_json(e) for e in health.retries_over_events],
                },
            }
            for health in healths
        },
    }


def _brief_json(event: EventBrief | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "received_at": event.received_at.isoformat(),
        "deliveries": event.deliveries,
        "attempts": event.attempts,
    }


def _brief(event: EventBrief | None, now: datetime) -> str:
    if event is None:
        return "none"
    return (
        f"{event.event_id}  {event.event_type}  received {_moment(event.received_at, now)}, "
        f"{event.deliveries} deliveries, {event.attempts} attempts"
    )


def _count(value: int, estimated: bool) -> str:
    return f"about {value:,}" if estimated else f"{value:,}"


def _moment(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    local = timezone.localtime(moment) if timezone.is_aware(moment) else moment
    return f"{local.isoformat(' ', 'seconds')} ({_age(now - moment)} ago)"


def _age(age: timedelta) -> str:
    """``age`` the short way: 45s, 14m, 3h 5m, 2d 4h."""
    seconds = max(int(age.total_seconds()), 0)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{seconds}s"
