"""Authenticate Klarefi-signed requests in DRF views."""

from __future__ import annotations

import io
import logging

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, RawPostDataException
from rest_framework import status
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException, AuthenticationFailed, ParseError
from rest_framework.request import Request

from django_klarefi.conf import conf
from django_klarefi.contrib.rest_framework.schema import load_schema_extensions
from django_klarefi.endpoints import DEFAULT_ENDPOINT, get_endpoint
from django_klarefi.rejections import report_rejection
from django_klarefi.signature import (
    SIGNATURE_HEADER,
    InvalidPayload,
    VerifiedWebhook,
    WebhookVerificationError,
    verify_webhook,
)
from django_klarefi.views import Unread, read_body

__all__ = ["BodyTooLarge", "KlarefiSignatureAuthentication", "NotConfigured"]

logger = logging.getLogger("django_klarefi")


class BodyTooLarge(APIException):
    """The body is over ``KLAREFI_MAX_BODY_BYTES``: 413, and no more of it than that
    limit was read."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "body_too_large"


class NotConfigured(APIException):
    """No ``KLAREFI_WEBHOOK_SECRET`` is set, so no signature can be verified: 503."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Klarefi signatures cannot be verified: no secret is configured."
    default_code = "not_configured"


class LengthRequired(APIException):
    """A chunked body that this WSGI server does not delimit (see the receiver's 411)."""

    status_code = status.HTTP_411_LENGTH_REQUIRED
    default_detail = (
        "A chunked body without Content-Length cannot be read under this WSGI server; send "
        "Content-Length."
    )
    default_code = "length_required"


