"""The Event admin in a real browser: Debian's chromium, driven by Playwright, against
pytest-django's live server (a real HTTP server on 127.0.0.1).

Playwright's own browser download cannot work here, so the tests launch the system
``/usr/bin/chromium``. Screenshots land in ``.artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from django.db import connections
from django.utils import timezone
from playwright import sync_api

from django_klarefi.models import Event

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / ".artifacts" / "screenshots"
PASSWORD = "correct-horse-battery"
T = TypeVar("T")


@pytest.fixture
def open_browser(tmp_path: Path) -> Iterator[Callable[[], sync_api.Page]]:
    """Start chromium, in a fresh profile (a new temporary user-data directory), on demand.

    Create test data before calling it: while Playwright's sync API is active, its event
    loop counts as running in this thread, and Django refuses ORM calls there. Later ORM
    calls go through :func:`in_thread`.
    """
    with contextlib.ExitStack() as stack:

        def start() -> sync_api.Page:
            playwright = stack.enter_context(sync_api.sync_playwright())
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"),
                executable_path=CHROMIUM,
                args=CHROMIUM_ARGS,
                headless=True,
                viewport={"width": 1600, "height": 900},
            )
            stack.callback(context.close)
            context.set_default_timeout(15_000)
            return context.pages[0] if context.pages else context.new_page()

        yield start


def in_thread(function: Callable[[], T]) -> T:
    """Run ORM code in a thread of its own, outside Playwright's event loop."""

    def run() -> T:
        try:
            return function()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


@pytest.fixture
def operator(django_user_model):
    """A superuser: sees events, may reprocess and delete them."""
    return django_user_model.objects.create_superuser("operator", "op@example.com", PASSWORD)


def make_event(event_id: str, *, minutes_ago: int, **fields) -> Event:
    received = timezone.now() - timedelta(minutes=minutes_ago)
    event_type = fields.pop("event_type", "document.processed")
    payload = fields.pop(
        "payload",
        {
            "id": event_id,
            "event": event_type,
            "case_id": fields.get("case_id", ""),
            "data": {"document_id": "doc_1", "document_type": "payslip", "confidence": 0.97},
        },
    )
    return Event.objects.create(
        event_id=event_id,
        event_type=event_type,
        payload=payload,
        received_at=received,
        last_received_at=received,
        **fields,
    )


def make_failed_case(event_id: str, *, case_id: str) -> Event:
    """A case.completed event that failed three deliveries, ten minutes ago."""
    return make_event(
        event_id,
        minutes_ago=10,
        event_type="case.completed",
        case_id=case_id,
        status=Event.Status.FAILED,
        attempts=3,
        deliveries=3,
        error="RuntimeError: boom",
    )


def log_in(page, live_server) -> None:
    page.goto(live_server.url + "/admin/")
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    sync_api.expect(page.locator("#site-name")).to_be_visible()
    sync_api.expect(page.locator("body")).to_contain_text("Site administration")


def open_changelist(page) -> None:
    page.get_by_role("link", name="Klarefi events", exact=True).first.click()
    sync_api.expect(page.locator("#changelist")).to_be_visible()


def event_rows(page):
    return page.locator("#result_list tbody tr")


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    target = SCREENSHOTS / name
    page.screenshot(path=str(target), full_page=True)
    return target


def test_log_in_and_see_events_in_the_changelist(open_browser, live_server, operator):
    make_event(
        "evt_doc_1",
        minutes_ago=30,
        case_id="case_42",
        session_id="sess_7",
        status=Event.Status.PROCESSED,
        attempts=1,
        deliveries=1,
    )
    make_event(
        "evt_skill_2",
        minutes_ago=20,
        event_type="skill.needs_review",
        case_id="case_42",
        status=Event.Status.PENDING,
        deliveries=1,
    )
    make_failed_case("evt_case_3", case_id="case_43")

    page = open_browser()
    log_in(page, live_server)
    open_changelist(page)

    rows = event_rows(page)
    sync_api.expect(rows).to_have_count(3)
    # Newest first, with the failed one set apart.
    sync_api.expect(rows.nth(0)).to_contain_text("evt_case_3")
    sync_api.expect(rows.nth(2)).to_contain_text("evt_doc_1")
    failed = rows.nth(0).locator(".klarefi-status-failed")
    sync_api.expect(failed).to_have_text("Failed")
    assert failed.evaluate("el => getComputedStyle(el).color") == "rgb(255, 255, 255)"
    sync_api.expect(page.locator("a.klarefi-send-test")).to_have_text("Send test event")
    assert screenshot(page, "admin-event-changelist.png").stat().st_size > 0


