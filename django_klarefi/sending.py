"""Send signed test events: the one path behind ``klarefi_send_test_event`` and the admin page.

::

    from django_klarefi.samples import sample_event
    from django_klarefi.sending import send_test_event

    delivery = send_test_event(sample_event("case.completed"), in_process=True)
    delivery.ok, delivery.status  # (True, 200)

HTTP goes through the standard library (``urllib``) only. Nothing here ever returns, prints
or raises a message that contains a signing secret or an API key.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.urls import NoReverseMatch

from django_klarefi import endpoints
from django_klarefi.conf import conf
from django_klarefi.endpoints import DEFAULT_ENDPOINT
from django_klarefi.signature import SIGNATURE_HEADER, sign_webhook_payload
from django_klarefi.views import answer_delivery

__all__ = [
    "API_TEST_PATH",
    "DEFAULT_BASE_URL",
    "ApiAnswer",
    "Delivery",
    "HttpAnswer",
    "SendingNotConfigured",
    "default_url",
    "request_api_test_event",
    "send_test_event",
]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
API_TEST_PATH = "/api/v1/webhooks/test"
# Klarefi expects a 2xx within 30 seconds; a sender that waits longer hides a real problem.
TIMEOUT_SECONDS = 30.0
MAX_BODY_CHARS = 2000
USER_AGENT = "django-klarefi test sender"
_REDACTED = "[redacted]"


class SendingNotConfigured(ImproperlyConfigured):
    """A test event cannot be sent: no signing secret, no API key, no receiver URL.

    The message names the setting; callers add how to pass the value their own way (a
    command-line flag, a form field).
    """


NO_SECRET = "No signing secret: KLAREFI_WEBHOOK_SECRET is not set."  # noqa: S105 (a message)


def no_secret(endpoint: str) -> str:
    """Why no test event can be signed for ``endpoint``."""
    if endpoint == DEFAULT_ENDPOINT:
        return NO_SECRET
    return (
        f'No signing secret: the endpoint "{endpoint}" is not defined (KLAREFI_ENDPOINTS or '
        "an active Endpoint row), or its secret cannot be used."
    )


@dataclass(frozen=True, kw_only=True)
class HttpAnswer:
    """What came back from one POST: the status, how long it took, and the body."""

    status: int | None
    """The HTTP status; None when there was no HTTP answer (refused, timeout, bad URL)."""
    milliseconds: float
    body: str
    """The response body, truncated; it never contains a secret or an API key."""
    error: str = ""
    """A one-line explanation when ``status`` is None."""

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True, kw_only=True)
class Delivery(HttpAnswer):
    """The outcome of one test event sent to the receiver."""

    event_type: str
    event_id: str


@dataclass(frozen=True, kw_only=True)
class ApiAnswer(HttpAnswer):
    """Klarefi's answer to ``POST /api/v1/webhooks/test`` (see :func:`request_api_test_event`)."""

    url: str


def default_url(endpoint: str = DEFAULT_ENDPOINT) -> str:
    """``http://127.0.0.1:8000`` plus the reversed ``django_klarefi:webhook`` URL of
    ``endpoint``."""
    return DEFAULT_BASE_URL + _webhook_path(endpoint)


def send_test_event(
    payload: dict[str, Any],
    *,
    url: str | None = None,
    secret: str | None = None,
    timestamp_offset: int = 0,
    in_process: bool = False,
    endpoint: str = DEFAULT_ENDPOINT,
) -> Delivery:
    """Sign ``payload`` and POST it to the receiver; return what came back.

    The body is signed with :func:`~django_klarefi.signature.sign_webhook_payload`, using
    ``secret`` or else the first secret of ``endpoint`` (for ``default``, the first
    ``KLAREFI_WEBHOOK_SECRET``), at the current time plus ``timestamp_offset`` seconds (to
    show what a stale or future signature gets), and sent to that endpoint's URL.

    With ``in_process=True`` there is no HTTP: the signed body goes to the receiver's own
    :func:`django_klarefi.views.answer_delivery` (verification, storage, the handlers and the
    answer), without middleware or URL routing; ``url`` must then be None. Otherwise it is
    an HTTP POST with ``urllib`` to ``url`` (default :func:`default_url`).

    Raises :class:`SendingNotConfigured` when no secret is available or no URL can be
    found; every delivery problem (refused, timeout, bad URL, non-2xx) is in the result.
    """
    key = secret if secret is not None else endpoints.signing_secret(endpoint)
    if not key or not key.strip():
        raise SendingNotConfigured(no_secret(endpoint))
    if in_process and url is not None:
        raise ValueError("An in-process delivery goes to the receiver itself: pass no url.")
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    header = sign_webhook_payload(body, key, int(time.time()) + timestamp_offset)
    event_type = str(payload.get("event", ""))
    event_id = str(payload.get("id", ""))
    secrets = (key,)
    if in_process:
        status, text, error, milliseconds = _deliver_in_process(body, header, endpoint)
    else:
        status, text, error, milliseconds = _post_http(
            url or default_url(endpoint),
            body,
            {"Content-Type": "application/json", SIGNATURE_HEADER: header},
        )
    return Delivery(
        event_type=event_type,
        event_id=event_id,
        status=status,
        milliseconds=milliseconds,
        body=_clean(text, secrets),
        error=_clean(error, secrets),
    )


