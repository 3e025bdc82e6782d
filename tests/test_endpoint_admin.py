"""Named endpoints in the admin: the Event list's column and filter, the send-test page's
choice, and the Endpoint admin (delivery URLs; never a secret)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from cryptography.fernet import Fernet
from django.urls import reverse

from django_klarefi import endpoints
from django_klarefi.models import Endpoint, Event

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_klarefi_event_changelist"
SEND_TEST = "admin:django_klarefi_event_send_test_event"
ENDPOINTS = "admin:django_klarefi_endpoint_changelist"
ADD_ENDPOINT = "admin:django_klarefi_endpoint_add"
EU_SECRET = "whsec_eu_secret_for_the_admin_only_8f1d"
TENANT_SECRET = "whsec_tenant_secret_for_the_admin_only_4a9b"
ROTATED_SECRET = "whsec_tenant_rotated_for_the_admin_only_6c2e"
KEY = Fernet.generate_key().decode()
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _keys(settings):
    settings.KLAREFI_ENCRYPTION_KEYS = [KEY]
    endpoints.clear_cache()
    yield
    endpoints.clear_cache()


def make_event(event_id, endpoint="default"):
    return Event.objects.create(
        event_id=event_id,
        endpoint=endpoint,
        event_type="case.completed",
        payload={"id": event_id, "event": "case.completed"},
        received_at=T0,
        last_received_at=T0,
    )


def listed(html):
    return sorted(re.findall(r'<span class="klarefi-id klarefi-event-id" title="([^"]+)"', html))


def no_secret_in(html):
    return all(secret not in html for secret in (EU_SECRET, TENANT_SECRET, ROTATED_SECRET, KEY))


# The Event changelist.


def test_one_endpoint_shows_no_endpoint_column_or_filter(admin_client):
    make_event("evt_1")
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "column-endpoint" not in html
    assert "?endpoint=" not in html


def test_several_endpoints_show_the_column_and_filter(admin_client, settings):
    settings.KLAREFI_ENDPOINTS = {"eu": {"SECRET": EU_SECRET}}
    Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    make_event("evt_1", "default")
    make_event("evt_1", "eu")
    make_event("evt_2", "tenant-42")
    html = admin_client.get(reverse(CHANGELIST)).content.decode()
    assert "column-endpoint" in html
    for name in ("default", "eu", "tenant-42"):
        assert f"?endpoint={name}" in html
    filtered = admin_client.get(reverse(CHANGELIST), {"endpoint": "eu"}).content.decode()
    assert listed(filtered) == ["evt_1"]
    assert 'class="field-endpoint">eu<' in filtered
    assert no_secret_in(html)


def test_the_change_page_names_a_named_endpoint(admin_client):
    event = make_event("evt_1", "tenant-9")
    html = admin_client.get(reverse("admin:django_klarefi_event_change", args=[event.pk]))
    assert "tenant-9" in html.content.decode()


# The send-test page.


def test_send_test_page_offers_the_endpoints_when_there_are_several(admin_client, settings):
    assert 'name="endpoint"' not in admin_client.get(reverse(SEND_TEST)).content.decode()
    settings.KLAREFI_ENDPOINTS = {"eu": {"SECRET": EU_SECRET}}
    Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    html = admin_client.get(reverse(SEND_TEST)).content.decode()
    assert 'name="endpoint"' in html
    options = re.findall(r'<option value="([^"]+)"', html.split('name="endpoint"')[1])
    assert options[:3] == ["default", "eu", "tenant-42"]
    assert no_secret_in(html)


def test_send_test_page_refuses_an_endpoint_that_is_not_offered(admin_client, settings):
    settings.KLAREFI_ENDPOINTS = {"eu": {"SECRET": EU_SECRET}}
    response = admin_client.post(
        reverse(SEND_TEST), {"endpoint": "nowhere", "event_type": "case.completed"}
    )
    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Event.objects.exists()


# The Endpoint admin.


def test_endpoint_list_shows_delivery_urls_and_never_a_secret(admin_client, settings):
    settings.KLAREFI_ENDPOINTS = {"eu": {"SECRET": EU_SECRET}}
    Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    html = admin_client.get(reverse(ENDPOINTS)).content.decode()
    assert (
        '<code class="klarefi-delivery-url">http://testserver/webhooks/klarefi/tenant-42</code>'
        in html
    )
    # The settings' endpoints, listed above the table with theirs.
    assert '<code class="klarefi-delivery-url">http://testserver/webhooks/klarefi</code>' in html
    assert '<code class="klarefi-delivery-url">http://testserver/webhooks/klarefi/eu</code>' in html
    assert no_secret_in(html)
    assert Endpoint.objects.get().encrypted_secret not in html


def test_adding_an_endpoint_in_the_admin_encrypts_its_secret(admin_client):
    response = admin_client.post(
        reverse(ADD_ENDPOINT),
        {"name": "tenant-42", "is_active": "on", "new_secret": TENANT_SECRET,
         "keep_previous_for": "86400", "tolerance": "", "processing": ""},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()
    endpoint = Endpoint.objects.get()
    assert endpoint.secret == TENANT_SECRET
    change = admin_client.get(reverse("admin:django_klarefi_endpoint_change", args=[endpoint.pk]))
    html = change.content.decode()
    assert "http://testserver/webhooks/klarefi/tenant-42" in html
    assert no_secret_in(html)
    assert endpoint.encrypted_secret not in html


def test_adding_an_endpoint_needs_a_secret(admin_client):
    response = admin_client.post(
        reverse(ADD_ENDPOINT), {"name": "tenant-42", "is_active": "on", "keep_previous_for": "0"}
    )
    assert response.status_code == 200
    assert "Set the endpoint&#x27;s signing secret." in response.content.decode()
    assert not Endpoint.objects.exists()


def test_a_name_defined_in_settings_is_refused_with_a_clear_message(admin_client, settings):
    settings.KLAREFI_ENDPOINTS = {"eu": {"SECRET": EU_SECRET}}
    response = admin_client.post(
        reverse(ADD_ENDPOINT),
        {"name": "eu", "is_active": "on", "new_secret": TENANT_SECRET, "keep_previous_for": "0"},
    )
    assert response.status_code == 200
    assert "is defined in the settings" in response.content.decode()
    assert not Endpoint.objects.exists()


def test_missing_keys_are_a_clear_form_error_not_a_500(admin_client, settings):
    settings.KLAREFI_ENCRYPTION_KEYS = None
    response = admin_client.post(
        reverse(ADD_ENDPOINT),
        {"name": "tenant-42", "is_active": "on", "new_secret": TENANT_SECRET,
         "keep_previous_for": "0"},
    )  # fmt: skip
    assert response.status_code == 200
    html = response.content.decode()
    assert "KLAREFI_ENCRYPTION_KEYS is not set" in html
    assert no_secret_in(html)
    assert not Endpoint.objects.exists()


def test_rotating_in_the_admin_keeps_the_previous_secret_for_the_chosen_time(admin_client):
    endpoint = Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    url = reverse("admin:django_klarefi_endpoint_change", args=[endpoint.pk])
    response = admin_client.post(
        url,
        {"is_active": "on", "new_secret": ROTATED_SECRET, "keep_previous_for": "3600",
         "tolerance": "", "processing": ""},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()
    endpoint.refresh_from_db()
    assert endpoint.secrets() == (ROTATED_SECRET, TENANT_SECRET)
    found = endpoints.get_endpoint("tenant-42")
    assert found is not None
    assert found.secrets == (ROTATED_SECRET, TENANT_SECRET)  # at once in this process
    html = admin_client.get(url).content.decode()
    assert "the previous one is accepted until" in html
    assert no_secret_in(html)


def test_saving_without_a_new_secret_keeps_the_current_one(admin_client):
    endpoint = Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    url = reverse("admin:django_klarefi_endpoint_change", args=[endpoint.pk])
    response = admin_client.post(
        url, {"new_secret": "", "keep_previous_for": "0", "tolerance": "90", "processing": ""}
    )  # is_active unticked
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.secrets() == (TENANT_SECRET,)
    assert endpoint.tolerance == 90
    assert not endpoint.is_active
    assert endpoints.get_endpoint("tenant-42") is None  # deactivated at once
