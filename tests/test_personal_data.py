"""What erasing an event writes, ``erase_events()`` and ``manage.py klarefi_erase``.

The core's side (an erased event is never run again; a redelivery of it is not stored
again; ``KLAREFI_PAYLOAD_RETENTION = timedelta(0)``) is in tests/test_erasure_core.py.
"""

from __future__ import annotations

import io
import logging
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_klarefi.models import Event
from django_klarefi.personal_data import (
    ENVELOPE_KEYS,
    ErasureStopped,
    Reason,
    envelope,
    erase_events,
    erased_values,
    error_class,
    redacted_traceback,
)
from django_klarefi.signals import event_erased

pytestmark = pytest.mark.django_db

MARKER = "Marianne-Dupont-1984-ERASEME"

TRACEBACK = (
    "Traceback (most recent call last):\n"
    '  File "/srv/app/receivers.py", line 12, in on_case\n'
    '    raise ValueError(event.payload["data"]["name"])\n'
    f"ValueError: {MARKER}\n"
)


def payload(number: int, **overrides):
    return {
        "id": f"evt_{number}",
        "event": "case.completed",
        "case_id": f"case_{number % 3}",
        "session_id": f"ses_{number}",
        "created_at": "2026-11-01T12:00:00Z",
        "data": {"name": MARKER, "income": 52000, "documents": [{"number": "X123"}]},
        **overrides,
    }


def stored(number: int, status=Event.Status.PROCESSED, **fields) -> Event:
    body = fields.pop("payload", None) or payload(number)
    now = timezone.now()
    return Event.objects.create(
        event_id=body.get("id", f"sha256:{number}"),
        event_type=body["event"],
        case_id=body.get("case_id", ""),
        session_id=body.get("session_id", ""),
        payload=body,
        status=status,
        attempts=1,
        deliveries=1,
        received_at=now,
        last_received_at=now,
        **fields,
    )


def assert_erased(event: Event) -> None:
    event.refresh_from_db()
    assert event.payload_erased_at is not None
    assert "data" not in event.payload
    assert MARKER not in repr(event.payload)
    assert MARKER not in event.error
    assert set(event.payload) <= set(ENVELOPE_KEYS)


# What erasing writes


def test_envelope_keeps_the_identifying_keys_only():
    kept = envelope({**payload(1), "django_klarefi_test": True, "extra": "x"})
    assert kept == {
        "id": "evt_1",
        "event": "case.completed",
        "case_id": "case_1",
        "session_id": "ses_1",
        "django_klarefi_test": True,
    }


@pytest.mark.parametrize(
    "value",
    [{"name": MARKER}, [MARKER], "x" * 300],
    ids=["object", "list", "long text"],
)
def test_envelope_drops_a_reference_that_is_not_an_id(value):
    assert envelope({"id": "evt_1", "event": "t", "case_id": value}) == {
        "id": "evt_1",
        "event": "t",
    }


def test_envelope_of_a_payload_that_is_not_an_object():
    assert envelope([MARKER]) == {}


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (TRACEBACK, "ValueError"),
        ("", ""),
        ("myproject.errors.Refused: " + MARKER, "myproject.errors.Refused"),
        (
            # A chained exception: the last traceback's.
            "Traceback (most recent call last):\n  File x\nKeyError: 'a'\n\nDuring handling "
            "of the above exception, another exception occurred:\n\nTraceback (most recent "
            f"call last):\n  File y\n    code\nRuntimeError: {MARKER}\nmore {MARKER}\n",
            "RuntimeError",
        ),
        ("Traceback (most recent call last):\n  File x\n", ""),
        (f"{MARKER} with spaces: and a colon", ""),
    ],
)
def test_error_class_names_the_exception_without_its_message(error, expected):
    assert error_class(error) == expected


def test_erased_values_are_the_columns_of_an_erased_row():
    now = timezone.now()
    values = erased_values(payload(1), now, TRACEBACK)
    assert values == {
        "payload": envelope(payload(1)),
        "error": "ValueError",
        "payload_erased_at": now,
    }
    assert erased_values(payload(1), now)["error"] == ""


# erase_events


