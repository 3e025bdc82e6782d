"""A URLconf that forgot the receiver (check E011). Its class-based view is not marked."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views import View


class UnmarkedView(View):
    def post(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse()


urlpatterns = [
    path("admin/", admin.site.urls),
    path("hooks/klarefi", UnmarkedView.as_view()),
]
