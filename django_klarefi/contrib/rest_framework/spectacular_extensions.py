"""drf-spectacular extensions: the signature security scheme, and the schemas of the views.

Imported only when drf-spectacular is installed (see :mod:`.schema`); defining the classes
registers them.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiViewExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
    inline_serializer,
)
from rest_framework import serializers

from django_klarefi.contrib.rest_framework.authentication import KlarefiSignatureAuthentication
from django_klarefi.contrib.rest_framework.permissions import HasKlarefiSignature
from django_klarefi.contrib.rest_framework.serializers import (
    EraseQuerySerializer,
    EraseResultSerializer,
    ReprocessResultSerializer,
)
from django_klarefi.signature import SIGNATURE_HEADER

__all__ = [
    "EventViewSetSchema",
    "KlarefiSignatureScheme",
    "KlarefiWebhookAPIViewSchema",
]

PACKAGE = "django_klarefi.contrib.rest_framework"


class KlarefiSignatureScheme(OpenApiAuthenticationExtension):
    """``KlarefiSignature``: an API key in the ``X-Klarefi-Signature`` header."""

    target_class = f"{PACKAGE}.authentication.KlarefiSignatureAuthentication"
    name = "KlarefiSignature"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": SIGNATURE_HEADER,
            "description": (
                "t=<unix seconds>,v1=<hex HMAC-SHA256 of '<t>.' + raw body, keyed with the "
                "whsec_ signing secret>; more than one v1 while a secret is rotated."
            ),
        }


_DELIVERY_ANSWER = inline_serializer(
    "KlarefiDeliveryAnswer",
    {"status": serializers.CharField(), "event_id": serializers.CharField()},
)
_DELIVERY_ERROR = inline_serializer(
    "KlarefiDeliveryError",
    {"error": serializers.CharField(), "detail": serializers.CharField(required=False)},
)


class KlarefiWebhookAPIViewSchema(OpenApiViewExtension):
    """The receiver's request and answers, and the signature as its security."""

    target_class = f"{PACKAGE}.receiver.KlarefiWebhookAPIView"

    def view_replacement(self) -> type[Any]:
        class Fixed(self.target_class):  # type: ignore[name-defined,misc]
            # The view checks the signature itself; this shows the scheme in the schema.
            authentication_classes = [KlarefiSignatureAuthentication]
            permission_classes = [HasKlarefiSignature]

            @extend_schema(
                summary="Receive a Klarefi delivery",
                description=(
                    "Klarefi's signed webhook POST. 200 when stored and processed (or "
                    "queued, or already processed); 409 and 503 ask Klarefi to retry."
                ),
                request={"application/json": OpenApiTypes.OBJECT},
                responses={
                    200: _DELIVERY_ANSWER,
                    400: _DELIVERY_ERROR,
                    401: _DELIVERY_ERROR,
                    409: _DELIVERY_ANSWER,
                    413: _DELIVERY_ERROR,
                    500: OpenApiResponse(description="A handler failed; Klarefi retries."),
                    503: OpenApiResponse(description="Not stored now; Klarefi retries."),
                },
            )
            def post(self, request: Any, *args: Any, **kwargs: Any) -> Any:
                # Schema generation only reads the decorator; the view itself runs the
                # receiver class's post(), so this body never runs.
                return super().post(request, *args, **kwargs)  # pragma: no cover

        return Fixed


class EventViewSetSchema(OpenApiViewExtension):
    """The reprocess and erase actions: no request body, their query parameters, and
    their answers."""

    target_class = f"{PACKAGE}.viewsets.EventViewSet"

    def view_replacement(self) -> type[Any]:
        reprocess = extend_schema(
            summary="Run the event's handlers now",
            description=(
                "Needs the django_klarefi.reprocess_event permission. Answers the outcome "
                "and the event after it; in_flight (409) while another process runs it."
            ),
            request=None,
            parameters=[
                OpenApiParameter(
                    "force", bool, description="Also run the handlers of a processed event."
                )
            ],
            responses={
                200: ReprocessResultSerializer,
                404: OpenApiResponse(description="No such event."),
                409: ReprocessResultSerializer,
            },
        )

        erase = extend_schema(
            summary="Erase the personal data of matching events",
            description=(
                "Needs the django_klarefi.erase_event permission. Erases the payload data "
                "and error text of every event matching the filters (at least one), in any "
                "status; each keeps its row and envelope and is never run again."
            ),
            request=None,
            parameters=[EraseQuerySerializer],
            responses={
                200: EraseResultSerializer,
                400: OpenApiResponse(description="No filter, or an invalid one."),
            },
        )

        class Fixed(self.target_class):  # type: ignore[name-defined,misc]
            pass

        decorated: type[Any] = extend_schema_view(
            list=extend_schema(
                summary="List Klarefi events, newest first",
                description="Cursor-paginated: follow next and previous; there is no count.",
            ),
            retrieve=extend_schema(
                summary="One Klarefi event",
                description="The stored payload and the processing bookkeeping.",
            ),
            reprocess=reprocess,
            erase=erase,
        )(Fixed)
        return decorated
