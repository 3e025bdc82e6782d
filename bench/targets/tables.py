"""§2, a large events table on PostgreSQL (``big-tables-postgres.json``): ingest and lists.

Ingest and the list views at each size. The sizes are those of the run; issue 11 asks for
1M and 3M rows: the smallest size measured stands for 1M and the largest for 3M. The
prune and reprocess rows are ``bench/targets/commands.py``'s.
"""

from __future__ import annotations

from typing import Any

from bench.tables.lists import ADMIN_VIEWS, API_VIEWS
from bench.targets.rows import Row, checked, judged, seconds, times

SECTION = "§2 A large table (PostgreSQL)"
SOURCE = "big-tables-postgres"
DEFAULT_SIZES = (1_000_000, 3_000_000)
INGEST_TARGET = 0.9
ADMIN_TARGET = 0.1
API_TARGET = 0.05
GROWTH_TARGET = 1.5


def rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    data = results.get(SOURCE, {}).get("data") or {}
    sizes = data.get("sizes", {})
    asked = data.get("sizes_asked") or list(DEFAULT_SIZES)
    by_size = [(size, sizes.get(str(size))) for size in asked]
    smallest, largest = by_size[0], by_size[-1]
    return [
        *_ingest_rows(data, by_size),
        *_list_rows("admin changelist", ADMIN_VIEWS, "admin", ADMIN_TARGET, smallest, largest),
        _no_count_row("admin changelist", "admin", by_size),
        *_list_rows("DRF events list", API_VIEWS, "api", API_TARGET, smallest, largest),
        _no_count_row("DRF events list", "api", by_size),
    ]


def _at(size: int, measured: dict[str, Any] | None) -> str:
    return f"{(measured['rows'] if measured else size):,} rows"


def _ingest_rows(data: dict[str, Any], by_size: list[tuple[int, Any]]) -> list[Row]:
    empty = data.get("empty", {}).get("ingest")
    found = []
    for size, measured in by_size:
        shown = ""
        if measured:
            here = measured["ingest"]
            shown = (
                f"{times(measured['ingest_vs_empty'])} (receiver/baseline {here['ratio']:.2f} "
                f"here, {empty['ratio']:.2f} on the empty table; receiver "
                f"{here['klarefi_per_second']:.0f}/s here, {empty['klarefi_per_second']:.0f}/s)"
            )
        found.append(
            judged(
                SECTION,
                "ingest rate vs the empty table's",
                _at(size, measured),
                measured["ingest_vs_empty"] if measured else None,
                limit=INGEST_TARGET,
                at_least=True,
                shown=shown,
                target=f"≥ {INGEST_TARGET}x",
                source=SOURCE,
            )
        )
    return found


def _list_rows(title: str, views: tuple[str, ...], key: str, limit: float,
               smallest: tuple[int, Any], largest: tuple[int, Any]) -> list[Row]:  # fmt: skip
    """Each view's time at the smallest size (and at the largest for the API), and, for
    the admin, its growth from the smallest size to the largest."""
    found = []
    sized = [smallest, largest] if key == "api" and largest is not smallest else [smallest]
    for view in views:
        for size, measured in sized:
            timed = measured[key][view] if measured else None
            shown = ""
            if timed:
                shown = (
                    f"{seconds(timed['seconds'])} ({timed['queries']} queries; slowest "
                    f"{seconds(timed['slowest_seconds'])}: `{timed['slowest_sql'][:70]}…`)"
                )
            found.append(
                judged(
                    SECTION,
                    f"{title}: {view}, server time",
                    _at(size, measured),
                    timed["seconds"] if timed else None,
                    limit=limit,
                    at_least=False,
                    shown=shown,
                    target=f"< {limit:g} s",
                    source=SOURCE,
                )
            )
        if key != "admin":
            continue
        first, last = smallest[1], largest[1]
        growth = None
        if first and last and largest is not smallest:
            growth = last[key][view]["seconds"] / first[key][view]["seconds"]
        shown = ""
        if growth is not None:
            shown = (
                f"{times(growth)} ({seconds(last[key][view]['seconds'])} vs "
                f"{seconds(first[key][view]['seconds'])})"
            )
        found.append(
            judged(
                SECTION,
                f"{title}: {view}, time at the largest size vs the smallest",
                f"{_at(*largest)} vs {_at(*smallest)}",
                growth,
                limit=GROWTH_TARGET,
                at_least=False,
                shown=shown,
                target=f"≤ {GROWTH_TARGET}x",
                source=SOURCE,
            )
        )
    return found


def _no_count_row(title: str, key: str, by_size: list[tuple[int, Any]]) -> Row:
    measured = [(size, m) for size, m in by_size if m]
    counting = [
        f"{view} at {m['rows']:,} rows"
        for _, m in measured
        for view, timed in m[key].items()
        if timed["count_over_table"]
    ]
    return checked(
        SECTION,
        f"{title}: no COUNT(*) over the whole table",
        "every size and view",
        (not counting) if measured else None,
        shown="none" if not counting else "counted: " + ", ".join(counting),
        target="none",
        source=SOURCE,
    )


def notes(results: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """What the §2 rows' sizes are, against the issue's."""
    data = results.get(SOURCE, {}).get("data")
    if not data:
        return {}
    sizes = [int(size) for size in data["sizes"]]
    lines = [
        "Sizes measured: "
        + ", ".join(f"{data['sizes'][str(size)]['rows']:,}" for size in sizes)
        + f" rows (bulk-loaded with COPY, received over {data['days']} days); the smallest "
        "stands for the issue's 1,000,000 and the largest for its 3,000,000. "
        f"Admin and API times: the median of {data['repeat']} requests through Django's "
        f"test client. Prune batches of {data['batch_size']:,} rows.",
    ]
    if sizes and (min(sizes) < DEFAULT_SIZES[0] or max(sizes) < DEFAULT_SIZES[1]):
        lines.append(
            "**A light run**: smaller tables than the issue's 1M and 3M rows, so these "
            "verdicts say nothing about its targets."
        )
    if not sizes or max(sizes) < 10_000_000:
        lines.append("10,000,000 rows were not attempted in this run.")
    return {SECTION: lines}
