"""``tests.urls`` and the docs' DRF example view: the URLconf the docs' examples run with."""

from __future__ import annotations

from tests.urls import urlpatterns as test_urlpatterns
from tests.urls_docs_drf import urlpatterns as drf_urlpatterns

urlpatterns = [*test_urlpatterns, *drf_urlpatterns]
