"""System checks. django-klarefi's run without database access: pytest-django blocks it here
(tests/klarefi_checks.py runs them without Django's own, which may ask the database)."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_klarefi.conf import SETTING_NAMES, SHORT_RETENTION_REASON
from tests.klarefi_checks import run_klarefi_checks

SECRET = "whsec_test_secret_do_not_leak_7f3a"


def ids(settings_overrides, settings) -> list[str]:
    for name, value in settings_overrides.items():
        setattr(settings, name, value)
    return sorted(m.id for m in run_klarefi_checks() if m.id and m.id.startswith("django_klarefi"))


def messages_with_id(check_id: str) -> list[checks.CheckMessage]:
    return [m for m in run_klarefi_checks() if m.id == check_id]


def only_message(check_id: str) -> checks.CheckMessage:
    """The one message of django-klarefi's checks, which must have ``check_id``."""
    messages = [m for m in run_klarefi_checks() if m.id and m.id.startswith("django_klarefi")]
    assert [m.id for m in messages] == [check_id]
    return messages[0]


def test_valid_configuration_has_no_messages(settings):
    assert ids({}, settings) == []


@pytest.mark.parametrize("value", [None, "", [], ()])
def test_missing_or_empty_secret_is_a_warning_w005(settings, value):
    # Not an error: migrate, runserver and test runs must work before the secret is set.
    if value is None:
        del settings.KLAREFI_WEBHOOK_SECRET
    else:
        settings.KLAREFI_WEBHOOK_SECRET = value
    message = only_message("django_klarefi.W005")
    assert not message.is_serious()
    assert "KLAREFI_WEBHOOK_SECRET is not set" in message.msg
    assert "503" in message.msg
    assert "--deploy" in message.hint


@pytest.mark.parametrize("value", [None, "", [], ()])
def test_missing_or_empty_secret_is_e001_under_deploy(settings, value):
    if value is None:
        del settings.KLAREFI_WEBHOOK_SECRET
    else:
        settings.KLAREFI_WEBHOOK_SECRET = value
    messages = [
        m for m in run_klarefi_checks(deploy=True) if m.id and m.id.startswith("django_klarefi")
    ]
    assert sorted(m.id for m in messages) == ["django_klarefi.E001", "django_klarefi.W005"]
    error = next(m for m in messages if m.id == "django_klarefi.E001")
    assert error.is_serious()
    assert error.msg == "KLAREFI_WEBHOOK_SECRET is not set, so every webhook will be rejected."


def test_deploy_check_is_silent_with_a_secret(settings):
    deploy = run_klarefi_checks(deploy=True)
    assert [m.id for m in deploy if m.id and m.id.startswith("django_klarefi")] == []


@pytest.mark.parametrize("value", [123, ["whsec_a", 5], ["whsec_a", ""], {"a": "b"}, b"whsec_x"])
def test_wrong_secret_type_is_e002(settings, value):
    assert ids({"KLAREFI_WEBHOOK_SECRET": value}, settings) == ["django_klarefi.E002"]


@pytest.mark.parametrize("value", [" ", "\n", " \t\r\n", ["whsec_a", "  "], ("\n",), [""]])
def test_whitespace_only_secret_is_e002(settings, value):
    assert ids({"KLAREFI_WEBHOOK_SECRET": value}, settings) == ["django_klarefi.E002"]
    assert "empty or only whitespace" in messages_with_id("django_klarefi.E002")[0].msg


@pytest.mark.parametrize(
    ("value", "index"),
    [
        (SECRET + "\n", 0),  # read from a secrets file without .strip()
        (" " + SECRET, 0),
        (SECRET + "\r\n", 0),
        (["whsec_new", SECRET + "\n"], 1),
        (("\t" + SECRET + " ", "whsec_old"), 0),
    ],
)
def test_secret_with_surrounding_whitespace_is_e010(settings, value, index):
    settings.KLAREFI_WEBHOOK_SECRET = value
    message = only_message("django_klarefi.E010")
    assert message.is_serious()
    assert f"KLAREFI_WEBHOOK_SECRET entry {index} has leading or trailing whitespace" in message.msg
    assert ".strip()" in message.hint
    assert SECRET not in str(message)
    assert SECRET not in repr(message)


