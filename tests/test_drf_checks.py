"""django_klarefi.E013: ``KLAREFI_API_PERMISSION_CLASSES`` holds DRF permission classes.

With DRF installed; tests/test_drf_absent.py shows that without it the check reports
nothing and imports nothing of DRF. No database access: pytest-django blocks it here.
"""

from __future__ import annotations

import pytest
from rest_framework.permissions import IsAdminUser, IsAuthenticated

from django_klarefi.contrib.rest_framework import HasReprocessPermission
from tests.test_checks import ids, messages_with_id, only_message


@pytest.mark.parametrize(
    "value",
    [
        ["rest_framework.permissions.IsAdminUser"],
        ("rest_framework.permissions.IsAuthenticated", HasReprocessPermission),
        [IsAdminUser | IsAuthenticated, ~IsAdminUser],
        [],
    ],
)
def test_permission_classes_and_their_paths_pass(settings, value):
    assert ids({"KLAREFI_API_PERMISSION_CLASSES": value}, settings) == []


def test_a_path_that_cannot_be_imported_is_e013(settings):
    settings.KLAREFI_API_PERMISSION_CLASSES = [
        "rest_framework.permissions.IsAdminUser",
        "myproject.permissions.IsBackOffice",
    ]
    message = only_message("django_klarefi.E013")
    assert message.is_serious()
    assert message.msg.startswith(
        'KLAREFI_API_PERMISSION_CLASSES entry 1 ("myproject.permissions.IsBackOffice") '
        "cannot be imported: "
    )
    assert "KLAREFI_API_PERMISSION_CLASSES" in message.hint


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("django_klarefi.models.Event", '("django_klarefi.models.Event") is not a DRF permission'),
        ("rest_framework.permissions", "is not a DRF permission class"),  # a module
        (IsAdminUser(), "is neither a DRF permission class nor a dotted path to one"),
        (object, "is neither a DRF permission class nor a dotted path to one"),
    ],
)
def test_an_entry_that_is_not_a_permission_class_is_e013(settings, entry, problem):
    settings.KLAREFI_API_PERMISSION_CLASSES = [entry]
    message = only_message("django_klarefi.E013")
    assert message.msg.startswith("KLAREFI_API_PERMISSION_CLASSES entry 0 ")
    assert problem in message.msg


def test_every_bad_entry_is_reported(settings):
    settings.KLAREFI_API_PERMISSION_CLASSES = ["no.such.A", IsAdminUser, "no.such.B"]
    assert [m.msg.split(" (")[0] for m in messages_with_id("django_klarefi.E013")] == [
        "KLAREFI_API_PERMISSION_CLASSES entry 0",
        "KLAREFI_API_PERMISSION_CLASSES entry 2",
    ]


def test_a_single_path_instead_of_a_list_is_e013(settings):
    settings.KLAREFI_API_PERMISSION_CLASSES = "rest_framework.permissions.IsAdminUser"
    message = only_message("django_klarefi.E013")
    assert message.msg == "KLAREFI_API_PERMISSION_CLASSES must be a list or tuple."
    assert '["rest_framework.permissions.IsAdminUser"]' in message.hint
