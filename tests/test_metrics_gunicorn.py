"""The metrics and the webhook_rejected signal in a real gunicorn with several workers:
prometheus_client's multiprocess mode adds up every worker's values.

The deliveries are refused by the DRF authentication class (a bad signature), in whichever
worker takes them: each is counted, and its signal's receiver writes a row."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from django_klarefi.testing import build_event, encode_event, signed_headers
from tests.servers import gunicorn
from tests.testapp.models import HandlerRecord

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REJECTIONS = re.compile(
    r'^klarefi_webhook_rejections_total\{endpoint="default",reason="no_matching_signature"\} '
    r"([0-9.e+]+)$",
    re.MULTILINE,
)


def post_forged(base: str) -> int:
    body = encode_event(build_event("case.completed"))
    request = urllib.request.Request(
        base + "/api/signed/",
        data=body,
        headers={**signed_headers(body, secret="whsec_forged"), "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def scrape(base: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
        text = response.read().decode()
    match = REJECTIONS.search(text)
    return float(match[1]) if match else 0.0


def test_rejections_from_every_worker_are_counted_and_signalled(tmp_path):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory)}
    sent = 0
    with gunicorn(workers=2, settings_module="tests.settings_metrics", env=env) as base:
        # Until both workers have taken some (each writes its own counter file), in rounds
        # of concurrent requests; a bounded number of rounds.
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(10):
                answers = list(pool.map(lambda _: post_forged(base), range(16)))
                assert answers == [401] * 16
                sent += len(answers)
                if len(list(directory.glob("counter_*.db"))) >= 2:
                    break
        assert len(list(directory.glob("counter_*.db"))) >= 2
        # Whichever worker answers the scrape, it adds up both workers' counts.
        assert [scrape(base) for _ in range(4)] == [float(sent)] * 4
    records = HandlerRecord.objects.filter(event_id="401 no_matching_signature")
    assert records.count() == sent
    assert set(records.values_list("handler", flat=True)) == {"rejected 127.0.0.1"}


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{key}="{value}"' for key, value in labels.items())
    match = re.search(rf"^{name}\{{{re.escape(wanted)}\}} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def post_signed(base: str, event: dict) -> int:
    body = encode_event(event)
    request = urllib.request.Request(
        base + "/webhooks/klarefi",
        data=body,
        headers={**signed_headers(body), "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_the_receivers_deliveries_and_failures_are_counted_and_signalled(tmp_path):
    # The receiver itself, in both workers: deliveries by outcome, processing time, failed
    # events, and event_failed sent from the worker that recorded each failure.
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(directory)}
    events = [
        {**build_event("case.completed", id=f"evt_metrics_{n}"), "fail": n % 4 == 0}
        for n in range(24)
    ]
    failing = sum(1 for event in events if event["fail"])
    with gunicorn(workers=2, settings_module="tests.settings_metrics", env=env) as base:
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda event: post_signed(base, event), events))
        assert sorted(answers) == sorted(500 if e["fail"] else 200 for e in events)
        with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
            text = response.read().decode()
    deliveries = "klarefi_webhook_deliveries_total"
    assert (
        sample(text, deliveries, endpoint="default", outcome="processed") == len(events) - failing
    )
    assert sample(text, deliveries, endpoint="default", outcome="failed") == failing
    assert (
        sample(text, "klarefi_events_failed_total", endpoint="default", event_type="case.completed")
        == failing
    )
    assert (
        sample(
            text,
            "klarefi_event_processing_seconds_count",
            endpoint="default",
            event_type="case.completed",
        )
        == len(events) - failing
    )
    records = HandlerRecord.objects.filter(handler__startswith="failed ")
    assert records.count() == failing
    assert set(records.values_list("handler", flat=True)) == {"failed RuntimeError False"}
