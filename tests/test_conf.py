"""django_klarefi.conf: the settings, as the rest of the app reads them."""

from __future__ import annotations

import pytest

from django_klarefi.conf import (
    MIN_EVENT_RETENTION,
    SETTING_NAMES,
    SHORT_RETENTION_REASON,
    Settings,
    conf,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("whsec_a", ("whsec_a",)),
        (["whsec_a", "whsec_b"], ("whsec_a", "whsec_b")),
        (["whsec_a", "", "  ", "\n", "whsec_b"], ("whsec_a", "whsec_b")),
        (("\t", "whsec_b"), ("whsec_b",)),
        ("   ", ()),
        ("\n", ()),
        ("", ()),
        ([" ", ""], ()),
        (["whsec_a", 5, None], ("whsec_a",)),
        (None, ()),
        (b"whsec_a", ()),
        # Surrounding whitespace is kept: the secret is used verbatim (check E010 reports it).
        (["whsec_a\n"], ("whsec_a\n",)),
    ],
)
def test_webhook_secrets_leaves_out_blank_entries(settings, value, expected):
    settings.KLAREFI_WEBHOOK_SECRET = value
    assert expected == conf.WEBHOOK_SECRETS
    assert (expected[0] if expected else None) == conf.SIGNING_SECRET


def test_setting_names_are_exactly_the_settings_the_properties_read(settings):
    # A property reads KLAREFI_<its name> if a sentinel set there comes back; its docstring
    # must then name the setting, or check W004 would warn of a setting the app reads.
    read = set()
    for name, attribute in vars(Settings).items():
        if isinstance(attribute, property):
            sentinel = object()
            setattr(settings, f"KLAREFI_{name}", sentinel)
            if getattr(conf, name) is sentinel:
                read.add(f"KLAREFI_{name}")
            delattr(settings, f"KLAREFI_{name}")
    assert read == SETTING_NAMES
    assert "KLAREFI_WEBHOOK_SECRET" in read
    assert "KLAREFI_WEBHOOK_SECRETS" not in read


def test_short_retention_reason_states_the_floor_and_the_risk():
    assert MIN_EVENT_RETENTION.total_seconds() == 3 * 3600
    assert "2 h 36 min" in SHORT_RETENTION_REASON
    assert "at least 3 hours" in SHORT_RETENTION_REASON
    assert "late retry run the handlers again" in SHORT_RETENTION_REASON


@pytest.mark.parametrize("value", ["  ", "\n", ["", " \t"]])
def test_receiver_with_only_blank_secrets_answers_not_configured(client, settings, value):
    settings.KLAREFI_WEBHOOK_SECRET = value
    response = client.post("/webhooks/klarefi", b"{}", content_type="application/json")
    assert (response.status_code, response.json()) == (503, {"error": "not_configured"})
