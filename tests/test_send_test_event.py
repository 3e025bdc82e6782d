"""``manage.py klarefi_send_test_event`` and django_klarefi.sending, against real receivers.

The HTTP tests run the command against ``manage.py runserver`` on 127.0.0.1 (a real
server process, with signal receivers that record each call); ``--via-api`` runs against
a local ``http.server`` that records the request it gets.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from django_klarefi.event_types import EVENT_TYPES
from django_klarefi.models import Event
from django_klarefi.samples import sample_event
from django_klarefi.sending import (
    Delivery,
    SendingNotConfigured,
    default_url,
    request_api_test_event,
    send_test_event,
)
from tests.conftest import SECRET
from tests.servers import ROOT, free_port, runserver, subprocess_env
from tests.testapp.models import HandlerRecord

RECEIVER_PATH = "/webhooks/klarefi/"
SETTINGS = "tests.settings_send_test_event"
API_KEY = "sk_test_api_key_do_not_leak_91c2"


def send(*args: str) -> tuple[str, CommandError | None]:
    """Run the command in this process; return its output and the CommandError, if any."""
    out = StringIO()
    try:
        call_command("klarefi_send_test_event", *args, stdout=out, stderr=out, no_color=True)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def lines(output: str) -> list[list[str]]:
    return [line.split() for line in output.splitlines() if line.strip()]


# --- A real server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    """runserver on 127.0.0.1, on this run's test database; yields the receiver's URL."""
    with django_db_blocker.unblock(), runserver(settings_module=SETTINGS) as base:
        yield base + RECEIVER_PATH


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_events_sent_over_http_are_stored_and_signalled(server):
    output, error = send(
        "case.completed",
        "document.processed",
        "--url",
        server,
        "--case-id",
        "case_42",
        "--session-id",
        "sess_42",
        "--data",
        '{"note": "from --data"}',
    )
    assert error is None, output

    rows = lines(output)
    assert [row[0] for row in rows] == ["case.completed", "document.processed"]
    for row in rows:
        event_type, event_id, status, milliseconds, unit = row
        assert event_id.startswith("evt_test_")
        assert status == "200"
        assert float(milliseconds) >= 0
        assert unit == "ms"

    events = {event.event_id: event for event in Event.objects.all()}
    assert set(events) == {row[1] for row in rows}
    for event_type, event_id, *_ in rows:
        event = events[event_id]
        assert event.event_type == event_type
        assert event.status == Event.Status.PROCESSED
        assert (event.case_id, event.session_id) == ("case_42", "sess_42")
        assert event.payload["data"]["note"] == "from --data"
        handlers = sorted(
            HandlerRecord.objects.filter(event_id=event_id).values_list("handler", flat=True)
        )
        assert handlers == ["event_received", "typed"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_all_stores_one_event_of_each_type_over_http(server):
    output, error = send("--all", "--url", server)
    assert error is None, output
    assert [row[0] for row in lines(output)] == list(EVENT_TYPES)
    assert sorted(Event.objects.values_list("event_type", flat=True)) == sorted(EVENT_TYPES)
    assert set(Event.objects.values_list("status", flat=True)) == {Event.Status.PROCESSED}
    assert HandlerRecord.objects.filter(handler="typed").count() == len(EVENT_TYPES)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_count_sends_distinct_events(server):
    output, error = send("skill.resolved", "--count", "3", "--url", server)
    assert error is None, output
    ids = [row[1] for row in lines(output)]
    assert len(set(ids)) == 3
    assert set(Event.objects.values_list("event_id", flat=True)) == set(ids)


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
@pytest.mark.parametrize("offset", ["-600", "600"])
def test_stale_or_future_timestamp_gets_401_and_fails(server, offset):
    output, error = send("session.created", "--url", server, "--timestamp-offset", offset)
    (row,) = lines(output)
    assert row[0] == "session.created"
    assert row[2] == "401"
    assert "timestamp_outside_tolerance:" in output
    assert error is not None
    assert str(error) == "1 of 1 deliveries did not get a 2xx answer."
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_wrong_secret_gets_401_and_is_never_printed(server):
    wrong = "whsec_wrong_secret_6d1e"
    output, error = send("case.completed", "--url", server, "--secret", wrong)
    assert error is not None
    assert lines(output)[0][2] == "401"
    assert "no_matching_signature" in output
    assert wrong not in output
    assert wrong not in str(error)
    assert SECRET not in output
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_wrong_url_gets_404_with_a_hint(server):
    output, error = send("case.completed", "--url", server.replace(RECEIVER_PATH, "/nope/"))
    assert lines(output)[0][2] == "404"
    assert "no receiver at this URL: check --url" in output
    assert error is not None
    assert not Event.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
@pytest.mark.parametrize("suffix", ["", "/"])
def test_a_base_url_without_a_path_gets_the_receivers_path(server, suffix):
    # What a server prints (http://127.0.0.1:8011) is what a user passes first.
    base = server.removesuffix(RECEIVER_PATH)
    output, error = send("case.completed", "--url", base + suffix)
    assert error is None, output
    assert lines(output)[0][2] == "200"
    assert Event.objects.count() == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_404_says_exactly_which_url_to_pass(server):
    base = server.removesuffix(RECEIVER_PATH)
    output, error = send("case.completed", "--url", base + "/hooks/klarefi?x=1")
    assert error is not None
    assert f"this project's receiver is --url {base}/webhooks/klarefi)" in output


@override_settings(ROOT_URLCONF="tests.urls_without_receiver")
def test_a_base_url_without_a_receiver_in_the_urlconf_says_what_to_pass():
    _output, error = send("case.completed", "--url", "http://127.0.0.1:8011")
    assert error is not None
    assert str(error) == (
        "--url http://127.0.0.1:8011 has no path, and the receiver's path cannot be found: the "
        "URLconf does not include django_klarefi.urls. Pass the receiver's full URL, for "
        "example --url http://127.0.0.1:8011/webhooks/klarefi."
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_send_test_event_returns_the_delivery(server):
    payload = sample_event("document.uploaded", event_id="evt_delivery_1")
    delivery = send_test_event(payload, url=server)
    assert delivery.ok
    assert (delivery.event_type, delivery.event_id, delivery.status) == (
        "document.uploaded",
        "evt_delivery_1",
        200,
    )
    assert json.loads(delivery.body) == {"status": "processed", "event_id": "evt_delivery_1"}
    assert delivery.error == ""
    assert delivery.milliseconds > 0
    assert Event.objects.get().event_id == "evt_delivery_1"

    again = send_test_event(payload, url=server)
    assert json.loads(again.body)["status"] == "already_processed"
    assert Event.objects.get().deliveries == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_manage_py_exit_code_is_zero_on_success(server):
    result = run_manage_py("session.expired", "--url", server)
    assert result.returncode == 0, result.stderr
    (row,) = lines(result.stdout)
    assert row[0] == "session.expired"
    assert row[2] == "200"
    assert Event.objects.get().event_id == row[1]


# --- No server listening ------------------------------------------------------------------


def run_manage_py(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", "klarefi_send_test_event", *args],
        cwd=ROOT,
        env=subprocess_env(SETTINGS),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
def test_connection_refused_is_a_clear_error_without_traceback():
    url = f"http://127.0.0.1:{free_port()}{RECEIVER_PATH}"
    result = run_manage_py("case.completed", "--url", url)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    assert f"Could not connect to {url}: connection refused." in result.stderr
    assert "Is the server running" in result.stderr
    row = lines(result.stdout)[0]
    assert (row[0], row[2]) == ("case.completed", "-")


def test_connection_refused_stops_at_the_first_event():
    url = f"http://127.0.0.1:{free_port()}{RECEIVER_PATH}"
    output, error = send("--all", "--count", "5", "--url", url)
    assert error is not None
    assert "connection refused" in str(error)
    assert len(lines(output)) == 1


def test_send_test_event_reports_no_answer_in_the_delivery():
    url = f"http://127.0.0.1:{free_port()}{RECEIVER_PATH}"
    delivery = send_test_event(sample_event("case.completed"), url=url)
    assert delivery.status is None
    assert not delivery.ok
    assert delivery.error.startswith(f"Could not connect to {url}: connection refused.")
    assert delivery.body == ""


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1/hook", "is not an http:// or https:// URL."),
        ("127.0.0.1:8000/webhooks/klarefi/", "is not an http:// or https:// URL."),
        ("http://no-such-host.invalid/hook", "the host 'no-such-host.invalid' was not found."),
    ],
)
def test_bad_urls_are_clear_errors(url, message):
    output, error = send("case.completed", "--url", url)
    assert error is not None
    assert message in str(error)
    assert "Traceback" not in output


# --- In process ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_in_process_goes_through_the_real_view_and_signals(handlers):
    output, error = send("case.completed", "--in-process", "--case-id", "case_9")
    assert error is None, output
    (row,) = lines(output)
    assert (row[0], row[2]) == ("case.completed", "200")
    event = Event.objects.get()
    assert (event.event_id, event.case_id, event.status) == (row[1], "case_9", "processed")
    assert handlers.names == ["typed", "event_received"]


@pytest.mark.django_db
def test_events_built_by_the_command_are_stored_as_test_events(handlers):
    output, error = send("case.completed", "--in-process")
    assert error is None, output
    event = Event.objects.get()
    assert event.is_test
    assert event.payload["django_klarefi_test"] is True


def test_sending_in_process_does_not_import_django_test():
    # Production code (the admin's page, the command) must not pull in the test client.
    script = (
        "import django, sys\n"
        "from django.conf import settings\n"
        "settings.configure(INSTALLED_APPS=['django.contrib.admin', 'django.contrib.auth',"
        " 'django.contrib.contenttypes', 'django.contrib.sessions', 'django.contrib.messages',"
        " 'django_klarefi'], DATABASES={'default': {'ENGINE': 'django.db.backends.sqlite3',"
        " 'NAME': ':memory:'}}, ROOT_URLCONF='django_klarefi.urls', USE_TZ=True,"
        " KLAREFI_WEBHOOK_SECRET='whsec_x')\n"
        "django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('migrate', verbosity=0)\n"
        "import django_klarefi.admin\n"
        "from django_klarefi.samples import sample_event\n"
        "from django_klarefi.sending import send_test_event\n"
        "delivery = send_test_event(sample_event('case.completed'), in_process=True)\n"
        "print(delivery.status, 'django.test' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "False"]


@pytest.mark.django_db
def test_in_process_future_timestamp_gets_401(handlers):
    output, error = send("case.completed", "--in-process", "--timestamp-offset", "301")
    assert error is not None
    assert lines(output)[0][2] == "401"
    assert not Event.objects.exists()
    assert handlers.calls == []


@pytest.mark.django_db
def test_in_process_failing_handler_gets_500_and_fails(handlers):
    handlers.fail_with = RuntimeError("handler broke")
    output, error = send("skill.needs_review", "--in-process")
    assert error is not None
    assert lines(output)[0][2] == "500"
    assert Event.objects.get().status == Event.Status.FAILED


@pytest.mark.django_db
def test_in_process_function_returns_the_delivery(handlers):
    delivery = send_test_event(sample_event("session.created"), in_process=True)
    assert delivery.ok
    assert delivery.status == 200
    assert json.loads(delivery.body)["event_id"] == delivery.event_id
    assert Event.objects.get().event_id == delivery.event_id


@pytest.mark.django_db
def test_verbosity_2_prints_the_response_body():
    output, error = send("case.completed", "--in-process", "-v", "2")
    assert error is None
    event_id = lines(output)[0][1]
    assert json.dumps({"status": "processed", "event_id": event_id}, separators=(",", ":")) in (
        output
    )


# --- User errors --------------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(KLAREFI_WEBHOOK_SECRET=None)
def test_missing_secret_is_a_clear_error():
    output, error = send("case.completed", "--in-process")
    assert error is not None
    assert str(error) == (
        "No signing secret: KLAREFI_WEBHOOK_SECRET is not set. Set it, or pass --secret."
    )
    assert output == ""
    assert not Event.objects.exists()
    with pytest.raises(SendingNotConfigured):
        send_test_event(sample_event("case.completed"), in_process=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Name at least one event type, or pass --all."),
        (("case.complete",), "Unknown event type 'case.complete'. Did you mean 'case.completed'?"),
        (("case.completed", "--all"), "Pass event types or --all, not both."),
        (("case.completed", "--data", "{oops"), "--data is not valid JSON"),
        (("case.completed", "--data", "[1, 2]"), "--data must be a JSON object"),
        (("case.completed", "--count", "0"), "--count must be at least 1."),
        (("case.completed", "--secret", ""), "--secret is empty."),
        (("case.completed", "--secret", " \n"), "--secret is empty."),
        (
            ("case.completed", "--in-process", "--url", "http://127.0.0.1:8000/x/"),
            "--url is for HTTP",
        ),
        (("case.completed", "--in-process", "--via-api"), "not allowed with argument"),
        (("case.completed", "--via-api"), "EVENT_TYPE cannot be used with it"),
        (("--via-api", "--count", "2", "--data", "{}"), "--data, --count cannot be used"),
    ],
)
def test_user_errors_are_command_errors(args, message):
    output, error = send(*args)
    assert error is not None
    assert message in str(error)
    assert output == ""


# --- --via-api against a local server that records the request ----------------------------


@dataclass
class RecordingApi:
    status: int = 200
    answer: dict[str, Any] = field(default_factory=lambda: {"status": "sent"})
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""


@contextlib.contextmanager
def local_http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A stdlib HTTP server on 127.0.0.1 in a thread; yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@contextlib.contextmanager
def recording_api(api: RecordingApi) -> Iterator[RecordingApi]:
    """Klarefi's API, as far as --via-api needs it: records each request, answers ``api``."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            api.requests.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "authorization": self.headers.get("Authorization"),
                    "content_type": self.headers.get("Content-Type"),
                    "body": json.loads(self.rfile.read(length)),
                }
            )
            body = json.dumps(api.answer).encode()
            self.send_response(api.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    with local_http_server(Handler) as base_url:
        api.base_url = base_url
        with override_settings(KLAREFI_API_BASE_URL=base_url, KLAREFI_API_KEY=API_KEY):
            yield api


def test_via_api_posts_exactly_like_the_spec_curl_and_reports_the_answer():
    endpoint = "https://app.example.com/webhooks/klarefi/"
    with recording_api(RecordingApi(answer={"status": "sent", "event_id": "evt_api_1"})) as api:
        output, error = send("--via-api", "--url", endpoint)
    assert error is None, output
    assert api.requests == [
        {
            "method": "POST",
            "path": "/api/v1/webhooks/test",
            "authorization": f"Bearer {API_KEY}",
            "content_type": "application/json",
            "body": {"endpoint_url": endpoint, "signing_secret": SECRET},
        }
    ]
    (line,) = output.splitlines()
    assert line.startswith(f"via-api  POST {api.base_url}/api/v1/webhooks/test  200  ")
    assert line.endswith('{"status":"sent","event_id":"evt_api_1"}')
    assert API_KEY not in output
    assert SECRET not in output


def test_via_api_uses_given_secret_and_default_url_and_warns_it_is_loopback():
    with recording_api(RecordingApi()) as api:
        output, error = send("--via-api", "--secret", "whsec_other")
    assert error is None, output
    assert api.requests[0]["body"] == {
        "endpoint_url": default_url(),
        "signing_secret": "whsec_other",
    }
    assert default_url().startswith("http://127.0.0.1:8000/")
    assert (
        f"Warning: Klarefi will be asked to send to {default_url()}, a loopback address that "
        "its servers cannot reach. Pass your public receiver URL with --url."
    ) in output
    assert "whsec_other" not in output


def test_via_api_with_a_base_url_asks_for_the_receivers_url():
    with recording_api(RecordingApi()) as api:
        output, error = send("--via-api", "--url", "https://app.example.com")
    assert error is None, output
    assert api.requests[0]["body"]["endpoint_url"] == "https://app.example.com/webhooks/klarefi"


def test_via_api_with_a_public_url_does_not_warn():
    with recording_api(RecordingApi()):
        output, error = send("--via-api", "--url", "https://app.example.com/webhooks/klarefi")
    assert error is None, output
    assert "Warning" not in output


def test_via_api_error_answer_is_reported_and_fails_without_leaking():
    # An API that echoes what it got must not make the command print the secrets.
    answer = {"error": "invalid_api_key", "echo": f"Bearer {API_KEY} {SECRET}"}
    with recording_api(RecordingApi(status=401, answer=answer)):
        output, error = send("--via-api", "--url", "https://app.example.com/hook")
    assert error is not None
    assert str(error) == "Klarefi's API answered 401."
    assert "  401  " in output
    assert "invalid_api_key" in output
    assert "[redacted]" in output
    assert API_KEY not in output
    assert SECRET not in output


def test_via_api_function_returns_the_answer():
    with recording_api(RecordingApi(answer={"status": "sent"})) as api:
        answer = request_api_test_event("https://app.example.com/hook")
    assert answer.ok
    assert answer.status == 200
    assert answer.url == api.base_url + "/api/v1/webhooks/test"
    assert json.loads(answer.body) == {"status": "sent"}


@override_settings(KLAREFI_API_KEY=None)
def test_via_api_without_api_key_is_a_clear_error():
    _output, error = send("--via-api", "--url", "https://app.example.com/hook")
    assert error is not None
    assert str(error) == (
        "No API key: KLAREFI_API_KEY is not set. Set it in your settings, e.g. "
        'KLAREFI_API_KEY = os.environ.get("KLAREFI_API_KEY"), to use --via-api.'
    )


def test_via_api_unreachable_is_a_clear_error():
    base = f"http://127.0.0.1:{free_port()}"
    with override_settings(KLAREFI_API_BASE_URL=base, KLAREFI_API_KEY=API_KEY):
        output, error = send("--via-api", "--url", "https://app.example.com/hook")
    assert error is not None
    assert str(error) == (
        f"Could not connect to {base}/api/v1/webhooks/test: connection refused. "
        "Is KLAREFI_API_BASE_URL right, and is Klarefi's API reachable from here?"
    )
    assert "runserver" not in output + str(error)
    assert API_KEY not in output + str(error)


# --- Delivery ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "ok"),
    [(200, True), (204, True), (299, True), (301, False), (500, False), (None, False)],
)
def test_delivery_ok_means_2xx(status, ok):
    assert (
        Delivery(
            event_type="case.completed", event_id="evt_1", status=status, milliseconds=1.0, body=""
        ).ok
        is ok
    )


def test_redirects_are_reported_not_followed():
    posts: list[str] = []

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(self.path)
            self.send_response(301)
            self.send_header("Location", "/elsewhere/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST

        def log_message(self, *args: Any) -> None:
            pass

    with local_http_server(Redirect) as base_url:
        output, error = send("case.completed", "--url", base_url + "/webhooks/klarefi")
    assert posts == ["/webhooks/klarefi"]  # not followed, not turned into a GET
    assert lines(output)[0][2] == "301"
    assert "redirected: check --url" in output
    assert error is not None
