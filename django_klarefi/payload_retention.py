"""``KLAREFI_PAYLOAD_RETENTION`` in ``klarefi_prune_events``: erase the payload data of
processed events older than it, in batches, with the prune's progress output.

Only processed events: failed and pending ones still have to run, and keep their payloads
until they are processed (the next run after that erases them, if they are old enough).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db.models import QuerySet
from django.utils import timezone

from django_klarefi.models import Event
from django_klarefi.personal_data import ErasureStopped, Reason, erase_events
from django_klarefi.progress import for_command

__all__ = ["erase_expired_payloads", "expired_payloads"]

#: Who erases, in the erasure's record.
ACTOR = "manage.py klarefi_prune_events (KLAREFI_PAYLOAD_RETENTION)"


def expired_payloads(before: datetime) -> QuerySet[Event]:
    """Processed events received before ``before`` whose payload is not erased yet."""
    return Event.objects.filter(
        status=Event.Status.PROCESSED, received_at__lt=before, payload_erased_at__isnull=True
    )


def erase_expired_payloads(command: BaseCommand, retention: Any, options: dict[str, Any]) -> int:
    """Erase the payload data of processed events older than ``retention`` (or count them,
    with ``--dry-run``), writing the command's progress and summary; the count."""
    if not isinstance(retention, timedelta) or retention < timedelta(0):
        raise CommandError(
            "KLAREFI_PAYLOAD_RETENTION must be a datetime.timedelta of zero or more, such "
            "as timedelta(days=30). No payload was erased."
        )
    before = timezone.now() - retention
    scope = f"received before {_moment(before)}"
    expired = expired_payloads(before)
    total = expired.count()
    kept = "failed and pending events keep theirs until they are processed"
    if options["dry_run"]:
        command.stdout.write(
            f"Dry run: would erase the payload data of {_events(total)} (processed) {scope} "
            f"(KLAREFI_PAYLOAD_RETENTION); {kept}. Nothing was erased."
        )
        return 0
    batches = done = 0
    with for_command(command, total, options, description="erase payloads") as progress:

        def erased_batch(batch: Sequence[Event]) -> None:
            nonlocal batches, done
            batches += 1
            done += len(batch)
            progress.write(
                f"batch {batches}: erased the payload data of {len(batch)} processed "
                f"({done} of {total})",
                command.stdout.write,
            )
            progress.advance(len(batch))

        try:
            erased = erase_events(
                expired,
                actor=ACTOR,
                filter_description=f"status=processed and {scope}",
                reason=Reason.RETENTION,
                batch_size=options["batch_size"],
                progress=erased_batch,
                by_received_at=True,  # the (status, received_at) index, as the prune
            )
        except ErasureStopped as exc:
            raise CommandError(str(exc)) from exc
    command.stdout.write(
        command.style.SUCCESS(
            f"Erased the payload data of {_events(erased)} (processed) {scope} in {batches} "
            f"batch{'' if batches == 1 else 'es'} (KLAREFI_PAYLOAD_RETENTION); {kept}."
        )
    )
    return erased


def _moment(value: datetime) -> str:
    if timezone.is_aware(value):
        value = timezone.localtime(value)
    return value.isoformat(" ", "seconds")


def _events(count: int) -> str:
    return f"{count} event" if count == 1 else f"{count} events"
