"""Deliver signed events over real HTTP, concurrently, as Klarefi would."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from django_klarefi.signature import sign_webhook_payload
from tests.conftest import SECRET

PATH = "/webhooks/klarefi/"
RETRY_LATER = {409, 503}


@dataclass(frozen=True)
class Delivery:
    """One signed request: the exact bytes and header, sent as many times as asked."""

    body: bytes
    signature: str

    @classmethod
    def of(cls, payload: dict[str, Any], *, secret: str = SECRET) -> Delivery:
        body = json.dumps(payload, separators=(",", ":")).encode()
        return cls(body, sign_webhook_payload(body, secret))


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def post(base: str, delivery: Delivery, *, timeout: float = 120) -> Answer:
    request = urllib.request.Request(
        base + PATH,
        data=delivery.body,
        headers={"Content-Type": "application/json", "X-Klarefi-Signature": delivery.signature},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.read(), dict(response.headers))
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.read(), dict(error.headers))


def post_all(base: str, deliveries: Sequence[Delivery], *, concurrency: int) -> list[Answer]:
    """Send every delivery, ``concurrency`` at a time; answers in the same order."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda delivery: post(base, delivery), deliveries))


def post_until_accepted(base: str, delivery: Delivery, *, attempts: int = 50) -> Answer:
    """Redeliver while the answer is 409/503, as Klarefi's retries would."""
    for _ in range(attempts):
        answer = post(base, delivery)
        if answer.status not in RETRY_LATER:
            return answer
        time.sleep(0.2)
    return answer


def wait_for(condition: Any, *, timeout: float = 60, what: str = "condition") -> None:
    """Poll ``condition()`` until it is true (a wait, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)
