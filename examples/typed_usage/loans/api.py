"""A view of the project's own API that Klarefi calls with a signed request."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from django_klarefi.contrib.rest_framework import (
    HasKlarefiSignature,
    KlarefiSignatureAuthentication,
)
from django_klarefi.signature import VerifiedWebhook


class CaseStatusCallback(APIView):
    # Signed requests only. The user is anonymous, so the project's IsAuthenticated
    # default is replaced by HasKlarefiSignature.
    authentication_classes = [KlarefiSignatureAuthentication]
    permission_classes = [HasKlarefiSignature]

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        assert isinstance(request.auth, VerifiedWebhook)
        data = request.data  # parsed by DRF after the signature was checked
        assert isinstance(data, dict)
        case_id: str = data["case_id"]
        return Response({"case_id": case_id, "signed_at": request.auth.timestamp})
