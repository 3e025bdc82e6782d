"""``manage.py klarefi_erase``: erase the personal data of chosen events, on request.

Every matching event, in any status, keeps its row and its envelope (id, type, case and
session ids); its payload data and error text are erased through
:func:`django_klarefi.personal_data.erase_events`, which records the erasure. An erased
event is never run again, and a redelivery of it is recognised and not stored again.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count, Q, QuerySet

from django_klarefi.models import Event
from django_klarefi.personal_data import DEFAULT_BATCH_SIZE, ErasureStopped, erase_events
from django_klarefi.progress import add_quiet_argument, for_command

#: Option destination -> the column it matches exactly.
SELECTORS = {"case_ids": "case_id", "session_ids": "session_id", "event_ids": "event_id"}


class Command(BaseCommand):
    help = (
        "Erase the payload data and error text of every Klarefi event matching "
        "--case-id, --session-id or --event-id, in any status (GDPR article 17). Each event "
        "keeps its row and envelope, is never run again, and a redelivery of it is not "
        "stored again. Prints each event erased; the erasure is logged without its data."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        chosen = parser.add_argument_group(
            "selecting events", "Give at least one. Several narrow the selection together."
        )
        chosen.add_argument(
            "--case-id", nargs="+", dest="case_ids", metavar="ID", help="Events of these cases."
        )
        chosen.add_argument(
            "--session-id",
            nargs="+",
            dest="session_ids",
            metavar="ID",
            help="Events of these sessions.",
        )
        chosen.add_argument(
            "--event-id", nargs="+", dest="event_ids", metavar="ID", help="These event ids."
        )
        chosen.add_argument(
            "--endpoint",
            nargs="+",
            dest="endpoints",
            metavar="NAME",
            help="Only events received by these endpoints (with one of the options above; "
            "it selects nothing alone).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=DEFAULT_BATCH_SIZE,
            metavar="N",
            help=f"Events erased per transaction (default: {DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be erased; change nothing."
        )
        add_quiet_argument(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        events, description = _selection(options)
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be a positive whole number.")
        counts = events.aggregate(
            matching=Count("pk"), erased=Count("pk", filter=Q(payload_erased_at__isnull=False))
        )
        to_erase = counts["matching"] - counts["erased"]
        already = f"; {counts['erased']} already erased" if counts["erased"] else ""
        if options["dry_run"]:
            self.stdout.write(
                f"Dry run: would erase the payload data of {_events(to_erase)} matching "
                f"{description}{already}. Nothing was changed."
            )
            return

        with for_command(self, to_erase, options, description="erase") as progress:

            def erased_batch(batch: Sequence[Event]) -> None:
                for event in batch:
                    progress.write(
                        f"erased  {event.event_id}  {event.event_type}  ({event.status}, "
                        f"case {event.case_id or '-'}, session {event.session_id or '-'})",
                        self.stdout.write,
                    )
                progress.advance(len(batch))

            try:
                erased = erase_events(
                    events,
                    actor=f"manage.py klarefi_erase (OS user {_os_user()})",
                    filter_description=description,
                    batch_size=options["batch_size"],
                    progress=erased_batch,
                )
            except ErasureStopped as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Erased the payload data of {_events(erased)} matching {description}{already}."
            )
        )


def _selection(options: dict[str, Any]) -> tuple[QuerySet[Event], str]:
    """The events the options choose, and the filter's description (references only)."""
    chosen = {column: options[name] for name, column in SELECTORS.items() if options[name]}
    if not chosen:
        # Never "everything" by accident.
        raise CommandError("Choose events: --case-id, --session-id or --event-id (see --help).")
    if options.get("endpoints"):
        chosen["endpoint"] = options["endpoints"]
    events = Event.objects.all()
    for column, values in chosen.items():
        events = events.filter(**{f"{column}__in": values})
    description = " and ".join(f"{column}={','.join(values)}" for column, values in chosen.items())
    return events, description


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name, no passwd entry: a container
        return "unknown"


def _events(count: int) -> str:
    return f"{count} event" if count == 1 else f"{count} events"
