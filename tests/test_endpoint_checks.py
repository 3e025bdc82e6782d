"""The system checks of named endpoints: settings only, never the database."""

from __future__ import annotations

import importlib.util

import pytest
from cryptography.fernet import Fernet
from django.core.checks import run_checks
from django.test import override_settings

from django_klarefi import endpoint_checks

GOOD_KEY = Fernet.generate_key().decode()
LEAKY = "whsec_must_never_appear_in_a_message"


def ids(messages):
    return [message.id for message in messages]


def klarefi_ids():
    # No django_db mark: a check that touched the database would fail here.
    return [m.id for m in run_checks() if m.id and m.id.startswith("django_klarefi.")]


def test_valid_endpoints_pass():
    with override_settings(
        KLAREFI_ENDPOINTS={
            "eu": {"SECRET": "whsec_eu"},
            "sandbox": {"SECRET": ["whsec_new", "whsec_old"], "TOLERANCE": 600},
            "tenant_2-b": {"SECRET": "whsec_b", "PROCESSING": "sync"},
        },
        KLAREFI_ENCRYPTION_KEYS=[GOOD_KEY],
    ):
        assert klarefi_ids() == []


@pytest.mark.parametrize("name", ["EU", "e u", "-eu", "x" * 65, "", 7, "eu/x"])
def test_invalid_names(name):
    with override_settings(KLAREFI_ENDPOINTS={name: {"SECRET": "whsec_x"}}):
        messages = endpoint_checks.check_endpoints()
    assert ids(messages) == ["django_klarefi.E031"]


@pytest.mark.parametrize(
    "secret", ["", "   ", None, [], ["whsec_ok", ""], ["whsec_ok", "  "], 42, [42]]
)
def test_empty_or_whitespace_secrets_per_endpoint(secret):
    entry = {} if secret is None else {"SECRET": secret}
    with override_settings(KLAREFI_ENDPOINTS={"eu": entry}):
        messages = endpoint_checks.check_endpoints()
    assert ids(messages) == ["django_klarefi.E032"]
    assert 'KLAREFI_ENDPOINTS["eu"]' in messages[0].msg


def test_padded_secret_is_an_error_named_by_position_never_by_value():
    with override_settings(KLAREFI_ENDPOINTS={"eu": {"SECRET": ["whsec_ok", LEAKY + "\n"]}}):
        messages = endpoint_checks.check_endpoints()
    assert ids(messages) == ["django_klarefi.E032"]
    assert "entry 1" in messages[0].msg
    assert all(LEAKY not in f"{m.msg} {m.hint}" for m in messages)


def test_secret_without_prefix_warns():
    with override_settings(KLAREFI_ENDPOINTS={"eu": {"SECRET": "not_prefixed"}}):
        assert ids(endpoint_checks.check_endpoints()) == ["django_klarefi.W030"]


def test_default_defined_twice():
    with override_settings(KLAREFI_ENDPOINTS={"default": {"SECRET": "whsec_d"}}):
        messages = endpoint_checks.check_endpoints()
    assert ids(messages) == ["django_klarefi.E034"]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"SECRET": "whsec_x", "TOLERANCE": 0}, "E033"),
        ({"SECRET": "whsec_x", "TOLERANCE": "300"}, "E033"),
        ({"SECRET": "whsec_x", "TOLERANCE": True}, "E033"),
        ({"SECRET": "whsec_x", "PROCESSING": "later"}, "E033"),
        ({"SECRET": "whsec_x", "SECRETS": "whsec_y"}, "E030"),
    ],
)
def test_bad_entry_values(entry, expected):
    with override_settings(KLAREFI_ENDPOINTS={"eu": entry}):
        assert ids(endpoint_checks.check_endpoints()) == [f"django_klarefi.{expected}"]


@pytest.mark.parametrize("value", [["eu"], "eu", {"eu": "whsec_x"}])
def test_wrong_shapes(value):
    with override_settings(KLAREFI_ENDPOINTS=value):
        assert ids(endpoint_checks.check_endpoints()) == ["django_klarefi.E030"]


@pytest.mark.parametrize(
    ("keys", "count"),
    [
        (["not-a-key"], 1),
        ([GOOD_KEY, "c2hvcnQ="], 1),
        ([GOOD_KEY[:-2]], 1),
        ([42], 1),
        ("a string, not a list", 1),
        ([], 1),
    ],
)
def test_encryption_keys_that_are_not_fernet_keys(keys, count):
    with override_settings(KLAREFI_ENCRYPTION_KEYS=keys):
        messages = endpoint_checks.check_encryption_keys()
    assert ids(messages) == ["django_klarefi.E035"] * count
    assert all(GOOD_KEY not in f"{m.msg} {m.hint}" for m in messages)


def test_keys_set_without_cryptography(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        endpoint_checks.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "cryptography" else real(name, *a),
    )
    with override_settings(KLAREFI_ENCRYPTION_KEYS=[GOOD_KEY]):
        messages = endpoint_checks.check_encryption_keys()
    assert ids(messages) == ["django_klarefi.E036"]
    assert "django-klarefi[encryption]" in messages[0].hint


def test_named_endpoints_alone_do_not_ask_for_klarefi_webhook_secret():
    with override_settings(
        KLAREFI_WEBHOOK_SECRET=None, KLAREFI_ENDPOINTS={"eu": {"SECRET": "whsec_eu"}}
    ):
        assert klarefi_ids() == []
    with override_settings(KLAREFI_WEBHOOK_SECRET=None, KLAREFI_ENCRYPTION_KEYS=[GOOD_KEY]):
        assert klarefi_ids() == []  # database endpoints only
    with override_settings(KLAREFI_WEBHOOK_SECRET=None):
        assert "django_klarefi.W005" in klarefi_ids()  # E001 under check --deploy


def test_an_endpoint_in_task_mode_runs_the_task_checks():
    with override_settings(
        KLAREFI_ENDPOINTS={"eu": {"SECRET": "whsec_eu", "PROCESSING": "task"}},
        KLAREFI_TASK_BACKEND="missing",
    ):
        assert "django_klarefi.E007" in klarefi_ids()
    with override_settings(
        KLAREFI_ENDPOINTS={"eu": {"SECRET": "whsec_eu"}}, KLAREFI_TASK_BACKEND="missing"
    ):
        assert "django_klarefi.E007" not in klarefi_ids()


def test_the_new_settings_are_known():
    with override_settings(KLAREFI_ENDPOINTS={}, KLAREFI_ENCRYPTION_KEYS=[GOOD_KEY]):
        assert "django_klarefi.W004" not in klarefi_ids()
