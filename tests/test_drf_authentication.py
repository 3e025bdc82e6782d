"""KlarefiSignatureAuthentication and HasKlarefiSignature in a host's own DRF views."""

from __future__ import annotations

import io
import logging
import time

import pytest
from django.contrib.auth.models import User
from django.test import RequestFactory
from django.urls import reverse
from django.utils.module_loading import import_string
from rest_framework.exceptions import AuthenticationFailed, ParseError
from rest_framework.request import Request

from django_klarefi.contrib.rest_framework import KlarefiSignatureAuthentication
from django_klarefi.signature import SIGNATURE_HEADER
from django_klarefi.testing import (
    build_event,
    encode_event,
    post_event,
    signature_header,
    signed_headers,
)
from tests.conftest import SECRET

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls_drf")]

WWW_AUTHENTICATE = 'Klarefi-Signature realm="api"'


def test_signed_request_is_authenticated_and_request_data_still_works(client):
    event = build_event("case.completed")
    timestamp = int(time.time())
    response = post_event(client, event, timestamp=timestamp, url=reverse("signed"))
    assert response.status_code == 201
    assert response.json() == {
        "user_is_anonymous": True,
        "signed_event": "case.completed",
        "signed_at": timestamp,
        "data_event": "case.completed",
    }


def test_request_without_the_header_is_left_to_other_classes(client):
    # The class returns None, so DRF reports "not authenticated" with its challenge.
    response = client.post(reverse("signed"), data=b"{}", content_type="application/json")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE
    assert KlarefiSignatureAuthentication().authenticate(_drf_request(b"{}", {})) is None


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"secret": "whsec_forged"}, "no_matching_signature"),
        ({"timestamp": int(time.time()) - 3600}, "timestamp_outside_tolerance"),
        ({"signature": "nonsense"}, "malformed_signature_header"),
    ],
)
def test_bad_signature_is_401_with_www_authenticate(client, kwargs, code):
    response = post_event(client, "case.completed", url=reverse("signed"), **kwargs)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == WWW_AUTHENTICATE
    assert response.json()["detail"]
    assert "whsec_" not in response.content.decode()


def test_auth_reports_the_reason_code():
    body = encode_event(build_event("case.completed"))
    request = _drf_request(body, signed_headers(body, secret="whsec_forged"))
    with pytest.raises(AuthenticationFailed) as failure:
        KlarefiSignatureAuthentication().authenticate(request)
    assert failure.value.get_codes() == "no_matching_signature"


def test_signed_body_that_is_not_an_event_is_400(client):
    response = post_event(client, b"[1]", url=reverse("signed"))
    assert response.status_code == 400
    assert response.json()["detail"] == "The body must be a JSON object."


class BrokenStream(io.RawIOBase):
    """A client that went away mid-body."""

    def readable(self):
        return True

    def read(self, *args):
        raise OSError("connection reset")


def test_unreadable_body_is_400_and_logged(caplog):
    body = encode_event(build_event("case.completed"))
    request = _drf_request(body, signed_headers(body))
    request._request._stream = BrokenStream()
    with (
        caplog.at_level(logging.DEBUG, logger="django_klarefi"),
        pytest.raises(ParseError) as failure,
    ):
        KlarefiSignatureAuthentication().authenticate(request)
    assert failure.value.get_codes() == "unreadable_body"
    [record] = rejection_records(caplog)
    assert record.levelno == logging.WARNING
    assert "unreadable_body" in record.getMessage()


class RecordingInput(io.BytesIO):
    """A WSGI input stream that counts the bytes read from it."""

    bytes_read = 0

    def read(self, size=-1):
        data = super().read(size)
        self.bytes_read += len(data)
        return data

    def readline(self, size=-1):
        data = super().readline(size)
        self.bytes_read += len(data)
        return data


def post_through_recorder(client, url, body, headers):
    stream = RecordingInput(body)
    response = client.post(
        url, data=body, content_type="application/json", headers=headers, **{"wsgi.input": stream}
    )
    return response, stream


def test_body_over_the_limit_is_413_unread(client, settings):
    settings.KLAREFI_MAX_BODY_BYTES = 64
    body = encode_event(build_event("case.completed"))
    response, stream = post_through_recorder(client, reverse("signed"), body, signed_headers(body))
    assert response.status_code == 413
    assert response.json()["detail"] == "The body is over 64 bytes."
    assert stream.bytes_read == 0
    # The recorder is real: a body within the limit is read through it.
    settings.KLAREFI_MAX_BODY_BYTES = len(body)
    response, stream = post_through_recorder(client, reverse("signed"), body, signed_headers(body))
    assert response.status_code == 201
    assert stream.bytes_read == len(body)


def test_no_secret_configured_is_503(client, settings):
    body = encode_event(build_event("case.completed"))
    headers = signed_headers(body)
    settings.KLAREFI_WEBHOOK_SECRET = None
    response = client.post(
        reverse("signed"), data=body, content_type="application/json", headers=headers
    )
    assert response.status_code == 503


def test_secret_rotation_accepts_the_old_secret(client, settings):
    settings.KLAREFI_WEBHOOK_SECRET = ["whsec_new", "whsec_old"]
    response = post_event(client, "case.completed", secret="whsec_old", url=reverse("signed"))
    assert response.status_code == 201


