"""System checks for named endpoints: ``KLAREFI_ENDPOINTS`` and ``KLAREFI_ENCRYPTION_KEYS``.

They read the settings only, never the database: a database endpoint whose secret cannot
be decrypted is reported when a delivery comes (a logged 503 with ``Retry-After``).
Messages name an endpoint and a secret's position, never a secret's or a key's value.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from django.core.checks import CheckMessage, Error, Tags, Warning, register

from django_klarefi.conf import PROCESSING_MODES, conf
from django_klarefi.encryption import INSTALL_HINT, KEYS_HINT, invalid_key_positions
from django_klarefi.endpoint_settings import (
    DEFAULT_ENDPOINT,
    ENDPOINT_NAME_MAX_LENGTH,
    ENTRY_KEYS,
    is_valid_name,
)

EXAMPLE = 'KLAREFI_ENDPOINTS = {"eu": {"SECRET": "whsec_..."}}'


@register(Tags.security)
def check_endpoints(**kwargs: Any) -> list[CheckMessage]:
    """E030 not a dict (or an entry not a dict, or an unknown key); E031 an invalid name;
    E032 an entry without a usable secret; E033 a bad TOLERANCE or PROCESSING; E034
    ``default`` defined twice; W030 a secret without the ``whsec_`` prefix."""
    entries = conf.ENDPOINTS
    if entries is None:
        return []
    if not isinstance(entries, dict):
        return [_error("KLAREFI_ENDPOINTS must be a dict of endpoint names to dicts.", "E030")]
    messages: list[CheckMessage] = []
    if DEFAULT_ENDPOINT in entries and conf.WEBHOOK_SECRET not in (None, "", [], ()):
        messages.append(
            _error(
                'The endpoint "default" is defined twice: by KLAREFI_WEBHOOK_SECRET and in '
                "KLAREFI_ENDPOINTS.",
                "E034",
                hint='Keep one: remove KLAREFI_WEBHOOK_SECRET, or the "default" entry.',
            )
        )
    for name, entry in entries.items():
        messages += _check_entry(name, entry)
    return messages


def _check_entry(name: object, entry: object) -> list[CheckMessage]:
    if not is_valid_name(name):
        return [
            _error(
                f"KLAREFI_ENDPOINTS has an invalid endpoint name {name!r}.",
                "E031",
                hint="Names are part of the URL: lower-case letters, digits, hyphens and "
                f"underscores, starting with a letter or digit, at most "
                f"{ENDPOINT_NAME_MAX_LENGTH} characters.",
            )
        ]
    where = f'KLAREFI_ENDPOINTS["{name}"]'
    if not isinstance(entry, dict):
        return [_error(f'{where} must be a dict such as {{"SECRET": "whsec_..."}}.', "E030")]
    messages: list[CheckMessage] = []
    unknown = sorted(str(key) for key in entry if key not in ENTRY_KEYS)
    if unknown:
        messages.append(
            _error(
                f"{where} has unknown keys: {', '.join(unknown)}.",
                "E030",
                hint=f"An endpoint's keys are {', '.join(ENTRY_KEYS)}.",
            )
        )
    messages += _check_secret(where, entry.get("SECRET"))
    tolerance = entry.get("TOLERANCE")
    if tolerance is not None and (
        not isinstance(tolerance, int) or isinstance(tolerance, bool) or tolerance <= 0
    ):
        messages.append(
            _error(f'{where}["TOLERANCE"] must be a positive number of seconds.', "E033")
        )
    processing = entry.get("PROCESSING")
    if processing is not None and processing not in PROCESSING_MODES:
        modes = ", ".join(f'"{mode}"' for mode in PROCESSING_MODES)
        messages.append(_error(f'{where}["PROCESSING"] must be one of {modes}.', "E033"))
    return messages


def _check_secret(where: str, value: object) -> list[CheckMessage]:
    secrets = [value] if isinstance(value, str) else value
    if (
        not isinstance(secrets, list | tuple)
        or not secrets
        or not all(isinstance(secret, str) and secret.strip() for secret in secrets)
    ):
        return [
            _error(
                f'{where}["SECRET"] must be a string or a list of strings, none of them empty '
                "or only whitespace, so that the endpoint's deliveries can be verified.",
                "E032",
                hint="Use a list, newest first, to rotate secrets.",
            )
        ]
    messages: list[CheckMessage] = []
    for index, secret in enumerate(secrets):
        if secret != secret.strip():
            messages.append(
                _error(
                    f'{where}["SECRET"] entry {index} has leading or trailing whitespace; '
                    "secrets are used verbatim, so Klarefi's deliveries will not match it.",
                    "E032",
                    hint="Strip the value where it is read (a secrets file usually ends with "
                    "a newline).",
                )
            )
        elif not secret.startswith("whsec_"):
            messages.append(
                Warning(
                    f"{where}[\"SECRET\"] entry {index} does not start with 'whsec_'.",
                    hint="Klarefi signing secrets start with whsec_ and are used verbatim.",
                    id="django_klarefi.W030",
                )
            )
    return messages


@register(Tags.security)
def check_encryption_keys(**kwargs: Any) -> list[CheckMessage]:
    """E035: ``KLAREFI_ENCRYPTION_KEYS`` is set but is not a list of Fernet keys. E036: it
    is set but ``cryptography`` is not installed."""
    keys = conf.ENCRYPTION_KEYS
    if keys is None:
        return []
    invalid = invalid_key_positions(keys)
    if invalid is None or not keys:
        return [_error("KLAREFI_ENCRYPTION_KEYS must be a non-empty list.", "E035", KEYS_HINT)]
    messages: list[CheckMessage] = [
        _error(f"KLAREFI_ENCRYPTION_KEYS entry {index} is not a Fernet key.", "E035", KEYS_HINT)
        for index in invalid
    ]
    if importlib.util.find_spec("cryptography") is None:
        messages.append(
            _error(
                "KLAREFI_ENCRYPTION_KEYS is set, but the cryptography package that uses it "
                "is not installed, so no database endpoint can be used.",
                "E036",
                hint=INSTALL_HINT,
            )
        )
    return messages


def _error(message: str, code: str, hint: str | None = None) -> Error:
    return Error(message, hint=hint, id=f"django_klarefi.{code}")
