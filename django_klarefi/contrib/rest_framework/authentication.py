"""Authenticate Klarefi-signed requests in DRF views."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import RequestDataTooBig
from django.http import RawPostDataException
from rest_framework import status
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException, AuthenticationFailed, ParseError
from rest_framework.request import Request

from django_klarefi.conf import conf
from django_klarefi.contrib.rest_framework.schema import load_schema_extensions
from django_klarefi.signature import (
    SIGNATURE_HEADER,
    InvalidPayload,
    VerifiedWebhook,
    WebhookVerificationError,
    verify_webhook,
)

__all__ = ["BodyTooLarge", "KlarefiSignatureAuthentication", "NotConfigured"]


class BodyTooLarge(APIException):
    """The body is over ``KLAREFI_MAX_BODY_BYTES``: 413, and it was not read."""

    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "body_too_large"


class NotConfigured(APIException):
    """No ``KLAREFI_WEBHOOK_SECRET`` is set, so no signature can be verified: 503."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Klarefi signatures cannot be verified: no secret is configured."
    default_code = "not_configured"


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

    The body is read (and kept) before DRF parses it, so ``request.data`` works in the
    view. Put this class before any class that reads ``request.data``.
    """

    #: The scheme named in ``WWW-Authenticate`` and in the OpenAPI security scheme.
    scheme = "Klarefi-Signature"
    www_authenticate_realm = "api"

    def __init__(self) -> None:
        load_schema_extensions()

    def authenticate(self, request: Request) -> tuple[AnonymousUser, VerifiedWebhook] | None:
        header = request._request.headers.get(SIGNATURE_HEADER)
        if header is None:
            return None
        secrets = conf.WEBHOOK_SECRETS
        if not secrets:
            raise NotConfigured()
        body = self.read_body(request)
        try:
            verified = verify_webhook(body, header, secrets, tolerance=conf.WEBHOOK_TOLERANCE)
        except InvalidPayload as exc:
            # Signed, but not a JSON event: 400, as the receiver answers.
            raise ParseError(str(exc), code=exc.reason) from None
        except WebhookVerificationError as exc:
            raise AuthenticationFailed(str(exc), code=exc.reason) from None
        return AnonymousUser(), verified

    def authenticate_header(self, request: Request) -> str:
        return f'{self.scheme} realm="{self.www_authenticate_realm}"'

    def read_body(self, request: Request) -> bytes:
        """The raw body, never more than ``KLAREFI_MAX_BODY_BYTES`` of it.

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
            # Bounded: the WSGI stream is limited to CONTENT_LENGTH (checked above), and
            # an ASGI body was spooled by the handler.
            body = django_request.body
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
