"""``--endpoint NAME`` on the commands."""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.utils import timezone

from django_klarefi.models import Event
from django_klarefi.sending import default_url
from django_klarefi.signature import SIGNATURE_HEADER, verify_webhook_signature

Status = Event.Status
EU_SECRET = "whsec_eu_secret_for_commands_only_31ab"
ENDPOINTS = {"eu": {"SECRET": EU_SECRET}}


def stored(event_id, endpoint, status=Status.FAILED, *, age=timedelta(hours=1)):
    received = timezone.now() - age
    return Event.objects.create(
        event_id=event_id,
        endpoint=endpoint,
        event_type="case.completed",
        payload={"id": event_id, "event": "case.completed", "data": {}},
        status=status,
        error="Traceback...\nRuntimeError: broke" if status == Status.FAILED else "",
        attempts=0 if status == Status.PENDING else 1,
        deliveries=1,
        received_at=received,
        last_received_at=received,
        processed_at=received if status == Status.PROCESSED else None,
    )


def run(command, *args):
    out = io.StringIO()
    try:
        call_command(command, *args, stdout=out, stderr=io.StringIO(), no_color=True)
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def remaining():
    return sorted(Event.objects.values_list("endpoint", "event_id"))


# klarefi_reprocess


@pytest.mark.django_db(transaction=True)
def test_reprocess_event_id_at_an_endpoint_where_it_is_not_stored_is_not_found(handlers):
    stored("evt_default_only", "default")
    output, error = run("klarefi_reprocess", "--event-id", "evt_default_only", "--endpoint", "eu")
    assert "not found          evt_default_only" in output
    assert error is not None
    assert handlers.calls == []


@pytest.mark.django_db
def test_reprocess_endpoint_alone_selects_nothing():
    _, error = run("klarefi_reprocess", "--endpoint", "eu")
    assert error is not None
    assert "Choose events" in str(error)


@pytest.mark.django_db
def test_an_invalid_endpoint_name_is_refused():
    with pytest.raises(CommandError, match="is not an endpoint name"):
        call_command("klarefi_reprocess", "--failed", "--endpoint", "Not/Valid")
    with pytest.raises(CommandError, match="is not an endpoint name"):
        call_command("klarefi_prune_events", "--older-than", "30d", "--endpoint", "Not/Valid")


# klarefi_prune_events


@pytest.mark.django_db
def test_prune_endpoint_deletes_only_that_endpoints_old_events():
    old = timedelta(days=100)
    for number in range(3):
        stored(f"evt_{number}", "default", Status.PROCESSED, age=old)
        stored(f"evt_{number}", "eu", Status.PROCESSED, age=old)
    stored("evt_recent", "eu", Status.PROCESSED, age=timedelta(days=1))
    output, error = run(
        "klarefi_prune_events", "--older-than", "30d", "--endpoint", "eu", "--batch-size", "2"
    )
    assert error is None
    assert 'by endpoint "eu"' in output
    assert "Deleted 3 events" in output
    assert remaining() == [
        ("default", "evt_0"), ("default", "evt_1"), ("default", "evt_2"), ("eu", "evt_recent"),
    ]  # fmt: skip


@pytest.mark.django_db
def test_prune_without_endpoint_deletes_every_endpoints_old_events():
    stored("evt_a", "default", Status.PROCESSED, age=timedelta(days=100))
    stored("evt_a", "eu", Status.PROCESSED, age=timedelta(days=100))
    _, error = run("klarefi_prune_events", "--older-than", "30d")
    assert error is None
    assert remaining() == []


@pytest.mark.django_db
def test_prune_dry_run_counts_one_endpoint():
    stored("evt_a", "default", Status.PROCESSED, age=timedelta(days=100))
    stored("evt_a", "eu", Status.PROCESSED, age=timedelta(days=100))
    output, _ = run("klarefi_prune_events", "--older-than", "30d", "--endpoint", "eu", "--dry-run")
    assert "would delete 1 event" in output
    assert len(remaining()) == 2


# klarefi_send_test_event


class Capture(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Capture.received.append((self.path, dict(self.headers), body))
        answer = json.dumps({"status": "processed"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def capture_server():
    Capture.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
@override_settings(KLAREFI_ENDPOINTS=ENDPOINTS)
def test_send_test_event_endpoint_signs_with_that_endpoints_secret(capture_server):
    url = capture_server + "/webhooks/klarefi/eu"
    output, error = run("klarefi_send_test_event", "case.completed", "--endpoint", "eu",
                        "--url", url)  # fmt: skip
    assert error is None, output
    [(path, headers, body)] = Capture.received
    assert path == "/webhooks/klarefi/eu"
    payload = verify_webhook_signature(body, headers[SIGNATURE_HEADER], EU_SECRET)
    assert payload["event"] == "case.completed"
    assert EU_SECRET not in output


@override_settings(KLAREFI_ENDPOINTS=ENDPOINTS)
def test_an_endpoints_default_url_is_its_own():
    assert default_url("eu") == "http://127.0.0.1:8000/webhooks/klarefi/eu"
    assert default_url() == "http://127.0.0.1:8000/webhooks/klarefi"


@pytest.mark.django_db
@override_settings(KLAREFI_ENDPOINTS=ENDPOINTS)
def test_send_test_event_to_an_unknown_endpoint_is_a_clear_error():
    _, error = run("klarefi_send_test_event", "case.completed", "--endpoint", "nowhere",
                   "--in-process")  # fmt: skip
    assert error is not None
    assert 'Unknown endpoint "nowhere"' in str(error)
    assert not Event.objects.exists()
