"""``manage.py klarefi_prune_events``: delete old events, in small batches.

Each batch is one short transaction that deletes at most ``--batch-size`` rows chosen by a
``LIMIT`` subquery, so no ids are loaded into memory, locks are held briefly, and the
command can be interrupted at any point, keeping what it deleted so far.

With ``KLAREFI_PAYLOAD_RETENTION`` set, it then erases the payload data and error text of
the processed events received longer ago than that, in batches of one short transaction
each too (:func:`django_klarefi.personal_data.erase_events`); their rows stay.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, router, transaction
from django.db.models import QuerySet
from django.utils import timezone

from django_klarefi.conf import MIN_EVENT_RETENTION, SHORT_RETENTION_REASON, conf
from django_klarefi.durations import InvalidDuration, cutoff, duration_argument, parse_duration
from django_klarefi.endpoint_settings import endpoint_name_argument
from django_klarefi.models import Event
from django_klarefi.payload_retention import erase_expired_payloads
from django_klarefi.progress import add_quiet_argument, for_command

Status = Event.Status

DEFAULT_BATCH_SIZE = 1000


class Command(BaseCommand):
    help = (
        "Delete Klarefi events received longer ago than --older-than (default: the "
        "KLAREFI_EVENT_RETENTION setting). Only processed events by default; failed and "
        "pending ones are kept unless chosen with --status. Deletes in batches, each in its "
        "own transaction. With KLAREFI_PAYLOAD_RETENTION set, then erases the payload data "
        "and error text of processed events received longer ago than that (their rows stay)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            type=duration_argument,
            metavar="DURATION",
            help="Delete events received longer ago than this: 90d, 12h, 10m, 30s or 2w. "
            "Default: KLAREFI_EVENT_RETENTION.",
        )
        parser.add_argument(
            "--status",
            nargs="+",
            choices=Status.values,
            default=[Status.PROCESSED],
            dest="statuses",
            help="Which statuses to delete (default: processed).",
        )
        parser.add_argument(
            "--batch-size",
            type=_positive_int,
            default=DEFAULT_BATCH_SIZE,
            metavar="N",
            help=f"Rows deleted per transaction (default: {DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--endpoint",
            type=endpoint_name_argument,
            metavar="NAME",
            help="Only events received by this endpoint (default: every endpoint's).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )
        add_quiet_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        payload_retention = conf.PAYLOAD_RETENTION
        deletes = options["older_than"] is not None or conf.EVENT_RETENTION is not None
        if deletes or payload_retention is None:
            self._prune(options)  # with no retention at all, its error says what to set
        if payload_retention is not None:
            erase_expired_payloads(self, payload_retention, options)

    def _prune(self, options: dict[str, Any]) -> None:
        before = _cutoff(options["older_than"])
        statuses = [status for status in Status.values if status in options["statuses"]]
        batch_size: int = options["batch_size"]
        kept = [status for status in Status.values if status not in statuses]
        endpoint: str | None = options["endpoint"]
        scope = f"received before {_moment(before)}"
        if endpoint is not None:
            scope += f' by endpoint "{endpoint}"'

        counts = {status: _old(status, before, endpoint).count() for status in statuses}
        for status, count in counts.items():
            self.stdout.write(f"{status}: {count} {scope}")
        total = sum(counts.values())
        keeping = f"; {_joined(kept)} events are kept" if kept else ""
        if options["dry_run"]:
            self.stdout.write(
                f"Dry run: would delete {_events(total)} ({_joined(statuses)}) {scope}"
                f"{keeping}. Nothing was deleted."
            )
            return

        deleted = batches = 0
        with for_command(self, total, options, description="prune") as progress:
            for status in statuses:
                remaining, floor = counts[status], None
                # Until the rows counted above are gone: rows that age past the cutoff
                # during the run wait for the next one. A short batch means none are left.
                while remaining > 0:
                    count, floor = _delete_batch(status, before, endpoint, batch_size, floor)
                    if not count:
                        break
                    batches += 1
                    deleted += count
                    remaining -= count
                    progress.write(
                        f"batch {batches}: deleted {count} {status} ({deleted} of {total})",
                        self.stdout.write,
                    )
                    progress.advance(count)
                    if count < batch_size:
                        break
        self.stdout.write(
            self.style.SUCCESS(
                f"Deleted {_events(deleted)} ({_joined(statuses)}) {scope} in "
                f"{batches} batch{'' if batches == 1 else 'es'}{keeping}."
            )
        )


def _old(status: str, before: datetime, endpoint: str | None) -> QuerySet[Event]:
    old = Event.objects.filter(status=status, received_at__lt=before)
    return old if endpoint is None else old.filter(endpoint=endpoint)


def _delete_batch(
    status: str, before: datetime, endpoint: str | None, batch_size: int, floor: datetime | None
) -> tuple[int, datetime | None]:
    """Delete up to ``batch_size`` of the oldest matching events received at or after
    ``floor``, in one transaction; the count, and the next batch's floor.

    One ``DELETE ... WHERE id IN (SELECT id ... LIMIT n)``: the rows are chosen by the
    database along the (status, received_at) index, and no ids come back to Python, unless
    a model of the project has a cascading foreign key to Event: then Django reads this
    batch's keys (and only them) to delete the rows that point at it first. The
    outer filter repeats the conditions, so a row whose status changed meanwhile (a
    concurrent reprocess) is re-checked and left alone.

    The floor is the last received_at of the batch before (ties included, as ``>=``): each
    batch's scan starts there, instead of walking again over the index entries of every
    row deleted so far (they stay in the index until VACUUM), which made each batch slower
    than the one before it.
    """
    using = router.db_for_write(Event)
    oldest = _old(status, before, endpoint).using(using).order_by("received_at")
    if floor is not None:
        oldest = oldest.filter(received_at__gte=floor)
    # This batch's last received_at, found by the same short scan: the next floor.
    last = list(oldest.values_list("received_at", flat=True)[batch_size - 1 : batch_size])
    batch: Iterable[int] = oldest.values_list("pk", flat=True)[:batch_size]
    if not connections[using].features.allow_sliced_subqueries_with_in:
        # MySQL cannot LIMIT inside IN (...): fetch this one batch of ids instead.
        batch = list(batch)
    # Only the keys: when a project's model points at Event with a cascading foreign key,
    # Django must fetch the batch's rows to find theirs, and need not fetch the payloads.
    doomed = _old(status, before, endpoint).using(using).filter(pk__in=batch).only("pk")
    with transaction.atomic(using=using):
        deleted, _ = doomed.delete()
    return deleted, last[0] if last else floor


def _cutoff(older_than: timedelta | None) -> datetime:
    if older_than is None:
        retention = conf.EVENT_RETENTION
        if retention is None:
            raise CommandError(
                "How old must events be? Pass --older-than (such as --older-than 90d) or set "
                'KLAREFI_EVENT_RETENTION (such as KLAREFI_EVENT_RETENTION = "90d").'
            )
        try:
            older_than = parse_duration(retention)
        except InvalidDuration as exc:
            raise CommandError(f"KLAREFI_EVENT_RETENTION is not a valid duration: {exc}") from None
        source = "KLAREFI_EVENT_RETENTION"
    else:
        source = "--older-than"
    if older_than < MIN_EVENT_RETENTION:
        raise CommandError(_too_short(source, older_than))
    try:
        return cutoff(older_than)
    except InvalidDuration as exc:
        raise CommandError(f"--older-than: {exc}") from None


def _too_short(source: str, older_than: timedelta) -> str:
    """Why pruning events younger than ``MIN_EVENT_RETENTION``, as ``source`` asks, is
    refused: the explanation the system check E012 gives for the setting."""
    return (
        f"{source} {_span(older_than)} is shorter than Klarefi's retry schedule. "
        f"{SHORT_RETENTION_REASON} Use at least {_span(MIN_EVENT_RETENTION)}. "
        "Nothing was deleted."
    )


def _span(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number.")
    return number


def _moment(value: datetime) -> str:
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.isoformat(" ", "seconds")


def _joined(statuses: list[str]) -> str:
    return " and ".join(", ".join(statuses).rsplit(", ", 1))


def _events(count: int) -> str:
    return f"{count} event" if count == 1 else f"{count} events"
