"""The webhook receiver: read, verify, hand to processing, answer."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ImproperlyConfigured
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from django_klarefi.conf import conf
from django_klarefi.processing import InvalidEvent, Outcome, receive_event
from django_klarefi.signature import InvalidPayload, WebhookVerificationError, verify_webhook

logger = logging.getLogger("django_klarefi")

# Status code per processing outcome. 409 and 503 mean "retry later": Klarefi retries them.
OUTCOME_STATUS: dict[Outcome, int] = {
    Outcome.PROCESSED: 200,
    Outcome.ALREADY_PROCESSED: 200,
    Outcome.QUEUED: 200,
    Outcome.FAILED: 500,
    Outcome.IN_FLIGHT: 409,
    Outcome.NOT_QUEUED: 503,
}
RETRY_AFTER_SECONDS = "60"


class _EveryDatabase(frozenset[str]):
    # Django's ATOMIC_REQUESTS skips a view for the aliases in its _non_atomic_requests.
    # The view must never run inside a request transaction, whichever database the
    # Event table is routed to: processing commits the event and its failure record itself.
    def __contains__(self, alias: object) -> bool:
        return True


@csrf_exempt
@login_not_required
def webhook(request: HttpRequest) -> HttpResponse:
    """Receive one Klarefi delivery. The status code table is in the README."""
    if request.method == "OPTIONS":
        response = HttpResponse(status=200)
        response["Allow"] = "POST, OPTIONS"
        return response
    if request.method != "POST":
        return _reject(request, 405, "method_not_allowed", "Only POST is accepted.")

    limit = conf.MAX_BODY_BYTES
    body = _read_body(request, limit)
    if body is None:
        return _reject(request, 413, "body_too_large", f"The body is over {limit} bytes.")

    secrets = conf.WEBHOOK_SECRETS
    if not secrets:
        raise ImproperlyConfigured(
            "KLAREFI_WEBHOOK_SECRET is not set; django-klarefi cannot verify webhooks."
        )
    try:
        verified = verify_webhook(
            body,
            request.headers.get("X-Klarefi-Signature"),
            secrets,
            tolerance=conf.WEBHOOK_TOLERANCE,
        )
        result = receive_event(verified.payload, raw_body=body, signed_at=verified.timestamp)
    except InvalidPayload as exc:
        return _reject(request, 400, exc.reason, str(exc))
    except WebhookVerificationError as exc:
        return _reject(request, 401, exc.reason, str(exc))
    except InvalidEvent as exc:
        return _reject(request, 400, "invalid_event", str(exc))
    except (OperationalError, InterfaceError):
        # The database is down, or locked past SQLite's busy timeout: nothing was
        # committed, so ask Klarefi to deliver again.
        logger.exception("Klarefi webhook not stored: the database is unavailable.")
        return _json(503, {"error": "database_unavailable"}, retry_after=True)

    status = OUTCOME_STATUS[result.outcome]
    return _json(
        status,
        {"status": str(result.outcome), "event_id": result.event_id},
        retry_after=status in (409, 503),
    )


webhook._non_atomic_requests = _EveryDatabase()  # type: ignore[attr-defined]


def _read_body(request: HttpRequest, limit: int) -> bytes | None:
    """The raw body, or None when it is over ``limit`` bytes; never reads more than that."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return None
    body = request.read(limit + 1)
    return None if len(body) > limit else body


def _reject(request: HttpRequest, status: int, reason: str, detail: str) -> HttpResponse:
    logger.warning(
        "Rejected Klarefi webhook from %s: %s (%s)",
        request.META.get("REMOTE_ADDR", "unknown"),
        reason,
        detail,
    )
    response = _json(status, {"error": reason, "detail": detail})
    if status == 405:
        response["Allow"] = "POST, OPTIONS"
    return response


def _json(status: int, data: dict[str, Any], *, retry_after: bool = False) -> HttpResponse:
    response = JsonResponse(data, status=status)
    if retry_after:
        response["Retry-After"] = RETRY_AFTER_SECONDS
    return response
