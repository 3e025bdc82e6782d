"""Which endpoint a delivery is for: its secrets, tolerance and processing mode.

:func:`get_endpoint` is the receiver's one question. Endpoints come from the settings
(``KLAREFI_WEBHOOK_SECRET`` is ``default``; ``KLAREFI_ENDPOINTS``), read once per
settings change and never from the database, then from the ``Endpoint`` model.

A database endpoint is cached per process for :data:`CACHE_SECONDS` (30): once cached, a
delivery to it runs no query at all. A change made in the admin or the shell (a new or
rotated secret, deactivation, a new endpoint) takes effect at once in the process that
saved it, and in every other process within :data:`CACHE_SECONDS`. Names that are not
endpoints are cached the same way, so that a flood of unknown names costs one query per
name and period. A previous secret stops being accepted when it expires, cache or not.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.signals import setting_changed
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.urls import reverse
from django.utils import timezone

from django_klarefi.conf import conf
from django_klarefi.encryption import SecretsUnavailable
from django_klarefi.endpoint_settings import (
    DEFAULT_ENDPOINT,
    EndpointConfig,
    is_valid_name,
    settings_endpoints,
)
from django_klarefi.models import Endpoint

__all__ = [
    "CACHE_SECONDS",
    "DEFAULT_ENDPOINT",
    "EndpointConfig",
    "clear_cache",
    "delivery_path",
    "endpoint_names",
    "get_endpoint",
    "signing_secret",
]

#: How long a process trusts what it read of a database endpoint: the longest a change
#: made elsewhere takes to reach it.
CACHE_SECONDS = 30.0
#: The cache is emptied when it holds this many names (unknown names included).
MAX_CACHED = 10_000

# name -> (the endpoint or None, time.monotonic() until which it holds)
_cache: dict[str, tuple[EndpointConfig | None, float]] = {}


def get_endpoint(name: str) -> EndpointConfig | None:
    """The endpoint called ``name``, or None when there is no such active endpoint.

    An endpoint whose deliveries cannot be verified is returned with its ``problem``
    set (a log line, never a secret) and no secrets: ``default`` when no secret is
    configured, or a database endpoint whose secret cannot be decrypted (no
    ``cryptography``, no or wrong ``KLAREFI_ENCRYPTION_KEYS``). The receiver answers it
    with a 503 and ``Retry-After``. May raise the database's ``OperationalError`` on the
    first lookup of a database endpoint (the receiver's 503 ``database_unavailable``).
    """
    endpoint = settings_endpoints().get(name)
    if endpoint is not None:
        return endpoint
    if not is_valid_name(name):
        return None
    endpoint = _database_endpoint(name)
    if endpoint is None and name == DEFAULT_ENDPOINT and conf.ENDPOINTS is None:
        return _unconfigured_default()
    return endpoint


def signing_secret(name: str) -> str | None:
    """The secret that signs test events for endpoint ``name``: its first one, or None."""
    endpoint = get_endpoint(name)
    return endpoint.secrets[0] if endpoint is not None and endpoint.secrets else None


def endpoint_names() -> list[str]:
    """Every endpoint's name, the settings' first, then the database's active ones (one
    query). For the admin and the commands, not for deliveries."""
    names = list(settings_endpoints())
    names += [
        name
        for name in Endpoint.objects.filter(is_active=True).values_list("name", flat=True)
        if name not in names
    ]
    return names


def delivery_path(name: str) -> str:
    """The receiver's path for endpoint ``name``: the include's root for ``default``."""
    if name == DEFAULT_ENDPOINT:
        return reverse("django_klarefi:webhook")
    return reverse("django_klarefi:webhook", kwargs={"endpoint": name})


def clear_cache() -> None:
    """Forget every database endpoint read so far (done on each save or delete)."""
    _cache.clear()


@receiver(post_save, sender=Endpoint, dispatch_uid="django_klarefi.endpoints.saved")
@receiver(post_delete, sender=Endpoint, dispatch_uid="django_klarefi.endpoints.deleted")
def _endpoint_changed(**kwargs: Any) -> None:
    clear_cache()


@receiver(setting_changed, dispatch_uid="django_klarefi.endpoints.settings")
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    # A database endpoint's defaults (tolerance, processing, keys) come from the settings.
    if setting.startswith("KLAREFI_"):
        clear_cache()


def _database_endpoint(name: str) -> EndpointConfig | None:
    now = time.monotonic()
    cached = _cache.get(name)
    if cached is not None and now < cached[1]:
        return cached[0]
    row = Endpoint.objects.filter(name=name, is_active=True).first()
    endpoint, seconds = _from_row(row) if row is not None else (None, CACHE_SECONDS)
    if len(_cache) >= MAX_CACHED:
        _cache.clear()
    _cache[name] = (endpoint, now + seconds)
    return endpoint


def _from_row(row: Endpoint) -> tuple[EndpointConfig, float]:
    """The row's endpoint, and for how many seconds it may be cached: no longer than its
    previous secret is accepted."""
    seconds = CACHE_SECONDS
    try:
        secrets = row.secrets()
    except SecretsUnavailable as exc:
        secrets, problem = (), f'Klarefi endpoint "{row.name}" (database): {exc}'
    else:
        problem = ""
        if len(secrets) > 1 and row.previous_secret_expires_at is not None:
            left = (row.previous_secret_expires_at - timezone.now()).total_seconds()
            seconds = max(0.0, min(seconds, left))
    endpoint = EndpointConfig(
        name=row.name,
        secrets=secrets,
        tolerance=row.tolerance or conf.WEBHOOK_TOLERANCE,
        processing=row.processing or conf.PROCESSING,
        source="database",
        problem=problem,
    )
    return endpoint, seconds


def _unconfigured_default() -> EndpointConfig:
    return EndpointConfig(
        name=DEFAULT_ENDPOINT,
        secrets=(),
        tolerance=conf.WEBHOOK_TOLERANCE,
        processing=conf.PROCESSING,
        problem="KLAREFI_WEBHOOK_SECRET is not set, so deliveries cannot be verified. Set it "
        "to the whsec_... signing secret from the Klarefi dashboard.",
    )
