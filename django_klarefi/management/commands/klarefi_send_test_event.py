"""``manage.py klarefi_send_test_event``: send signed, realistic test events to the receiver."""

from __future__ import annotations

import difflib
import json
import urllib.parse
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.urls import NoReverseMatch

from django_klarefi.endpoints import DEFAULT_ENDPOINT, delivery_path, get_endpoint, signing_secret
from django_klarefi.event_types import EVENT_TYPES
from django_klarefi.samples import sample_event
from django_klarefi.sending import (
    ApiAnswer,
    Delivery,
    SendingNotConfigured,
    default_url,
    request_api_test_event,
    send_test_event,
)

# What a non-2xx answer from the receiver most likely means.
STATUS_HINTS = {
    301: "redirected: check --url (scheme, host, trailing slash)",
    302: "redirected: check --url (scheme, host, trailing slash)",
    307: "redirected: check --url (scheme, host, trailing slash)",
    308: "redirected: check --url (scheme, host, trailing slash)",
    400: "the receiver refused the payload",
    401: "the signature was refused (wrong secret, or a timestamp outside the tolerance)",
    403: "forbidden: is something in front of the receiver (CSRF, auth, a proxy)?",
    404: "no receiver at this URL: check --url",
    405: "this URL does not accept POST: check --url",
    413: "the body is over KLAREFI_MAX_BODY_BYTES",
    500: "the receiver failed: see the event's error in the admin",
}


