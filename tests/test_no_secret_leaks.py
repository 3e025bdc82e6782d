"""No configured secret ever appears in a log record, a response, a check message or a row.

Every logger is captured at every level while a broad set of webhook scenarios runs:
each status code the view answers, rotation, handler failures whose exception text
includes the payload, a task backend that refuses the task, and the system checks.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection
from django.forms.models import model_to_dict
from django.test import Client, override_settings

from django_klarefi.models import Event
from django_klarefi.signature import MAX_HEADER_LENGTH, sign_webhook_payload
from tests.conftest import SECRET

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/webhooks/klarefi/"
NEW = "whsec_leakcheck_new_9d1e77c0aa"
OLD = "whsec_leakcheck_old_4b2cf1e3bb"
NO_PREFIX = "leakcheck_noprefix_5e8a03d9cc"
SECRETS = [SECRET, NEW, OLD, NO_PREFIX]


def secret_fragments() -> list[str]:
    """Each secret, and its part after ``whsec_`` (the part that carries the entropy)."""
    return [*SECRETS, *(secret.removeprefix("whsec_") for secret in SECRETS)]


class Everything(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.NOTSET)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
        self.texts: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The formatted line with its traceback, and every attribute (args, extras).
        self.texts.append(self.format(record))
        self.texts.append(repr(vars(record)))


@pytest.fixture
def all_logs() -> Iterator[Everything]:
    """Capture every logger at every level, whatever the project's LOGGING says."""
    handler = Everything()
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.propagate, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
        logger.addHandler(handler)
        # Each logger has the handler itself: no record reaches it twice through parents.
        logger.propagate = False
    try:
        yield handler
    finally:
        for logger, level, propagate, disabled in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled


def response_texts(response) -> list[str]:
    return [
        response.content.decode("utf-8", "replace"),
        repr(response.items()),
        str(response.status_code),
    ]


def post(client: Client, body: bytes, header: str | None) -> object:
    extra = {} if header is None else {"HTTP_X_KLAREFI_SIGNATURE": header}
    return client.post(URL, body, content_type="application/json", **extra)


def hold_row_lock(event_id: str, locked: threading.Event, release: threading.Event) -> None:
    """Lock an event's row from another connection (PostgreSQL), as a running attempt does."""
    import psycopg

    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"], port=settings["PORT"], user=settings["USER"],
        password=settings["PASSWORD"], dbname=settings["NAME"],
    ) as other, other.transaction():  # fmt: skip
        other.execute(
            "SELECT id FROM django_klarefi_event WHERE event_id = %s FOR UPDATE", [event_id]
        )
        locked.set()
        release.wait(30)


