"""A DRF host project (tests/settings_drf.py: session authentication and IsAuthenticated
by default, CSRF middleware on) behind a real HTTP server, and its OpenAPI schema."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml

from django_klarefi.models import Event
from django_klarefi.testing import build_event, encode_event, signed_headers
from tests.servers import ROOT, gunicorn, subprocess_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

SETTINGS = "tests.settings_drf"


def request(url: str, body: bytes | None = None, headers: dict[str, str] | None = None):
    method = "GET" if body is None else "POST"
    outgoing = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        method=method,
    )
    try:
        with urllib.request.urlopen(outgoing, timeout=30) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def signed(event: dict) -> tuple[bytes, dict[str, str]]:
    body = encode_event(event)
    return body, signed_headers(body)


def test_signed_posts_get_2xx_in_a_host_with_strict_defaults(handlers):
    with gunicorn(workers=1, settings_module=SETTINGS) as base:
        # The documented pair in the host's own view: 201, not IsAuthenticated's 403.
        status, body, _ = request(base + "/api/signed/", *signed(build_event("case.completed")))
        assert (status, body["signed_event"], body["user_is_anonymous"]) == (
            201,
            "case.completed",
            True,
        )
        # The same view refuses an unsigned request, with the scheme's challenge.
        status, _, headers = request(base + "/api/signed/", b"{}")
        assert status == 401
        assert headers["WWW-Authenticate"] == 'Klarefi-Signature realm="api"'

        # The DRF receiver: processed once, deduplicated after.
        event = build_event("case.completed", id="evt_host")
        body, headers = signed(event)
        assert request(base + "/api/klarefi/webhook/", body, headers)[:2] == (
            200,
            {"status": "processed", "event_id": "evt_host"},
        )
        assert request(base + "/api/klarefi/webhook/", body, headers)[1]["status"] == (
            "already_processed"
        )

        # The events API keeps the host's authentication: anonymous is refused.
        assert request(base + "/api/klarefi/events/")[0] == 403
    assert Event.objects.get().deliveries == 2


def test_openapi_schema_validates_with_the_signature_security_scheme(tmp_path):
    schema_file = tmp_path / "schema.yaml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--urlconf",
            "tests.urls_drf_api",
            "--file",
            str(schema_file),
        ],
        cwd=ROOT,
        env=subprocess_env(SETTINGS),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    schema = yaml.safe_load(schema_file.read_text())

    assert schema["components"]["securitySchemes"]["KlarefiSignature"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-Klarefi-Signature",
        "description": schema["components"]["securitySchemes"]["KlarefiSignature"]["description"],
    }
    paths = schema["paths"]
    assert set(paths) == {
        "/api/klarefi/events/",
        "/api/klarefi/events/{id}/",
        "/api/klarefi/events/{id}/reprocess/",
        "/api/klarefi/events/erase/",
        "/api/klarefi/webhook/",
    }
    receiver = paths["/api/klarefi/webhook/"]["post"]
    assert receiver["security"] == [{"KlarefiSignature": []}]
    assert {"200", "400", "401", "409", "413", "500", "503"} <= set(receiver["responses"])

    listing = paths["/api/klarefi/events/"]["get"]
    parameters = {parameter["name"]: parameter for parameter in listing["parameters"]}
    assert {
        "cursor",
        "page_size",
        "event_type",
        "status",
        "case_id",
        "session_id",
        "is_test",
        "received_after",
        "received_before",
        "endpoint",
    } == set(parameters)
    assert parameters["received_after"]["schema"] == {"type": "string", "format": "date-time"}
    assert parameters["status"]["schema"]["enum"] == ["pending", "processed", "failed"]
    page = schema["components"]["schemas"]["PaginatedEventList"]["properties"]
    assert "count" not in page

    reprocess = paths["/api/klarefi/events/{id}/reprocess/"]["post"]
    assert "requestBody" not in reprocess
    assert {parameter["name"] for parameter in reprocess["parameters"]} == {"id", "force"}
    assert reprocess["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ReprocessResult"
    }
    erase = paths["/api/klarefi/events/erase/"]["post"]
    assert "requestBody" not in erase
    assert {parameter["name"] for parameter in erase["parameters"]} == {
        "case_id",
        "session_id",
        "event_id",
        "endpoint",
    }
    assert erase["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/EraseResult"
    }
    event_fields = schema["components"]["schemas"]["Event"]["properties"]
    assert {"payload", "is_test", "event_id", "status", "processed_at", "payload_erased_at"} <= set(
        event_fields
    )
