"""System checks. They run without database access: pytest-django blocks it here."""

from __future__ import annotations

import pytest
from django.core import checks
from django.core.management import call_command

SECRET = "whsec_test_secret_do_not_leak_7f3a"


def ids(settings_overrides, settings) -> list[str]:
    for name, value in settings_overrides.items():
        setattr(settings, name, value)
    return sorted(m.id for m in checks.run_checks() if m.id and m.id.startswith("django_klarefi"))


def test_valid_configuration_has_no_messages(settings):
    assert ids({}, settings) == []


@pytest.mark.parametrize("value", [None, "", [], ()])
def test_missing_or_empty_secret_is_e001(settings, value):
    if value is None:
        del settings.KLAREFI_WEBHOOK_SECRET
    else:
        settings.KLAREFI_WEBHOOK_SECRET = value
    assert ids({}, settings) == ["django_klarefi.E001"]


@pytest.mark.parametrize("value", [123, ["whsec_a", 5], ["whsec_a", ""], {"a": "b"}, b"whsec_x"])
def test_wrong_secret_type_is_e002(settings, value):
    assert ids({"KLAREFI_WEBHOOK_SECRET": value}, settings) == ["django_klarefi.E002"]


def test_secret_without_prefix_is_w001_and_message_hides_it(settings):
    settings.KLAREFI_WEBHOOK_SECRET = ["whsec_ok", "sk_live_looks_wrong"]
    messages = [m for m in checks.run_checks() if m.id == "django_klarefi.W001"]
    assert len(messages) == 1
    assert "entry 1" in messages[0].msg
    assert "sk_live_looks_wrong" not in str(messages[0])


@pytest.mark.parametrize("value", [0, -5, "300", 1.5, True])
def test_bad_tolerance_is_e003(settings, value):
    assert ids({"KLAREFI_WEBHOOK_TOLERANCE": value}, settings) == ["django_klarefi.E003"]


@pytest.mark.parametrize("value", [0, -1, "1MB"])
def test_bad_max_body_is_e004(settings, value):
    assert ids({"KLAREFI_MAX_BODY_BYTES": value}, settings) == ["django_klarefi.E004"]


def test_unknown_processing_mode_is_e005(settings):
    assert ids({"KLAREFI_PROCESSING": "celery"}, settings) == ["django_klarefi.E005"]


def test_check_command_names_the_setting(settings, capsys):
    settings.KLAREFI_WEBHOOK_SECRET = ""
    with pytest.raises(Exception, match="KLAREFI_WEBHOOK_SECRET"):
        call_command("check")