def test_filter_by_status(open_browser, live_server, operator):
    make_event("evt_ok", minutes_ago=3, status=Event.Status.PROCESSED)
    make_event("evt_bad", minutes_ago=2, status=Event.Status.FAILED)
    make_event("evt_wait", minutes_ago=1, status=Event.Status.PENDING)

    page = open_browser()
    log_in(page, live_server)
    open_changelist(page)
    sync_api.expect(event_rows(page)).to_have_count(3)
    page.locator("#changelist-filter").get_by_role("link", name="Failed", exact=True).click()

    sync_api.expect(page).to_have_url(re.compile(r"status=failed"))
    sync_api.expect(event_rows(page)).to_have_count(1)
    sync_api.expect(event_rows(page).first).to_contain_text("evt_bad")


def test_open_an_event_and_see_the_pretty_payload(open_browser, live_server, operator):
    make_event(
        "evt_case_9",
        minutes_ago=5,
        event_type="case.completed",
        case_id="case_9",
        status=Event.Status.FAILED,
        attempts=2,
        deliveries=2,
        payload={
            "id": "evt_case_9",
            "event": "case.completed",
            "case_id": "case_9",
            "data": {"outcome": "approved", "note": "<script>window.pwned = 1</script>"},
        },
        error=(
            "Traceback (most recent call last):\n"
            '  File "/app/handlers.py", line 12, in on_case_completed\n'
            "    raise RuntimeError('CRM unavailable')\n"
            "RuntimeError: CRM unavailable"
        ),
    )

    page = open_browser()
    log_in(page, live_server)
    open_changelist(page)
    page.get_by_role("link", name="evt_case_9").click()

    payload = page.locator("pre.klarefi-payload")
    sync_api.expect(payload).to_be_visible()
    text = payload.inner_text()
    assert '\n  "case_id": "case_9"' in text  # indented JSON
    assert '\n    "note": "<script>window.pwned = 1</script>"' in text  # shown as text
    assert page.evaluate("window.pwned") is None  # and never run
    sync_api.expect(page.locator("pre.klarefi-error")).to_contain_text(
        "RuntimeError: CRM unavailable"
    )
    assert page.locator("input[name=_save]").count() == 0
    assert screenshot(page, "admin-event-change.png").stat().st_size > 0


def test_reprocess_a_failed_event_whose_handler_now_succeeds(
    open_browser, live_server, operator, handlers
):
    event = make_event(
        "evt_retry", minutes_ago=5, status=Event.Status.FAILED, attempts=1, error="boom"
    )

    page = open_browser()
    log_in(page, live_server)
    open_changelist(page)
    row = event_rows(page).filter(has_text="evt_retry")
    sync_api.expect(row.locator(".klarefi-status-failed")).to_be_visible()
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", "reprocess_events")
    page.click("button[name=index]")

    sync_api.expect(page.locator(".messagelist")).to_contain_text("1 event succeeded, 0 failed.")
    sync_api.expect(
        event_rows(page).filter(has_text="evt_retry").locator(".klarefi-status-processed")
    ).to_have_text("Processed")
    in_thread(event.refresh_from_db)
    assert (event.status, event.attempts, event.error) == ("processed", 2, "")
    assert handlers.names == ["typed", "event_received"]


def test_send_a_test_event_and_see_it(open_browser, live_server, operator, handlers):
    page = open_browser()
    log_in(page, live_server)
    open_changelist(page)
    page.click("a.klarefi-send-test")

    sync_api.expect(page.locator("h1")).to_have_text("Send test event")
    page.select_option("#id_event_type", "skill.resolved")
    page.fill("#id_case_id", "case_browser")
    page.get_by_role("button", name="Send test event").click()

    message = page.locator(".messagelist")
    sync_api.expect(message).to_contain_text("Sent skill.resolved")
    sync_api.expect(message).to_contain_text("HTTP 200")
    event = in_thread(Event.objects.get)
    assert (event.event_type, event.case_id, event.status) == (
        "skill.resolved",
        "case_browser",
        "processed",
    )
    message.get_by_role("link", name=event.event_id).click()
    sync_api.expect(page.locator(".field-case_id .readonly")).to_have_text("case_browser")
    sync_api.expect(page.locator("pre.klarefi-payload")).to_contain_text('"skill.resolved"')
    open_changelist(page)
    listed = event_rows(page).first.locator(".klarefi-event-id")
    sync_api.expect(listed).to_have_attribute("title", event.event_id)  # shortened, whole on hover
    sync_api.expect(event_rows(page).first.locator(".klarefi-test")).to_have_text("test")
    assert handlers.names == ["typed", "event_received"]


