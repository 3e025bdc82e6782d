"""Helpers for testing code that receives Klarefi webhooks.

Post signed events through the real view, exactly as Klarefi would::

    from django_klarefi.testing import post_event

    def test_case_completed_creates_report(client):
        response = post_event(client, {"event": "case.completed", "case_id": "case_1"})
        assert response.status_code == 200
"""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse

from django_klarefi.conf import conf
from django_klarefi.signature import sign_webhook_payload


def encode_event(payload: dict[str, Any] | bytes | str) -> bytes:
    """The exact bytes to send: dicts are JSON-encoded, bytes and str sent as they are."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def signature_header(
    body: bytes, *, secret: str | None = None, timestamp: int | None = None
) -> str:
    """An ``X-Klarefi-Signature`` value for ``body``, signed with ``secret`` or the first
    configured ``KLAREFI_WEBHOOK_SECRET``."""
    signing_secret = secret if secret is not None else conf.SIGNING_SECRET
    if signing_secret is None:
        raise ImproperlyConfigured("Set KLAREFI_WEBHOOK_SECRET, or pass secret=.")
    return sign_webhook_payload(
        body, signing_secret, int(time.time()) if timestamp is None else timestamp
    )


def post_event(
    client: Client,
    payload: dict[str, Any] | bytes | str,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    signature: str | None = None,
    url: str | None = None,
) -> HttpResponse:
    """POST a signed event to the receiver with Django's test client.

    ``signature`` overrides the header (to test rejections); ``url`` defaults to the
    reversed ``django_klarefi:webhook``.
    """
    body = encode_event(payload)
    header = (
        signature
        if signature is not None
        else signature_header(body, secret=secret, timestamp=timestamp)
    )
    return client.post(  # type: ignore[return-value]
        url or reverse("django_klarefi:webhook"),
        data=body,
        content_type="application/json",
        headers={"X-Klarefi-Signature": header},
    )
