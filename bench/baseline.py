"""The baseline: a minimal hand-written verify-and-insert view.

What a careful developer writes in a few minutes without a library: read the body,
check the HMAC-SHA256 over ``f"{t}.".encode() + body`` with ``compare_digest``, parse the
JSON, insert one row (autocommit: one statement, one commit), answer 200. A redelivery
fails the unique INSERT and also gets 200. No timestamp window, no body limit, no
signals, no status bookkeeping: it is the floor, not a safe receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from django.conf import settings
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from bench.models import BaselineEvent


@csrf_exempt
def baseline_webhook(request: HttpRequest) -> HttpResponse:
    body = request.body
    header = request.headers.get("X-Klarefi-Signature", "")
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    timestamp, signature = parts.get("t", ""), parts.get("v1", "")
    expected = hmac.new(
        settings.KLAREFI_WEBHOOK_SECRET.encode(),
        timestamp.encode() + b"." + body,
        hashlib.sha256,
    ).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return HttpResponse(status=401)
    payload = json.loads(body)
    try:
        BaselineEvent.objects.create(
            event_id=payload["id"], event_type=payload["event"], payload=payload
        )
    except IntegrityError:
        return HttpResponse(b'{"status":"duplicate"}', content_type="application/json")
    return HttpResponse(b'{"status":"ok"}', content_type="application/json")