class KlarefiSignatureAuthentication(BaseAuthentication):
    """Authenticate a request by its ``X-Klarefi-Signature`` over the raw body.

    Verifies with the receiver's verifier and settings (``KLAREFI_WEBHOOK_SECRET``,
    ``KLAREFI_WEBHOOK_TOLERANCE``, ``KLAREFI_MAX_BODY_BYTES``). On success ``request.user``
    is an ``AnonymousUser`` and ``request.auth`` the
    :class:`~django_klarefi.signature.VerifiedWebhook` (parsed payload and signed
    timestamp); pair it with :class:`~.permissions.HasKlarefiSignature`. A request without
    the header is left to the next authentication class (``None``); a bad signature is a
    401 with a ``WWW-Authenticate`` header; a signed body that is not a JSON event is a 400
    (``invalid_payload``), as the receiver answers.

    Every refused request is reported as the receiver reports it
    (:func:`django_klarefi.rejections.report_rejection`): a warning with the client and
    the reason on the ``django_klarefi.rejections`` logger (rate-limited), the
    ``webhook_rejected`` signal and the rejections metric; and an error naming
    ``KLAREFI_WEBHOOK_SECRET`` when it is not set. Never with the secret or the signature.

    The body is read (and kept) before DRF parses it, so ``request.data`` works in the
    view. Put this class before any class that reads ``request.data``.

    Bound to the ``default`` endpoint; a subclass verifies another endpoint's deliveries
    with that endpoint's secrets and tolerance::

        class EuSignature(KlarefiSignatureAuthentication):
            endpoint = "eu"

    An endpoint that is not defined (or inactive), or whose secrets cannot be used, is a
    503 (``not_configured``), logged as an error that says why.
    """

    #: The scheme named in ``WWW-Authenticate`` and in the OpenAPI security scheme.
    scheme = "Klarefi-Signature"
    www_authenticate_realm = "api"
    #: The endpoint whose secrets verify the signature.
    endpoint = DEFAULT_ENDPOINT

    def __init__(self) -> None:
        load_schema_extensions()

    def authenticate(self, request: Request) -> tuple[AnonymousUser, VerifiedWebhook] | None:
        header = request._request.headers.get(SIGNATURE_HEADER)
        if header is None:
            return None
        endpoint = get_endpoint(self.endpoint)
        if endpoint is None or not endpoint.secrets:
            # Servers such as gunicorn never run the system checks (E001): say it here too.
            logger.error(
                "Klarefi-signed request to %s not accepted: %s",
                request._request.path,
                _not_verifiable(self.endpoint, endpoint.problem if endpoint else ""),
            )
            raise _reported(request, NotConfigured(), self)
        try:
            body = self.read_body(request)
            verified = verify_webhook(body, header, endpoint.secrets, tolerance=endpoint.tolerance)
        except InvalidPayload as exc:
            # Signed, but not a JSON event: 400, as the receiver answers.
            raise _reported(request, ParseError(str(exc), code=exc.reason), self) from None
        except WebhookVerificationError as exc:
            error = AuthenticationFailed(str(exc), code=exc.reason)
            raise _reported(request, error, self) from None
        except (BodyTooLarge, LengthRequired, ParseError) as exc:
            raise _reported(request, exc, self) from None
        return AnonymousUser(), verified

    def authenticate_header(self, request: Request) -> str:
        return f'{self.scheme} realm="{self.www_authenticate_realm}"'

    def read_body(self, request: Request) -> bytes:
        """The raw body, never reading more than ``KLAREFI_MAX_BODY_BYTES`` (and one byte)
        of it; :class:`BodyTooLarge` when it is over.

        Django keeps it on the request, so DRF's parsers can read it again afterwards.
        """
        limit = conf.MAX_BODY_BYTES
        django_request = request._request
        try:
            declared = int(django_request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > limit:
            raise BodyTooLarge(f"The body is over {limit} bytes.")
        try:
            if declared or getattr(django_request, "_read_started", False):
                # Bounded: a WSGI stream is limited to CONTENT_LENGTH (checked above), and
                # so is an ASGI body. Or already read: kept by Django, or RawPostDataException.
                body = django_request.body
            else:
                body = _read_undeclared_body(django_request, limit)
        except RequestDataTooBig:  # over DATA_UPLOAD_MAX_MEMORY_SIZE
            raise BodyTooLarge(f"The body is over {limit} bytes.") from None
        except OSError:  # the client went away mid-body (Django's UnreadablePostError)
            raise ParseError("The body could not be read.", code="unreadable_body") from None
        except RawPostDataException as exc:
            raise RuntimeError(
                "KlarefiSignatureAuthentication could not read the raw body: request.data "
                "was read first. List it before the authentication classes that read "
                "request.data."
            ) from exc
        if len(body) > limit:
            raise BodyTooLarge(f"The body is over {limit} bytes.")
        return body


def _not_verifiable(name: str, problem: str) -> str:
    return problem or (
        f'the endpoint "{name}" is not defined (KLAREFI_ENDPOINTS or an active Endpoint '
        "row), so its signatures cannot be verified."
    )


def _read_undeclared_body(request: HttpRequest, limit: int) -> bytes:
    """A body without ``Content-Length`` (chunked): at most ``limit + 1`` bytes of it, read
    as the receiver reads it (:func:`django_klarefi.views.read_body`), and kept on the
    request as ``HttpRequest.body`` keeps it, so ``request.body`` works afterwards.
    Django's own ``request.body`` would read it all before it could be refused (ASGI), or
    read it as empty (WSGI)."""
    body = read_body(request, limit)
    if body is Unread.LENGTH_REQUIRED:
        raise LengthRequired()
    if body is Unread.TOO_LARGE:
        raise BodyTooLarge(f"The body is over {limit} bytes.")
    request._body = body
    request._stream = io.BytesIO(body)
    return body


def _reported(
    request: Request, exc: APIException, authentication: BaseAuthentication
) -> APIException:
    """``exc``, once reported as the receiver reports a rejected delivery: a rate-limited
    warning, ``webhook_rejected`` and the metric, with the exception's code as the reason."""
    codes = exc.get_codes()
    report_rejection(
        client=str(request._request.META.get("REMOTE_ADDR") or "unknown"),
        status=exc.status_code,
        reason=codes if isinstance(codes, str) else exc.default_code,
        detail=str(exc.detail),
        sender=type(authentication),
        endpoint=getattr(authentication, "endpoint", DEFAULT_ENDPOINT),
        path=request._request.path,
    )
    return exc