def test_erases_every_status_and_keeps_the_rows():
    events = [
        stored(1),
        stored(2, Event.Status.FAILED, error=TRACEBACK),
        stored(3, Event.Status.PENDING),
    ]
    count = erase_events(Event.objects.all(), actor="test", filter_description="all")
    assert count == 3
    for event in events:
        assert_erased(event)
    failed = Event.objects.get(event_id="evt_2")
    assert (failed.status, failed.error, failed.attempts) == ("failed", "ValueError", 1)
    assert Event.objects.get(event_id="evt_1").payload == envelope(payload(1))


def test_leaves_other_events_alone():
    stored(1)
    other = stored(2)
    erase_events(Event.objects.filter(event_id="evt_1"), actor="test", filter_description="x")
    other.refresh_from_db()
    assert other.payload_erased_at is None
    assert other.payload == payload(2)


def test_an_erased_event_is_not_erased_twice():
    stored(1)
    assert erase_events(Event.objects.all(), actor="t", filter_description="x") == 1
    first = Event.objects.get().payload_erased_at
    assert erase_events(Event.objects.all(), actor="t", filter_description="x") == 0
    assert Event.objects.get().payload_erased_at == first


def test_batches_with_one_read_per_batch_and_report_progress():
    for number in range(7):
        stored(number)
    batches = []
    with CaptureQueriesContext(connection) as queries:
        count = erase_events(
            Event.objects.all(),
            actor="t",
            filter_description="x",
            batch_size=3,
            progress=lambda batch: batches.append([event.event_id for event in batch]),
        )
    assert count == 7
    assert batches == [["evt_0", "evt_1", "evt_2"], ["evt_3", "evt_4", "evt_5"], ["evt_6"]]
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    # One SELECT per batch (the last one short): never the whole table at once.
    batch_reads = [sql for sql in reads if '"django_klarefi_event"."payload"' in sql]
    assert len(batch_reads) == 3
    assert all("LIMIT 3" in sql for sql in batch_reads)


def test_sends_event_erased_per_event_with_the_envelope_only():
    stored(1)
    stored(2)
    seen = []

    def receiver(sender, event, reason, actor, **kwargs):
        seen.append((sender, event.event_id, event.case_id, dict(event.payload), reason, actor))
        assert event.payload_erased_at is not None

    event_erased.connect(receiver)
    try:
        erase_events(Event.objects.all(), actor="me", filter_description="x")
    finally:
        event_erased.disconnect(receiver)
    assert seen == [
        (Event, "evt_1", "case_1", envelope(payload(1)), "request", "me"),
        (Event, "evt_2", "case_2", envelope(payload(2)), "request", "me"),
    ]


def test_a_failing_receiver_rolls_its_batch_back_and_stops_loudly(caplog):
    for number in range(4):
        stored(number)

    def refuse(sender, event, **kwargs):
        if event.event_id == "evt_3":
            raise RuntimeError(f"cannot erase {MARKER}")

    event_erased.connect(refuse)
    try:
        with (
            caplog.at_level(logging.INFO, logger="django_klarefi"),
            pytest.raises(ErasureStopped) as stopped,
        ):
            erase_events(Event.objects.all(), actor="me", filter_description="all", batch_size=2)
    finally:
        event_erased.disconnect(refuse)
    assert stopped.value.erased == 2
    erased = set(
        Event.objects.filter(payload_erased_at__isnull=False).values_list("event_id", flat=True)
    )
    assert erased == {"evt_0", "evt_1"}  # the second batch rolled back whole
    assert Event.objects.get(event_id="evt_2").payload == payload(2)
    [record] = [r for r in caplog.records if r.name == "django_klarefi"]
    assert record.levelno == logging.ERROR
    assert "stopped by RuntimeError after erasing the payload data of 2 events" in (
        record.getMessage()
    )
    assert MARKER not in caplog.text
    assert MARKER not in str(stopped.value)


