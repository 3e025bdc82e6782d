"""KlarefiSignatureAuthentication under ASGI, with a chunked body (no ``Content-Length``):
it reads no more than ``KLAREFI_MAX_BODY_BYTES`` (and one byte) of it, as the plain
receiver does.

Requests go through Django's own ASGI handler, as an ASGI server calls it: the body
arrives in chunks, and the handler's spooled body file is wrapped to count the bytes that
the request reads from it.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIHandler
from django.urls import reverse

from django_klarefi.signature import SIGNATURE_HEADER
from django_klarefi.testing import build_event, encode_event, signature_header

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.urls_drf")]

CHUNK = 256


class RecordingBodyFile:
    """The handler's body file, counting the bytes read from it."""

    def __init__(self, wrapped):
        self.wrapped = wrapped
        self.bytes_read = 0

    def read(self, size=-1):
        data = self.wrapped.read(size)
        self.bytes_read += len(data)
        return data

    def readline(self, size=-1):
        data = self.wrapped.readline(size)
        self.bytes_read += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self.wrapped, name)


class RecordingASGIHandler(ASGIHandler):
    def __init__(self):
        super().__init__()
        self.body_files: list[RecordingBodyFile] = []

    async def read_body(self, receive):
        body_file = RecordingBodyFile(await super().read_body(receive))
        self.body_files.append(body_file)
        return body_file


def post_chunked(path: str, body: bytes, header: str) -> tuple[int, dict, int]:
    """POST ``body`` in chunks without ``Content-Length``; the status, the JSON answer and
    how many body bytes the request read."""
    handler = RecordingASGIHandler()
    chunks = [body[start : start + CHUNK] for start in range(0, len(body), CHUNK)]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
            (SIGNATURE_HEADER.lower().encode(), header.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client stays connected

    async def send(message):
        sent.append(message)

    async_to_sync(handler)(scope, receive, send)
    [start] = [message for message in sent if message["type"] == "http.response.start"]
    content = b"".join(message.get("body", b"") for message in sent[1:])
    [body_file] = handler.body_files
    return start["status"], json.loads(content), body_file.bytes_read


def padded_event(size: int) -> bytes:
    body = encode_event(build_event("case.completed", pad=""))
    return encode_event(build_event("case.completed", pad="x" * (size - len(body))))


def test_chunked_body_over_the_limit_is_413_after_reading_only_the_limit(settings):
    settings.KLAREFI_MAX_BODY_BYTES = 1000
    body = padded_event(20 * CHUNK)
    status, answer, bytes_read = post_chunked(
        reverse("signed-raw-body"), body, signature_header(body)
    )
    assert (status, answer["detail"]) == (413, "The body is over 1000 bytes.")
    assert bytes_read == 1001


def test_chunked_body_within_the_limit_is_verified_and_kept_for_the_view(settings):
    settings.KLAREFI_MAX_BODY_BYTES = 1000
    body = padded_event(900)
    status, answer, bytes_read = post_chunked(
        reverse("signed-raw-body"), body, signature_header(body)
    )
    assert (status, answer) == (201, {"signed_event": "case.completed", "body_bytes": len(body)})
    assert bytes_read == len(body)