def test_every_padded_entry_is_reported_and_prefix_is_checked_stripped(settings):
    settings.KLAREFI_WEBHOOK_SECRET = ["whsec_a\n", "whsec_b", " sk_live_wrong"]
    assert [m.msg.split(" has")[0] for m in messages_with_id("django_klarefi.E010")] == [
        "KLAREFI_WEBHOOK_SECRET entry 0",
        "KLAREFI_WEBHOOK_SECRET entry 2",
    ]
    assert ["entry 2" in m.msg for m in messages_with_id("django_klarefi.W001")] == [True]


def test_secret_without_prefix_is_w001_and_message_hides_it(settings):
    settings.KLAREFI_WEBHOOK_SECRET = ["whsec_ok", "sk_live_looks_wrong"]
    messages = [m for m in run_klarefi_checks() if m.id == "django_klarefi.W001"]
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


# The whole check command: from Django 6.1 its model checks ask the database for features.
@pytest.mark.django_db
def test_check_command_reports_a_missing_secret_and_passes(settings):
    settings.KLAREFI_WEBHOOK_SECRET = ""
    out, err = StringIO(), StringIO()
    call_command("check", stdout=out, stderr=err)
    assert (
        "(django_klarefi.W005) KLAREFI_WEBHOOK_SECRET is not set" in out.getvalue() + err.getvalue()
    )


# The whole check command: from Django 6.1 its model checks ask the database for features.
@pytest.mark.django_db
def test_check_deploy_fails_on_a_missing_secret(settings):
    settings.KLAREFI_WEBHOOK_SECRET = ""
    with pytest.raises(SystemCheckError, match=r"django_klarefi\.E001"):
        call_command("check", "--deploy", stdout=StringIO(), stderr=StringIO())


# --- W004: unknown KLAREFI_ settings ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("KLAREFI_PROCESS", "KLAREFI_PROCESSING"),
        ("KLAREFI_WEBHOOK_SECRETS", "KLAREFI_WEBHOOK_SECRET"),
        ("KLAREFI_EVENT_RETENTON", "KLAREFI_EVENT_RETENTION"),
        ("KLAREFI_TOLERANCE", "KLAREFI_WEBHOOK_TOLERANCE"),
    ],
)
def test_misspelt_setting_is_w004_with_did_you_mean(settings, name, suggestion):
    setattr(settings, name, "sync")
    message = only_message("django_klarefi.W004")
    assert message.msg == f"{name} is not a django-klarefi setting, so it has no effect."
    assert message.hint == f"Did you mean {suggestion}?"


def test_unrelated_unknown_setting_is_w004_listing_the_settings(settings):
    settings.KLAREFI_COLOUR = "blue"
    message = only_message("django_klarefi.W004")
    assert message.msg.startswith("KLAREFI_COLOUR is not")
    assert "Did you mean" not in message.hint
    assert all(name in message.hint for name in SETTING_NAMES)


def test_known_settings_are_not_w004(settings):
    for name in SETTING_NAMES:
        setattr(settings, name, getattr(settings, name, None))
    assert messages_with_id("django_klarefi.W004") == []


def test_known_settings_are_derived_from_conf_settings():
    # Each property that reads a setting names it; derived values are no settings.
    assert {"KLAREFI_WEBHOOK_SECRET", "KLAREFI_PROCESSING", "KLAREFI_EVENT_RETENTION"} <= (
        SETTING_NAMES
    )
    assert "KLAREFI_WEBHOOK_SECRETS" not in SETTING_NAMES
    assert "KLAREFI_SIGNING_SECRET" not in SETTING_NAMES


# --- E012: a retention shorter than Klarefi's retries ----------------------------------------


@pytest.mark.parametrize("value", ["1s", "10m", "2h", "179m", "10799s", " 2H "])
def test_retention_shorter_than_the_retry_schedule_is_e012(settings, value):
    settings.KLAREFI_EVENT_RETENTION = value
    message = only_message("django_klarefi.E012")
    assert message.msg == (
        f'KLAREFI_EVENT_RETENTION ("{value.strip()}") is shorter than Klarefi\'s retry '
        f"schedule. {SHORT_RETENTION_REASON}"
    )
    assert "late retry run the handlers again" in message.msg
    assert message.hint == 'Set it to "3h" or longer, such as "90d".'