def test_records_who_which_filter_and_how_many_without_the_data(caplog):
    stored(1, error=TRACEBACK)
    with caplog.at_level(logging.INFO, logger="django_klarefi"):
        erase_events(
            Event.objects.filter(case_id="case_1"),
            actor="manage.py klarefi_erase",
            filter_description="case_id=case_1",
        )
    [record] = [r for r in caplog.records if r.name == "django_klarefi"]
    assert record.getMessage() == (
        "Klarefi erasure (request) by manage.py klarefi_erase: erased the payload data of 1 "
        "events matching case_id=case_1."
    )
    assert LogEntry.objects.count() == 0  # no user: the log line is the record
    assert MARKER not in caplog.text


def test_a_user_gets_a_log_entry_too():
    user = User.objects.create_user("dpo")
    stored(1)
    erase_events(
        Event.objects.all(), actor=user, filter_description="case_id=case_1", reason="request"
    )
    [entry] = LogEntry.objects.all()
    assert entry.user == user
    assert entry.content_type.model_class() is Event
    assert entry.change_message == (
        "Erased the payload data of 1 events matching case_id=case_1 (request)."
    )
    assert MARKER not in entry.change_message + entry.object_repr


def test_retention_reason_is_passed_on():
    stored(1)
    reasons = []

    def receiver(sender, event, reason, **kwargs):
        reasons.append(reason)

    event_erased.connect(receiver)
    try:
        erase_events(
            Event.objects.all(), actor="prune", filter_description="x", reason=Reason.RETENTION
        )
    finally:
        event_erased.disconnect(receiver)
    assert reasons == ["retention"]


# manage.py klarefi_erase


def erase(*args):
    out = io.StringIO()
    call_command("klarefi_erase", *args, stdout=out, stderr=io.StringIO(), no_color=True)
    return out.getvalue()


def test_command_erases_one_case_in_any_status_and_prints_each_event():
    stored(1, Event.Status.FAILED, error=TRACEBACK)  # case_1
    stored(4)  # case_1
    stored(2)  # case_2
    output = erase("--case-id", "case_1")
    assert output.splitlines() == [
        "erased  evt_1  case.completed  (failed, case case_1, session ses_1)",
        "erased  evt_4  case.completed  (processed, case case_1, session ses_4)",
        "Erased the payload data of 2 events matching case_id=case_1.",
    ]
    assert MARKER not in output
    assert_erased(Event.objects.get(event_id="evt_1"))
    assert Event.objects.get(event_id="evt_2").payload_erased_at is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--session-id", "ses_1", "ses_2"], {"evt_1", "evt_2"}),
        (["--event-id", "evt_3"], {"evt_3"}),
        (["--case-id", "case_0", "--session-id", "ses_3"], {"evt_3"}),
    ],
)
def test_command_filters(args, expected):
    for number in range(1, 5):
        stored(number)
    erase(*args)
    erased = Event.objects.filter(payload_erased_at__isnull=False)
    assert set(erased.values_list("event_id", flat=True)) == expected


def test_command_dry_run_changes_nothing():
    stored(1)
    stored(4)
    erase("--event-id", "evt_4")
    output = erase("--case-id", "case_1", "--dry-run")
    assert output == (
        "Dry run: would erase the payload data of 1 event matching case_id=case_1; "
        "1 already erased. Nothing was changed.\n"
    )
    assert Event.objects.get(event_id="evt_1").payload_erased_at is None


def test_command_needs_a_filter():
    stored(1)
    with pytest.raises(CommandError, match="Choose events"):
        erase()
    with pytest.raises(CommandError, match="Choose events"):
        erase("--endpoint", "default")  # narrows; never a whole endpoint by accident
    assert Event.objects.get().payload_erased_at is None


def test_command_endpoint_narrows_to_one_klarefi_account():
    # The same case id in two accounts: only the named endpoint's events are erased.
    stored(1)
    stored(1, endpoint="eu")
    output = erase("--case-id", "case_1", "--endpoint", "eu")
    assert output.splitlines()[-1] == (
        "Erased the payload data of 1 event matching case_id=case_1 and endpoint=eu."
    )
    assert Event.objects.get(endpoint="eu").payload_erased_at is not None
    assert Event.objects.get(endpoint="default").payload_erased_at is None


