"""The endpoints ``bench/http.py`` measures besides ``default`` (issue 16 §6).

Three receiver targets, each with its own secret and URL:

* ``klarefi``: today's ``default`` endpoint (``KLAREFI_WEBHOOK_SECRET``), at the root;
* ``settings``: ``eu``, defined in ``KLAREFI_ENDPOINTS`` (``bench/settings.py``);
* ``database``: ``tenant-1``, an ``Endpoint`` row whose secret is encrypted with a Fernet
  key generated for the run (``KLAREFI_BENCH_ENCRYPTION_KEY``, which ``bench/settings.py``
  puts in ``KLAREFI_ENCRYPTION_KEYS``); needs ``cryptography``.

:func:`count_statements` counts, in process and untimed, the SQL statements per delivery
to each of them on each path, after a first delivery that fills the database endpoint's
cache: the issue's "no more SQL statements than the default" and "a cached database
endpoint adds no query".
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

#: Target -> the endpoint's name; ``klarefi`` keeps its name in the result files.
ENDPOINT_NAMES = {"klarefi": "default", "settings": "eu", "database": "tenant-1"}
URLS = {
    "klarefi": "/webhooks/klarefi",
    "settings": "/webhooks/klarefi/eu",
    "database": "/webhooks/klarefi/tenant-1",
}
SETTINGS_SECRET = "whsec_bench_eu_not_real"
DATABASE_SECRET = "whsec_bench_tenant_1_not_real"
KEY_VARIABLE = "KLAREFI_BENCH_ENCRYPTION_KEY"
PATHS = ("new", "redelivery", "task")


def usable_targets(wanted: list[str]) -> tuple[list[str], str]:
    """The endpoint targets that can run here, and why one cannot (or "").

    Sets a fresh Fernet key in the environment (inherited by gunicorn) before Django is
    set up, so that ``bench.settings`` reads it.
    """
    if "database" not in wanted:
        return wanted, ""
    try:
        from cryptography.fernet import Fernet
    except ImportError:
        why = "the database endpoint needs cryptography: pip install 'django-klarefi[encryption]'"
        return [target for target in wanted if target != "database"], why
    os.environ[KEY_VARIABLE] = Fernet.generate_key().decode()
    return wanted, ""


def create_database_endpoint() -> None:
    """The ``Endpoint`` row of the ``database`` target, its secret encrypted."""
    from django_klarefi.models import Endpoint

    Endpoint.objects.create(name=ENDPOINT_NAMES["database"], secret=DATABASE_SECRET)


def secret(target: str) -> str:
    from django.conf import settings

    return {"settings": SETTINGS_SECRET, "database": DATABASE_SECRET}.get(
        target, settings.KLAREFI_WEBHOOK_SECRET
    )


# --- statements per delivery, in process ------------------------------------------------


def count_statements(targets: list[str], events: int = 3) -> dict[str, dict[str, float]]:
    """SQL statements per delivery: {target: {path: n}}, over ``events`` deliveries each.

    Each (target, path) first delivers one event uncounted: it fills the database
    endpoint's cache (which a settings change, such as task mode's, empties), as a
    worker's first delivery does.
    """
    from django.db import connection
    from django.test import Client

    from bench.run import counting, task_mode

    client = Client()
    counts: dict[str, dict[str, float]] = {target: {} for target in targets}
    for path in PATHS:
        for target in targets:
            with task_mode(path == "task"):
                _deliver(client, target, _bodies(f"{path}_{target}_warm", 1))
                bodies = _bodies(f"{path}_{target}", events)
                if path == "redelivery":
                    _deliver(client, target, bodies)
                with counting(connection) as counted:
                    _deliver(client, target, bodies)
            counts[target][path] = len(counted.statements) / events
    return counts


def _bodies(prefix: str, count: int) -> list[bytes]:
    from django_klarefi.samples import sample_event

    run = datetime.now(UTC).strftime("%H%M%S%f")
    return [
        json.dumps(
            sample_event("document.processed", event_id=f"evt_count_{prefix}_{run}_{number}"),
            separators=(",", ":"),
        ).encode()
        for number in range(count)
    ]


def _deliver(client: Any, target: str, bodies: list[bytes]) -> None:
    from django_klarefi.signature import sign_webhook_payload

    for body in bodies:
        response = client.post(
            URLS[target],
            body,
            content_type="application/json",
            headers={"X-Klarefi-Signature": sign_webhook_payload(body, secret(target))},
        )
        if response.status_code != 200:
            raise SystemExit(f"counting {target}: answered {response.status_code}")
