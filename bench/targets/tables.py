"""§2, a large events table on PostgreSQL (``big-tables-postgres.json``): ingest and lists.

Ingest and the list views at each size. The sizes are those of the run; issue 11 asks for
1M and 3M rows: the smallest size measured stands for 1M and the second for 3M. Larger
sizes still ("10M where the machine allows") are reported beside them, each view's time
and its growth over the smallest size, with no verdict of their own. The prune and
reprocess rows are ``bench/targets/commands.py``'s.
"""

from __future__ import annotations

from typing import Any

from bench.tables.lists import ADMIN_VIEWS, API_VIEWS
from bench.targets.rows import Row, Section, seconds, times

SECTION = "§2 A large table (PostgreSQL)"
SOURCE = "big-tables-postgres"
ROWS = Section(SECTION, SOURCE)
DEFAULT_SIZES = (1_000_000, 3_000_000)
INGEST_TARGET = 0.9
ADMIN_TARGET = 0.1
API_TARGET = 0.05
GROWTH_TARGET = 1.5

Sized = tuple[int, dict[str, Any] | None]  # a size asked for, and what was measured there


def rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    data = results.get(SOURCE, {}).get("data") or {}
    sizes = data.get("sizes", {})
    asked = data.get("sizes_asked") or list(DEFAULT_SIZES)
    by_size = [(size, sizes.get(str(size))) for size in asked]
    # The two sizes, then any larger ones, reported without a verdict.
    smallest, larger = by_size[0], by_size[min(1, len(by_size) - 1)]
    beyond = by_size[2:]
    api_sizes = [smallest, larger] if len(by_size) > 1 else [smallest]
    found = [_ingest_row(data.get("empty", {}).get("ingest"), *sized) for sized in by_size]
    for view in ADMIN_VIEWS:
        found.append(_time_row("admin changelist", "admin", view, ADMIN_TARGET, smallest))
        found.append(_growth_row("admin changelist", "admin", view, smallest, larger))
        found += [_beyond_row("admin changelist", "admin", view, smallest, b) for b in beyond]
    found.append(_no_count_row("admin changelist", "admin", by_size))
    for view in API_VIEWS:
        found += [_time_row("DRF events list", "api", view, API_TARGET, s) for s in api_sizes]
        found += [_beyond_row("DRF events list", "api", view, smallest, b) for b in beyond]
    found.append(_no_count_row("DRF events list", "api", by_size))
    return found


def _at(size: int, measured: dict[str, Any] | None) -> str:
    return f"{(measured['rows'] if measured else size):,} rows"


def _ingest_row(empty: dict[str, Any] | None, size: int, measured: dict[str, Any] | None) -> Row:
    value, shown = None, ""
    if measured and empty:
        value, here = measured["ingest_vs_empty"], measured["ingest"]
        shown = (
            f"{times(value)} (receiver/baseline {here['ratio']:.2f} here, "
            f"{empty['ratio']:.2f} on the empty table; receiver "
            f"{here['klarefi_per_second']:.0f}/s here, {empty['klarefi_per_second']:.0f}/s)"
        )
    what, target = "ingest rate vs the empty table's", f"≥ {INGEST_TARGET}x"
    return ROWS.at_least(what, _at(size, measured), value, INGEST_TARGET, target, shown)


def _time_row(title: str, key: str, view: str, limit: float, sized: Sized) -> Row:
    """One view's server time at one size."""
    size, measured = sized
    timed = measured[key][view] if measured else None
    value, shown = None, ""
    if timed:
        value = timed["seconds"]
        shown = (
            f"{seconds(value)} ({timed['queries']} queries; slowest "
            f"{seconds(timed['slowest_seconds'])}: `{timed['slowest_sql'][:70]}…`)"
        )
    what = f"{title}: {view}, server time"
    return ROWS.at_most(what, _at(size, measured), value, limit, f"< {limit:g} s", shown)


def _growth_row(title: str, key: str, view: str, smallest: Sized, larger: Sized) -> Row:
    """One view's time at the issue's larger size (3M) over its time at the smaller (1M)."""
    first, last = smallest[1], larger[1]
    growth, shown = None, ""
    if first and last and larger is not smallest:
        late, early = last[key][view]["seconds"], first[key][view]["seconds"]
        growth = late / early
        shown = f"{times(growth)} ({seconds(late)} vs {seconds(early)})"
    what = f"{title}: {view}, time at the larger size vs the smaller"
    at = f"{_at(*larger)} vs {_at(*smallest)}"
    return ROWS.at_most(what, at, growth, GROWTH_TARGET, f"≤ {GROWTH_TARGET}x", shown)


def _beyond_row(title: str, key: str, view: str, smallest: Sized, beyond: Sized) -> Row:
    """One view's time at a size past the issue's, and its growth over the smallest."""
    first, last = smallest[1], beyond[1]
    shown = None
    if first and last:
        late, early = last[key][view]["seconds"], first[key][view]["seconds"]
        shown = f"{seconds(late)}: {times(late / early)} its time at {_at(*smallest)}"
    return ROWS.reported(f"{title}: {view}, server time", _at(*beyond), shown)


def _no_count_row(title: str, key: str, by_size: list[Sized]) -> Row:
    measured = [m for _, m in by_size if m]
    counting = [
        f"{view} at {m['rows']:,} rows"
        for m in measured
        for view, timed in m[key].items()
        if timed["count_over_table"]
    ]
    shown = "counted: " + ", ".join(counting) if counting else "none"
    what = f"{title}: no COUNT(*) over the whole table"
    return ROWS.check(
        what, "every size and view", not counting if measured else None, "none", shown
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
        "stands for the issue's 1,000,000 and the second for its 3,000,000; a larger one "
        "is reported beside them. "
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
