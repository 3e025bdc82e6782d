"""Hostile input: the verifier and the view against arbitrary and signed-but-odd bodies.

Property-based (hypothesis) where the input space is open, and a table for the named
cases the README's security section documents. The claims: the verifier raises nothing
but ``WebhookVerificationError``; the view never answers 5xx to a hostile request, never
stores an unverified or unstorable body, and reads a bounded amount of memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import tracemalloc

import pytest
from django.test import Client, RequestFactory, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_klarefi import sign_webhook_payload, verify_webhook_signature
from django_klarefi.models import Event
from django_klarefi.payloads import MAX_PAYLOAD_DEPTH
from django_klarefi.signature import (
    MAX_HEADER_LENGTH,
    MAX_SIGNATURES,
    InvalidPayload,
    WebhookVerificationError,
)
from django_klarefi.views import webhook
from tests.conftest import SECRET

URL = "/webhooks/klarefi/"
NOW = 1_767_225_600
# Moderate by default, to keep CI within its time; raise it for a thorough run.
HOSTILE = settings(
    max_examples=int(os.environ.get("KLAREFI_HYPOTHESIS_EXAMPLES", "60")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ---------------------------------------------------------------- strategies

# Raw JSON fragments that parsers disagree on, or that a database cannot store.
ODD_FRAGMENTS = [
    "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "-0", "1" * 4000,
    "1" * 5000, "0.1" + "0" * 5000, '"\\ud800"', '"\\udc00x"', '"x\\ud83d"',
    '"\\ud83d\\ude00"', '"\\u0000"', '"\\\\u0000"', '"\\\\\\u0000"', "[]", "{}", "null",
    "true", '"' + "x" * 300 + '"', '"\\u202e"', '"\\uffff"', '{"":{"":[]}}',
]  # fmt: skip
ODD_BYTES = [b"", b"\xef\xbb\xbf", b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\x00", b" ", b"\n"]

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16)
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
# Text with lone surrogates, which json.dumps escapes as \udXXX.
surrogate_text = st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(), max_size=8
)


@st.composite
def odd_objects(draw: st.DrawFn) -> bytes:
    """An object with an ``event``, plus one odd member (possibly a duplicate key)."""
    event = draw(st.sampled_from(['"case.completed"', '"x"', '""', "1", "null"]) | st.just(""))
    key = draw(st.sampled_from(["event", "id", "case_id", "data", "\\u0000", "\\ud800"]))
    fragment = draw(st.sampled_from(ODD_FRAGMENTS))
    members = [f'"{key}":{fragment}']
    if event:
        members.insert(draw(st.integers(0, 1)), f'"event":{event}')
    return ("{" + ",".join(members) + "}").encode()


@st.composite
def event_objects(draw: st.DrawFn) -> bytes:
    payload = {
        "event": draw(surrogate_text | st.sampled_from(["case.completed", "x" * 101]) | json_values),
        **draw(st.dictionaries(st.sampled_from(["id", "case_id", "session_id", "data"]), json_values | surrogate_text)),
    }  # fmt: skip
    return json.dumps(payload).encode()


def nested(depth: int) -> bytes:
    return b'{"event":"case.completed","v":' + b"[" * depth + b"]" * depth + b"}"


hostile_bodies = st.one_of(
    st.binary(max_size=256),
    json_values.map(lambda value: json.dumps(value).encode()),
    odd_objects(),
    event_objects(),
    st.integers(0, 3000).map(nested),
    st.tuples(st.sampled_from(ODD_BYTES), event_objects()).map(b"".join),
    st.tuples(event_objects(), st.integers(0, 10_000), st.integers(0, 255)).map(
        lambda t: t[0][: t[1] % max(len(t[0]), 1)] + bytes([t[2]]) + t[0][t[1] % max(len(t[0]), 1) + 1 :]
    ),
)  # fmt: skip
header_pieces = st.sampled_from(
    ["t=", f"t={NOW}", "t=-1", "t=1e9", "t=٣", "v1=", "v1=" + "a" * 64, "v0=abc", "=", ",",
     " ", "\x00", "v1=" + "A" * 64, "t=0" * 3, "é"]
) | st.text(max_size=12)  # fmt: skip
hostile_headers = st.one_of(
    st.none(),
    st.text(max_size=64),
    st.lists(header_pieces, max_size=12).map(",".join),
    st.lists(header_pieces, max_size=12).map("".join),
    st.integers(0, 4 * MAX_HEADER_LENGTH).map(lambda n: f"t={NOW}," + "v1=0," * (n // 5)),
)


# ---------------------------------------------------------------- the verifier


@HOSTILE
@given(body=st.binary(max_size=512) | surrogate_text | hostile_bodies, header=hostile_headers)
def test_verifier_rejects_arbitrary_input_with_its_own_error_only(body, header):
    with pytest.raises(WebhookVerificationError):
        verify_webhook_signature(body, header, SECRET, now=NOW)


@HOSTILE
@given(header=st.binary(max_size=128))
def test_verifier_rejects_a_bytes_header_with_its_own_error_only(header):
    with pytest.raises(WebhookVerificationError):
        verify_webhook_signature(b'{"event":"x"}', header, SECRET, now=NOW)


@HOSTILE
@given(body=hostile_bodies)
def test_verifier_on_signed_hostile_bodies_returns_an_event_or_invalid_payload(body):
    header = sign_webhook_payload(body, SECRET, NOW)
    try:
        payload = verify_webhook_signature(body, header, [SECRET], now=NOW)
    except InvalidPayload:
        return
    assert isinstance(payload, dict)
    assert isinstance(payload["event"], str)
    assert payload["event"]
    # What is accepted can be stored: strict JSON and UTF-8 (U+0000 included: the payload
    # field encodes it, see test_nul_payloads.py).
    stored = json.dumps(payload, allow_nan=False, ensure_ascii=False)
    stored.encode("utf-8")


def test_verifier_bounds_the_header():
    body = b'{"event":"x"}'
    good = sign_webhook_payload(body, SECRET, NOW)
    padded = good + ",v0=" + "0" * MAX_HEADER_LENGTH
    with pytest.raises(WebhookVerificationError, match="longer than"):
        verify_webhook_signature(body, padded, SECRET, now=NOW)
    crowded = good + ",v1=" + ",v1=".join(["0" * 64] * MAX_SIGNATURES)
    with pytest.raises(WebhookVerificationError, match="more than"):
        verify_webhook_signature(body, crowded, SECRET, now=NOW)


def test_verifier_never_parses_an_unsigned_body():
    # 10^6 nested brackets would exhaust the recursion limit if parsed; unsigned, they
    # are never parsed at all.
    body = b"[" * 1_000_000
    with pytest.raises(WebhookVerificationError) as caught:
        verify_webhook_signature(body, f"t={NOW},v1=" + "0" * 64, SECRET, now=NOW)
    assert caught.value.reason == "no_matching_signature"


# ---------------------------------------------------------------- the view

NAMED_CASES = [
    # (name, body, status, reason)
    ("NaN", b'{"event":"case.completed","amount":NaN}', 400, "invalid_payload"),
    ("Infinity", b'{"event":"case.completed","amount":-Infinity}', 400, "invalid_payload"),
    ("overflowing float", b'{"event":"case.completed","amount":1e400}', 400, "invalid_payload"),
    ("int past 4300 digits", b'{"event":"x","n":' + b"1" * 5000 + b"}", 400, "invalid_payload"),
    ("lone high surrogate", b'{"event":"case.completed","n":"\\ud800"}', 400, "invalid_payload"),
    ("lone low surrogate", b'{"event":"case.completed","n":"\\udc00"}', 400, "invalid_payload"),
    ("surrogate in event", b'{"event":"case\\ud800"}', 400, "invalid_payload"),
    ("BOM", b'\xef\xbb\xbf{"event":"case.completed"}', 400, "invalid_payload"),
    ("invalid UTF-8", b'{"event":"case.completed","n":"\xff"}', 400, "invalid_payload"),
    ("encoded surrogate", b'{"event":"case.completed","n":"\xed\xa0\x80"}', 400, "invalid_payload"),
    ("raw control char", b'{"event":"case.completed","n":"\x01"}', 400, "invalid_payload"),
    ("empty body", b"", 400, "invalid_payload"),
    ("top-level array", b'[{"event":"case.completed"}]', 400, "invalid_payload"),
    ("top-level string", b'"case.completed"', 400, "invalid_payload"),
    ("top-level null", b"null", 400, "invalid_payload"),
    ("missing event", b'{"id":"evt_1"}', 400, "invalid_payload"),
    ("null event", b'{"event":null}', 400, "invalid_payload"),
    ("numeric event", b'{"event":1}', 400, "invalid_payload"),
    ("empty event", b'{"event":""}', 400, "invalid_payload"),
    ("object event", b'{"event":{"type":"case.completed"}}', 400, "invalid_payload"),
    ("event type too long", b'{"event":"' + b"x" * 101 + b'"}', 400, "invalid_event"),
    ("nested past the parser", nested(100_000), 400, "invalid_payload"),
    ("nested near the parser's limit", nested(915), 400, "invalid_event"),
    ("nested one past the bound", nested(MAX_PAYLOAD_DEPTH), 400, "invalid_event"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in NAMED_CASES],
)
def test_signed_but_unusable_bodies_get_400_and_are_not_stored(
    client, handlers, body, status, reason
):
    response = post_signed(client, body)
    assert response.status_code == status
    assert response.json()["error"] == reason
    assert not Event.objects.exists()
    assert handlers.calls == []


def post_signed(client: Client, body: bytes, header: str | None = None):
    header = sign_webhook_payload(body, SECRET) if header is None else header
    return client.post(URL, body, content_type="application/json", HTTP_X_KLAREFI_SIGNATURE=header)


@pytest.mark.django_db
def test_accepted_but_odd_bodies_are_stored_as_documented(client, handlers):
    odd = {
        # Duplicate keys: the last one wins, as in Python's json (and most parsers).
        b'{"event":"session.created","event":"case.completed","id":"evt_dup",'
        b'"case_id":"first","case_id":"second"}': ("evt_dup", "case.completed", "second"),
        # A valid surrogate pair is one character.
        b'{"event":"case.completed","id":"evt_pair","note":"\\ud83d\\ude00"}': (
            "evt_pair", "case.completed", ""),
        # An escaped backslash followed by u0000 is text, not NUL.
        b'{"event":"case.completed","id":"evt_slash","note":"\\\\u0000"}': (
            "evt_slash", "case.completed", ""),
        # A type Klarefi may add later: stored, the catch-all signal only.
        b'{"event":"klarefi.future_thing","id":"evt_future"}': (
            "evt_future", "klarefi.future_thing", ""),
        # Big but finite numbers, and nesting within the bound.
        b'{"event":"case.completed","id":"evt_big","n":' + b"9" * 4000 + b',"f":1e308,'
        b'"tiny":1e-400}': ("evt_big", "case.completed", ""),
        nested(MAX_PAYLOAD_DEPTH - 1).replace(b'{"event"', b'{"id":"evt_deep","event"'): (
            "evt_deep", "case.completed", ""),
    }  # fmt: skip
    for body, (event_id, event_type, case_id) in odd.items():
        response = post_signed(client, body)
        assert response.status_code == 200, (body[:80], response.content)
        event = Event.objects.get(event_id=event_id)
        assert (event.event_type, event.case_id) == (event_type, case_id)
        expected = json.loads(body)
        if event_id == "evt_big":
            # PostgreSQL's jsonb keeps numbers as numeric: 1e308 reads back as an int.
            assert float(event.payload.pop("f")) == expected.pop("f")
        assert event.payload == expected
    assert Event.objects.get(event_id="evt_pair").payload["note"] == "\U0001f600"
    assert Event.objects.get(event_id="evt_slash").payload["note"] == "\\u0000"
    assert Event.objects.get(event_id="evt_big").payload["tiny"] == 0.0
    assert ("event_received", "evt_future") in [(n, e.event_id) for n, e in handlers.calls]
    assert ("typed", "evt_future") not in [(n, e.event_id) for n, e in handlers.calls]


@pytest.mark.django_db
def test_event_without_id_is_deduplicated_by_the_digest_of_its_bytes(client, handlers):
    body = b'{"event":"case.completed","case_id":"c_no_id"}'
    assert post_signed(client, body).json()["status"] == "processed"
    assert post_signed(client, body).json()["status"] == "already_processed"
    # The same JSON with other bytes is another delivery as far as the digest can tell.
    other = b'{"case_id":"c_no_id","event":"case.completed"}'
    assert post_signed(client, other).json()["status"] == "processed"
    digests = {"sha256:" + hashlib.sha256(b).hexdigest() for b in (body, other)}
    assert set(Event.objects.values_list("event_id", flat=True)) == digests
    assert Event.objects.get(event_id="sha256:" + hashlib.sha256(body).hexdigest()).deliveries == 2


@HOSTILE
@given(body=hostile_bodies)
@pytest.mark.django_db
def test_view_answers_signed_hostile_bodies_with_200_or_400_and_stores_only_200s(client, body):
    before = Event.objects.count()
    response = post_signed(client, body)
    assert response.status_code in (200, 400), response.content
    if response.status_code == 400:
        assert Event.objects.count() == before
    else:
        assert Event.objects.filter(event_id=response.json()["event_id"]).exists()


@HOSTILE
@given(body=hostile_bodies | st.binary(max_size=512), header=hostile_headers)
@pytest.mark.django_db
def test_view_answers_unsigned_hostile_requests_with_401_and_stores_nothing(client, body, header):
    response = client.post(
        URL, body, content_type="application/json",
        **({} if header is None else {"HTTP_X_KLAREFI_SIGNATURE": header}),
    )  # fmt: skip
    assert response.status_code == 401
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_wrong_secret_stale_and_replayed_timestamps_store_nothing(client):
    body = b'{"event":"case.completed","id":"evt_replay"}'
    now = int(time.time())
    for header in (
        sign_webhook_payload(body, "whsec_forged"),
        sign_webhook_payload(body, SECRET, now - 330),  # well outside the window, whatever
        sign_webhook_payload(body, SECRET, now + 330),  # the clock does meanwhile
        sign_webhook_payload(body + b" ", SECRET),
    ):
        assert post_signed(client, body, header).status_code == 401
    assert not Event.objects.exists()


def peak_memory_of_view(body: bytes, content_length: int) -> tuple[int, int]:
    """Call the view on a request whose stream holds ``body``; return (status, peak bytes)."""
    request = RequestFactory().post(
        URL,
        body,
        content_type="application/json",
        CONTENT_LENGTH=str(content_length),
        HTTP_X_KLAREFI_SIGNATURE=f"t={NOW},v1=0",
    )
    tracemalloc.start()
    try:
        response = webhook(request)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return response.status_code, peak


@pytest.mark.django_db
@override_settings(KLAREFI_MAX_BODY_BYTES=256 * 1024)
def test_memory_stays_bounded_by_the_body_limit():
    limit = 256 * 1024
    huge = b"x" * (32 * limit)
    # Declared over the limit: answered 413 without reading the body.
    status, peak = peak_memory_of_view(huge, len(huge))
    assert status == 413
    assert peak < limit
    # Declared at the limit while the stream holds far more: at most the limit is read.
    status, peak = peak_memory_of_view(huge, limit)
    assert status == 401
    assert peak < 4 * limit
    # Declared small: the stream is read no further than declared.
    status, peak = peak_memory_of_view(huge, 10)
    assert status == 401
    assert peak < limit


@pytest.mark.django_db
def test_oversized_headers_and_bodies_are_rejected_before_any_parsing(client):
    body = b'{"event":"case.completed"}'
    header = sign_webhook_payload(body, SECRET) + ",v0=" + "0" * (1024 * 1024)
    response = post_signed(client, body, header)
    assert (response.status_code, response.json()["error"]) == (401, "malformed_signature_header")
    with override_settings(KLAREFI_MAX_BODY_BYTES=1024):
        big = b'{"event":"case.completed","pad":"' + b"x" * 2048 + b'"}'
        response = post_signed(client, big)
        assert (response.status_code, response.json()["error"]) == (413, "body_too_large")
    assert not Event.objects.exists()