class Command(BaseCommand):
    help = (
        "Send signed, realistic Klarefi test events to this project's webhook receiver, "
        "over HTTP (default), in-process (--in-process), or through Klarefi's API (--via-api)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "event_types",
            nargs="*",
            metavar="EVENT_TYPE",
            help=f"Event types to send: {', '.join(EVENT_TYPES)}.",
        )
        parser.add_argument("--all", action="store_true", help="Send one event of each type.")
        parser.add_argument(
            "--url",
            help="The receiver's URL. A URL without a path (http://127.0.0.1:8011) gets the "
            "receiver's path from the URLconf. Default: http://127.0.0.1:8000 plus that path.",
        )
        parser.add_argument(
            "--secret",
            help="The signing secret. Default: the endpoint's first secret (for the default "
            "endpoint, the first KLAREFI_WEBHOOK_SECRET).",
        )
        parser.add_argument(
            "--endpoint",
            default=DEFAULT_ENDPOINT,
            metavar="NAME",
            help="Send to this named endpoint (KLAREFI_ENDPOINTS or an Endpoint row): signed "
            "with its secret, posted to its URL. Default: default.",
        )
        parser.add_argument("--case-id", help="The events' case_id (default: a generated one).")
        parser.add_argument(
            "--session-id", help="The events' session_id (default: a generated one)."
        )
        parser.add_argument(
            "--data", metavar="JSON", help="A JSON object merged into each event's data."
        )
        parser.add_argument(
            "--count", type=int, default=1, metavar="N", help="Send N events of each type."
        )
        parser.add_argument(
            "--timestamp-offset",
            type=int,
            default=0,
            metavar="SECONDS",
            help="Shift the signature's timestamp, to see what a stale (-600) or future "
            "(600) signature gets.",
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--in-process",
            action="store_true",
            help="No HTTP and no server: hand the signed body to the receiver's own code "
            "(verification, storage, handlers).",
        )
        mode.add_argument(
            "--via-api",
            action="store_true",
            help="Ask Klarefi's API (KLAREFI_API_BASE_URL, KLAREFI_API_KEY) to send a test "
            "event to --url.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["via_api"]:
                self._via_api(options)
            else:
                self._send(options)
        except SendingNotConfigured as exc:
            raise CommandError(f"{exc}{_how_to_fix(str(exc))}") from exc

    def _endpoint(self, options: dict[str, Any]) -> str:
        """The --endpoint name, once it is known to be an endpoint."""
        name: str = options["endpoint"]
        if name != DEFAULT_ENDPOINT and get_endpoint(name) is None:
            raise CommandError(
                f'Unknown endpoint "{name}": it is neither in KLAREFI_ENDPOINTS nor an active '
                "Endpoint row."
            )
        return name

    def _send(self, options: dict[str, Any]) -> None:
        event_types = self._event_types(options)
        endpoint = self._endpoint(options)
        if options["in_process"] and options["url"]:
            raise CommandError(
                "--in-process sends to the receiver's URL from the URLconf; --url is for HTTP."
            )
        count = options["count"]
        if count < 1:
            raise CommandError("--count must be at least 1.")
        data = self._data(options["data"])
        secret = options["secret"]
        if secret is not None and not secret.strip():
            raise CommandError("--secret is empty.")
        url = (
            None
            if options["in_process"]
            else (_receiver_url(options["url"], endpoint) or default_url(endpoint))
        )

        failed = 0
        for event_type in event_types:
            for _ in range(count):
                payload = sample_event(
                    event_type,
                    case_id=options["case_id"],
                    session_id=options["session_id"],
                    data=data,
                )
                delivery = send_test_event(
                    payload,
                    url=url,
                    secret=secret,
                    timestamp_offset=options["timestamp_offset"],
                    in_process=options["in_process"],
                    endpoint=endpoint,
                )
                self._report(delivery, options["verbosity"], url)
                if delivery.status is None:
                    hint = "" if options["url"] else " Or use --in-process to send without one."
                    raise CommandError(delivery.error + hint)
                if not delivery.ok:
                    failed += 1
        if failed:
            total = len(event_types) * count
            raise CommandError(f"{failed} of {total} deliveries did not get a 2xx answer.")

    def _event_types(self, options: dict[str, Any]) -> list[str]:
        names: list[str] = options["event_types"]
        if options["all"]:
            if names:
                raise CommandError("Pass event types or --all, not both.")
            return list(EVENT_TYPES)
        if not names:
            raise CommandError(
                "Name at least one event type, or pass --all. Types: " + ", ".join(EVENT_TYPES)
            )
        for name in names:
            if name not in EVENT_TYPES:
                close = difflib.get_close_matches(name, EVENT_TYPES, n=1)
                suggestion = f" Did you mean {close[0]!r}?" if close else ""
                raise CommandError(
                    f"Unknown event type {name!r}.{suggestion} Types: " + ", ".join(EVENT_TYPES)
                )
        return names

    def _data(self, text: str | None) -> dict[str, Any] | None:
        if text is None:
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CommandError(f"--data is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise CommandError('--data must be a JSON object, such as \'{"key": "value"}\'.')
        return data

    def _report(self, delivery: Delivery, verbosity: int, url: str | None) -> None:
        status = "-" if delivery.status is None else str(delivery.status)
        line = (
            f"{delivery.event_type:<28}  {delivery.event_id}  {status}  "
            f"{delivery.milliseconds:.1f} ms"
        )
        if delivery.ok:
            self.stdout.write(line, self.style.SUCCESS)
        else:
            detail = delivery.error or self._detail(delivery, url)
            self.stdout.write(f"{line}  {detail}" if detail else line, self.style.ERROR)
        if verbosity >= 2 and delivery.body:
            self.stdout.write(f"    {_one_line(delivery.body)}")

    def _detail(self, delivery: Delivery, url: str | None) -> str:
        assert delivery.status is not None
        hint = STATUS_HINTS.get(delivery.status, "")
        if delivery.status == 404 and url is not None:
            hint = f"{hint} ({_what_to_pass(url)})"
        try:
            answer = json.loads(delivery.body)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and "error" in answer:
            detail = answer.get("detail") or hint
            return f"{answer['error']}: {detail}" if detail else str(answer["error"])
        return hint

    def _via_api(self, options: dict[str, Any]) -> None:
        used = [
            flag
            for flag, given in (
                ("EVENT_TYPE", bool(options["event_types"])),
                ("--all", options["all"]),
                ("--case-id", options["case_id"] is not None),
                ("--session-id", options["session_id"] is not None),
                ("--data", options["data"] is not None),
                ("--count", options["count"] != 1),
                ("--timestamp-offset", options["timestamp_offset"] != 0),
            )
            if given
        ]
        if used:
            raise CommandError(
                f"--via-api lets Klarefi choose and sign the event; {', '.join(used)} "
                "cannot be used with it. Pass --url (your public receiver URL) and --secret."
            )
        secret = options["secret"]
        if secret is not None and not secret.strip():
            raise CommandError("--secret is empty.")
        name = self._endpoint(options)
        if secret is None and name != DEFAULT_ENDPOINT:
            secret = signing_secret(name)
        endpoint = _receiver_url(options["url"], name) or default_url(name)
        if _is_local(endpoint):
            self.stderr.write(
                f"Warning: Klarefi will be asked to send to {endpoint}, a loopback address "
                "that its servers cannot reach. Pass your public receiver URL with --url.",
                self.style.WARNING,
            )
        answer = request_api_test_event(endpoint, signing_secret=secret)
        self._report_api(answer)
        if answer.status is None:
            raise CommandError(answer.error)
        if not answer.ok:
            raise CommandError(f"Klarefi's API answered {answer.status}.")

    def _report_api(self, answer: ApiAnswer) -> None:
        status = "-" if answer.status is None else str(answer.status)
        line = f"via-api  POST {answer.url}  {status}  {answer.milliseconds:.1f} ms"
        text = answer.error or _one_line(answer.body)
        if text:
            line = f"{line}  {text}"
        self.stdout.write(line, self.style.SUCCESS if answer.ok else self.style.ERROR)


def _how_to_fix(problem: str) -> str:
    if "KLAREFI_WEBHOOK_SECRET" in problem:
        return " Set it, or pass --secret."
    if "the endpoint" in problem:
        return " Pass --secret, or fix the endpoint."
    if "KLAREFI_API_KEY" in problem:
        return (
            ' Set it in your settings, e.g. KLAREFI_API_KEY = os.environ.get("KLAREFI_API_KEY"),'
            " to use --via-api."
        )
    return ""


def _receiver_url(url: str | None, endpoint: str = DEFAULT_ENDPOINT) -> str | None:
    """``url`` as given, or for a URL with no path (``http://127.0.0.1:8011``, the form a
    server prints) that URL plus the ``endpoint``'s receiver path from the URLconf."""
    if not url:
        return url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return url
    try:
        path = delivery_path(endpoint)
    except NoReverseMatch:
        raise CommandError(
            f"--url {url} has no path, and the receiver's path cannot be found: the URLconf "
            "does not include django_klarefi.urls. Pass the receiver's full URL, for example "
            f"--url {urllib.parse.urlunsplit(parts._replace(path='/webhooks/klarefi'))}."
        ) from None
    return urllib.parse.urlunsplit(parts._replace(path=path))


def _what_to_pass(url: str, endpoint: str = DEFAULT_ENDPOINT) -> str:
    """The --url to pass instead of ``url``: its scheme and host, and the receiver's path."""
    parts = urllib.parse.urlsplit(url)
    try:
        path = delivery_path(endpoint)
    except NoReverseMatch:
        return "pass the receiver's full URL, scheme, host, port and path"
    receiver = urllib.parse.urlunsplit(parts._replace(path=path, query="", fragment=""))
    return f"this project's receiver is --url {receiver}"


def _one_line(text: str) -> str:
    try:
        return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return " ".join(text.split())


def _is_local(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or host.endswith(".localhost")
