"""Named endpoints without the receiver: settings, the Endpoint model, encryption, the cache."""

from __future__ import annotations

import sys
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from django_klarefi import endpoints
from django_klarefi.encryption import SecretsUnavailable
from django_klarefi.endpoints import CACHE_SECONDS, EndpointConfig, get_endpoint
from django_klarefi.models import Endpoint
from tests.conftest import SECRET

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()
TENANT_SECRET = "whsec_tenant_42_secret_never_shown_9c1e"
NEW_SECRET = "whsec_tenant_42_rotated_never_shown_77aa"


@pytest.fixture(autouse=True)
def _fresh_cache():
    endpoints.clear_cache()
    yield
    endpoints.clear_cache()


@pytest.fixture
def keys(settings):
    settings.KLAREFI_ENCRYPTION_KEYS = [KEY_A]
    return settings


class FakeClock:
    """time.monotonic for the endpoints module: moved by hand, never by waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(endpoints.time, "monotonic", fake)
    return fake


# Settings.


@pytest.mark.django_db
def test_webhook_secret_alone_is_the_default_endpoint():
    endpoint = get_endpoint("default")
    assert endpoint == EndpointConfig(
        name="default", secrets=(SECRET,), tolerance=300, processing="sync"
    )
    assert get_endpoint("eu") is None


@pytest.mark.django_db
@override_settings(
    KLAREFI_WEBHOOK_TOLERANCE=120,
    KLAREFI_ENDPOINTS={
        "eu": {"SECRET": "whsec_eu"},
        "sandbox": {"SECRET": ["whsec_new", "whsec_old"], "TOLERANCE": 600, "PROCESSING": "task"},
    },
)
def test_endpoints_from_settings_with_their_own_secrets_tolerance_and_mode(
    django_assert_num_queries,
):
    with django_assert_num_queries(0):
        eu = get_endpoint("eu")
        sandbox = get_endpoint("sandbox")
        default = get_endpoint("default")
    assert eu == EndpointConfig(name="eu", secrets=("whsec_eu",), tolerance=120, processing="sync")
    assert sandbox == EndpointConfig(
        name="sandbox", secrets=("whsec_new", "whsec_old"), tolerance=600, processing="task"
    )
    assert default is not None
    assert default.secrets == (SECRET,)


@override_settings(
    KLAREFI_WEBHOOK_SECRET=None, KLAREFI_ENDPOINTS={"default": {"SECRET": "whsec_d"}}
)
def test_default_may_be_defined_in_klarefi_endpoints():
    endpoint = get_endpoint("default")
    assert endpoint is not None
    assert endpoint.secrets == ("whsec_d",)


@pytest.mark.django_db
@override_settings(KLAREFI_WEBHOOK_SECRET=None)
def test_no_secret_at_all_leaves_default_unconfigured_with_a_problem():
    endpoint = get_endpoint("default")
    assert endpoint is not None
    assert endpoint.secrets == ()
    assert "KLAREFI_WEBHOOK_SECRET is not set" in endpoint.problem


@pytest.mark.django_db
@override_settings(KLAREFI_WEBHOOK_SECRET=None, KLAREFI_ENDPOINTS={"eu": {"SECRET": "whsec_eu"}})
def test_without_a_default_in_named_settings_the_root_is_unknown():
    assert get_endpoint("default") is None


@override_settings(KLAREFI_ENDPOINTS={"eu": {"SECRET": "  "}})
def test_a_settings_endpoint_without_a_usable_secret_has_a_problem():
    endpoint = get_endpoint("eu")
    assert endpoint is not None
    assert endpoint.secrets == ()
    assert 'KLAREFI_ENDPOINTS["eu"]["SECRET"] is empty' in endpoint.problem


@pytest.mark.django_db
@override_settings(KLAREFI_ENDPOINTS={"Not A Slug": {"SECRET": "whsec_x"}})
def test_invalid_names_are_never_endpoints():
    assert get_endpoint("Not A Slug") is None
    assert get_endpoint("../etc") is None


# The model and its encryption.


@pytest.mark.django_db
def test_create_encrypts_the_secret_and_no_column_holds_it(keys):
    endpoint = Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    assert endpoint.secret == TENANT_SECRET
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM django_klarefi_endpoint")
        rows = cursor.fetchall()
    assert len(rows) == 1
    assert not any(TENANT_SECRET in str(value) for value in rows[0])
    assert TENANT_SECRET not in str(endpoint)
    assert TENANT_SECRET not in repr(endpoint)
    stored = Endpoint.objects.get()
    assert stored.secret == TENANT_SECRET
    assert stored.secrets() == (TENANT_SECRET,)


@pytest.mark.django_db
def test_creating_without_keys_names_the_setting(settings):
    settings.KLAREFI_ENCRYPTION_KEYS = None
    with pytest.raises(SecretsUnavailable, match="KLAREFI_ENCRYPTION_KEYS is not set"):
        Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    assert not Endpoint.objects.exists()


@pytest.mark.django_db
def test_creating_without_cryptography_names_the_extra(keys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)  # import fails
    with pytest.raises(SecretsUnavailable, match=r"pip install 'django-klarefi\[encryption\]'"):
        Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)


@pytest.mark.django_db
@pytest.mark.parametrize("secret", ["", "   ", " whsec_padded", None])
def test_blank_or_padded_secrets_are_refused(keys, secret):
    with pytest.raises(ValueError, match="secret"):
        Endpoint.objects.create(name="tenant-42", secret=secret)


@pytest.mark.django_db
def test_a_row_without_a_secret_is_refused(keys):
    with pytest.raises(ValidationError, match="has no secret"):
        Endpoint.objects.create(name="tenant-42")


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["default", "eu"])
@override_settings(KLAREFI_ENDPOINTS={"eu": {"SECRET": "whsec_eu"}})
def test_a_name_defined_in_settings_is_refused(keys, name):
    with pytest.raises(ValidationError, match="defined in the settings"):
        Endpoint.objects.create(name=name, secret=TENANT_SECRET)
    assert not Endpoint.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["Tenant", "a b", "-x", "x" * 65, ""])
def test_an_invalid_name_is_refused(keys, name):
    with pytest.raises(ValidationError, match="lower-case letters"):
        Endpoint.objects.create(name=name, secret=TENANT_SECRET)


@pytest.mark.django_db
def test_rotation_keeps_the_previous_secret_until_it_expires(keys):
    endpoint = Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    endpoint.rotate_secret(NEW_SECRET, keep_previous_for=timedelta(hours=1))
    endpoint.save()
    stored = Endpoint.objects.get()
    assert stored.secrets() == (NEW_SECRET, TENANT_SECRET)
    assert stored.secrets(now=timezone.now() + timedelta(hours=2)) == (NEW_SECRET,)
    stored.rotate_secret("whsec_third", keep_previous_for=timedelta(0))
    assert stored.secrets() == ("whsec_third",)


# get_endpoint for database endpoints, and its cache.


@pytest.mark.django_db
def test_a_database_endpoint_is_found_then_served_without_a_query(keys, django_assert_num_queries):
    Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET, tolerance=60)
    with django_assert_num_queries(1):
        endpoint = get_endpoint("tenant-42")
    assert endpoint == EndpointConfig(
        name="tenant-42",
        secrets=(TENANT_SECRET,),
        tolerance=60,
        processing="sync",
        source="database",
    )
    with django_assert_num_queries(0):
        assert get_endpoint("tenant-42") == endpoint
        assert get_endpoint("default") is not None  # the settings: never a query


@pytest.mark.django_db
def test_unknown_names_are_cached_too(keys, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert get_endpoint("nobody") is None
    with django_assert_num_queries(0):
        assert get_endpoint("nobody") is None


@pytest.mark.django_db
def test_inactive_endpoints_are_unknown(keys):
    Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET, is_active=False)
    assert get_endpoint("tenant-42") is None


@pytest.mark.django_db
def test_a_save_in_this_process_takes_effect_at_once(keys):
    endpoint = Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    assert get_endpoint("tenant-42") is not None
    endpoint.is_active = False
    endpoint.save()
    assert get_endpoint("tenant-42") is None
    endpoint.is_active = True
    endpoint.rotate_secret(NEW_SECRET, keep_previous_for=timedelta(0))
    endpoint.save()
    found = get_endpoint("tenant-42")
    assert found is not None
    assert found.secrets == (NEW_SECRET,)
    endpoint.delete()
    assert get_endpoint("tenant-42") is None


@pytest.mark.django_db
def test_a_change_made_elsewhere_takes_effect_within_the_cache_period(keys, clock):
    Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    assert get_endpoint("tenant-42") is not None
    # Another process deactivates it: no signal reaches this one.
    Endpoint.objects.filter(name="tenant-42").update(is_active=False)
    clock.now += CACHE_SECONDS - 1
    assert get_endpoint("tenant-42") is not None
    clock.now += 1
    assert get_endpoint("tenant-42") is None
    # ... and a new endpoint created elsewhere appears within the same bound.
    Endpoint.objects.filter(name="tenant-42").update(is_active=True)
    assert get_endpoint("tenant-42") is None
    clock.now += CACHE_SECONDS
    assert get_endpoint("tenant-42") is not None


def test_the_documented_bound_is_at_most_a_minute():
    assert CACHE_SECONDS <= 60


@pytest.mark.django_db
def test_a_previous_secret_is_not_cached_past_its_expiry(keys, clock):
    endpoint = Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    endpoint.rotate_secret(NEW_SECRET, keep_previous_for=timedelta(seconds=5))
    endpoint.save()
    found = get_endpoint("tenant-42")
    assert found is not None
    assert found.secrets == (NEW_SECRET, TENANT_SECRET)
    # Expired (as the database clock sees it): the next lookup after it reads again.
    Endpoint.objects.filter(pk=endpoint.pk).update(
        previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
    )
    clock.now += 5
    found = get_endpoint("tenant-42")
    assert found is not None
    assert found.secrets == (NEW_SECRET,)


@pytest.mark.django_db
def test_an_undecryptable_secret_is_a_problem_not_an_exception(keys):
    Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    keys.KLAREFI_ENCRYPTION_KEYS = [KEY_B]  # the key that encrypted it is gone
    endpoint = get_endpoint("tenant-42")
    assert endpoint is not None
    assert endpoint.secrets == ()
    assert "cannot be decrypted" in endpoint.problem
    assert "tenant-42" in endpoint.problem
    assert TENANT_SECRET not in endpoint.problem
    assert KEY_A not in endpoint.problem


@pytest.mark.django_db
def test_missing_keys_at_delivery_time_are_a_problem(keys):
    Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    keys.KLAREFI_ENCRYPTION_KEYS = None
    endpoint = get_endpoint("tenant-42")
    assert endpoint is not None
    assert "KLAREFI_ENCRYPTION_KEYS is not set" in endpoint.problem


@pytest.mark.django_db
def test_missing_cryptography_at_delivery_time_is_a_problem(keys, monkeypatch):
    Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    endpoints.clear_cache()
    monkeypatch.setitem(sys.modules, "cryptography.fernet", None)
    endpoint = get_endpoint("tenant-42")
    assert endpoint is not None
    assert "cryptography" in endpoint.problem


# Key rotation.


@pytest.mark.django_db
def test_key_rotation_with_the_reencrypt_command(keys):
    Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    other = Endpoint.objects.create(name="tenant-43", secret="whsec_43")
    other.rotate_secret("whsec_43_new", keep_previous_for=timedelta(hours=1))
    other.save()
    keys.KLAREFI_ENCRYPTION_KEYS = [KEY_B, KEY_A]  # the new key first; the old still opens
    assert Endpoint.objects.get(name="tenant-42").secret == TENANT_SECRET
    call_command("klarefi_reencrypt_secrets", stdout=(out := __import__("io").StringIO()))
    assert "2 endpoints" in out.getvalue()
    keys.KLAREFI_ENCRYPTION_KEYS = [KEY_B]  # the old key removed
    assert Endpoint.objects.get(name="tenant-42").secret == TENANT_SECRET
    assert Endpoint.objects.get(name="tenant-43").secrets() == ("whsec_43_new", "whsec_43")


@pytest.mark.django_db
def test_reencrypt_changes_nothing_when_a_secret_cannot_be_opened(keys):
    Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    before = Endpoint.objects.get().encrypted_secret
    keys.KLAREFI_ENCRYPTION_KEYS = [KEY_B]
    with pytest.raises(CommandError, match="Nothing was changed"):
        call_command("klarefi_reencrypt_secrets")
    assert Endpoint.objects.get().encrypted_secret == before


# Names and paths.


@pytest.mark.django_db
@override_settings(KLAREFI_ENDPOINTS={"eu": {"SECRET": "whsec_eu"}})
def test_endpoint_names_and_delivery_paths(keys):
    Endpoint.objects.create(name="tenant-42", secret=TENANT_SECRET)
    Endpoint.objects.create(name="tenant-off", secret=TENANT_SECRET, is_active=False)
    assert endpoints.endpoint_names() == ["default", "eu", "tenant-42"]
    assert endpoints.delivery_path("default") == "/webhooks/klarefi"
    assert endpoints.delivery_path("tenant-42") == "/webhooks/klarefi/tenant-42"
    assert endpoints.signing_secret("tenant-42") == TENANT_SECRET
    assert endpoints.signing_secret("nobody") is None
