"""The Event admin through Django's test client: read-only pages, filters, search,
the cheap paginator, the reprocess action and the "Send test event" page."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_klarefi.admin import DISPLAY_LIMIT
from django_klarefi.event_types import EVENT_TYPES
from django_klarefi.models import Event
from django_klarefi.paginator import EstimatedCountPaginator
from django_klarefi.processing import events_in_pk_order
from django_klarefi.testing import post_event
from tests.conftest import SECRET
from tests.testapp.models import HandlerRecord, HandlerRecordNote

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_klarefi_event_changelist"
SEND_TEST = "admin:django_klarefi_event_send_test_event"


def make_event(event_id: str, **fields) -> Event:
    received = fields.pop("received_at", None) or timezone.now()
    payload = fields.pop("payload", None)
    event_type = fields.pop("event_type", "case.completed")
    return Event.objects.create(
        event_id=event_id,
        event_type=event_type,
        payload=payload if payload is not None else {"id": event_id, "event": event_type},
        received_at=received,
        last_received_at=received,
        **fields,
    )


def staff_user(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="django_klarefi", codename__in=codenames)
    )
    return user


def change_url(event: Event) -> str:
    return reverse("admin:django_klarefi_event_change", args=[event.pk])


def listed_event_ids(html: str) -> set[str]:
    return set(re.findall(r'<span class="klarefi-id klarefi-event-id" title="([^"]+)"', html))


# The changelist


def test_changelist_shows_the_columns_and_marks_failed_events(admin_client):
    make_event("evt_ok", case_id="case_1", session_id="sess_1", status=Event.Status.PROCESSED)
    make_event("evt_bad", status=Event.Status.FAILED, attempts=3, deliveries=2)

    html = admin_client.get(reverse(CHANGELIST)).content.decode()

    for column in (
        "type_label",
        "status_badge",
        "references",
        "counts",
        "received",
    ):
        assert re.search(rf'<th scope="col" class="[^"]*column-{column}[" ]', html)
    assert listed_event_ids(html) == {"evt_ok", "evt_bad"}
    assert '<span class="klarefi-id " title="case_1">case_1</span>' in html
    assert re.search(r'<span class="klarefi-status klarefi-status-failed">Failed</span>', html)
    assert re.search(
        r'<span class="klarefi-status klarefi-status-processed">Processed</span>', html
    )
    # The styles that set failed rows apart are a static file, never inline.
    assert 'href="/static/django_klarefi/admin/klarefi.css"' in html
    assert "<style" not in html
    assert "results (" not in html  # the search bar counts filtered lists only


def test_changelist_never_loads_payloads_or_tracebacks(admin_client):
    make_event("evt_1", payload={"id": "evt_1", "event": "x", "blob": "y" * 1000})
    with CaptureQueriesContext(connection) as queries:
        admin_client.get(reverse(CHANGELIST))
    rows = [q["sql"] for q in queries if '"django_klarefi_event"."event_id"' in q["sql"]]
    assert rows
    assert all('"payload"' not in sql and '"error"' not in sql for sql in rows)


def test_status_filter_lists_static_choices_and_filters(admin_client):
    make_event("evt_ok", status=Event.Status.PROCESSED)
    make_event("evt_bad", status=Event.Status.FAILED)
    make_event("evt_wait", status=Event.Status.PENDING)

    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get(reverse(CHANGELIST), {"status": "failed"}).content.decode()

    assert listed_event_ids(html) == {"evt_bad"}
    assert "1 result (" in html
    for value in ("pending", "processed", "failed"):
        assert f"?status={value}" in html
    assert not [q for q in queries if "DISTINCT" in q["sql"].upper()]


def test_event_type_filter_offers_every_documented_type_and_filters(admin_client):
    make_event("evt_case", event_type="case.completed")
    make_event("evt_doc", event_type="document.uploaded")
    make_event("evt_new", event_type="brand.new_type")

    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get(reverse(CHANGELIST), {"event_type": "document.uploaded"}).content
    html = html.decode()
    assert listed_event_ids(html) == {"evt_doc"}
    for event_type in EVENT_TYPES:
        assert f"?event_type={event_type}" in html
    assert "?event_type=brand.new_type" not in html  # types come from EVENT_TYPES, not the table
    assert not [q for q in queries if "DISTINCT" in q["sql"].upper()]

    other = admin_client.get(reverse(CHANGELIST), {"event_type": "__other__"}).content.decode()
    assert listed_event_ids(other) == {"evt_new"}


def test_date_drilldown_comes_from_min_and_max_without_distinct(admin_client):
    make_event("evt_2024", received_at=datetime(2024, 3, 5, 12, tzinfo=UTC))
    make_event("evt_2026a", received_at=datetime(2026, 2, 10, 12, tzinfo=UTC))
    make_event("evt_2026b", received_at=datetime(2026, 4, 20, 12, tzinfo=UTC))
    url = reverse(CHANGELIST)

    with CaptureQueriesContext(connection) as queries:
        years = admin_client.get(url).content.decode()
    assert all(f"?received_at__year={y}" in years for y in (2024, 2025, 2026))
    assert not [q for q in queries if "DISTINCT" in q["sql"].upper()]

    months = admin_client.get(url, {"received_at__year": "2026"}).content.decode()
    assert listed_event_ids(months) == {"evt_2026a", "evt_2026b"}
    assert "received_at__month=2" in months
    assert "received_at__month=4" in months
    assert "received_at__month=5" not in months
    assert "received_at__month=1&" not in months

    days = admin_client.get(url, {"received_at__year": "2026", "received_at__month": "2"})
    assert listed_event_ids(days.content.decode()) == {"evt_2026a"}
    assert "received_at__day=10" in days.content.decode()


def test_search_is_an_exact_match_on_event_case_and_session_ids(admin_client):
    make_event("evt_abc", case_id="case_1", session_id="sess_1")
    make_event("evt_def", case_id="case_2", session_id="sess_2")
    make_event("evt_ghi", case_id="case_1", session_id="sess_3")
    url = reverse(CHANGELIST)

    def search(term: str) -> set[str]:
        return listed_event_ids(admin_client.get(url, {"q": term}).content.decode())

    assert search("evt_def") == {"evt_def"}
    assert search("case_1") == {"evt_abc", "evt_ghi"}
    assert search(" sess_3 ") == {"evt_ghi"}
    assert search("evt_") == set()  # no partial matches: each lookup is one index probe
    assert search("EVT_ABC") == set()


# The paginator


def test_paginator_counts_exactly_off_postgresql_and_for_filtered_lists():
    for number in range(3):
        make_event(f"evt_{number}", status=Event.Status.FAILED if number else "processed")
    filtered = EstimatedCountPaginator(Event.objects.filter(status="failed").order_by("id"), 2)
    assert (filtered.count, filtered.count_is_estimate) == (2, False)
    # A small table: the exact count, on every database.
    whole = EstimatedCountPaginator(Event.objects.order_by("id"), 2)
    assert (whole.count, whole.count_is_estimate) == (3, False)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgresql_unfiltered_changelist_uses_the_row_estimate_not_count(admin_client):
    rows = EstimatedCountPaginator.estimate_from + 50
    now = timezone.now()
    Event.objects.bulk_create(
        (
            Event(
                event_id=f"evt_{n}",
                event_type="case.completed",
                payload={},
                status=Event.Status.FAILED if n % 100 == 0 else Event.Status.PROCESSED,
                received_at=now - timedelta(seconds=n),
                last_received_at=now,
            )
            for n in range(rows)
        ),
        batch_size=2000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE django_klarefi_event")
    url = reverse(CHANGELIST)

    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get(url).content.decode()
    sqls = [q["sql"].upper() for q in queries]
    assert not [sql for sql in sqls if "COUNT(" in sql]
    assert any("RELTUPLES" in sql for sql in sqls)
    assert f"{rows} Klarefi events" in html
    assert "PostgreSQL's estimate (estimated)" in html
    assert len(listed_event_ids(html)) == 50
    assert len(queries) <= 12  # session, user, estimate, MIN/MAX, one page of rows

    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get(url, {"status": "failed"}).content.decode()
    assert [q for q in queries if "COUNT(" in q["sql"].upper()]  # filtered: the exact count
    assert f"{rows // 100 + 1} Klarefi events" in html
    assert "estimated" not in html


def test_changelist_query_count_does_not_grow_with_rows(admin_client):
    for number in range(5):
        make_event(f"evt_{number}")
    with CaptureQueriesContext(connection) as few:
        admin_client.get(reverse(CHANGELIST))
    for number in range(5, 60):
        make_event(f"evt_{number}")
    with CaptureQueriesContext(connection) as many:
        html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert len(listed_event_ids(html)) == 50
    assert len(many) == len(few)


# The change page


def test_change_page_is_read_only_with_the_payload_indented_and_escaped(admin_client):
    payload = {
        "id": "evt_x",
        "event": "case.completed",
        "data": {"note": "<script>alert(1)</script>"},
    }
    event = make_event("evt_x", payload=payload)

    response = admin_client.get(change_url(event))
    html = response.content.decode()
    assert response.status_code == 200
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # Indented (key order is the database's: PostgreSQL's jsonb reorders keys).
    assert '<pre class="klarefi-pre klarefi-payload">{\n  &quot;' in html
    assert "\n  &quot;id&quot;: &quot;evt_x&quot;" in html
    assert "\n    &quot;note&quot;: &quot;&lt;script&gt;" in html
    assert 'name="_save"' not in html
    assert "<textarea" not in html
    assert "Last error" not in html


def test_huge_payload_is_truncated_with_a_note(admin_client):
    event = make_event("evt_big", payload={"id": "evt_big", "blob": "x" * (DISPLAY_LIMIT * 2)})
    html = admin_client.get(change_url(event)).content.decode()
    total = len(json.dumps(event.payload, indent=2))
    assert f"showing the first {DISPLAY_LIMIT:,} of {total:,} characters" in html
    assert "x" * (DISPLAY_LIMIT + 10) not in html
    assert len(html) < DISPLAY_LIMIT + 50_000


def test_last_error_and_traceback_are_shown_escaped(admin_client):
    error = 'Traceback (most recent call last):\n  File "x.py"\nValueError: bad <b>input</b>'
    event = make_event("evt_err", status=Event.Status.FAILED, error=error)
    html = admin_client.get(change_url(event)).content.decode()
    assert "Last error" in html
    assert "Traceback (most recent call last):\n  File &quot;x.py&quot;" in html
    assert "bad &lt;b&gt;input&lt;/b&gt;" in html


def test_events_cannot_be_added_or_changed(admin_client):
    event = make_event("evt_1")
    assert admin_client.get(reverse("admin:django_klarefi_event_add")).status_code == 403
    response = admin_client.post(change_url(event), {"event_type": "hacked", "status": "processed"})
    assert response.status_code == 403
    event.refresh_from_db()
    assert event.event_type == "case.completed"
    assert "Add Klarefi event" not in admin_client.get(reverse(CHANGELIST)).content.decode()


def test_deletion_follows_the_delete_permission(client):
    event = make_event("evt_1")
    delete_url = reverse("admin:django_klarefi_event_delete", args=[event.pk])

    client.force_login(staff_user("viewer", "view_event"))
    assert client.get(change_url(event)).status_code == 200
    assert client.post(delete_url, {"post": "yes"}).status_code == 403
    assert Event.objects.filter(pk=event.pk).exists()

    client.force_login(staff_user("deleter", "view_event", "delete_event"))
    assert client.post(delete_url, {"post": "yes"}).status_code == 302
    assert not Event.objects.filter(pk=event.pk).exists()


# The reprocess action


def run_action(client, action: str, *events: Event):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [e.pk for e in events]},
        follow=True,
    )


def test_reprocess_runs_the_processing_path_and_reports_counts(client, handlers):
    failed = make_event("evt_failed", status=Event.Status.FAILED, attempts=1, error="boom")
    done = make_event("evt_done", status=Event.Status.PROCESSED, attempts=1)
    client.force_login(staff_user("operator", "view_event", "reprocess_event"))

    response = run_action(client, "reprocess_events", failed, done)

    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.error) == ("processed", 2, "")
    assert failed.processed_at is not None
    assert handlers.names == ["typed", "event_received"]  # the signals fired once, for evt_failed
    assert HandlerRecord.objects.filter(event_id="evt_failed").count() == 2
    done.refresh_from_db()
    assert done.attempts == 1
    text = response.content.decode()
    assert "1 event succeeded, 0 failed, 1 was already processed and left alone." in text


def test_reprocess_records_a_handler_that_still_fails(client, handlers):
    failed = make_event("evt_failed", status=Event.Status.FAILED, attempts=1, error="old")
    handlers.fail_with = RuntimeError("still broken")
    client.force_login(staff_user("operator", "view_event", "reprocess_event"))

    response = run_action(client, "reprocess_events", failed)

    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("failed", 2)
    assert "RuntimeError: still broken" in failed.error
    assert not HandlerRecord.objects.exists()  # the handler's writes rolled back
    assert "0 events succeeded, 1 failed." in response.content.decode()
    assert 'class="error"' in response.content.decode()


def test_reprocess_needs_the_custom_permission(client, handlers):
    failed = make_event("evt_failed", status=Event.Status.FAILED, attempts=1)
    client.force_login(staff_user("viewer", "view_event", "delete_event"))

    html = client.get(reverse(CHANGELIST)).content.decode()
    assert 'value="reprocess_events"' not in html
    assert 'value="delete_selected"' in html
    run_action(client, "reprocess_events", failed)
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, handlers.names) == ("failed", 1, [])

    client.force_login(staff_user("operator", "view_event", "reprocess_event"))
    assert 'value="reprocess_events"' in client.get(reverse(CHANGELIST)).content.decode()


# The "Send test event" page


def test_changelist_links_to_the_send_test_event_page(admin_client):
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert f'href="{reverse(SEND_TEST)}"' in html


def test_send_test_event_stores_the_event_and_links_to_it(admin_client, handlers):
    page = admin_client.get(reverse(SEND_TEST)).content.decode()
    for event_type in EVENT_TYPES:
        assert f'<option value="{event_type}"' in page
    assert SECRET not in page

    response = admin_client.post(
        reverse(SEND_TEST),
        {"event_type": "skill.resolved", "case_id": "case_admin", "session_id": ""},
        follow=True,
    )

    event = Event.objects.get()
    assert (event.event_type, event.case_id, event.status) == (
        "skill.resolved",
        "case_admin",
        "processed",
    )
    assert event.session_id.startswith("sess_")
    assert handlers.names == ["typed", "event_received"]
    html = response.content.decode()
    assert f'<a href="{change_url(event)}">{event.event_id}</a>' in html
    assert "HTTP 200" in html
    assert "stored as processed" in html
    assert SECRET not in html


def test_send_test_event_reports_a_failing_handler(admin_client, handlers):
    handlers.fail_with = RuntimeError("handler down")
    response = admin_client.post(reverse(SEND_TEST), {"event_type": "case.completed"}, follow=True)
    event = Event.objects.get()
    assert event.status == "failed"
    html = response.content.decode()
    assert "HTTP 500" in html
    assert "stored as failed" in html
    assert f'href="{change_url(event)}"' in html


def test_send_test_event_rejects_an_unknown_type(admin_client):
    response = admin_client.post(reverse(SEND_TEST), {"event_type": "not.a.type"})
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Event.objects.exists()


def test_send_test_event_needs_csrf_staff_and_its_own_permission(client, csrf_client, admin_user):
    url = reverse(SEND_TEST)
    csrf_client.force_login(admin_user)
    assert csrf_client.post(url, {"event_type": "case.completed"}).status_code == 403

    User.objects.create_user("plain", password="pw")
    client.login(username="plain", password="pw")
    response = client.get(url)
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]

    # Viewing (and even reprocessing) events is not enough: the page runs real handlers.
    viewer = staff_user("viewer", "view_event", "reprocess_event")
    client.force_login(viewer)
    assert client.get(url).status_code == 403
    assert client.post(url, {"event_type": "case.completed"}).status_code == 403
    assert f'href="{url}"' not in client.get(reverse(CHANGELIST)).content.decode()
    assert not Event.objects.exists()

    client.force_login(staff_user("tester", "view_event", "send_test_event"))
    assert client.get(url).status_code == 200
    assert f'href="{url}"' in client.get(reverse(CHANGELIST)).content.decode()
    assert client.post(url, {"event_type": "case.completed"}).status_code == 302
    assert Event.objects.get().is_test


def test_send_test_event_without_a_secret_says_so_in_words_for_the_page(admin_client, settings):
    settings.KLAREFI_WEBHOOK_SECRET = None
    response = admin_client.post(reverse(SEND_TEST), {"event_type": "case.completed"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "no webhook secret is configured" in html
    assert "KLAREFI_WEBHOOK_SECRET" in html
    assert "--" not in re.sub(r"<!--.*?-->", "", html.split('id="content"')[1])
    assert not Event.objects.exists()


def test_reprocess_across_a_filtered_selection_visits_each_event_once(client, handlers):
    for number in range(5):
        make_event(f"evt_failed_{number}", status=Event.Status.FAILED, attempts=1)
    make_event("evt_done", status=Event.Status.PROCESSED, attempts=1)
    client.force_login(staff_user("operator", "view_event", "reprocess_event"))

    response = client.post(
        reverse(CHANGELIST) + "?status=failed",
        {"action": "reprocess_events", "select_across": "1", "_selected_action": ["0"]},
        follow=True,
    )

    assert "5 events succeeded, 0 failed." in response.content.decode()
    assert sorted(Event.objects.values_list("status", "attempts").distinct()) == [
        ("processed", 1),
        ("processed", 2),
    ]
    assert Event.objects.get(event_id="evt_done").attempts == 1


def test_batches_are_keyed_on_pk_while_processing_changes_the_filtered_column():
    # Processing flips the very column the selection filters on: keyset batches still see
    # every event exactly once.
    for number in range(5):
        make_event(f"evt_{number}", status=Event.Status.FAILED)
    seen = []
    for event in events_in_pk_order(Event.objects.filter(status="failed"), chunk_size=2):
        seen.append(event.event_id)
        Event.objects.filter(pk=event.pk).update(status=Event.Status.PROCESSED)
    assert seen == [f"evt_{number}" for number in range(5)]


# Test events, long ids, the Reprocess button and the action's links


def test_test_events_have_a_badge_a_filter_and_a_field_without_loading_payloads(admin_client):
    make_event("evt_real")
    test = make_event("evt_test_1", is_test=True)

    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert html.count('<span class="klarefi-test"') == 1
    rows = [q["sql"] for q in queries if '"django_klarefi_event"."event_id"' in q["sql"]]
    assert all('"payload"' not in sql for sql in rows)

    assert "?is_test__exact=1" in html  # the filter's choices are static: yes / no
    only_tests = admin_client.get(reverse(CHANGELIST), {"is_test__exact": "1"}).content.decode()
    assert listed_event_ids(only_tests) == {"evt_test_1"}
    no_tests = admin_client.get(reverse(CHANGELIST), {"is_test__exact": "0"}).content.decode()
    assert listed_event_ids(no_tests) == {"evt_real"}

    page = admin_client.get(change_url(test)).content.decode()
    assert re.search(r'<div class="[^"]*field-is_test', page)
    assert 'alt="True"' in page  # Django's boolean icon


def test_long_ids_are_shortened_in_the_list_and_whole_on_hover_and_the_page(admin_client):
    long_id = "sha256:" + "ab12" * 16
    long_case = "case_" + "x" * 60
    event = make_event(long_id, case_id=long_case)

    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    shown = re.search(
        rf'<span class="klarefi-id klarefi-event-id" title="{long_id}">([^<]+)</span>', html
    )
    assert shown
    assert len(shown[1]) <= 20
    assert shown[1].startswith("sha256:")
    assert "…" in shown[1]
    assert f'title="{long_case}"' in html
    assert f">{long_id}<" not in html

    page = admin_client.get(change_url(event)).content.decode()
    assert f'<div class="readonly">{long_id}</div>' in page


def test_reprocess_button_posts_with_csrf_and_runs_the_processing_path(client, handlers):
    failed = make_event("evt_failed", status=Event.Status.FAILED, attempts=1, error="boom")
    url = reverse("admin:django_klarefi_event_reprocess", args=[failed.pk])

    client.force_login(staff_user("viewer", "view_event"))
    assert url not in client.get(change_url(failed)).content.decode()
    assert client.post(url).status_code == 403

    client.force_login(staff_user("operator", "view_event", "reprocess_event"))
    page = client.get(change_url(failed)).content.decode()
    form = re.search(
        rf'<form method="post" action="{url}" class="klarefi-reprocess">(.*?)</form>', page, re.S
    )
    assert form
    assert 'name="csrfmiddlewaretoken"' in form[1]
    assert client.get(url).status_code == 405
    failed.refresh_from_db()
    assert failed.attempts == 1

    response = client.post(url, follow=True)
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.error) == ("processed", 2, "")
    assert handlers.names == ["typed", "event_received"]
    assert response.redirect_chain[-1][0] == change_url(failed)
    assert (
        "Reprocessed case.completed evt_failed: processed (attempt 2)." in response.content.decode()
    )

    # A processed event runs again too: the button is a deliberate, single-event choice.
    response = client.post(url, follow=True)
    failed.refresh_from_db()
    assert failed.attempts == 3


def test_reprocess_button_reports_a_failure(client, handlers):
    failed = make_event("evt_failed", status=Event.Status.FAILED, attempts=1, error="old")
    handlers.fail_with = RuntimeError("still broken")
    client.force_login(
        staff_user("operator", "view_event", "view_event_payload", "reprocess_event")
    )
    url = reverse("admin:django_klarefi_event_reprocess", args=[failed.pk])
    html = client.post(url, follow=True).content.decode()
    assert "failed again (attempt 2)" in html
    assert "RuntimeError: still broken" in html  # the page shows the new traceback


def test_reprocess_button_needs_csrf(csrf_client, admin_user):
    failed = make_event("evt_failed", status=Event.Status.FAILED, attempts=1)
    csrf_client.force_login(admin_user)
    url = reverse("admin:django_klarefi_event_reprocess", args=[failed.pk])
    assert csrf_client.post(url).status_code == 403
    failed.refresh_from_db()
    assert failed.attempts == 1


def test_reprocess_action_message_links_to_the_failed_events(client, handlers):
    events = [
        make_event(f"evt_failed_{n}", status=Event.Status.FAILED, attempts=1) for n in range(2)
    ]
    handlers.fail_with = RuntimeError("still broken")
    client.force_login(staff_user("operator", "view_event", "reprocess_event"))

    html = run_action(client, "reprocess_events", *events).content.decode()

    assert "0 events succeeded, 2 failed." in html
    for event in events:
        assert f'<a href="{change_url(event)}">{event.event_id}</a>' in html


@pytest.fixture
def atomic_requests(settings):
    """ATOMIC_REQUESTS on the default database: a key of the database's settings dict,
    which the connection reads on each request."""
    settings.DATABASES["default"]["ATOMIC_REQUESTS"] = True
    assert connection.settings_dict["ATOMIC_REQUESTS"] is True
    yield
    settings.DATABASES["default"]["ATOMIC_REQUESTS"] = False


@pytest.mark.django_db(transaction=True)
def test_send_test_event_and_reprocess_run_outside_a_request_transaction(
    client, handlers, settings
):
    # Processing commits the event and its failure record itself: inside a request
    # transaction, its transaction would be a savepoint of the page's, and the failure
    # record would commit (or roll back) with the page.
    depths: list[int] = []
    handlers.on_call = lambda event: depths.append(len(connection.atomic_blocks))
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    database = settings.DATABASES["default"]

    database["ATOMIC_REQUESTS"] = False
    client.post(reverse(SEND_TEST), {"event_type": "case.completed"})
    without = depths[:]
    database["ATOMIC_REQUESTS"] = True
    try:
        assert connection.settings_dict["ATOMIC_REQUESTS"] is True
        client.post(reverse(SEND_TEST), {"event_type": "case.completed"})
        with_atomic_requests = depths[len(without) :]
        failed = Event.objects.order_by("pk").last()
        handlers.fail_with = RuntimeError("down")
        client.post(reverse("admin:django_klarefi_event_reprocess", args=[failed.pk]))
    finally:
        database["ATOMIC_REQUESTS"] = False

    assert without
    assert with_atomic_requests == without  # no request transaction around the handlers
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == ("failed", 2)
    assert "RuntimeError: down" in failed.error


@pytest.mark.django_db(transaction=True)
def test_the_reprocess_action_records_a_commit_failure_under_atomic_requests(
    client, handlers, atomic_requests
):
    # The action runs on the changelist's POST. Were the changelist inside a request
    # transaction, a receiver's deferred foreign key would fail at the page's COMMIT: a
    # 500 page, and the attempt and its error rolled back with it.
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    handlers.fail_with = RuntimeError("first attempt")
    post_event(client, {"id": "evt_action", "event": "case.completed"})
    handlers.fail_with = None
    event = Event.objects.get()
    assert (event.status, event.attempts) == ("failed", 1)

    handlers.on_call = lambda received: HandlerRecordNote.objects.create(record_id=10**9)
    response = client.post(
        reverse("admin:django_klarefi_event_changelist"),
        {"action": "reprocess_events", "_selected_action": [event.pk]},
    )
    assert response.status_code == 302
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("failed", 2)
    assert "IntegrityError" in event.error


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_postgresql_filtered_lists_count_at_most_the_cap_then_estimate():
    class SmallCap(EstimatedCountPaginator):
        estimate_from = 20

    now = timezone.now()
    Event.objects.bulk_create(
        Event(
            event_id=f"evt_{n}",
            event_type="case.completed" if n < 200 else "session.created",
            payload={},
            status=Event.Status.PROCESSED,
            received_at=now - timedelta(seconds=n),
            last_received_at=now,
        )
        for n in range(210)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE django_klarefi_event")

    few = SmallCap(Event.objects.filter(event_type="session.created").order_by("-id"), 5)
    assert (few.count, few.count_is_estimate) == (10, False)

    many = SmallCap(Event.objects.filter(event_type="case.completed").order_by("-id"), 5)
    with CaptureQueriesContext(connection) as queries:
        count, estimated = many.count, many.count_is_estimate
    assert estimated
    # The planner's estimate, never below the rows already counted.
    assert count >= 21
    sqls = [q["sql"].upper() for q in queries]
    # No count over every matching row: one capped at the cap + 1, and an EXPLAIN.
    [counted] = [sql for sql in sqls if "COUNT(" in sql]
    assert "LIMIT 21" in counted
    assert any(sql.startswith("EXPLAIN") for sql in sqls)
