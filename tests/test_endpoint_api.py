"""Named endpoints in the DRF pieces: the events API and the authentication class."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import Permission, User
from django.test import RequestFactory, override_settings
from django.urls import reverse
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from django_klarefi import endpoints
from django_klarefi.contrib.rest_framework import KlarefiSignatureAuthentication
from django_klarefi.contrib.rest_framework.authentication import NotConfigured
from django_klarefi.models import Endpoint, Event
from django_klarefi.testing import build_event, encode_event, signed_headers

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls_drf")]

EU_SECRET = "whsec_eu_secret_for_the_api_only_5d2e"
TENANT_SECRET = "whsec_tenant_secret_for_the_api_only_0b7c"
KEY = Fernet.generate_key().decode()
LIST = "django_klarefi_api:event-list"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _endpoints(settings):
    settings.KLAREFI_ENDPOINTS = {"eu": {"SECRET": EU_SECRET, "TOLERANCE": 60}}
    settings.KLAREFI_ENCRYPTION_KEYS = [KEY]
    endpoints.clear_cache()
    yield
    endpoints.clear_cache()


@pytest.fixture
def staff_client(client):
    staff = User.objects.create_user("staff", is_staff=True)
    # The events API reads with view_event (and the payload with view_event_payload).
    staff.user_permissions.set(
        Permission.objects.filter(codename__in=["view_event", "view_event_payload"])
    )
    client.force_login(staff)
    return client


def make_event(event_id, endpoint):
    return Event.objects.create(
        event_id=event_id,
        endpoint=endpoint,
        event_type="case.completed",
        payload={"id": event_id, "event": "case.completed"},
        received_at=T0,
        last_received_at=T0,
    )


# The events API.


def test_events_carry_their_endpoint_and_filter_by_it(staff_client):
    make_event("evt_1", "default")
    make_event("evt_1", "eu")
    make_event("evt_2", "eu")
    everything = staff_client.get(reverse(LIST)).json()["results"]
    assert sorted((row["endpoint"], row["event_id"]) for row in everything) == [
        ("default", "evt_1"),
        ("eu", "evt_1"),
        ("eu", "evt_2"),
    ]
    eu = staff_client.get(reverse(LIST), {"endpoint": "eu"}).json()["results"]
    assert sorted(row["event_id"] for row in eu) == ["evt_1", "evt_2"]
    assert {row["endpoint"] for row in eu} == {"eu"}
    assert staff_client.get(reverse(LIST), {"endpoint": "nowhere"}).json()["results"] == []


def test_an_invalid_endpoint_filter_is_a_400_naming_it(staff_client):
    response = staff_client.get(reverse(LIST), {"endpoint": "x" * 65})
    assert response.status_code == 400
    assert "endpoint" in response.json()


def test_the_endpoint_field_is_read_only(staff_client):
    event = make_event("evt_1", "eu")
    detail = reverse("django_klarefi_api:event-detail", args=[event.pk])
    assert staff_client.get(detail).json()["endpoint"] == "eu"


# KlarefiSignatureAuthentication bound to an endpoint.


class EuSignature(KlarefiSignatureAuthentication):
    endpoint = "eu"


class TenantSignature(KlarefiSignatureAuthentication):
    endpoint = "tenant-42"


class NowhereSignature(KlarefiSignatureAuthentication):
    endpoint = "nowhere"


def drf_request(body, headers):
    return Request(
        RequestFactory().post(
            "/api/hook/", data=body, content_type="application/json", headers=headers
        )
    )


def signed(endpoint="default", **kwargs):
    body = encode_event(build_event("case.completed"))
    return drf_request(body, signed_headers(body, endpoint=endpoint, **kwargs))


def test_bound_to_a_settings_endpoint_it_verifies_with_that_endpoints_secret():
    _, verified = EuSignature().authenticate(signed("eu"))
    assert verified.payload["event"] == "case.completed"
    with pytest.raises(AuthenticationFailed):
        EuSignature().authenticate(signed("default"))  # the default secret
    with pytest.raises(AuthenticationFailed):
        KlarefiSignatureAuthentication().authenticate(signed("eu"))


def test_bound_to_an_endpoint_it_uses_that_endpoints_tolerance():
    import time

    with pytest.raises(AuthenticationFailed) as caught:
        EuSignature().authenticate(signed("eu", timestamp=int(time.time()) - 120))
    assert caught.value.get_codes() == "timestamp_outside_tolerance"
    # The default endpoint's 300 seconds accept the same age.
    KlarefiSignatureAuthentication().authenticate(
        signed("default", timestamp=int(time.time()) - 120)
    )


def test_bound_to_a_database_endpoint():
    Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    _, verified = TenantSignature().authenticate(signed("tenant-42"))
    assert verified.payload["event"] == "case.completed"
    with pytest.raises(AuthenticationFailed):
        TenantSignature().authenticate(signed("eu"))


def test_an_unknown_endpoint_is_a_logged_503(caplog):
    with caplog.at_level(logging.ERROR, logger="django_klarefi"), pytest.raises(NotConfigured):
        NowhereSignature().authenticate(signed("eu"))
    assert 'the endpoint "nowhere" is not defined' in caplog.text


def test_an_undecryptable_database_endpoint_is_a_logged_503_without_its_secret(caplog, settings):
    Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    request = signed("tenant-42")
    settings.KLAREFI_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with caplog.at_level(logging.ERROR, logger="django_klarefi"), pytest.raises(NotConfigured):
        TenantSignature().authenticate(request)
    assert "cannot be decrypted" in caplog.text
    assert TENANT_SECRET not in caplog.text
    assert KEY not in caplog.text


@override_settings(KLAREFI_WEBHOOK_SECRET=None, KLAREFI_ENDPOINTS=None)
def test_the_unconfigured_default_is_still_a_logged_503_naming_the_setting(caplog):
    body = b"{}"
    request = drf_request(body, signed_headers(body, secret="whsec_any"))
    with caplog.at_level(logging.ERROR, logger="django_klarefi"), pytest.raises(NotConfigured):
        KlarefiSignatureAuthentication().authenticate(request)
    assert "KLAREFI_WEBHOOK_SECRET is not set" in caplog.text
