"""django-klarefi's pytest plugin, registered through the ``pytest11`` entry point.

With pytest-django, a test can take the ``klarefi_signals`` fixture without importing
anything. Nothing Django is imported until a fixture is used, so the plugin is harmless
in projects that do not use Django.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from django_klarefi.testing import SentSignal

__all__ = ["klarefi_signals"]


@pytest.fixture
def klarefi_signals() -> Iterator[list[SentSignal]]:
    """The Klarefi signals sent during the test, as ``(signal, event)`` pairs in send
    order: :func:`django_klarefi.testing.capture_signals`'s list."""
    from django_klarefi.testing import capture_signals

    with capture_signals() as sent:
        yield sent