def request_api_test_event(
    endpoint_url: str,
    *,
    signing_secret: str | None = None,
    api_base_url: str | None = None,
    api_key: str | None = None,
) -> ApiAnswer:
    """Ask Klarefi's API to send a test event to ``endpoint_url``, as the spec's curl does.

    ``POST {KLAREFI_API_BASE_URL}/api/v1/webhooks/test`` with
    ``Authorization: Bearer {KLAREFI_API_KEY}`` and the JSON body
    ``{"endpoint_url": ..., "signing_secret": ...}``. ``signing_secret`` defaults to the
    first configured secret. Raises :class:`SendingNotConfigured` without an API key or
    a secret; the API's answer (or why there was none) is in the result.
    """
    key = api_key if api_key is not None else conf.API_KEY
    if not key:
        raise SendingNotConfigured("No API key: KLAREFI_API_KEY is not set.")
    secret = signing_secret if signing_secret is not None else conf.SIGNING_SECRET
    if not secret or not secret.strip():
        raise SendingNotConfigured(NO_SECRET)
    base = (api_base_url if api_base_url is not None else conf.API_BASE_URL).rstrip("/")
    url = base + API_TEST_PATH
    body = json.dumps({"endpoint_url": endpoint_url, "signing_secret": secret}).encode("utf-8")
    status, text, error, milliseconds = _post_http(
        url,
        body,
        {"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        refused_hint="Is KLAREFI_API_BASE_URL right, and is Klarefi's API reachable from here?",
    )
    secrets = (secret, key)
    return ApiAnswer(
        url=url,
        status=status,
        milliseconds=milliseconds,
        body=_clean(text, secrets),
        error=_clean(error, secrets),
    )


def _webhook_path(endpoint: str) -> str:
    try:
        return endpoints.delivery_path(endpoint)
    except NoReverseMatch as exc:
        raise SendingNotConfigured(
            "The receiver URL is not in the URLconf: include django_klarefi.urls."
        ) from exc


def _deliver_in_process(
    body: bytes, header: str, endpoint: str
) -> tuple[int | None, str, str, float]:
    start = time.perf_counter()
    response = answer_delivery(body, header, client="in-process test event", endpoint=endpoint)
    milliseconds = _since(start)
    return response.status_code, response.content.decode("utf-8", "replace"), "", milliseconds


def _post_http(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    refused_hint: str = "Is the server running (manage.py runserver)?",
) -> tuple[int | None, str, str, float]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None, "", f"{url!r} is not an http:// or https:// URL.", 0.0
    request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
        url, data=body, headers={**headers, "User-Agent": USER_AGENT}, method="POST"
    )
    opener = _opener(parts.hostname)
    start = time.perf_counter()
    try:
        with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
            text = _read(response)
            status: int = response.status
    except urllib.error.HTTPError as exc:  # a non-2xx answer, redirects included
        text = _read(exc)
        status = exc.code
    except urllib.error.URLError as exc:
        return None, "", _connection_error(url, exc.reason, refused_hint), _since(start)
    except TimeoutError:
        return (
            None,
            "",
            f"No answer from {url} within {TIMEOUT_SECONDS:.0f} seconds.",
            _since(start),
        )
    except (OSError, ValueError) as exc:  # a dropped connection, a malformed URL
        return None, "", f"Could not POST to {url}: {_describe(exc)}", _since(start)
    return status, text, "", _since(start)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib turns a redirected POST into a GET without the body; report the 3xx instead.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _opener(host: str) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    if _is_loopback(host):
        handlers.append(urllib.request.ProxyHandler({}))  # never send local traffic via a proxy
    return urllib.request.build_opener(*handlers)


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _read(response: Any) -> str:
    try:
        raw: bytes = response.read(MAX_BODY_CHARS * 4 + 1)
    except (OSError, ValueError):
        return ""
    return raw.decode("utf-8", "replace")


def _connection_error(url: str, reason: object, refused_hint: str) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return f"Could not connect to {url}: connection refused. {refused_hint}"
    if isinstance(reason, socket.gaierror):
        host = urllib.parse.urlsplit(url).hostname
        return f"Could not connect to {url}: the host {host!r} was not found."
    if isinstance(reason, TimeoutError):
        return f"No answer from {url} within {TIMEOUT_SECONDS:.0f} seconds."
    return f"Could not connect to {url}: {_describe(reason)}"


def _describe(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return str(reason.strerror)
    return str(reason) or type(reason).__name__


def _since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _clean(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` on one screenful: truncated, with every secret replaced."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    if len(text) > MAX_BODY_CHARS:
        text = text[:MAX_BODY_CHARS] + " [truncated]"
    return text
