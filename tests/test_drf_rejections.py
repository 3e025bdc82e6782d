"""The DRF authentication class and the DRF API view report their rejections as the
receiver does: the webhook_rejected signal, the rate-limited log record, the metric."""

from __future__ import annotations

import contextlib

import pytest
from django.core.cache import caches
from django.test import RequestFactory
from django.urls import reverse
from prometheus_client import REGISTRY
from rest_framework.throttling import AnonRateThrottle

from django_klarefi.contrib.rest_framework import (
    KlarefiSignatureAuthentication,
    KlarefiWebhookAPIView,
)
from django_klarefi.models import Event
from django_klarefi.signals import webhook_rejected
from django_klarefi.testing import build_event, encode_event, post_event, signed_headers

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls_drf")]


@contextlib.contextmanager
def rejections(*, raising: bool = False):
    sent = []

    def receiver(sender, **kwargs):
        sent.append((sender, kwargs))
        if raising:
            raise RuntimeError("the pager is down")

    webhook_rejected.connect(receiver, dispatch_uid="test-drf-rejections")
    try:
        yield sent
    finally:
        webhook_rejected.disconnect(dispatch_uid="test-drf-rejections")


def rejection_count(reason):
    labels = {"endpoint": "default", "reason": reason}
    return REGISTRY.get_sample_value("klarefi_webhook_rejections_total", labels) or 0


def test_the_authentication_class_sends_webhook_rejected_and_counts_it(client):
    before = rejection_count("no_matching_signature")
    with rejections() as sent:
        response = post_event(
            client, "case.completed", url=reverse("signed"), secret="whsec_forged"
        )
    assert response.status_code == 401
    [(sender, kwargs)] = sent
    assert sender is KlarefiSignatureAuthentication
    assert kwargs["status"] == 401
    assert kwargs["reason"] == "no_matching_signature"
    assert kwargs["client"] == "127.0.0.1"
    assert kwargs["endpoint"] == "default"
    assert rejection_count("no_matching_signature") == before + 1


def test_a_raising_receiver_does_not_change_the_authentication_classes_answer(client):
    with rejections(raising=True) as sent:
        response = post_event(client, b"[1]", url=reverse("signed"))
    assert len(sent) == 1
    assert response.status_code == 400
    assert response.json()["detail"] == "The body must be a JSON object."


def test_a_request_without_the_header_is_no_rejection_of_the_class(client):
    # Left to the next authentication class (DRF's "not authenticated" is the view's).
    with rejections() as sent:
        client.post(reverse("signed"), data=b"{}", content_type="application/json")
    assert [s for s, _ in sent if s is KlarefiSignatureAuthentication] == []


class OnePerMinute(AnonRateThrottle):
    rate = "1/min"


def test_the_api_view_reports_a_delivery_drf_throttled(handlers):
    caches["default"].clear()
    view = type("ThrottledWebhook", (KlarefiWebhookAPIView,), {"throttle_classes": [OnePerMinute]})
    factory = RequestFactory()
    before = rejection_count("throttled")
    with rejections(raising=True) as sent:
        answers = []
        for _ in range(2):
            body = encode_event(build_event("case.completed"))
            request = factory.post(
                "/hook/", data=body, content_type="application/json", headers=signed_headers(body)
            )
            answers.append(view.as_view()(request))
    assert [response.status_code for response in answers] == [200, 429]
    [(sender, kwargs)] = sent
    assert sender is view
    assert (kwargs["status"], kwargs["reason"]) == (429, "throttled")
    assert rejection_count("throttled") == before + 1
    assert Event.objects.count() == 1
