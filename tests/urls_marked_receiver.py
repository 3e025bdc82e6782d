"""Only a class-based receiver marked ``klarefi_receiver = True``, as the DRF view is, in
an include of its own: not check E011, though ``django_klarefi:webhook`` is not routed."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views import View


class MarkedReceiver(View):
    klarefi_receiver = True

    def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse()


urlpatterns = [path("api/", include([path("klarefi/", MarkedReceiver.as_view())]))]
