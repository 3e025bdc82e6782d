"""verify_webhook_signature and sign_webhook_payload: pure Python, no database."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from django_klarefi import WebhookVerificationError, sign_webhook_payload, verify_webhook_signature
from django_klarefi.signature import (
    MAX_HEADER_LENGTH,
    MAX_SIGNATURES,
    InvalidPayload,
    MalformedSignatureHeader,
    MissingSignatureHeader,
    NoMatchingSignature,
    NoV1Signature,
    TimestampOutsideTolerance,
    verify_webhook,
)

SECRET = "whsec_unit_secret"
OLD_SECRET = "whsec_old_secret"
NOW = 1_704_067_200
BODY = b'{"event":"case.completed","case_id":"case_1","data":{"score":0.5}}'


def header(body: bytes = BODY, secret: str = SECRET, t: int = NOW) -> str:
    return sign_webhook_payload(body, secret, t)


def verify(body: bytes | str = BODY, sig: str | None = None, secret=SECRET, **kwargs):
    kwargs.setdefault("now", NOW)
    return verify_webhook_signature(
        raw_body=body,
        signature_header=header() if sig is None else sig,
        signing_secret=secret,
        **kwargs,
    )


def test_sign_matches_the_spec_formula():
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign_webhook_payload(BODY, SECRET, NOW) == f"t={NOW},v1={expected}"


def test_valid_signature_returns_parsed_event():
    assert verify() == json.loads(BODY)


def test_str_body_is_accepted_like_the_sdk():
    assert verify(BODY.decode())["case_id"] == "case_1"


def test_verify_webhook_returns_timestamp():
    assert verify_webhook(BODY, header(), SECRET, now=NOW).timestamp == NOW


def test_body_is_not_reserialized():
    spaced = b'{ "event" : "case.completed" }'
    assert verify(spaced, header(spaced))["event"] == "case.completed"
    with pytest.raises(NoMatchingSignature):
        verify(b'{"event":"case.completed"}', header(spaced))


@pytest.mark.parametrize("sig", [None, "", "   "])
def test_missing_header(sig):
    with pytest.raises(MissingSignatureHeader):
        verify_webhook_signature(BODY, sig, SECRET, now=NOW)


@pytest.mark.parametrize(
    "sig",
    [
        "garbage",
        "t=abc,v1=" + "0" * 64,
        "t=-5,v1=" + "0" * 64,
        "t=1.5,v1=" + "0" * 64,
        "t=١٢٣,v1=" + "0" * 64,  # non-ASCII digits are not a plain decimal integer
        f"t={NOW},t={NOW},v1=" + "0" * 64,
        "v1=" + "0" * 64,
        f"t={NOW},,v1=" + "0" * 64,
    ],
)
def test_malformed_header(sig):
    with pytest.raises(MalformedSignatureHeader):
        verify(sig=sig)


def test_no_v1_signature_other_schemes_ignored():
    v0 = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    with pytest.raises(NoV1Signature):
        verify(sig=f"t={NOW},v0={v0}")


def test_other_schemes_alongside_v1_are_ignored():
    assert verify(sig=header() + ",v0=whatever,v2=abc")["event"] == "case.completed"


def test_wrong_secret():
    with pytest.raises(NoMatchingSignature):
        verify(sig=header(secret="whsec_someone_else"))


def test_rotation_accepts_either_secret():
    assert verify(sig=header(secret=OLD_SECRET), secret=[SECRET, OLD_SECRET])
    assert verify(sig=header(secret=SECRET), secret=(OLD_SECRET, SECRET))


def test_multiple_v1_entries_any_may_match():
    bad = "v1=" + "f" * 64
    good = header().split(",", 1)[1]
    assert verify(sig=f"t={NOW},{bad},{good}")
    assert verify(sig=f"t={NOW},{good},{bad}")


def test_sign_with_several_secrets_emits_one_v1_each():
    value = sign_webhook_payload(BODY, [SECRET, OLD_SECRET], NOW)
    assert value.count("v1=") == 2
    assert verify(sig=value, secret=OLD_SECRET)


def test_lowercase_hexdigest_is_the_form_klarefi_sends():
    t, v1 = header().split(",")
    assert v1 == v1.lower()
    assert verify(sig=f"{t},{v1}")


@pytest.mark.parametrize("recase", [str.upper, lambda hex_: hex_[:32] + hex_[32:].upper()])
def test_upper_or_mixed_case_hex_is_rejected(recase):
    t, v1 = header().split(",")
    digest = v1.removeprefix("v1=")
    assert recase(digest) != digest  # the test digest has letters to change
    with pytest.raises(NoMatchingSignature):
        verify(sig=f"{t},v1={recase(digest)}")


@pytest.mark.parametrize("offset", [-300, 300, 0])
def test_tolerance_edges_accepted(offset):
    assert verify(sig=header(t=NOW + offset), tolerance=300)


@pytest.mark.parametrize("offset", [-301, 301])
def test_tolerance_exceeded_both_directions(offset):
    with pytest.raises(TimestampOutsideTolerance):
        verify(sig=header(t=NOW + offset), tolerance=300)


def test_header_length_cap():
    sig = header() + ",x=" + "a" * MAX_HEADER_LENGTH
    with pytest.raises(MalformedSignatureHeader, match="longer"):
        verify(sig=sig)


def test_signature_count_cap():
    sig = f"t={NOW}," + ",".join(["v1=" + "0" * 64] * (MAX_SIGNATURES + 1))
    with pytest.raises(MalformedSignatureHeader, match="more than"):
        verify(sig=sig)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1,2,3]",
        b'"case.completed"',
        b"{}",
        b'{"event": 5}',
        b'{"event": ""}',
        b'{"event": null}',
        b"\xff\xfe{}",
        b'\xef\xbb\xbf{"event":"x"}',  # a UTF-8 BOM
        b'{"event":"x","n":NaN}',
        b'{"event":"x","n":Infinity}',
        b'{"event":"x","n":1e400}',
        b'{"event":"x","s":"\\ud800"}',  # a lone surrogate
        b'{"event":"x","n":' + b"9" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_invalid_payloads_raise_invalid_payload(body):
    with pytest.raises(InvalidPayload):
        verify(body, header(body))


def test_accepted_but_odd_bodies():
    # A valid surrogate pair, an escaped backslash before "u0000", duplicate keys (last wins).
    body = b'{"event":"x","e":"\\ud83d\\ude00","s":"\\\\u0000","event":"y"}'
    payload = verify(body, header(body))
    assert payload == {"event": "y", "e": "\U0001f600", "s": "\\u0000"}


def test_nul_escape_is_accepted_and_returned_as_u0000():
    # Klarefi extracts text from documents, where NUL bytes occur. How an event is stored
    # is not the verifier's business: it returns the JSON as parsed.
    body = b'{"event":"document.processed","text":"page\\u0000two","k\\u0000":"\\u0000"}'
    payload = verify(body, header(body))
    assert payload == {"event": "document.processed", "text": "page\x00two", "k\x00": "\x00"}
    assert verify_webhook(body.decode(), header(body), SECRET, now=NOW).payload == payload


def test_every_error_is_a_webhook_verification_error():
    for cls in (
        MissingSignatureHeader,
        MalformedSignatureHeader,
        NoV1Signature,
        TimestampOutsideTolerance,
        NoMatchingSignature,
        InvalidPayload,
    ):
        assert issubclass(cls, WebhookVerificationError)


def test_non_str_header_and_body_types_do_not_escape():
    with pytest.raises(MalformedSignatureHeader):
        verify_webhook_signature(BODY, 12345, SECRET, now=NOW)  # type: ignore[arg-type]
    with pytest.raises(InvalidPayload):
        verify_webhook_signature(12345, header(), SECRET, now=NOW)  # type: ignore[arg-type]
    # bytes headers are decoded, not crashed on
    assert verify_webhook_signature(BODY, header().encode(), SECRET, now=NOW)  # type: ignore[arg-type]


def test_error_messages_never_contain_the_secret():
    attempts = [header(secret="whsec_x"), "t=1,v1=" + "0" * 64, "junk", ""]
    for sig in attempts:
        with pytest.raises(WebhookVerificationError) as info:
            verify(sig=sig)
        assert SECRET not in str(info.value)
        assert SECRET not in repr(info.value)


def test_empty_secret_is_a_programming_error():
    with pytest.raises(ValueError, match="No signing secret"):
        verify(secret=[])
    with pytest.raises(TypeError):
        verify(secret=123)


@pytest.mark.parametrize(
    "secret",
    ["", " ", "\n", " \t\r\n ", "\u00a0", b"", b"  \n", [SECRET, ""], [SECRET, "\n"], ("\t",)],
)
@pytest.mark.parametrize("function", [verify_webhook_signature, verify_webhook])
def test_empty_or_whitespace_secret_raises_value_error(function, secret):
    # Even beside a good secret: a blank entry is a configuration error, not "no match".
    with pytest.raises(ValueError, match="empty or only whitespace"):
        function(BODY, header(), secret, now=NOW)


def test_secret_with_surrounding_whitespace_is_used_verbatim():
    # The system check E010 reports it; the verifier does not strip it.
    with pytest.raises(NoMatchingSignature):
        verify(secret=SECRET + "\n")
    assert verify(sig=header(secret=SECRET + "\n"), secret=SECRET + "\n")
