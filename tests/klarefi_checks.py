"""django-klarefi's own system checks, run without Django's.

``checks.run_checks()`` runs every registered check, Django's model checks included, and
from Django 6.1 those ask each database for its features (JSONField's check, on SQLite, runs
a query): under pytest-django's database blocker such a test passes only when an earlier test
happened to cache the answer. django-klarefi's checks never touch the database, so the tests
of them run just those, with the blocker on, in any order.
"""

from __future__ import annotations

from django.core import checks


def run_klarefi_checks(*, deploy: bool = False) -> list[checks.CheckMessage]:
    """The messages of every check registered by a ``django_klarefi`` module."""
    messages: list[checks.CheckMessage] = []
    for check in checks.registry.registry.get_checks(include_deployment_checks=deploy):
        if check.__module__.startswith("django_klarefi."):
            messages.extend(check(app_configs=None, databases=None))
    return messages