# Real screen sizes, the Reprocess button, and a Content Security Policy

LONG_ID = "sha256:" + "9f2c4e1a" * 8  # 71 characters, like a digest id


def make_list_of_real_shape() -> None:
    """Events as a real list has them: digest ids, long case ids, each status, a test event."""
    make_event(
        LONG_ID, minutes_ago=40, case_id="case_" + "7d1e" * 12, status=Event.Status.PROCESSED
    )
    make_event(
        "evt_01HQ3K9ZB2XWJ6V8N4T7Q2M5RA",
        minutes_ago=30,
        event_type="session.submitted_incomplete",
        case_id="case_42",
        session_id="sess_" + "a1b2" * 10,
        status=Event.Status.PENDING,
    )
    make_event(
        "evt_test_5f0c9a1e2b7d44c3a9e1b0f2",
        minutes_ago=20,
        event_type="skill.needs_review",
        case_id="case_43",
        status=Event.Status.PROCESSED,
        is_test=True,
    )
    make_failed_case("sha256:" + "0b7e" * 16, case_id="case_44")


def fully_visible(page, locator) -> bool:
    """Whether the element is inside the viewport and shows all of its text (not clipped)."""
    return locator.evaluate(
        """el => {
            const box = el.getBoundingClientRect();
            const cell = el.closest('td, th') || el;
            return box.left >= 0 && box.right <= window.innerWidth
                && el.scrollWidth <= el.clientWidth + 1 && cell.scrollWidth <= cell.clientWidth + 1;
        }"""
    )


def test_changelist_fits_1366x768_with_the_sidebar_and_long_ids(
    open_browser, live_server, operator
):
    make_list_of_real_shape()
    page = open_browser()
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in(page, live_server)
    open_changelist(page)
    sync_api.expect(page.locator("#nav-sidebar")).to_be_visible()  # the sidebar is open

    rows = event_rows(page)
    sync_api.expect(rows).to_have_count(4)
    target = screenshot(page, "admin-changelist-1366x768.png")
    # No horizontal scroll: not on the page, not in the results table.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    results = page.locator("#changelist .results")
    assert results.evaluate("el => el.scrollWidth <= el.clientWidth")
    for index in range(4):
        badge = rows.nth(index).locator(".klarefi-status")
        assert fully_visible(page, badge), f"row {index}'s status is cut off"
        assert badge.inner_text() in {"Processed", "Pending", "Failed"}
    # The 71-character id is shortened, and whole on hover.
    short = rows.filter(has_text="sha256:9f2c").locator(".klarefi-id").first
    assert short.get_attribute("title") == LONG_ID
    assert len(short.inner_text()) <= 24
    # The test event has its badge.
    sync_api.expect(rows.filter(has_text="evt_test_").locator(".klarefi-test")).to_have_text("test")
    assert target.stat().st_size > 0


def test_changelist_on_a_phone_shows_type_and_status(open_browser, live_server, operator):
    make_list_of_real_shape()
    page = open_browser()
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, live_server)
    page.goto(live_server.url + "/admin/django_klarefi/event/")
    rows = event_rows(page)
    sync_api.expect(rows).to_have_count(4)
    target = screenshot(page, "admin-changelist-390.png")
    for index in range(4):
        row = rows.nth(index)
        assert fully_visible(page, row.locator(".klarefi-status")), f"row {index}: status"
        type_cell = row.locator("th.field-type_label a")
        box = type_cell.bounding_box()
        assert box is not None
        assert box["x"] >= 0
        assert box["x"] + box["width"] <= 390
    assert target.stat().st_size > 0


