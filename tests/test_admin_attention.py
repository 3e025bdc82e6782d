"""The admin says what klarefi_status says: the "Needs attention" filter, and on a failed
event's page whether Klarefi delivers it again, and about when."""

from __future__ import annotations

import html
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.test_admin import change_url, listed_event_ids, make_event

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_klarefi_event_changelist"


@pytest.fixture
def admin_client(client):
    user = User.objects.create_superuser("boss", password="pw")
    client.force_login(user)
    return client


def aged(event_id, status, *, age, deliveries=1):
    return make_event(
        event_id,
        status=status,
        deliveries=deliveries,
        attempts=deliveries if status == "failed" else 0,
        error="Traceback ...\nValueError: broke" if status == "failed" else "",
        received_at=timezone.now() - age,
    )


def test_needs_attention_lists_failed_events_whose_retries_are_over_and_stuck_pending_ones(
    admin_client,
):
    aged("evt_over_by_count", "failed", age=timedelta(minutes=40), deliveries=5)
    aged("evt_over_by_time", "failed", age=timedelta(hours=4))
    aged("evt_stuck", "pending", age=timedelta(minutes=30))
    aged("evt_retrying", "failed", age=timedelta(minutes=2))
    aged("evt_fresh_pending", "pending", age=timedelta(minutes=1))
    aged("evt_done", "processed", age=timedelta(hours=5))
    response = admin_client.get(reverse(CHANGELIST), {"attention": "yes"})
    assert response.status_code == 200
    assert listed_event_ids(response.content.decode()) == {
        "evt_over_by_count",
        "evt_over_by_time",
        "evt_stuck",
    }
    unfiltered = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "Needs attention" in unfiltered
    assert len(listed_event_ids(unfiltered)) == 6


def test_the_filter_counts_no_more_than_its_rows(admin_client):
    aged("evt_done", "processed", age=timedelta(hours=5))
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(reverse(CHANGELIST), {"attention": "yes"})
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    for sql in counts:
        assert "status" in sql, sql


def page(admin_client, event):
    response = admin_client.get(change_url(event))
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def test_a_failed_event_klarefi_retries_says_about_when(admin_client):
    event = aged("evt_retrying", "failed", age=timedelta(minutes=2), deliveries=2)
    text = page(admin_client, event)
    assert "Klarefi will deliver this event again at about" in text
    assert "its attempt 3 of 5" in text
    assert "in about 4 min" in text


def test_a_failed_event_after_five_deliveries_is_for_a_reprocess_only(admin_client):
    event = aged("evt_over", "failed", age=timedelta(minutes=40), deliveries=5)
    text = page(admin_client, event)
    assert (
        "Klarefi will not deliver this event again: all 5 of Klarefi's attempts have come. "
        "Only a reprocess here will run it now."
    ) in text


def test_in_task_mode_the_page_says_klarefi_got_its_200(admin_client, settings):
    settings.KLAREFI_PROCESSING = "task"
    event = aged("evt_task", "failed", age=timedelta(minutes=1))
    assert "answered 200 (queued) before the handlers ran" in page(admin_client, event)


def test_other_events_pages_say_nothing_of_retries(admin_client):
    for status in ("processed", "pending"):
        event = aged(f"evt_{status}", status, age=timedelta(minutes=1))
        text = page(admin_client, event)
        assert "Klarefi will" not in text
        assert "Klarefi&#x27;s retries" not in text
        assert "Klarefi's retries" not in text
