"""The view of docs/drf.md's first example (``CaseStatusCallback``), run from the doc's own
code, at ``/api/case-status/``: the URL docs/testing.md's ``signed_headers`` example posts
to, and the URLconf whose OpenAPI schema tests/test_docs_examples.py validates."""

from __future__ import annotations

from typing import Any

from django.urls import path

from tests.docs_blocks import example_namespace

_view: Any = example_namespace("docs/drf.md", "class CaseStatusCallback")["CaseStatusCallback"]

urlpatterns = [path("api/case-status/", _view.as_view(), name="case-status")]
