"""System check on the events API's settings (Django REST framework). It never touches the
database, and imports DRF only where it is installed.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register
from django.utils.module_loading import import_string

from django_klarefi.conf import conf


@register()
def check_api_permission_classes(**kwargs: Any) -> list[CheckMessage]:
    """E013: ``KLAREFI_API_PERMISSION_CLASSES`` is a list of DRF permission classes, or of
    dotted paths that import to one (composed ones such as ``IsAdminUser | IsBackOffice``
    included). Only where DRF is installed: without it the events API cannot be routed."""
    try:
        from rest_framework.permissions import OperationHolderMixin
    except ImportError:
        return []
    value = conf.API_PERMISSION_CLASSES
    hint = (
        "Set KLAREFI_API_PERMISSION_CLASSES to a list of DRF permission classes or their "
        'dotted paths, such as ["rest_framework.permissions.IsAdminUser"].'
    )
    if not isinstance(value, list | tuple):
        return [
            Error(
                "KLAREFI_API_PERMISSION_CLASSES must be a list or tuple.",
                hint=hint,
                id="django_klarefi.E013",
            )
        ]
    errors: list[CheckMessage] = []
    for index, entry in enumerate(value):
        problem = _permission_class_problem(entry, OperationHolderMixin)
        if problem:
            errors.append(
                Error(
                    f"KLAREFI_API_PERMISSION_CLASSES entry {index} {problem}.",
                    hint=hint,
                    id="django_klarefi.E013",
                )
            )
    return errors


def _permission_class_problem(entry: object, permission_type: type) -> str | None:
    """What is wrong with one entry of ``KLAREFI_API_PERMISSION_CLASSES``, or None.

    ``permission_type`` is DRF's ``OperationHolderMixin``: the metaclass of every
    ``BasePermission`` subclass, and the base of the composed ``A | B`` permissions.
    """
    if isinstance(entry, str):
        try:
            imported = import_string(entry)
        except ImportError as exc:
            return f'("{entry}") cannot be imported: {exc}'
        if isinstance(imported, permission_type):
            return None
        return f'("{entry}") is not a DRF permission class'
    if isinstance(entry, permission_type):
        return None
    return f"({entry!r}) is neither a DRF permission class nor a dotted path to one"
