"""Views a host project writes with django-klarefi's DRF classes."""

from __future__ import annotations

import json

from rest_framework.authentication import BaseAuthentication, SessionAuthentication
from rest_framework.parsers import BaseParser
from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from django_klarefi.contrib.rest_framework import (
    EventViewSet,
    HasKlarefiSignature,
    KlarefiSignatureAuthentication,
)
from django_klarefi.signature import VerifiedWebhook


class SignedView(APIView):
    """The documented pair: only Klarefi-signed requests get in."""

    authentication_classes = [KlarefiSignatureAuthentication]
    permission_classes = [HasKlarefiSignature]

    def post(self, request, *args, **kwargs):
        assert isinstance(request.auth, VerifiedWebhook)
        return Response(
            {
                "user_is_anonymous": request.user.is_anonymous,
                "signed_event": request.auth.payload["event"],
                "signed_at": request.auth.timestamp,
                # Parsed by DRF after the authentication class read the raw body.
                "data_event": request.data["event"],
            },
            status=201,
        )


class SignedOrSessionView(SignedView):
    """Signed requests, or users logged in to the site (session auth, CSRF enforced)."""

    authentication_classes = [KlarefiSignatureAuthentication, SessionAuthentication]


class SessionFirstView(SignedView):
    """Session auth listed first: a logged-in browser without a CSRF token is refused."""

    authentication_classes = [SessionAuthentication, KlarefiSignatureAuthentication]


class ReadsDataAuthentication(BaseAuthentication):
    """An authentication class that parses ``request.data`` (as token-in-body schemes do)."""

    def authenticate(self, request):
        request.data  # noqa: B018
        return None


class DataReadFirstView(SignedView):
    """``request.data`` parsed before the signature is checked: DRF's JSONParser keeps the
    raw body on the request, so this still works."""

    authentication_classes = [ReadsDataAuthentication, KlarefiSignatureAuthentication]


class StreamingJSONParser(BaseParser):
    """A parser that reads the request stream itself (as MultiPartParser does), so the raw
    body is gone once it has run."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        return json.loads(stream.read())


class StreamedDataReadFirstView(DataReadFirstView):
    """The wrong order with a streaming parser: Django raises RawPostDataException."""

    parser_classes = [StreamingJSONParser]


class StaffOnlyEventViewSet(EventViewSet):
    """Permission overridden by subclassing."""

    permission_classes = [IsAdminUser]


class SignedRawBodyView(SignedView):
    """Answers from ``request.auth`` and ``request.body`` only: DRF's ``request.data`` is
    empty for a body without ``Content-Length`` (a chunked one, under ASGI)."""

    def post(self, request, *args, **kwargs):
        return Response(
            {"signed_event": request.auth.payload["event"], "body_bytes": len(request.body)},
            status=201,
        )
