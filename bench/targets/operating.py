"""§5, operating it (issue 19): the metrics' CPU cost (``metrics-cpu.json``) and
``klarefi_status`` on the large table (``big-tables-postgres.json``)."""

from __future__ import annotations

from typing import Any

from bench.targets.rows import Row, Section, seconds, times

SECTION = "§5 Operating it (issue 19)"
METRICS = Section(SECTION, "metrics-cpu")
STATUS = Section(SECTION, "big-tables-postgres")
#: Receiver CPU per request with the metrics on, over the same with them off.
CPU_TARGET = 1.03
#: klarefi_status on the smallest large table (the issue's 1,000,000 rows).
STATUS_TARGET = 1.0


def rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    data = results.get(METRICS.source, {}).get("data") or {}
    found = []
    for path in ("new event", "rejected (bad signature)"):
        measured = (data.get("paths") or {}).get(path)
        value, shown = None, ""
        if measured:
            value = measured["ratio"]
            shown = (
                f"{times(value)} ({measured['cpu_ms_on']:.3f} ms on, "
                f"{measured['cpu_ms_off']:.3f} ms off; {data['rounds']} rounds of "
                f"{data['events']})"
            )
        what = f"receiver CPU per request, metrics on vs off: {path}"
        found.append(METRICS.at_most(what, data.get("db", "SQLite"), value, CPU_TARGET,
                                     f"≤ {CPU_TARGET}x", shown))  # fmt: skip
    tables = results.get(STATUS.source, {}).get("data") or {}
    sizes = tables.get("sizes") or {}
    smallest = min(sizes, key=int, default=None)
    measured = (sizes.get(smallest) or {}).get("status") if smallest else None
    value, shown, at = None, "", "1,000,000 rows"
    if measured:
        value, at = measured["seconds"], f"{sizes[smallest]['rows']:,} rows"
        shown = (
            f"{seconds(value)} ({measured['queries']} queries; slowest "
            f"{seconds(measured['slowest_seconds'])}: `{measured['slowest_sql'][:70]}…`)"
        )
    found.append(STATUS.at_most("klarefi_status --json, time", at, value, STATUS_TARGET,
                                f"< {STATUS_TARGET:g} s", shown))  # fmt: skip
    counted = None if not measured else not measured["count_over_table"]
    found.append(STATUS.check("klarefi_status: no COUNT(*) over the whole table", at, counted,
                              "none"))  # fmt: skip
    return found


def notes(results: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    data = results.get(METRICS.source, {}).get("data")
    if not data:
        return {}
    return {
        SECTION: [
            "Metrics CPU: in process through Django's WSGI handler, each round once with "
            "KLAREFI_METRICS on and once off, in alternating order; the median of on/off "
            "over rounds. It measures the hooks the processing path calls: until the core "
            "calls them, the ratio is noise around 1."
        ]
    }
