"""django-klarefi's settings, read on every access so ``override_settings`` just works."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.conf import settings

#: The shortest retention that outlives Klarefi's whole retry schedule: its page retries
#: after 1 min, 5 min, 30 min and 2 h, so the last attempt comes 2 h 36 min after the
#: first. A processed event pruned before then is not recognised by a late retry, whose
#: handlers would run again. ``KLAREFI_EVENT_RETENTION`` (check) and
#: ``klarefi_prune_events --older-than`` refuse anything shorter.
MIN_EVENT_RETENTION = timedelta(hours=3)

#: Why a retention shorter than :data:`MIN_EVENT_RETENTION` is refused, for the check
#: (``django_klarefi.E012``) and ``klarefi_prune_events --older-than`` alike.
SHORT_RETENTION_REASON = (
    "Klarefi retries a delivery for up to 2 h 36 min after its first attempt, so events "
    f"must be kept at least {MIN_EVENT_RETENTION // timedelta(hours=1)} hours: pruning a "
    "processed event before its retries stop lets a late retry run the handlers again."
)

DEFAULT_TOLERANCE = 300
#: Default of ``KLAREFI_IDLE_TRANSACTION_TIMEOUT``: well past anything a receiver does
#: between two statements in a 30-second answer, well short of Klarefi's first retry gap.
DEFAULT_IDLE_TRANSACTION_TIMEOUT = timedelta(seconds=60)
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
PROCESSING_MODES = ("sync", "task")


class Settings:
    """Typed access to the ``KLAREFI_*`` settings, with their defaults.

    Values are returned as configured; :mod:`django_klarefi.checks` reports bad ones. The
    docstring of a property that reads a setting begins with the setting's name in double
    backticks: :data:`SETTING_NAMES`, and so the unknown-setting check, is built from them.
    """

    @property
    def WEBHOOK_SECRET(self) -> Any:
        """``KLAREFI_WEBHOOK_SECRET``: a string, or a list/tuple of strings (rotation)."""
        return getattr(settings, "KLAREFI_WEBHOOK_SECRET", None)

    @property
    def WEBHOOK_SECRETS(self) -> tuple[str, ...]:
        """Every configured secret, first one first, verbatim; empty when none is set.

        Entries that are not strings, or are empty or only whitespace, are left out (check
        ``django_klarefi.E002`` reports them), so a receiver with nothing left answers 503.
        """
        value = self.WEBHOOK_SECRET
        entries = [value] if isinstance(value, str) else value
        if not isinstance(entries, list | tuple):
            return ()
        return tuple(secret for secret in entries if isinstance(secret, str) and secret.strip())

    @property
    def SIGNING_SECRET(self) -> str | None:
        """The secret that signs test events: the first configured one, or None."""
        secrets = self.WEBHOOK_SECRETS
        return secrets[0] if secrets else None

    @property
    def WEBHOOK_TOLERANCE(self) -> int:
        """``KLAREFI_WEBHOOK_TOLERANCE``: seconds a signature's ``t`` may be off. Default 300."""
        return getattr(settings, "KLAREFI_WEBHOOK_TOLERANCE", DEFAULT_TOLERANCE)

    @property
    def MAX_BODY_BYTES(self) -> int:
        """``KLAREFI_MAX_BODY_BYTES``: larger bodies get 413 unread. Default 1 MiB."""
        return getattr(settings, "KLAREFI_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)

    @property
    def PROCESSING(self) -> str:
        """``KLAREFI_PROCESSING``: ``"sync"`` (default) or ``"task"``."""
        return getattr(settings, "KLAREFI_PROCESSING", "sync")

    @property
    def TASK_BACKEND(self) -> str | None:
        """``KLAREFI_TASK_BACKEND``: the ``TASKS`` alias to enqueue on; None for the default."""
        return getattr(settings, "KLAREFI_TASK_BACKEND", None)

    @property
    def TASK_QUEUE(self) -> str | None:
        """``KLAREFI_TASK_QUEUE``: the queue name; None for the backend's default."""
        return getattr(settings, "KLAREFI_TASK_QUEUE", None)

    @property
    def EVENT_RETENTION(self) -> str | None:
        """``KLAREFI_EVENT_RETENTION``: default ``--older-than`` of ``klarefi_prune_events``."""
        return getattr(settings, "KLAREFI_EVENT_RETENTION", None)

    @property
    def IDLE_TRANSACTION_TIMEOUT(self) -> Any:
        """``KLAREFI_IDLE_TRANSACTION_TIMEOUT``: on PostgreSQL, how long an attempt's
        transaction may sit idle between two statements before the server ends its session
        and frees its locks: a positive ``timedelta`` or number of seconds; ``None`` leaves
        the server's own ``idle_in_transaction_session_timeout``. Default 60 seconds. Check
        E014 reports other values; :func:`django_klarefi.locks.idle_timeout_ms` reads them
        as the default."""
        return getattr(
            settings, "KLAREFI_IDLE_TRANSACTION_TIMEOUT", DEFAULT_IDLE_TRANSACTION_TIMEOUT
        )

    @property
    def API_BASE_URL(self) -> str:
        """``KLAREFI_API_BASE_URL``: Klarefi's API, for ``klarefi_send_test_event --via-api``."""
        return getattr(settings, "KLAREFI_API_BASE_URL", "https://api.klarefi.com")

    @property
    def API_KEY(self) -> str | None:
        """``KLAREFI_API_KEY``: the API key (``sk_...``) for ``--via-api``."""
        return getattr(settings, "KLAREFI_API_KEY", None)

    @property
    def API_PERMISSION_CLASSES(self) -> Any:
        """``KLAREFI_API_PERMISSION_CLASSES``: the permission classes (or their dotted paths)
        of the DRF events API (``django_klarefi.contrib.rest_framework``), a list. Default:
        admin users only (``IsAdminUser``). The API requires ``django_klarefi.view_event``
        on top of these to read events."""
        return getattr(
            settings, "KLAREFI_API_PERMISSION_CLASSES", ["rest_framework.permissions.IsAdminUser"]
        )

    @property
    def METRICS(self) -> Any:
        """``KLAREFI_METRICS``: False turns the Prometheus metrics off. Default None: on when
        ``prometheus_client`` is installed (``django-klarefi[prometheus]``)."""
        return getattr(settings, "KLAREFI_METRICS", None)

    # Named endpoints (django_klarefi.endpoints).

    @property
    def ENDPOINTS(self) -> Any:
        """``KLAREFI_ENDPOINTS``: named endpoints, ``{"eu": {"SECRET": "whsec_..."}}``."""
        return getattr(settings, "KLAREFI_ENDPOINTS", None)

    @property
    def ENCRYPTION_KEYS(self) -> Any:
        """``KLAREFI_ENCRYPTION_KEYS``: Fernet keys of the database endpoints' secrets, a
        list; the first encrypts, every one decrypts."""
        return getattr(settings, "KLAREFI_ENCRYPTION_KEYS", None)

    # Personal data (django_klarefi.personal_data).

    @property
    def PAYLOAD_RETENTION(self) -> Any:
        """``KLAREFI_PAYLOAD_RETENTION``: a ``timedelta``; ``klarefi_prune_events`` erases
        the payload data and error text of processed events older than it (``timedelta(0)``:
        at once, as the attempt succeeds). Default None: payloads are kept with the row."""
        return getattr(settings, "KLAREFI_PAYLOAD_RETENTION", None)


_SETTING_DOCSTRING = re.compile(r"\s*``(KLAREFI_[A-Z0-9_]+)``")


def _setting_names(cls: type) -> frozenset[str]:
    """The settings that ``cls``'s properties read, from the names their docstrings begin with."""
    names = set()
    for attribute in vars(cls).values():
        if isinstance(attribute, property):
            match = _SETTING_DOCSTRING.match(attribute.__doc__ or "")
            if match:
                names.add(match[1])
    return frozenset(names)


#: Every ``KLAREFI_*`` setting django-klarefi reads (``django_klarefi.W004`` warns of others).
SETTING_NAMES = _setting_names(Settings)

conf = Settings()