def test_command_logs_who_asked(caplog):
    stored(1)
    with caplog.at_level(logging.INFO, logger="django_klarefi"):
        erase("--case-id", "case_1")
    [record] = [r for r in caplog.records if r.name == "django_klarefi"]
    assert record.getMessage().startswith(
        "Klarefi erasure (request) by manage.py klarefi_erase (OS user "
    )
    assert record.getMessage().endswith(
        "erased the payload data of 1 events matching case_id=case_1."
    )


def test_command_fails_when_a_receiver_stops_the_erasure():
    stored(1)

    def refuse(sender, event, **kwargs):
        raise RuntimeError("no")

    event_erased.connect(refuse)
    try:
        with pytest.raises(CommandError, match="stopped after 0 events: RuntimeError"):
            erase("--case-id", "case_1")
    finally:
        event_erased.disconnect(refuse)
    assert Event.objects.get().payload_erased_at is None


def test_an_old_erased_event_keeps_its_timestamps_and_counts():
    event = stored(1, processed_at=timezone.now() - timedelta(days=1))
    before = Event.objects.values("received_at", "processed_at", "attempts", "deliveries").get()
    erase("--event-id", event.event_id)
    after = Event.objects.values("received_at", "processed_at", "attempts", "deliveries").get()
    assert after == before


# klarefi_reprocess leaves erased events out


def reprocess(*args):
    out = io.StringIO()
    try:
        call_command("klarefi_reprocess", *args, stdout=out, stderr=io.StringIO(), no_color=True)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_reprocess_command_never_runs_an_erased_event(handlers):
    stored(1, Event.Status.FAILED, error=TRACEBACK)
    stored(2, Event.Status.FAILED, error=TRACEBACK)
    erase("--event-id", "evt_1")
    handlers.fail_with = ValueError(MARKER)

    output, error = reprocess("--failed")

    assert {event.event_id for _, event in handlers.calls} == {"evt_2"}
    assert output.splitlines()[-1] == (
        "Summary: 2 events, 0 processed, 1 failed, 0 already processed, 0 in flight, 1 erased."
    )
    assert str(error) == "1 event still failing."
    assert MARKER not in output


def test_reprocess_command_names_an_erased_event_it_skips(handlers):
    stored(1, Event.Status.FAILED, error=TRACEBACK)
    erase("--event-id", "evt_1")
    output, error = reprocess("--event-id", "evt_1")
    assert error is None
    assert handlers.calls == []
    assert (
        "erased             evt_1  case.completed  its payload data was erased; it is never run "
        "again" in output
    )
    dry, _ = reprocess("--event-id", "evt_1", "--dry-run")
    assert "1 erased (skipped)" in dry


# redacted_traceback: what the core logs of a failing receiver


def test_redacted_traceback_keeps_the_frames_and_the_class_not_the_message():
    def receiver(payload):
        raise ValueError(payload["data"]["name"])

    try:
        receiver(payload(1))
    except ValueError as exc:
        text = redacted_traceback(exc)
    assert MARKER not in text
    assert text.startswith("Traceback (most recent call last):\n")
    assert 'raise ValueError(payload["data"]["name"])' in text  # the source line
    assert "in receiver" in text
    assert text.endswith("ValueError: (message hidden: it can quote personal data)\n")
    assert error_class(text) == "ValueError"


def test_redacted_traceback_of_a_chain_and_of_an_unprintable_exception():
    class Unprintable(Exception):
        def __str__(self):
            raise RuntimeError("no")

    try:
        try:
            raise KeyError(MARKER)
        except KeyError as inner:
            raise Unprintable() from inner
    except Unprintable as exc:
        text = redacted_traceback(exc)
    assert MARKER not in text
    assert "KeyError: (message hidden" in text
    assert "Unprintable: (message hidden" in text
    assert text.index("KeyError") < text.index("Unprintable:")
    assert error_class(text).endswith("Unprintable")


def test_erases_a_payload_stored_encoded_for_its_nul_characters():
    # A payload with U+0000 is stored as JSON text (PayloadField); its envelope is the
    # decoded payload's, and the encoded data goes with the rest.
    stored(1, payload=payload(1, data={"name": f"{MARKER}\x00"}))
    erase_events(Event.objects.all(), actor="t", filter_description="x")
    event = Event.objects.get()
    assert event.payload == envelope(payload(1))
    assert_erased(event)