@override_settings(KLAREFI_WEBHOOK_SECRET=[NEW, OLD])
def test_no_secret_in_logs_responses_or_rows_across_webhook_scenarios(all_logs, handlers):
    client = Client()
    now = int(time.time())
    body = b'{"id":"evt_leak","event":"case.completed","case_id":"case_leak"}'
    answered: dict[int, int] = {}
    texts: list[str] = []

    def send(body: bytes, header: str | None, method: str = "post") -> None:
        response = post(client, body, header) if method == "post" else getattr(client, method)(URL)
        answered[response.status_code] = answered.get(response.status_code, 0) + 1
        texts.extend(response_texts(response))

    # 405 and OPTIONS.
    send(b"", None, "get")
    send(b"", None, "options")
    # 401: every rejection reason, including a signature made with a wrong secret.
    send(body, None)
    send(body, "t=abc,v1=zz")
    send(body, f"t={now}")
    send(body, sign_webhook_payload(body, "whsec_forged", now))
    send(body, sign_webhook_payload(body, NEW, now - 10_000))
    send(body, sign_webhook_payload(body, NEW, now + 10_000))
    send(body, sign_webhook_payload(body, NEW, now) + ",v0=" + "0" * MAX_HEADER_LENGTH)
    # 413.
    with override_settings(KLAREFI_MAX_BODY_BYTES=16):
        send(body, sign_webhook_payload(body, NEW, now))
    # 400: invalid payload, and an event that cannot be stored.
    send(b'{"event":1}', sign_webhook_payload(b'{"event":1}', NEW, now))
    long_type = b'{"event":"' + b"x" * 200 + b'"}'
    send(long_type, sign_webhook_payload(long_type, NEW, now))
    # 200: the new secret, the old one (rotation), a redelivery.
    send(body, sign_webhook_payload(body, NEW, now))
    send(body, sign_webhook_payload(body, OLD, now))
    other = b'{"id":"evt_leak_old","event":"session.created","session_id":"s1"}'
    send(other, sign_webhook_payload(other, OLD, now))
    # 500: a handler fails with the payload in its message; then 200 on redelivery.
    failing = b'{"id":"evt_leak_fail","event":"document.uploaded","data":{"name":"x.pdf"}}'

    def fail_with_payload(event: Event) -> None:
        if event.event_id == "evt_leak_fail":
            raise RuntimeError(f"cannot handle {event.payload!r} (delivery {event!r})")

    handlers.on_call = fail_with_payload
    send(failing, sign_webhook_payload(failing, NEW, now))
    failed_row = model_to_dict(Event.objects.get(event_id="evt_leak_fail"))
    assert "cannot handle" in failed_row["error"]
    texts.append(repr(failed_row))
    # 409 (PostgreSQL's row locks): a redelivery while another attempt holds the row.
    if connection.vendor == "postgresql":
        locked, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=hold_row_lock, args=("evt_leak_fail", locked, release))
        holder.start()
        try:
            assert locked.wait(30)
            send(failing, sign_webhook_payload(failing, NEW, now))
        finally:
            release.set()
            holder.join()
    handlers.on_call = None
    send(failing, sign_webhook_payload(failing, NEW, now))
    # 503: task mode with a task backend that does not exist; the event stays pending.
    queued = b'{"id":"evt_leak_queue","event":"case.completed"}'
    with override_settings(KLAREFI_PROCESSING="task", KLAREFI_TASK_BACKEND="missing"):
        send(queued, sign_webhook_payload(queued, NEW, now))

    expected = {200, 401, 405, 413, 400, 500, 503}
    if connection.vendor == "postgresql":
        expected.add(409)
    assert set(answered) == expected, answered
    assert Event.objects.get(event_id="evt_leak_fail").status == "processed"

    texts.extend(all_logs.texts)
    # The log did see the scenarios: rejections, the handler's failure, the refused task.
    logged = "\n".join(all_logs.texts)
    assert "no_matching_signature" in logged
    assert "evt_leak_fail (document.uploaded) failed with RuntimeError" in logged
    assert "Could not enqueue" in logged
    # And every stored row, every column.
    texts.extend(repr(model_to_dict(event)) for event in Event.objects.all())

    for fragment in secret_fragments():
        leaks = [text for text in texts if fragment in text]
        assert not leaks, f"a secret leaked into {leaks[0][:300]!r}"


# The whole check command: from Django 6.1 its model checks ask the database for features.
@pytest.mark.django_db
@pytest.mark.parametrize(
    "secret",
    [[NO_PREFIX, NEW], [NEW, ""], (NEW, 123), NO_PREFIX],
    ids=["no-prefix", "empty-entry", "wrong-type", "single-no-prefix"],
)
def test_no_secret_in_system_check_output(all_logs, secret):
    stdout, stderr = io.StringIO(), io.StringIO()
    with override_settings(KLAREFI_WEBHOOK_SECRET=secret):
        try:
            call_command("check", stdout=stdout, stderr=stderr)
        except Exception as error:  # SystemCheckError for the errors: its text is output too
            stderr.write(str(error))
    output = stdout.getvalue() + stderr.getvalue() + "\n".join(all_logs.texts)
    assert "django_klarefi." in output  # the check did report something
    for fragment in secret_fragments():
        assert fragment not in output
