"""``manage.py klarefi_reprocess``: run stored events' handlers again.

Every event goes through :func:`django_klarefi.processing.process_event`, the path the
view, the admin action and the task use, so signals fire and status, attempts and error
are recorded the same way.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from django_klarefi.durations import InvalidDuration, cutoff, duration_argument
from django_klarefi.endpoint_settings import endpoint_name_argument
from django_klarefi.models import Event
from django_klarefi.personal_data import ERASED_OUTCOME, error_class
from django_klarefi.processing import Outcome, Result, events_in_pk_order, process_event
from django_klarefi.progress import Progress, add_quiet_argument, for_command

Status = Event.Status

#: The only columns the listing needs: never the payloads.
COLUMNS = ("pk", "event_id", "event_type", "status", "received_at")

#: The summary's words for each outcome, in the summary's order.
SUMMARY: dict[str, str] = {
    Outcome.PROCESSED: "processed",
    Outcome.FAILED: "failed",
    Outcome.ALREADY_PROCESSED: "already processed",
    Outcome.IN_FLIGHT: "in flight",
    ERASED_OUTCOME: "erased",
}

#: Why an erased event is not run.
ERASED_DETAIL = "its payload data was erased; it is never run again"


#: The options that select events; at least one is required.
SELECTORS = ("failed", "pending", "event_ids", "event_types", "since", "until", "older_than")


class Command(BaseCommand):
    help = (
        "Run stored Klarefi events' handlers again, through the same processing path as the "
        "receiver: signals fire, and status, attempts and error are updated. Processed events "
        "are skipped unless --force. Exits 1 if any event still fails or an --event-id is "
        "not stored."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        chosen = parser.add_argument_group(
            "selecting events", "Give at least one. Several narrow the selection together."
        )
        chosen.add_argument("--failed", action="store_true", help="Events whose status is failed.")
        chosen.add_argument(
            "--pending",
            action="store_true",
            help="Events stored but not processed yet (with --failed: both).",
        )
        chosen.add_argument(
            "--event-id", nargs="+", dest="event_ids", metavar="ID", help="These event ids."
        )
        chosen.add_argument(
            "--type",
            action="append",
            dest="event_types",
            metavar="TYPE",
            help="Events of this type, such as case.completed (repeat for several).",
        )
        chosen.add_argument(
            "--since",
            type=_since,
            metavar="WHEN",
            help="Received at or after this date or datetime (2026-01-31, 2026-01-31T12:00).",
        )
        chosen.add_argument(
            "--until",
            type=_until,
            metavar="WHEN",
            help="Received before this datetime; a date alone includes that whole day.",
        )
        chosen.add_argument(
            "--older-than",
            type=duration_argument,
            metavar="DURATION",
            help="Received longer ago than this (90d, 12h, 10m, 30s). With --pending, this "
            "recovers events that were stored but never enqueued.",
        )
        chosen.add_argument(
            "--endpoint",
            type=endpoint_name_argument,
            metavar="NAME",
            help="Only events received by this endpoint (with another option: it narrows "
            "that selection; it selects nothing alone).",
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run processed events again too (by default they are skipped).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="List the events that would run; change nothing."
        )
        add_quiet_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        selection = self._selection(options)
        force: bool = options["force"]
        dry_run: bool = options["dry_run"]
        named: list[str] = options["event_ids"] or []
        # Skipped events are listed one by one when named or asked for (-v 2); otherwise
        # counted, so "--type case.completed" does not print every processed event.
        list_skipped = bool(named) or options["verbosity"] >= 2

        named_events = Event.objects.filter(event_id__in=named)
        if options["endpoint"] is not None:
            named_events = named_events.filter(endpoint=options["endpoint"])
        stored = named_events.values_list("event_id", flat=True)
        missing = sorted(set(named) - set(stored)) if named else []
        for event_id in missing:
            self.stdout.write(self.style.ERROR(f"not found          {event_id}"))

        outcomes: Counter[str] = Counter()
        # Erased events are never run again: left out, and listed or counted as skipped.
        erased = selection.filter(payload_erased_at__isnull=False)
        if list_skipped:
            for event in events_in_pk_order(erased.only(*COLUMNS)):
                outcomes[ERASED_OUTCOME] += 1
                self._line(ERASED_OUTCOME, event, ERASED_DETAIL)
        else:
            outcomes[ERASED_OUTCOME] = erased.count()
        selection = selection.filter(payload_erased_at__isnull=True)
        if not force:
            skipped = selection.filter(status=Status.PROCESSED)
            if list_skipped:
                for event in events_in_pk_order(skipped.only(*COLUMNS)):
                    outcomes[Outcome.ALREADY_PROCESSED] += 1
                    self._line(Outcome.ALREADY_PROCESSED, event, "skipped; --force runs it again")
            else:
                outcomes[Outcome.ALREADY_PROCESSED] = skipped.count()
            selection = selection.exclude(status=Status.PROCESSED)

        would_run = 0
        if dry_run:
            for event in events_in_pk_order(selection.only(*COLUMNS)):
                would_run += 1
                self.stdout.write(
                    f"would run          {event.event_id}  {event.event_type}  "
                    f"({event.status}, received {_moment(event.received_at)})"
                )
        else:
            total = selection.count()
            with for_command(self, total, options, description="reprocess") as progress:
                for event in events_in_pk_order(selection.only(*COLUMNS)):
                    result = process_event(event, force=force)
                    outcomes[result.outcome] += 1
                    self._line(result.outcome, event, _detail(result), progress)
                    progress.advance()

        if dry_run:
            self.stdout.write(
                f"Dry run: {_events(would_run)} would run; "
                f"{outcomes[Outcome.ALREADY_PROCESSED]} already processed (skipped)"
                + (
                    f"; {outcomes[ERASED_OUTCOME]} erased (skipped)"
                    if outcomes[ERASED_OUTCOME]
                    else ""
                )
                + (f"; {len(missing)} not found" if missing else "")
                + ". Nothing was changed."
            )
        else:
            counts = ", ".join(
                f"{outcomes[outcome]} {words}"
                for outcome, words in SUMMARY.items()
                if outcome != ERASED_OUTCOME or outcomes[outcome]  # erased: only when any
            )
            self.stdout.write(
                f"Summary: {_events(sum(outcomes.values()))}, {counts}"
                + (f", {len(missing)} not found" if missing else "")
                + "."
            )
        problems = []
        if outcomes[Outcome.FAILED]:
            problems.append(f"{_events(outcomes[Outcome.FAILED])} still failing")
        if missing:
            problems.append(f"{_events(len(missing))} not found")
        if problems:
            raise CommandError("; ".join(problems) + ".")

    def _selection(self, options: dict[str, Any]) -> QuerySet[Event]:
        if not any(options[name] for name in SELECTORS):
            # Never "everything" by accident.
            raise CommandError(
                "Choose events: --failed, --pending, --event-id, --type, --since, --until "
                "or --older-than (see --help)."
            )
        events = Event.objects.all()
        if options["endpoint"] is not None:
            events = events.filter(endpoint=options["endpoint"])
        statuses = [
            status
            for status, flag in ((Status.FAILED, "failed"), (Status.PENDING, "pending"))
            if options[flag]
        ]
        if statuses:
            events = events.filter(status__in=statuses)
        if options["event_ids"]:
            events = events.filter(event_id__in=options["event_ids"])
        if options["event_types"]:
            events = events.filter(event_type__in=options["event_types"])
        if options["since"] is not None:
            events = events.filter(received_at__gte=options["since"])
        if options["until"] is not None:
            events = events.filter(received_at__lt=options["until"])
        if options["older_than"] is not None:
            try:
                events = events.filter(received_at__lt=cutoff(options["older_than"]))
            except InvalidDuration as exc:
                raise CommandError(f"--older-than: {exc}") from None
        return events

    def _line(
        self, outcome: str, event: Event, detail: str, progress: Progress | None = None
    ) -> None:
        styles: dict[str, Callable[[str], str]] = {
            Outcome.PROCESSED: self.style.SUCCESS,
            Outcome.FAILED: self.style.ERROR,
        }
        style = styles.get(outcome, self.style.WARNING)
        line = style(
            f"{SUMMARY.get(outcome, str(outcome)):<18} {event.event_id}  {event.event_type}"
        ) + (f"  {detail}" if detail else "")
        if progress is None:
            self.stdout.write(line)
        else:
            progress.write(line, self.stdout.write)


def _detail(result: Result) -> str:
    outcome = result.outcome
    if outcome == Outcome.PROCESSED and result.attempt is not None:
        return f"attempt {result.attempt}"
    if outcome == Outcome.FAILED and result.attempt is not None:
        # The exception's class only: its message can quote the payload (personal data).
        # The admin shows the whole traceback to users allowed to see it.
        return f"attempt {result.attempt}: {error_class(result.error) or 'see the admin'}"
    if outcome == Outcome.ALREADY_PROCESSED:
        return "processed meanwhile; skipped"
    if outcome == Outcome.IN_FLIGHT:
        return "being processed elsewhere; left alone"
    if outcome == ERASED_OUTCOME:
        return ERASED_DETAIL
    return ""


def _events(count: int) -> str:
    return f"{count} event" if count == 1 else f"{count} events"


def _moment(value: datetime) -> str:
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.isoformat(" ", "seconds")


def _since(text: str) -> datetime:
    return _when(text, end_of_day=False)


def _until(text: str) -> datetime:
    return _when(text, end_of_day=True)


def _when(text: str, *, end_of_day: bool) -> datetime:
    """A datetime, or a date: its start, or (``end_of_day``) the start of the next day.

    Naive values are in the current time zone.
    """
    try:
        # The date first: parse_datetime() reads "2026-01-31" as that day's midnight.
        day = parse_date(text.strip())
        moment = None if day is not None else parse_datetime(text.strip())
    except ValueError:  # well formed, but out of range: "2026-13-01"
        moment = day = None
    if moment is None and day is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date or datetime: use 2026-01-31 or 2026-01-31T12:00."
        )
    if moment is None:
        assert isinstance(day, date)
        if end_of_day:
            if day == date.max:
                raise argparse.ArgumentTypeError(f"{text!r} is the last day there is.")
            day += timedelta(days=1)
        moment = datetime.combine(day, time())
    if timezone.is_naive(moment) and settings.USE_TZ:
        moment = timezone.make_aware(moment)
    return moment
