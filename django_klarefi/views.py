"""The webhook receiver: read, verify, hand to processing, answer.

:func:`webhook` is the Django view. :func:`handle_delivery` is everything it does for a
POST, for other entry points that hold a request (the DRF view), and
:func:`answer_delivery` is the same for a body and header already in hand (the admin's
send-test page). Every answer is a small JSON object, whatever goes wrong: never Django's
HTML error page, never a traceback.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib.auth.decorators import login_not_required
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from django_klarefi import metrics, tasks
from django_klarefi.conf import conf
from django_klarefi.endpoints import DEFAULT_ENDPOINT, get_endpoint
from django_klarefi.log_fields import log_extra
from django_klarefi.payloads import InvalidEvent
from django_klarefi.processing import Outcome, receive_event
from django_klarefi.rejections import report_rejection
from django_klarefi.signature import (
    SIGNATURE_HEADER,
    InvalidPayload,
    WebhookVerificationError,
    verify_webhook,
)

__all__ = [
    "OUTCOME_STATUS",
    "Unread",
    "answer_delivery",
    "handle_delivery",
    "outside_atomic_requests",
    "read_body",
    "webhook",
]

logger = logging.getLogger("django_klarefi")

_View = TypeVar("_View", bound=Callable[..., Any])

# Status code per processing outcome. 409 and 503 mean "retry later": Klarefi retries them.
# receive_event never returns MISSING (a row deleted meanwhile is stored again).
OUTCOME_STATUS: dict[Outcome, int] = {
    Outcome.PROCESSED: 200,
    Outcome.ALREADY_PROCESSED: 200,
    Outcome.ERASED: 200,
    Outcome.QUEUED: 200,
    Outcome.FAILED: 500,
    Outcome.IN_FLIGHT: 409,
    Outcome.NOT_QUEUED: 503,
}
RETRY_AFTER_SECONDS = "60"


class _EveryDatabase(frozenset[str]):
    # Django's ATOMIC_REQUESTS skips a view for the aliases in its _non_atomic_requests.
    def __contains__(self, alias: object) -> bool:
        return True


def outside_atomic_requests(view: _View) -> _View:
    """Mark the view function ``view`` as never run inside ``ATOMIC_REQUESTS``, whichever
    database the Event table is routed to. For every view that runs handlers (the receiver,
    the admin's pages, the API): processing commits the event and its failure record
    itself, and inside a request transaction a failure at COMMIT would be the page's."""
    view._non_atomic_requests = _EveryDatabase()  # type: ignore[attr-defined]
    return view


@outside_atomic_requests
@csrf_exempt
@login_not_required
def webhook(request: HttpRequest, endpoint: str = DEFAULT_ENDPOINT) -> HttpResponse:
    """Receive one Klarefi delivery for ``endpoint`` (the URL names it). The status code
    table is in the docs."""
    if request.method == "OPTIONS":
        response = _json(200, {"allow": ["POST", "OPTIONS"]})
        response["Allow"] = "POST, OPTIONS"
        return response
    if request.method != "POST":
        return _reject(_client(request), 405, "method_not_allowed", "Only POST is accepted.")
    return handle_delivery(request, endpoint=endpoint)


def handle_delivery(request: HttpRequest, *, endpoint: str = DEFAULT_ENDPOINT) -> HttpResponse:
    """Read a POSTed delivery's body (never more than ``KLAREFI_MAX_BODY_BYTES``), then
    :func:`answer_delivery`. Never raises."""
    limit = conf.MAX_BODY_BYTES
    try:
        body = read_body(request, limit)
    except OSError:  # the client went away mid-body (Django's UnreadablePostError)
        return _reject(_client(request), 400, "unreadable_body", "The body could not be read.")
    if body is Unread.LENGTH_REQUIRED:
        return _reject(
            _client(request),
            411,
            "length_required",
            "A chunked body without Content-Length cannot be read under this WSGI server "
            "(it does not set wsgi.input_terminated); send Content-Length, or serve the "
            "receiver with gunicorn, uvicorn or another server that reads chunked bodies.",
        )
    if body is Unread.TOO_LARGE:
        return _reject(_client(request), 413, "body_too_large", f"The body is over {limit} bytes.")
    return answer_delivery(
        body, request.headers.get(SIGNATURE_HEADER), client=_client(request), endpoint=endpoint
    )


def answer_delivery(
    body: bytes,
    signature_header: str | None,
    *,
    client: str = "",
    endpoint: str = DEFAULT_ENDPOINT,
) -> HttpResponse:
    """Verify one delivery to the endpoint named ``endpoint``, store and process (or queue)
    it, and answer as the receiver does.

    ``client`` names the sender in log lines (the view passes ``REMOTE_ADDR``). Never
    raises: an unexpected exception is logged with its traceback and answered with a JSON
    500, which Klarefi retries.
    """
    try:
        return _answer(body, signature_header, client or "unknown", endpoint)
    except Exception:
        logger.exception("Klarefi webhook failed unexpectedly; answered 500 so it is retried.")
        return _json(500, {"error": "internal_error"})
    except BaseException as exc:
        # SystemExit, KeyboardInterrupt, CancelledError: raised by a receiver (processing
        # has recorded it as the event's failure), and a receiver stopping is not the
        # server stopping. A server that stops its worker this way, as gunicorn's quit
        # does, has marked it to exit after this answer.
        logger.error(
            "Klarefi webhook: %s was raised while it was processed; answered 500 so it is retried.",
            type(exc).__name__,
        )
        return _json(500, {"error": "receiver_exit"})


def _answer(body: bytes, signature_header: str | None, client: str, name: str) -> HttpResponse:
    try:
        endpoint = get_endpoint(name)  # a database endpoint's first lookup runs a query
    except (OperationalError, InterfaceError):
        logger.exception(
            "Klarefi webhook not stored: the database is unavailable.",
            extra=log_extra(reason="database_unavailable"),
        )
        return _unavailable(client, "database_unavailable", None)
    if endpoint is None:
        return _reject(
            client, 404, "unknown_endpoint", "No active Klarefi endpoint has this name.", None
        )
    if endpoint.problem:
        # Servers such as gunicorn never run the system checks (E001): say it here too.
        logger.error(
            "Klarefi webhook not accepted: %s",
            endpoint.problem,
            extra=log_extra(endpoint=endpoint.name, reason="not_configured"),
        )
        return _unavailable(client, "not_configured", endpoint.name)
    try:
        verified = verify_webhook(
            body, signature_header, endpoint.secrets, tolerance=endpoint.tolerance
        )
        enqueue = tasks.enqueue_processing if endpoint.processing == "task" else None
        result = receive_event(
            verified.payload,
            raw_body=body,
            signed_at=verified.timestamp,
            enqueue=enqueue,
            endpoint=endpoint.name,
        )
    except InvalidPayload as exc:
        return _reject(client, 400, exc.reason, str(exc), endpoint.name)
    except WebhookVerificationError as exc:
        return _reject(client, 401, exc.reason, str(exc), endpoint.name)
    except InvalidEvent as exc:
        return _reject(client, 400, "invalid_event", str(exc), endpoint.name)
    except (OperationalError, InterfaceError):
        # The database is down, or locked past SQLite's busy timeout: nothing was
        # committed, so ask Klarefi to deliver again.
        logger.exception(
            "Klarefi webhook not stored: the database is unavailable.",
            extra=log_extra(endpoint=endpoint.name, reason="database_unavailable"),
        )
        return _unavailable(client, "database_unavailable", endpoint.name)

    status = OUTCOME_STATUS[result.outcome]
    metrics.count_delivery(endpoint.name, str(result.outcome))
    return _json(
        status,
        {"status": str(result.outcome), "event_id": result.event_id},
        retry_after=status in (409, 503),
    )


def _client(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR") or "unknown")


class Unread(enum.Enum):
    """Why :func:`read_body` gives no body."""

    #: Over the limit (413).
    TOO_LARGE = "too_large"
    #: Chunked, and this WSGI server does not mark where it ends (411).
    LENGTH_REQUIRED = "length_required"


def read_body(request: HttpRequest, limit: int) -> bytes | Unread:
    """The raw body, or why it is not read; never reads more than ``limit`` bytes.

    A chunked body has no Content-Length. Django's WSGI request then reads it as empty,
    which would be answered as a forgery (401): where the WSGI server has decoded it and
    marks the stream's end (``wsgi.input_terminated``, as gunicorn does), it is read from
    the server's stream; otherwise the answer is ``Unread.LENGTH_REQUIRED``.
    Under ASGI the body has already been read by Django's handler, and is read as it is.
    """
    declared = request.META.get("CONTENT_LENGTH")
    try:
        length = int(declared or 0)
    except ValueError:
        length = 0
    if length > limit:
        return Unread.TOO_LARGE
    stream: Any = request
    if not declared and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        wsgi_input = request.META.get("wsgi.input")
        if wsgi_input is not None:  # a WSGI request (ASGI has no wsgi.input)
            if not request.META.get("wsgi.input_terminated"):
                return Unread.LENGTH_REQUIRED
            stream = wsgi_input
    body: bytes = stream.read(limit + 1)
    return Unread.TOO_LARGE if len(body) > limit else body


def _reject(
    client: str, status: int, reason: str, detail: str, endpoint: str | None = None
) -> HttpResponse:
    """Answer a delivery refused before anything was stored: logged (rate-limited), sent
    as ``webhook_rejected``, counted (:func:`~django_klarefi.rejections.report_rejection`)."""
    report_rejection(
        client=client,
        status=status,
        reason=reason,
        detail=detail,
        sender=webhook,
        endpoint=endpoint,
    )
    response = _json(status, {"error": reason, "detail": detail})
    if status == 405:
        response["Allow"] = "POST, OPTIONS"
    return response


def _unavailable(client: str, reason: str, endpoint: str | None) -> HttpResponse:
    """503 before anything was stored; logged at ERROR by the caller, reported here."""
    report_rejection(
        client=client, status=503, reason=reason, detail="", sender=webhook, endpoint=endpoint
    )
    return _json(503, {"error": reason}, retry_after=True)


def _json(status: int, data: dict[str, Any], *, retry_after: bool = False) -> HttpResponse:
    response = JsonResponse(data, status=status)
    if retry_after:
        response["Retry-After"] = RETRY_AFTER_SECONDS
    return response
