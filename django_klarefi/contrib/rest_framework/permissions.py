"""Permission classes for Klarefi-signed requests and the events API."""

from __future__ import annotations

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from django_klarefi.signature import VerifiedWebhook

__all__ = [
    "HasErasePermission",
    "HasKlarefiSignature",
    "HasReprocessPermission",
    "HasViewEventPermission",
]


class HasKlarefiSignature(BasePermission):
    """Allow requests authenticated by
    :class:`~.authentication.KlarefiSignatureAuthentication`: ``request.auth`` is a
    :class:`~django_klarefi.signature.VerifiedWebhook`.

    A signed request's user is anonymous, so ``IsAuthenticated`` (a common default) would
    refuse it; use this one instead on the views that accept Klarefi's requests.
    """

    message = "A valid X-Klarefi-Signature is required."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return isinstance(request.auth, VerifiedWebhook)


class HasReprocessPermission(BasePermission):
    """Allow users with the ``django_klarefi.reprocess_event`` permission (staff or not;
    superusers have every permission)."""

    #: The permission, as ``user.has_perm`` takes it.
    permission = "django_klarefi.reprocess_event"
    message = "Reprocessing needs the django_klarefi.reprocess_event permission."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.has_perm(self.permission))


class HasViewEventPermission(BasePermission):
    """Allow users with the ``django_klarefi.view_event`` permission, as the admin does:
    the events API's reads require it on top of ``KLAREFI_API_PERMISSION_CLASSES``
    (``IsAdminUser`` alone lets every staff user read every payload)."""

    #: The permission, as ``user.has_perm`` takes it.
    permission = "django_klarefi.view_event"
    message = "Reading events needs the django_klarefi.view_event permission."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.has_perm(self.permission))


class HasErasePermission(BasePermission):
    """Allow users with the ``django_klarefi.erase_event`` permission: the erase action
    requires it on top of ``KLAREFI_API_PERMISSION_CLASSES``."""

    #: The permission, as ``user.has_perm`` takes it.
    permission = "django_klarefi.erase_event"
    message = "Erasing needs the django_klarefi.erase_event permission."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.has_perm(self.permission))
