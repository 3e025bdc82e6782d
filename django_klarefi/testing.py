"""Helpers for testing code that receives Klarefi webhooks.

Post signed events through the real receiver, exactly as Klarefi would, and see which
signals they sent::

    from django_klarefi.signals import case_completed
    from django_klarefi.testing import capture_signals, post_event

    def test_case_completed_is_sent(client):
        with capture_signals() as sent:
            response = post_event(client, "case.completed")
        assert response.status_code == 200
        assert sent[0].signal is case_completed

With pytest-django, the ``klarefi_signals`` fixture is the list of ``capture_signals()``.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.dispatch import Signal
from django.test import AsyncClient, Client

from django_klarefi.endpoints import DEFAULT_ENDPOINT, delivery_path, signing_secret
from django_klarefi.models import Event
from django_klarefi.samples import sample_event
from django_klarefi.signals import EVENT_SIGNALS, event_received
from django_klarefi.signature import SIGNATURE_HEADER, sign_webhook_payload

if TYPE_CHECKING:
    # The test clients' responses (with .json(), .templates, ...), as django-stubs names them.
    from django.test.client import _MonkeyPatchedASGIResponse as AsyncTestResponse
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

__all__ = [
    "SentSignal",
    "apost_event",
    "build_event",
    "capture_signals",
    "encode_event",
    "post_event",
    "signature_header",
    "signed_headers",
]

#: What :func:`post_event` takes: a payload, an event type (built by :func:`build_event`),
#: or the exact body bytes.
EventLike = Mapping[str, Any] | str | bytes


def build_event(event_type: str, **overrides: Any) -> dict[str, Any]:
    """A realistic payload of ``event_type`` with a fresh ``id``, from the samples that
    ``klarefi_send_test_event`` sends; ``overrides`` replace top-level keys::

        build_event("case.completed", case_id="case_42")
    """
    # The references go through the sample, so that its data names the same case/session.
    references = {name: overrides[name] for name in ("case_id", "session_id") if name in overrides}
    payload = sample_event(event_type, **references)
    payload.update(overrides)
    return payload


def encode_event(payload: EventLike) -> bytes:
    """The exact bytes to send: mappings are JSON-encoded, bytes and str sent as they are."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, str):
        return payload.encode("utf-8")
    return json.dumps(dict(payload), separators=(",", ":")).encode("utf-8")


def signature_header(
    body: bytes,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    endpoint: str = DEFAULT_ENDPOINT,
) -> str:
    """An ``X-Klarefi-Signature`` value for ``body``, signed with ``secret`` or the first
    secret of ``endpoint`` (``default``: the first ``KLAREFI_WEBHOOK_SECRET``), at
    ``timestamp`` or now."""
    key = secret if secret is not None else signing_secret(endpoint)
    if key is None:
        if endpoint == DEFAULT_ENDPOINT:
            raise ImproperlyConfigured(
                "No KLAREFI_WEBHOOK_SECRET to sign the test event with. Set one in the "
                'settings your tests use, for example KLAREFI_WEBHOOK_SECRET = "whsec_test" in '
                "a test settings module, settings.KLAREFI_WEBHOOK_SECRET = ... with "
                "pytest-django's settings fixture, or @override_settings("
                "KLAREFI_WEBHOOK_SECRET=...); or pass secret= to this helper."
            )
        raise ImproperlyConfigured(
            f'The endpoint "{endpoint}" is not defined or has no usable secret; define it '
            "(KLAREFI_ENDPOINTS or an Endpoint row), or pass secret=."
        )
    return sign_webhook_payload(body, key, int(time.time()) if timestamp is None else timestamp)


def signed_headers(
    raw_body: bytes,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    endpoint: str = DEFAULT_ENDPOINT,
) -> dict[str, str]:
    """``{"X-Klarefi-Signature": ...}`` for ``raw_body``, for ``Client.post(headers=...)``,
    signed as :func:`signature_header` signs."""
    return {
        SIGNATURE_HEADER: signature_header(
            raw_body, secret=secret, timestamp=timestamp, endpoint=endpoint
        )
    }


def _delivery(
    event: EventLike,
    secret: str | None,
    timestamp: int | None,
    signature: str | None,
    url: str | None,
    endpoint: str,
) -> dict[str, Any]:
    body = encode_event(build_event(event) if isinstance(event, str) else event)
    header = (
        signature
        if signature is not None
        else signature_header(body, secret=secret, timestamp=timestamp, endpoint=endpoint)
    )
    return {
        "path": url or delivery_path(endpoint),
        "data": body,
        "content_type": "application/json",
        "headers": {SIGNATURE_HEADER: header},
    }


def post_event(
    client: Client,
    event: EventLike,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    signature: str | None = None,
    url: str | None = None,
    endpoint: str = DEFAULT_ENDPOINT,
) -> TestResponse:
    """POST a signed event to the receiver with Django's test client.

    ``event`` is a payload, an event type (``"case.completed"``: :func:`build_event`
    builds it) or the exact body bytes. ``signature`` replaces the header (to test
    rejections); ``url`` defaults to the reversed ``django_klarefi:webhook``.
    ``endpoint`` names the endpoint (``post_event(client, event, endpoint="eu")``): the
    event is signed with its first secret and posted to its URL.
    """
    return client.post(**_delivery(event, secret, timestamp, signature, url, endpoint))


async def apost_event(
    async_client: AsyncClient,
    event: EventLike,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    signature: str | None = None,
    url: str | None = None,
    endpoint: str = DEFAULT_ENDPOINT,
) -> AsyncTestResponse:
    """:func:`post_event` with Django's ``AsyncClient``: ``await apost_event(...)``."""
    # A database endpoint's secret is read with the ORM, which is synchronous.
    delivery = await sync_to_async(_delivery)(event, secret, timestamp, signature, url, endpoint)
    return await async_client.post(**delivery)


class SentSignal(NamedTuple):
    """One signal sent for a processed event: ``(signal, event)``."""

    signal: Signal
    event: Event


_capture_ids = itertools.count()


@contextmanager
def capture_signals() -> Iterator[list[SentSignal]]:
    """Record every Klarefi signal sent inside the block, in the order sent.

    Yields a list that fills with one :class:`SentSignal` per signal: for each processed
    event, its per-type signal (when the type is documented), then ``event_received``.
    The recording receivers are disconnected on exit, even when the block raises. They
    are connected last, so a signal is recorded once the receivers connected before them
    (your app's) have returned: one that raises stops the signal before it is recorded.
    """
    sent: list[SentSignal] = []
    uid = f"django_klarefi.testing.capture_signals.{next(_capture_ids)}"
    signals = [*EVENT_SIGNALS.values(), event_received]

    def recorder(signal: Signal) -> Any:
        def record(sender: type[Event], event: Event, **kwargs: Any) -> None:
            sent.append(SentSignal(signal, event))

        return record

    for signal in signals:
        signal.connect(recorder(signal), weak=False, dispatch_uid=uid)
    try:
        yield sent
    finally:
        for signal in signals:
            signal.disconnect(dispatch_uid=uid)