def test_reprocess_button_on_the_event_page_and_wrapped_tracebacks(
    open_browser, live_server, operator, handlers
):
    long_line = "RuntimeError: " + "the CRM answered 503 for case_42 " * 12
    event = make_event(
        LONG_ID,
        minutes_ago=5,
        status=Event.Status.FAILED,
        attempts=1,
        error=f'Traceback (most recent call last):\n  File "/app/handlers.py", line 3\n{long_line}',
    )
    page = open_browser()
    page.set_viewport_size({"width": 1366, "height": 768})
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/django_klarefi/event/{event.pk}/change/")

    sync_api.expect(page.locator(".field-event_id .readonly")).to_have_text(LONG_ID)
    error = page.locator("pre.klarefi-error")
    sync_api.expect(error).to_contain_text("the CRM answered 503")
    # The long line wraps: nothing to scroll sideways, in the box or on the page.
    assert error.evaluate("el => el.scrollWidth <= el.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "admin-event-change-failed.png")

    page.get_by_role("button", name="Reprocess").click()
    sync_api.expect(page.locator(".messagelist")).to_contain_text("processed (attempt 2)")
    sync_api.expect(page.locator(".field-status_badge .klarefi-status")).to_have_text("Processed")
    in_thread(event.refresh_from_db)
    assert (event.status, event.attempts) == ("processed", 2)
    assert handlers.names == ["typed", "event_received"]
    screenshot(page, "admin-event-change-reprocessed.png")


def test_action_message_links_to_the_failed_events(open_browser, live_server, operator, handlers):
    event = make_event("evt_still_bad", minutes_ago=5, status=Event.Status.FAILED, attempts=1)
    handlers.fail_with = RuntimeError("still broken")
    page = open_browser()
    log_in(page, live_server)
    open_changelist(page)
    event_rows(page).filter(has_text="evt_still_bad").locator("input.action-select").check()
    page.select_option("select[name=action]", "reprocess_events")
    page.click("button[name=index]")

    message = page.locator(".messagelist")
    sync_api.expect(message).to_contain_text("0 events succeeded, 1 failed.")
    message.get_by_role("link", name="evt_still_bad").click()
    sync_api.expect(page).to_have_url(re.compile(rf"/event/{event.pk}/change/$"))
    sync_api.expect(page.locator("pre.klarefi-error")).to_contain_text("still broken")


@pytest.fixture
def csp_server(django_db_blocker):
    from tests.servers import runserver

    with django_db_blocker.unblock(), runserver(settings_module="tests.settings_admin_csp") as base:
        yield base


def test_admin_pages_work_under_a_style_src_self_policy(open_browser, csp_server, operator):
    import django

    make_list_of_real_shape()
    failed = Event.objects.get(status=Event.Status.FAILED)
    page = open_browser()
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.set_viewport_size({"width": 1366, "height": 768})
    response = page.goto(csp_server + "/admin/")
    assert response is not None
    assert "style-src 'self'" in response.headers["content-security-policy"]
    page.fill("#id_username", "operator")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    pages = {
        "changelist": "/admin/django_klarefi/event/",
        "change": f"/admin/django_klarefi/event/{failed.pk}/change/",
        "send-test": "/admin/django_klarefi/event/send-test-event/",
    }
    for name, path in pages.items():
        response = page.goto(csp_server + path)
        assert response is not None
        assert response.status == 200, name
        assert "style-src 'self'" in response.headers["content-security-policy"]
        screenshot(page, f"admin-csp-django{django.VERSION[0]}{django.VERSION[1]}-{name}.png")
    # The static stylesheet applied: the failed badge is white on red, the pre wraps.
    page.goto(csp_server + pages["changelist"])
    badge = page.locator(".klarefi-status-failed").first
    assert badge.evaluate("el => getComputedStyle(el).color") == "rgb(255, 255, 255)"
    page.goto(csp_server + pages["change"])
    pre = page.locator("pre.klarefi-error")
    assert pre.evaluate("el => getComputedStyle(el).whiteSpace") == "pre-wrap"
    assert violations == []


def test_a_long_title_on_the_event_page_at_390px_breaks_between_words(
    open_browser, live_server, operator
):
    # The subtitle is "<type> <event id>": at 390 px it wraps at the space, as Django's own
    # pages wrap (word-break: break-word), and only an id longer than a line breaks inside.
    event = make_event(
        "evt_" + "01HQ3K9ZB2XWJ6V8N4T7Q2M5RA" * 3,
        minutes_ago=5,
        event_type="case.completed",
        case_id="case_42",
    )
    page = open_browser()
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, live_server)
    page.goto(f"{live_server.url}/admin/django_klarefi/event/{event.pk}/change/")
    title = page.locator("#content > h2")
    sync_api.expect(title).to_have_text(f"case.completed {event.event_id}")
    target = screenshot(page, "admin-event-title-390.png")
    lines_of = """(el, word) => {
        const text = el.firstChild;
        const start = text.data.indexOf(word);
        const range = document.createRange();
        range.setStart(text, start);
        range.setEnd(text, start + word.length);
        return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
    }"""
    assert title.evaluate(lines_of, "case.completed") == 1  # not "case.complete / d"
    assert title.evaluate(lines_of, event.event_id) >= 2  # longer than a line: it breaks
    assert title.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert target.stat().st_size > 0
