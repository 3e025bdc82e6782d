"""Short durations ("90d", "12h", "10m", "30s"), their cutoffs, and the retention check E009."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from django_klarefi.checks import check_event_retention
from django_klarefi.durations import UNITS, InvalidDuration, cutoff, parse_duration
from tests.klarefi_checks import run_klarefi_checks


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90d", timedelta(days=90)),
        ("12h", timedelta(hours=12)),
        ("10m", timedelta(minutes=10)),
        ("30s", timedelta(seconds=30)),
        ("2w", timedelta(weeks=2)),
        (" 7D ", timedelta(days=7)),
        ("1s", timedelta(seconds=1)),
    ],
)
def test_parses_a_number_and_a_unit(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "d", "90", "90x", "-5d", "1.5h", "1d12h", "90 days", "P90D", "٣d", "9" * 13 + "s", "h12"],
)
def test_rejects_anything_else_with_a_message_showing_the_accepted_forms(text):
    with pytest.raises(InvalidDuration, match=r"use a whole number and a unit, such as 90d"):
        parse_duration(text)


def test_rejects_zero():
    with pytest.raises(InvalidDuration, match="longer than zero"):
        parse_duration("0d")


def test_rejects_durations_too_long_for_timedelta():
    with pytest.raises(InvalidDuration, match="too long"):
        parse_duration("999999999999w")


def test_rejects_non_strings():
    with pytest.raises(InvalidDuration, match="must be a string"):
        parse_duration(90)  # type: ignore[arg-type]


def test_long_garbage_is_shortened_in_the_message():
    with pytest.raises(InvalidDuration) as raised:
        parse_duration("x" * 10_000)
    assert len(str(raised.value)) < 200


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(sorted(UNITS)))
def test_every_number_and_unit_round_trips(number, unit):
    assert parse_duration(f"{number}{unit}") == timedelta(**{UNITS[unit]: number})


@given(st.text(max_size=30))
def test_arbitrary_text_is_a_duration_or_an_invalid_duration(text):
    try:
        result = parse_duration(text)
    except InvalidDuration:
        return
    assert result > timedelta(0)


def test_cutoff_is_that_long_before_now():
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert cutoff(timedelta(days=90), now=now) == datetime(2026, 3, 3, 12, 0, tzinfo=UTC)


def test_cutoff_before_year_one_is_an_invalid_duration():
    with pytest.raises(InvalidDuration, match="before year 1"):
        cutoff(parse_duration("999999999d"))


# The system check, E009.


def test_retention_unset_passes_the_check():
    assert check_event_retention() == []


@override_settings(KLAREFI_EVENT_RETENTION="90d")
def test_valid_retention_passes_the_check():
    assert check_event_retention() == []


@pytest.mark.parametrize("value", ["90", "ninety days", "", "0d", 90, timedelta(days=90)])
def test_invalid_retention_is_error_e009_naming_the_setting(value):
    with override_settings(KLAREFI_EVENT_RETENTION=value):
        [error] = check_event_retention()
    assert error.id == "django_klarefi.E009"
    assert error.level == checks.ERROR
    assert "KLAREFI_EVENT_RETENTION" in error.msg
    assert "90d" in error.hint


# The whole check command: from Django 6.1 its model checks ask the database for features.
@pytest.mark.django_db
@override_settings(KLAREFI_EVENT_RETENTION="3 months")
def test_e009_is_registered_and_fails_manage_py_check():
    assert "django_klarefi.E009" in [message.id for message in run_klarefi_checks()]
    with pytest.raises(SystemCheckError, match=r"django_klarefi\.E009"):
        call_command("check")
