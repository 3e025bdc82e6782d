"""Klarefi's retry schedule: whether, and about when, Klarefi delivers a failed event again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from django_klarefi.models import Event
from django_klarefi.redelivery import (
    ATTEMPTS,
    GRACE,
    next_delivery_expected,
    redelivery,
    retries_exhausted,
    retries_exhausted_q,
    schedule_end,
)

FIRST = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def test_the_schedule_is_klarefis_one_five_thirty_minutes_and_two_hours():
    # Attempt n+1 comes 1 min, 5 min, 30 min, 2 h after attempt n: at 1, 6, 36 and 156 min.
    expected = [next_delivery_expected(n, FIRST, FIRST) for n in range(1, ATTEMPTS)]
    assert expected == [FIRST + m * MIN for m in (1, 6, 36, 156)]
    assert ATTEMPTS == 5
    assert schedule_end(FIRST) == FIRST + 156 * MIN + GRACE


def test_after_five_deliveries_the_retries_are_over_at_once():
    assert retries_exhausted(5, FIRST, FIRST + 3 * MIN)
    assert next_delivery_expected(5, FIRST, FIRST + 3 * MIN) is None
    assert not retries_exhausted(4, FIRST, FIRST + 3 * MIN)


def test_a_scheduled_attempt_that_never_came_is_skipped():
    # One delivery recorded; at +20 min the attempts at +1 and +6 min are past their grace:
    # the next one expected is the one at +36 min.
    assert next_delivery_expected(1, FIRST, FIRST + 20 * MIN) == FIRST + 36 * MIN
    # Within the grace, the late one is still expected.
    assert next_delivery_expected(1, FIRST, FIRST + 6 * MIN + GRACE) == FIRST + 6 * MIN


def test_past_the_last_attempt_and_its_grace_the_retries_are_over_whatever_the_count():
    end = schedule_end(FIRST)
    assert not retries_exhausted(1, FIRST, end)
    assert retries_exhausted(1, FIRST, end + timedelta(seconds=1))


@pytest.mark.django_db
@pytest.mark.parametrize("processing", ["sync", "task"])
def test_the_sql_filter_decides_as_the_python_does(processing, settings):
    settings.KLAREFI_PROCESSING = processing
    now = timezone.now()
    cases = [
        (1, now),
        (4, now - 30 * MIN),
        (5, now - 2 * MIN),
        (1, now - 156 * MIN - GRACE + MIN),
        (1, now - 156 * MIN - GRACE - MIN),
        (3, now - 10 * timedelta(hours=1)),
    ]
    for number, (deliveries, received_at) in enumerate(cases):
        Event.objects.create(
            event_id=f"evt_{number}",
            event_type="case.completed",
            payload={},
            status="failed",
            deliveries=deliveries,
            received_at=received_at,
            last_received_at=received_at,
        )
    in_sql = set(Event.objects.filter(retries_exhausted_q(now)).values_list("event_id", flat=True))
    in_python = {e.event_id for e in Event.objects.all() if redelivery(e, now=now).exhausted}
    assert in_sql == in_python
    if processing == "task":
        assert len(in_python) == len(cases)
    else:
        assert in_python == {"evt_2", "evt_4", "evt_5"}


def test_in_task_mode_a_failed_event_is_never_delivered_again(settings):
    # Every delivery was answered 200 "queued" before the handlers ran.
    settings.KLAREFI_PROCESSING = "task"
    event = Event(deliveries=1, received_at=FIRST)
    assert redelivery(event, now=FIRST).exhausted
    assert redelivery(event, now=FIRST).reason == "answered"


def test_redelivery_says_about_when_and_why_not(settings):
    settings.KLAREFI_PROCESSING = "sync"
    event = Event(deliveries=2, received_at=FIRST)
    soon = redelivery(event, now=FIRST + 2 * MIN)
    assert (soon.exhausted, soon.expected_at, soon.reason) == (False, FIRST + 6 * MIN, "")
    event.deliveries = 5
    assert redelivery(event, now=FIRST + 40 * MIN).reason == "attempts"
    event.deliveries = 2
    assert redelivery(event, now=FIRST + 4 * timedelta(hours=1)).reason == "schedule"
