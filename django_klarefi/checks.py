"""System checks for the ``KLAREFI_*`` settings. None of them touches the database.

The checks on the URLconf (E011, W003) are in :mod:`django_klarefi.url_checks`, the one
on the events API's permissions (E013) in :mod:`django_klarefi.api_checks`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from django_klarefi import tasks
from django_klarefi.conf import (
    MIN_EVENT_RETENTION,
    PROCESSING_MODES,
    SETTING_NAMES,
    SHORT_RETENTION_REASON,
    conf,
)
from django_klarefi.durations import InvalidDuration, parse_duration

SETTING_PREFIX = "KLAREFI_"
UNSET_MESSAGE = "KLAREFI_WEBHOOK_SECRET is not set, so every webhook will be rejected."
UNSET_HINT = (
    "Set KLAREFI_WEBHOOK_SECRET to the whsec_... signing secret from the Klarefi dashboard "
    "(Webhooks), for example from an environment variable."
)


def _is_unset(value: object) -> bool:
    return value is None or value in ("", [], ())


def _named_endpoints_only() -> bool:
    """Whether named endpoints are configured, so that no ``default`` secret is needed."""
    return conf.ENDPOINTS is not None or conf.ENCRYPTION_KEYS is not None


@register(Tags.security)
def check_webhook_secret(**kwargs: Any) -> list[CheckMessage]:
    """No secret (W005 here, E001 under ``check --deploy``), a wrong type or a blank entry
    (E002), an entry with surrounding whitespace (E010), an entry without the ``whsec_``
    prefix (W001).

    Messages name an entry by its position, never by its value.
    """
    value = conf.WEBHOOK_SECRET
    if _is_unset(value):
        if _named_endpoints_only():
            return []  # named endpoints only (endpoint_checks), in the settings or the database
        # A warning, not an error: a developer's machine and CI usually have no secret yet,
        # and migrate, runserver and the tests must still run. Deliveries get 503 meanwhile.
        return [
            Warning(
                f"{UNSET_MESSAGE} Deliveries get 503 until it is set.",
                hint=f"{UNSET_HINT} manage.py check --deploy fails on it (django_klarefi.E001).",
                id="django_klarefi.W005",
            )
        ]
    secrets = [value] if isinstance(value, str) else value
    if not isinstance(value, str | list | tuple) or not all(
        isinstance(secret, str) and secret.strip() for secret in secrets
    ):
        return [
            Error(
                "KLAREFI_WEBHOOK_SECRET must be a string or a list/tuple of strings, none of "
                "them empty or only whitespace.",
                hint="Use a list, newest first, to rotate secrets: "
                'KLAREFI_WEBHOOK_SECRET = ["whsec_new...", "whsec_old..."].',
                id="django_klarefi.E002",
            )
        ]
    messages: list[CheckMessage] = []
    for index, secret in enumerate(secrets):
        if secret != secret.strip():
            messages.append(
                Error(
                    f"KLAREFI_WEBHOOK_SECRET entry {index} has leading or trailing "
                    "whitespace. Secrets are used verbatim, so Klarefi's deliveries will "
                    "not match it (test events signed with it here would).",
                    hint="Strip the value where it is read: a secrets file usually ends "
                    'with a newline. For example os.environ["KLAREFI_WEBHOOK_SECRET"]'
                    ".strip() or Path(...).read_text().strip().",
                    id="django_klarefi.E010",
                )
            )
        if not secret.strip().startswith("whsec_"):
            messages.append(
                Warning(
                    f"KLAREFI_WEBHOOK_SECRET entry {index} does not start with 'whsec_'.",
                    hint="Klarefi signing secrets start with whsec_ and are used verbatim, "
                    "prefix included. Check that the whole secret was copied.",
                    id="django_klarefi.W001",
                )
            )
    return messages


@register(Tags.security, deploy=True)
def check_webhook_secret_deploy(**kwargs: Any) -> list[CheckMessage]:
    """E001, for ``manage.py check --deploy`` only: no secret is an error in a deployment."""
    if not _is_unset(conf.WEBHOOK_SECRET) or _named_endpoints_only():
        return []
    return [Error(UNSET_MESSAGE, hint=UNSET_HINT, id="django_klarefi.E001")]


@register()
def check_unknown_settings(**kwargs: Any) -> list[CheckMessage]:
    """W004: a ``KLAREFI_*`` setting that django-klarefi does not read, a typo most often."""
    known = {name.removeprefix(SETTING_PREFIX): name for name in SETTING_NAMES}
    messages: list[CheckMessage] = []
    for name in sorted(dir(settings)):
        if not name.startswith(SETTING_PREFIX) or name in SETTING_NAMES:
            continue
        close = difflib.get_close_matches(name.removeprefix(SETTING_PREFIX), known, n=1)
        if close:
            hint = f"Did you mean {known[close[0]]}?"
        else:
            hint = f"django-klarefi's settings are {', '.join(sorted(SETTING_NAMES))}."
        messages.append(
            Warning(
                f"{name} is not a django-klarefi setting, so it has no effect.",
                hint=hint,
                id="django_klarefi.W004",
            )
        )
    return messages


@register()
def check_settings(**kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    tolerance = conf.WEBHOOK_TOLERANCE
    if not _positive_int(tolerance):
        errors.append(
            Error(
                "KLAREFI_WEBHOOK_TOLERANCE must be a positive number of seconds.",
                hint="Leave it unset for the default of 300 seconds.",
                id="django_klarefi.E003",
            )
        )
    if not _positive_int(conf.MAX_BODY_BYTES):
        errors.append(
            Error(
                "KLAREFI_MAX_BODY_BYTES must be a positive number of bytes.",
                hint="Leave it unset for the default of 1 MiB (1048576).",
                id="django_klarefi.E004",
            )
        )
    if conf.PROCESSING not in PROCESSING_MODES:
        errors.append(
            Error(
                f"KLAREFI_PROCESSING must be one of {_quoted(PROCESSING_MODES)}.",
                hint='Use "sync" to run handlers in the request, "task" to queue them.',
                id="django_klarefi.E005",
            )
        )
    idle = getattr(settings, "KLAREFI_IDLE_TRANSACTION_TIMEOUT", None)
    if not (idle is None or _positive_number(idle) or _positive_timedelta(idle)):
        errors.append(
            Error(
                "KLAREFI_IDLE_TRANSACTION_TIMEOUT must be a positive timedelta or number of "
                "seconds, or None.",
                hint="Leave it unset for the default of 60 seconds.",
                id="django_klarefi.E014",
            )
        )
    return errors


def _positive_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def _positive_timedelta(value: object) -> bool:
    return isinstance(value, timedelta) and value > timedelta(0)


def _an_endpoint_uses_tasks() -> bool:
    # KLAREFI_ENDPOINTS = {"eu": {"PROCESSING": "task"}}; database endpoints are not read.
    entries = conf.ENDPOINTS
    return isinstance(entries, dict) and any(
        isinstance(entry, dict) and entry.get("PROCESSING") == "task" for entry in entries.values()
    )


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(f'"{value}"' for value in values)


@register()
def check_event_retention(**kwargs: Any) -> list[CheckMessage]:
    """``KLAREFI_EVENT_RETENTION``, when set, is a duration such as "90d" (E009), and no
    shorter than Klarefi's retry schedule (E012)."""
    text = conf.EVENT_RETENTION
    if text is None:
        return []
    try:
        retention = parse_duration(text)
    except InvalidDuration as exc:
        return [
            Error(
                f"KLAREFI_EVENT_RETENTION is not a valid duration: {exc}",
                hint='Use a string such as "90d" (days), "12h", "10m", "30s" or "2w", or '
                "remove the setting and pass klarefi_prune_events --older-than.",
                id="django_klarefi.E009",
            )
        ]
    if retention < MIN_EVENT_RETENTION:
        hours = MIN_EVENT_RETENTION // timedelta(hours=1)
        return [
            Error(
                f'KLAREFI_EVENT_RETENTION ("{text.strip()}") is shorter than Klarefi\'s retry '
                f"schedule. {SHORT_RETENTION_REASON}",
                hint=f'Set it to "{hours}h" or longer, such as "90d".',
                id="django_klarefi.E012",
            )
        ]
    return []