def test_request_data_parsed_first_by_drf_json_parser_still_verifies(client):
    # DRF's JSONParser reads request.body, which Django keeps.
    response = post_event(client, "case.completed", url=reverse("data-read-first"))
    assert response.status_code == 201
    assert response.json()["data_event"] == "case.completed"


def test_request_stream_consumed_first_is_a_clear_error(client):
    # A parser that streams the body leaves nothing to verify: Django raises
    # RawPostDataException, turned into an error that says what to change.
    with pytest.raises(RuntimeError, match=r"request\.data was read first"):
        post_event(client, "case.completed", url=reverse("streamed-data-read-first"))


def test_signed_post_from_a_logged_in_browser_passes_when_signature_is_listed_first(csrf_client):
    # A logged-in session without a CSRF token: SessionAuthentication would refuse it (the
    # unsigned POST below), but the signature authenticates the request first.
    csrf_client.force_login(User.objects.create_user("browser"))
    unsigned = csrf_client.post(
        reverse("signed-or-session"), data=b"{}", content_type="application/json"
    )
    assert unsigned.status_code == 403
    assert "CSRF" in unsigned.json()["detail"]
    response = post_event(csrf_client, "case.completed", url=reverse("signed-or-session"))
    assert response.status_code == 201
    assert response.json()["user_is_anonymous"] is True


def test_session_auth_listed_first_enforces_csrf_for_a_logged_in_browser(csrf_client):
    # Why the docs say to list KlarefiSignatureAuthentication first.
    csrf_client.force_login(User.objects.create_user("browser"))
    response = post_event(csrf_client, "case.completed", url=reverse("session-first"))
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_importable_from_a_settings_string():
    path = "django_klarefi.contrib.rest_framework.authentication.KlarefiSignatureAuthentication"
    assert import_string(path) is KlarefiSignatureAuthentication


def _drf_request(body, headers):
    return Request(
        RequestFactory().post("/", data=body, content_type="application/json", headers=headers)
    )


# Refusals are logged as the receiver logs them, without the secret or the signature.


def klarefi_records(caplog):
    """The records of django-klarefi's loggers but the rejections one (its warning is the
    one rejection_record finds)."""
    return [
        record
        for record in caplog.records
        if record.name.startswith("django_klarefi") and record.name != "django_klarefi.rejections"
    ]


def rejection_records(caplog):
    return [record for record in caplog.records if record.name == "django_klarefi.rejections"]


def assert_no_secret_logged(caplog, header):
    for record in caplog.records:
        text = record.getMessage() + (
            logging.Formatter().formatException(record.exc_info) if record.exc_info else ""
        )
        assert SECRET not in text
        assert header not in text
        assert header.rpartition("v1=")[2] not in text


def post_signed(client, caplog, body, header):
    """POST ``body`` with ``header`` to the signed view: the answer, and the one rejection
    record, once no record is seen to carry the secret or header."""
    with caplog_at_debug(caplog):
        response = client.post(
            reverse("signed"),
            data=body,
            content_type="application/json",
            headers={SIGNATURE_HEADER: header},
        )
    [record] = rejection_records(caplog)
    assert_no_secret_logged(caplog, header)
    return response, record


def caplog_at_debug(caplog):
    return caplog.at_level(logging.DEBUG, logger="django_klarefi")


BODY = encode_event(build_event("case.completed"))


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (lambda: signature_header(BODY, secret="whsec_forged"), "no_matching_signature"),
        (
            lambda: signature_header(BODY, timestamp=int(time.time()) - 3600),
            "timestamp_outside_tolerance",
        ),
        (lambda: signature_header(BODY).partition(",")[2], "malformed_signature_header"),  # no t=
    ],
)
def test_bad_signature_is_logged_as_a_warning_without_the_signature(client, caplog, header, code):
    response, record = post_signed(client, caplog, BODY, header())
    assert response.status_code == 401
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith(f"Rejected Klarefi webhook to {reverse('signed')} from ")
    assert "127.0.0.1" in message
    assert code in message


def test_signed_body_that_is_not_an_event_is_logged(client, caplog):
    response, record = post_signed(client, caplog, b"[1]", signature_header(b"[1]"))
    assert response.status_code == 400
    assert record.levelno == logging.WARNING
    assert "invalid_payload" in record.getMessage()


def test_body_over_the_limit_is_logged(client, caplog, settings):
    settings.KLAREFI_MAX_BODY_BYTES = 64
    response, record = post_signed(client, caplog, BODY, signature_header(BODY))
    assert response.status_code == 413
    assert record.levelno == logging.WARNING
    assert "body_too_large" in record.getMessage()
    assert "64 bytes" in record.getMessage()


def test_no_secret_configured_is_logged_as_an_error_naming_the_setting(client, caplog, settings):
    header = signature_header(BODY)
    settings.KLAREFI_WEBHOOK_SECRET = ""
    response, rejection = post_signed(client, caplog, BODY, header)
    assert response.status_code == 503
    assert response.json()["detail"] == (
        "Klarefi signatures cannot be verified: no secret is configured."
    )
    assert rejection.klarefi_reason == "not_configured"
    [record] = klarefi_records(caplog)
    assert record.levelno == logging.ERROR
    assert "KLAREFI_WEBHOOK_SECRET" in record.getMessage()


def test_a_valid_signature_logs_nothing(client, caplog):
    with caplog_at_debug(caplog):
        assert post_event(client, "case.completed", url=reverse("signed")).status_code == 201
    assert klarefi_records(caplog) == rejection_records(caplog) == []
