"""System checks for the ``KLAREFI_*`` settings. None of them touches the database."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.checks import CheckMessage, Error, Tags, Warning, register

from django_klarefi.conf import PROCESSING_MODES, conf
from django_klarefi.durations import InvalidDuration, parse_duration


@register(Tags.security)
def check_webhook_secret(**kwargs: Any) -> list[CheckMessage]:
    value = conf.WEBHOOK_SECRET
    if value is None or value in ("", [], ()):
        return [
            Error(
                "KLAREFI_WEBHOOK_SECRET is not set, so every webhook will be rejected.",
                hint="Set KLAREFI_WEBHOOK_SECRET to the whsec_... signing secret from the "
                "Klarefi dashboard (Webhooks), for example from an environment variable.",
                id="django_klarefi.E001",
            )
        ]
    secrets = [value] if isinstance(value, str) else value
    if not isinstance(value, str | list | tuple) or not all(
        isinstance(secret, str) and secret for secret in secrets
    ):
        return [
            Error(
                "KLAREFI_WEBHOOK_SECRET must be a non-empty string or a list/tuple of "
                "non-empty strings.",
                hint="Use a list, newest first, to rotate secrets: "
                'KLAREFI_WEBHOOK_SECRET = ["whsec_new...", "whsec_old..."].',
                id="django_klarefi.E002",
            )
        ]
    # The message names the position of the secret, never the secret itself.
    return [
        Warning(
            f"KLAREFI_WEBHOOK_SECRET entry {index} does not start with 'whsec_'.",
            hint="Klarefi signing secrets start with whsec_ and are used verbatim, prefix "
            "included. Check that the whole secret was copied.",
            id="django_klarefi.W001",
        )
        for index, secret in enumerate(secrets)
        if not secret.startswith("whsec_")
    ]


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
    return errors


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(f'"{value}"' for value in values)


@register()
def check_event_retention(**kwargs: Any) -> list[CheckMessage]:
    """``KLAREFI_EVENT_RETENTION``, when set, is a duration such as "90d"."""
    retention = conf.EVENT_RETENTION
    if retention is None:
        return []
    try:
        parse_duration(retention)
    except InvalidDuration as exc:
        return [
            Error(
                f"KLAREFI_EVENT_RETENTION is not a valid duration: {exc}",
                hint='Use a string such as "90d" (days), "12h", "10m", "30s" or "2w", or '
                "remove the setting and pass klarefi_prune_events --older-than.",
                id="django_klarefi.E009",
            )
        ]
    return []
