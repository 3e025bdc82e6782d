"""Server time of the admin changelist and of the DRF events list over a large table.

Each view is requested through Django's test client as a logged-in superuser: one warm-up
request, then the median of ``repeat`` timed ones (middleware, queries, rendering: the
server's side). A last request, untimed, captures its SQL: the number of queries, the
slowest one, and whether any counts the whole table (``COUNT(*)`` with neither a WHERE
nor a LIMIT).
"""

from __future__ import annotations

import base64
import statistics
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

ADMIN = "/admin/django_klarefi/event/"
API = "/api/klarefi/events/"

#: The changelists measured; issue 11 §2 names all but "page 50".
ADMIN_VIEWS = (
    "unfiltered",
    "status = failed",
    "status = processed",
    "type = case.completed",
    "date: year",
    "date: month",
    "date: day",
    "search case id",
    "page 50",
)
#: The API pages measured: the first, the 20th by following ``next``, and one whose cursor
#: sits a tenth of the way from the oldest event.
API_VIEWS = ("first page", "page 20 (following next)", "deep cursor (oldest tenth)")
#: Pages followed for "page 20".
FOLLOWED_PAGES = 19


def admin_urls() -> dict[str, str]:
    """The changelist URL of each of :data:`ADMIN_VIEWS`; the drill-down on the latest day."""
    from django.db.models import Max

    from django_klarefi.models import Event

    latest = Event.objects.aggregate(latest=Max("received_at"))["latest"]
    year = f"received_at__year={latest.year}"
    month = f"{year}&received_at__month={latest.month}"
    urls = {
        "unfiltered": ADMIN,
        "status = failed": ADMIN + "?status=failed",
        "status = processed": ADMIN + "?status=processed",
        "type = case.completed": ADMIN + "?event_type=case.completed",
        "date: year": ADMIN + f"?{year}",
        "date: month": ADMIN + f"?{month}",
        "date: day": ADMIN + f"?{month}&received_at__day={latest.day}",
        "search case id": ADMIN + "?q=case_000000301",
        "page 50": ADMIN + "?p=50",
    }
    assert tuple(urls) == ADMIN_VIEWS
    return urls


def api_urls(client: Any) -> dict[str, str]:
    """The URL of each of :data:`API_VIEWS`, the cursors made by the API's own pages."""
    from django.db.models import Max, Min

    from django_klarefi.models import Event

    next_url = API
    for _ in range(FOLLOWED_PAGES):
        next_url = _json(client, next_url)["next"] or next_url
    span = Event.objects.aggregate(first=Min("received_at"), last=Max("received_at"))
    old = span["first"] + (span["last"] - span["first"]) / 10
    # DRF's cursor: base64 of "p=<position>" (``o`` and ``r`` when not zero); the position
    # is str() of the first ordering field, received_at, as its pages write it.
    cursor = base64.b64encode(urlencode({"p": str(old)}).encode("ascii")).decode("ascii")
    urls = {
        "first page": API,
        "page 20 (following next)": _path(next_url),
        "deep cursor (oldest tenth)": API + "?" + urlencode({"cursor": cursor}),
    }
    assert tuple(urls) == API_VIEWS
    return urls


def time_views(client: Any, urls: dict[str, str], repeat: int) -> dict[str, dict[str, Any]]:
    """Each URL's median server time, its query count and slowest query, and whether it
    counts the whole table."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    results = {}
    for name, url in urls.items():
        _get(client, url)  # warm
        times = []
        for _ in range(repeat):
            began = time.perf_counter()
            _get(client, url)
            times.append(time.perf_counter() - began)
        with CaptureQueriesContext(connection) as queries:
            _get(client, url)
        slowest = max(queries.captured_queries, key=lambda q: float(q["time"]))
        results[name] = {
            "seconds": statistics.median(times),
            "queries": len(queries),
            "count_over_table": any(counts_whole_table(q["sql"]) for q in queries),
            "slowest_sql": slowest["sql"][:300],
            "slowest_seconds": float(slowest["time"]),
        }
    return results


def counts_whole_table(sql: str) -> bool:
    """Whether ``sql`` is a ``COUNT`` with neither a WHERE nor a LIMIT: it reads every row."""
    upper = sql.upper()
    return "COUNT(" in upper and "WHERE" not in upper and "LIMIT" not in upper


def api_rows_shown(client: Any, url: str) -> int:
    """How many events the API page at ``url`` lists."""
    return len(_json(client, url)["results"])


def _get(client: Any, url: str) -> Any:
    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: {response.status_code}")
    return response


def _json(client: Any, url: str) -> Any:
    return _get(client, _path(url)).json()


def _path(url: str) -> str:
    """The path and query of an absolute URL (the API's ``next`` links are absolute)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def cursor_position(url: str) -> str | None:
    """The position inside the cursor of ``url``, for the record."""
    cursor = parse_qs(urlsplit(url).query).get("cursor")
    if not cursor:
        return None
    return parse_qs(base64.b64decode(cursor[0]).decode("ascii")).get("p", [None])[0]
