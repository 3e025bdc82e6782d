"""Endpoints as the settings define them: ``KLAREFI_WEBHOOK_SECRET`` and ``KLAREFI_ENDPOINTS``.

No database here: :mod:`django_klarefi.endpoints` adds the ``Endpoint`` rows and the cache,
the model refuses a name that is defined here, and the checks
(:mod:`django_klarefi.endpoint_checks`) report what is wrong with these values.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

from django_klarefi.conf import PROCESSING_MODES, conf

__all__ = [
    "DEFAULT_ENDPOINT",
    "ENDPOINT_NAME_MAX_LENGTH",
    "ENDPOINT_NAME_PATTERN",
    "EndpointConfig",
    "is_valid_name",
    "settings_endpoints",
]

#: The endpoint that ``KLAREFI_WEBHOOK_SECRET`` configures, served at the include's root.
DEFAULT_ENDPOINT = "default"
ENDPOINT_NAME_MAX_LENGTH = 64
#: A name: lower-case letters, digits, ``-`` and ``_``, starting with a letter or digit.
#: The URLconf routes exactly these (``django_klarefi.urls``).
ENDPOINT_NAME_PATTERN = rf"[a-z0-9][a-z0-9_-]{{0,{ENDPOINT_NAME_MAX_LENGTH - 1}}}"
_NAME = re.compile(ENDPOINT_NAME_PATTERN)

#: The keys an entry of ``KLAREFI_ENDPOINTS`` may have.
ENTRY_KEYS = ("SECRET", "TOLERANCE", "PROCESSING")


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    """One endpoint, ready to verify a delivery: what the receiver needs and nothing else.

    ``problem`` is empty for a usable endpoint. Otherwise it says, in a line fit for the
    log (never a secret), why deliveries cannot be verified (no secret is set, or a
    database endpoint's secret cannot be decrypted); ``secrets`` is then empty, and the
    receiver answers 503 with ``Retry-After``.
    """

    name: str
    secrets: tuple[str, ...]
    tolerance: int
    processing: str
    source: str = "settings"
    """``"settings"`` or ``"database"``."""
    problem: str = ""


def is_valid_name(name: object) -> bool:
    """Whether ``name`` is a valid endpoint name (:data:`ENDPOINT_NAME_PATTERN`)."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def endpoint_name_argument(text: str) -> str:
    """``--endpoint NAME`` of the commands: a valid name (it need not exist any more: its
    events may outlive it)."""
    if not is_valid_name(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an endpoint name: lower-case letters, digits, hyphens and "
            "underscores."
        )
    return text


def settings_endpoints() -> dict[str, EndpointConfig]:
    """Every endpoint the settings define, by name; computed once per settings change.

    ``default`` comes from ``KLAREFI_ENDPOINTS["default"]`` or else from
    ``KLAREFI_WEBHOOK_SECRET`` (check ``django_klarefi.E034`` reports both). Entries with
    an invalid name are left out (check E031); an entry with no usable secret is kept,
    with its ``problem`` (check E032).
    """
    global _cached
    if _cached is None:
        _cached = _read_settings()
    return _cached


_cached: dict[str, EndpointConfig] | None = None


@receiver(setting_changed)
def _forget_settings(*, setting: str, **kwargs: Any) -> None:
    global _cached
    if setting.startswith("KLAREFI_"):
        _cached = None


def _read_settings() -> dict[str, EndpointConfig]:
    endpoints: dict[str, EndpointConfig] = {}
    if conf.WEBHOOK_SECRET not in (None, "", [], ()):
        endpoints[DEFAULT_ENDPOINT] = _config(
            DEFAULT_ENDPOINT, conf.WEBHOOK_SECRETS, None, None, "KLAREFI_WEBHOOK_SECRET"
        )
    entries = conf.ENDPOINTS
    if not isinstance(entries, dict):
        return endpoints
    for name, entry in entries.items():
        if not is_valid_name(name):
            continue
        entry = entry if isinstance(entry, dict) else {}
        endpoints[name] = _config(
            name,
            _secrets(entry.get("SECRET")),
            entry.get("TOLERANCE"),
            entry.get("PROCESSING"),
            f'KLAREFI_ENDPOINTS["{name}"]["SECRET"]',
        )
    return endpoints


def _config(
    name: str, secrets: tuple[str, ...], tolerance: Any, processing: Any, setting: str
) -> EndpointConfig:
    problem = ""
    if not secrets:
        problem = (
            f'Klarefi endpoint "{name}" has no usable secret: {setting} is empty, so its '
            "deliveries cannot be verified. Set it to the whsec_... signing secret from the "
            "Klarefi dashboard."
        )
    return EndpointConfig(
        name=name,
        secrets=secrets,
        tolerance=tolerance if _positive_int(tolerance) else conf.WEBHOOK_TOLERANCE,
        processing=processing if processing in PROCESSING_MODES else conf.PROCESSING,
        problem=problem,
    )


def _secrets(value: Any) -> tuple[str, ...]:
    """The usable secrets of a ``SECRET`` value, as ``conf.WEBHOOK_SECRETS`` reads one."""
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list | tuple):
        return ()
    return tuple(secret for secret in entries if isinstance(secret, str) and secret.strip())


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