@register()
def check_task_processing(**kwargs: Any) -> list[CheckMessage]:
    """In task mode: a Tasks framework (E006), the backend (E007) and the queue (E008) that
    ``KLAREFI_TASK_BACKEND`` and ``KLAREFI_TASK_QUEUE`` name, and no ImmediateBackend (W002).

    Reads the ``TASKS`` setting and creates the backend, as Django's own tasks check does;
    nothing here touches the database.
    """
    if conf.PROCESSING != "task" and not _an_endpoint_uses_tasks():
        return []
    if tasks.FRAMEWORK_MISSING is not None:
        return [
            Error(
                'KLAREFI_PROCESSING is "task", but no Tasks framework can be imported '
                f"({tasks.FRAMEWORK_MISSING}).",
                hint="Use Django 6.0 or newer (django.tasks), or on Django 5.2 install the "
                "backport: pip install 'django-klarefi[tasks]'.",
                id="django_klarefi.E006",
            )
        ]
    task_backends = tasks.task_backends
    alias = conf.TASK_BACKEND
    if alias is not None and (not isinstance(alias, str) or not alias):
        return [
            Error(
                "KLAREFI_TASK_BACKEND must be the name of a backend in TASKS.",
                hint='Leave it unset to use TASKS\' "default" backend.',
                id="django_klarefi.E007",
            )
        ]
    alias = tasks.backend_alias()
    if alias not in task_backends.settings:
        return [
            Error(
                f'The task backend "{alias}" is not configured in TASKS.',
                hint=f"Configured backends: {_quoted(sorted(task_backends.settings)) or 'none'}. "
                "Set KLAREFI_TASK_BACKEND to one of them, or add it to TASKS.",
                id="django_klarefi.E007",
            )
        ]
    try:
        backend = task_backends[alias]
    except tasks.InvalidTaskBackend as exc:
        return [
            Error(
                f'The task backend "{alias}" cannot be loaded: {exc}',
                hint="Check its BACKEND path in TASKS, and that its package is installed.",
                id="django_klarefi.E007",
            )
        ]
    errors: list[CheckMessage] = []
    queue = conf.TASK_QUEUE
    if queue is not None and (not isinstance(queue, str) or not queue):
        errors.append(
            Error(
                "KLAREFI_TASK_QUEUE must be the name of a queue.",
                hint='Leave it unset to use the backend\'s "default" queue.',
                id="django_klarefi.E008",
            )
        )
    else:
        queue = tasks.queue_name()
        accepted = getattr(backend, "queues", None)
        if accepted and queue not in accepted:
            setting = "KLAREFI_TASK_QUEUE" if conf.TASK_QUEUE else "KLAREFI_TASK_QUEUE (unset)"
            errors.append(
                Error(
                    f'The task backend "{alias}" has no queue "{queue}" ({setting}).',
                    hint=f"Its QUEUES in TASKS: {_quoted(sorted(accepted))}. Set "
                    "KLAREFI_TASK_QUEUE to one of them, or add the queue to QUEUES.",
                    id="django_klarefi.E008",
                )
            )
    if isinstance(backend, tasks.ImmediateBackend):
        errors.append(
            Warning(
                f'KLAREFI_PROCESSING is "task", but the task backend "{alias}" is the '
                "ImmediateBackend: handlers run in the request, after the commit, and a "
                "handler failure still answers 200.",
                hint="Fine in development. In production use a real queue (django-tasks-db, "
                'django-tasks-rq, ...), or KLAREFI_PROCESSING = "sync".',
                id="django_klarefi.W002",
            )
        )
    return errors


# Personal data (django_klarefi.personal_data).


@register()
def check_payload_retention(**kwargs: Any) -> list[CheckMessage]:
    """E020: ``KLAREFI_PAYLOAD_RETENTION``, when set, is a ``timedelta`` of zero or more."""
    value = conf.PAYLOAD_RETENTION
    if value is None or (isinstance(value, timedelta) and value >= timedelta(0)):
        return []
    return [
        Error(
            "KLAREFI_PAYLOAD_RETENTION must be a datetime.timedelta of zero or more, or None.",
            hint="Such as KLAREFI_PAYLOAD_RETENTION = timedelta(days=30) (from datetime "
            "import timedelta); timedelta(0) keeps no processed payload; None (the default) "
            "keeps payloads until the row is pruned.",
            id="django_klarefi.E020",
        )
    ]
