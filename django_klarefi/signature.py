"""Klarefi webhook signatures: parse the header, verify it, sign payloads.

Pure Python with no Django import, so it can be used (and tested) anywhere.

The scheme, from Klarefi's webhook page::

    X-Klarefi-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>...]
    v1 = hex(HMAC-SHA256(signing_secret, f"{t}." + raw_body))

The signing secret is used verbatim as the HMAC key, ``whsec_`` prefix included. ``v1`` is
the lower-case ``hexdigest``; upper-case hex is not accepted, as in Stripe's SDKs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = [
    "DEFAULT_TOLERANCE",
    "MAX_HEADER_LENGTH",
    "MAX_SIGNATURES",
    "SIGNATURE_HEADER",
    "InvalidPayload",
    "MalformedSignatureHeader",
    "MissingSignatureHeader",
    "NoMatchingSignature",
    "NoV1Signature",
    "TimestampOutsideTolerance",
    "VerifiedWebhook",
    "WebhookVerificationError",
    "parse_payload",
    "sign_webhook_payload",
    "verify_webhook",
    "verify_webhook_signature",
]

SIGNATURE_HEADER = "X-Klarefi-Signature"
DEFAULT_TOLERANCE = 300
# Bounds on hostile input: a real header is ~80 characters per signature.
MAX_HEADER_LENGTH = 2048
MAX_SIGNATURES = 8

_TIMESTAMP = re.compile(r"[0-9]{1,15}")
# Only the lower-case hexdigest form: "ABC..." is not the signature Klarefi computes.
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")
# A JSON \uXXXX escape in the surrogate range; only then can a lone surrogate be present.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")

Secret = str | bytes
Secrets = Secret | Sequence[Secret]


class WebhookVerificationError(Exception):
    """A webhook was rejected. Subclasses name the reason; ``reason`` is a short code."""

    reason = "verification_failed"


class MissingSignatureHeader(WebhookVerificationError):
    reason = "missing_signature_header"


class MalformedSignatureHeader(WebhookVerificationError):
    reason = "malformed_signature_header"


class NoV1Signature(WebhookVerificationError):
    reason = "no_v1_signature"


class TimestampOutsideTolerance(WebhookVerificationError):
    reason = "timestamp_outside_tolerance"


class NoMatchingSignature(WebhookVerificationError):
    reason = "no_matching_signature"


class InvalidPayload(WebhookVerificationError):
    """The signature is valid, but the body is not a JSON object with a string ``event``."""

    reason = "invalid_payload"


class VerifiedWebhook(NamedTuple):
    """What :func:`verify_webhook` returns: the parsed event and the header's ``t``."""

    payload: dict[str, Any]
    timestamp: int


def sign_webhook_payload(
    raw_body: bytes | str,
    signing_secret: Secrets,
    timestamp: int | None = None,
) -> str:
    """Return an ``X-Klarefi-Signature`` header value for ``raw_body``.

    With a sequence of secrets, the header carries one ``v1`` entry per secret, as a
    sender does while a secret is being rotated.
    """
    body = raw_body.encode("utf-8") if isinstance(raw_body, str) else bytes(raw_body)
    t = str(int(time.time()) if timestamp is None else int(timestamp))
    keys = _secret_keys(signing_secret)
    signatures = ",".join(f"v1={_hmac_hex(key, t, body)}" for key in keys)
    return f"t={t},{signatures}"