@pytest.mark.parametrize("value", ["3h", "180m", "10800s", "1d", "90d", "2w"])
def test_retention_of_three_hours_or_more_is_fine(settings, value):
    assert ids({"KLAREFI_EVENT_RETENTION": value}, settings) == []


def test_invalid_retention_is_e009_not_e012(settings):
    assert ids({"KLAREFI_EVENT_RETENTION": "2 hours"}, settings) == ["django_klarefi.E009"]


# --- E011 and W003: the receiver's URL -----------------------------------------------------


def test_the_recommended_include_has_no_url_messages(settings):
    # Not even Django's own (urls.W002 warns of routes that begin with a slash).
    assert [m.id for m in checks.run_checks(tags=[checks.Tags.urls])] == []


@pytest.mark.parametrize("urlconf", ["tests.urls_marked_receiver", "tests.urls_plain_view"])
def test_receiver_routed_without_the_include_is_not_e011(settings, urlconf):
    settings.ROOT_URLCONF = urlconf
    assert ids({}, settings) == []


@pytest.mark.parametrize(
    ("urlconf", "check_id", "msg", "hint"),
    [
        (
            "tests.urls_without_receiver",
            "django_klarefi.E011",
            'The Klarefi receiver has no URL: "django_klarefi:webhook" cannot be reversed and '
            "no URL routes a receiver view, so every delivery gets a 404.",
            'Add path("webhooks/klarefi", include("django_klarefi.urls")) to the urlpatterns '
            "of ROOT_URLCONF, and register https://<your host>/webhooks/klarefi as the "
            "endpoint in Klarefi's dashboard.",
        ),
        (
            "tests.urls_old_include",
            "django_klarefi.W003",
            "The Klarefi receiver's URL /webhooks/klarefi/ ends with a slash: a delivery to "
            "/webhooks/klarefi, the form Klarefi's dashboard shows, is not received (a 301 "
            "redirect that Klarefi does not follow, a 404 without APPEND_SLASH, a 500 with "
            "DEBUG on).",
            'Include the receiver without the trailing slash, path("webhooks/klarefi", '
            'include("django_klarefi.urls")): it then accepts both forms.',
        ),
    ],
    ids=["no-receiver-is-E011", "trailing-slash-include-is-W003"],
)
def test_receiver_url_messages(settings, urlconf, check_id, msg, hint):
    settings.ROOT_URLCONF = urlconf
    message = only_message(check_id)
    assert (message.msg, message.hint) == (msg, hint)


# --- No database ---------------------------------------------------------------------------


def test_no_check_touches_the_database(settings, django_db_blocker):
    # Every check reporting at once, with database access blocked: a query would raise.
    settings.ROOT_URLCONF = "tests.urls_old_include"
    settings.KLAREFI_WEBHOOK_SECRET = [SECRET + "\n", "sk_live_x"]
    settings.KLAREFI_EVENT_RETENTION = "1h"
    settings.KLAREFI_PROCESS = "sync"
    with django_db_blocker.block():
        reported = ids({}, settings)
        settings.ROOT_URLCONF = "tests.urls_without_receiver"
        settings.KLAREFI_WEBHOOK_SECRET = " "
        reported += ids({}, settings)
    assert reported == sorted(
        [
            "django_klarefi.E010",
            "django_klarefi.E012",
            "django_klarefi.W001",
            "django_klarefi.W003",
            "django_klarefi.W004",
        ]
    ) + sorted(
        ["django_klarefi.E002", "django_klarefi.E011", "django_klarefi.E012", "django_klarefi.W004"]
    )


# --- The docs' list of checks ----------------------------------------------------------------


def test_the_docs_list_every_check_with_its_level():
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    source = "".join(p.read_text() for p in (root / "django_klarefi").rglob("*.py"))
    # id="django_klarefi.E001", or a bare "E030" handed to a helper that builds the id.
    emitted = {
        f"django_klarefi.{code}"
        for code in re.findall(r'"(?:django_klarefi\.)?([EW]\d{3})"', source)
    }
    table = re.findall(
        r"^\| `(django_klarefi\.[EW]\d{3})` \| (error|warning) \|",
        (root / "docs" / "configuration.md").read_text(),
        re.MULTILINE,
    )
    assert {check_id for check_id, _ in table} == emitted
    for check_id, level in table:
        assert level == {"E": "error", "W": "warning"}[check_id.split(".")[1][0]], check_id