def verify_webhook_signature(
    raw_body: bytes | str,
    signature_header: str | None,
    signing_secret: Secrets,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify a Klarefi webhook and return its parsed JSON event.

    Takes the same keyword arguments as Klarefi's Python SDK. ``signing_secret`` may be
    one secret or a sequence of them (rotation): any ``v1`` entry matching any secret is
    accepted. Each secret is used verbatim, surrounding whitespace included. ``|now - t|``
    must be at most ``tolerance`` seconds, in either direction. A ``v1`` value matches
    only in the lower-case hex form that Klarefi sends.

    The body's JSON is returned as parsed, ``\\u0000`` escapes included (as U+0000): the
    verifier does not care how the event is stored.

    Raises :class:`WebhookVerificationError` (a subclass naming the reason) on every
    rejection, whatever the input bytes. Messages never contain a secret. A
    ``signing_secret`` that is not text is a programming error (``TypeError``), and so is
    no secret, or one that is empty or only whitespace (``ValueError``), even among others.
    """
    return verify_webhook(
        raw_body, signature_header, signing_secret, tolerance=tolerance, now=now
    ).payload


def verify_webhook(
    raw_body: bytes | str,
    signature_header: str | None,
    signing_secret: Secrets,
    *,
    tolerance: int = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> VerifiedWebhook:
    """Like :func:`verify_webhook_signature`, but also return the signed timestamp.

    Checks run cheapest first: header, timestamp window, HMAC, then the JSON body, so
    nothing about an unsigned body is ever parsed.
    """
    keys = _secret_keys(signing_secret)
    timestamp_text, candidates = _parse_header(signature_header)

    timestamp = int(timestamp_text)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise TimestampOutsideTolerance(
            f"Timestamp {timestamp} is more than {tolerance} seconds from the current time."
        )

    body = _body_bytes(raw_body)
    expected = [_hmac_hex(key, timestamp_text, body).encode("ascii") for key in keys]
    matched = False
    # Compare every pair, without stopping early, in constant time per comparison.
    for candidate in candidates:
        for digest in expected:
            matched |= hmac.compare_digest(digest, candidate)
    if not matched:
        raise NoMatchingSignature("No v1 signature matches the signing secret.")

    return VerifiedWebhook(parse_payload(body), timestamp)


def _secret_keys(signing_secret: Secrets) -> list[bytes]:
    if isinstance(signing_secret, str | bytes):
        secrets: Sequence[object] = [signing_secret]
    elif isinstance(signing_secret, Sequence):
        secrets = signing_secret
    else:
        raise TypeError("signing_secret must be a string or a sequence of strings.")
    keys = []
    for secret in secrets:
        if not isinstance(secret, str | bytes):
            raise TypeError("Each signing secret must be a string.")
        if not secret.strip():
            raise ValueError(
                "A signing secret is empty or only whitespace, so it cannot verify anything."
            )
        keys.append(secret.encode("utf-8") if isinstance(secret, str) else secret)
    if not keys:
        raise ValueError("No signing secret is configured.")
    return keys


def _hmac_hex(key: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(key, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def _body_bytes(raw_body: object) -> bytes:
    if isinstance(raw_body, bytes):
        return raw_body
    if isinstance(raw_body, bytearray | memoryview):
        return bytes(raw_body)
    if isinstance(raw_body, str):
        try:
            return raw_body.encode("utf-8")
        except UnicodeEncodeError as exc:  # lone surrogates in a str body
            raise InvalidPayload("The body is not valid UTF-8.") from exc
    raise InvalidPayload("The body must be bytes or str.")


def _parse_header(header: object) -> tuple[str, list[bytes]]:
    """Return the header's ``t`` text and its well-formed ``v1`` signatures."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    if header is None or (isinstance(header, str) and not header.strip()):
        raise MissingSignatureHeader(f"The {SIGNATURE_HEADER} header is missing.")
    if not isinstance(header, str):
        raise MalformedSignatureHeader(f"The {SIGNATURE_HEADER} header must be a string.")
    if len(header) > MAX_HEADER_LENGTH:
        raise MalformedSignatureHeader(
            f"The {SIGNATURE_HEADER} header is longer than {MAX_HEADER_LENGTH} characters."
        )

    timestamp: str | None = None
    v1: list[bytes] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            raise MalformedSignatureHeader(f"The {SIGNATURE_HEADER} header is malformed.")
        if key == "t":
            if timestamp is not None or not _TIMESTAMP.fullmatch(value):
                raise MalformedSignatureHeader(
                    "The timestamp t must appear once, as a plain decimal integer."
                )
            timestamp = value
        elif key == "v1":
            if len(v1) == MAX_SIGNATURES:
                raise MalformedSignatureHeader(
                    f"The header carries more than {MAX_SIGNATURES} v1 signatures."
                )
            # A value that is not 64 lower-case hex digits cannot match; it is counted but
            # not compared.
            v1.append(value.encode("ascii") if _HEX_SHA256.fullmatch(value) else b"")
        # Other schemes (v0=, ...) are ignored, as the scheme allows new versions.

    if timestamp is None:
        raise MalformedSignatureHeader("The header has no timestamp t.")
    if not v1:
        raise NoV1Signature("The header has no v1 signature.")
    return timestamp, [candidate for candidate in v1 if candidate]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows to inf, which JSON cannot carry
        raise ValueError("number out of range")
    return value


def parse_payload(body: bytes) -> dict[str, Any]:
    """The JSON object of a body, parsed as :func:`verify_webhook` parses a verified one;
    :class:`InvalidPayload` when it is not a Klarefi event. Check the signature first."""
    try:
        text = body.decode("utf-8")
        payload = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        if _SURROGATE_ESCAPE.search(text):
            # A lone surrogate decodes to a str that cannot be encoded or stored.
            json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError, UnicodeDecodeError, UnicodeEncodeError and
        # integers too long to convert; RecursionError covers absurd nesting.
        raise InvalidPayload("The body is not valid UTF-8 JSON.") from exc
    if not isinstance(payload, dict):
        raise InvalidPayload("The body must be a JSON object.")
    event = payload.get("event")
    if not isinstance(event, str) or not event:
        raise InvalidPayload('The body must have a non-empty string "event".')
    return payload
