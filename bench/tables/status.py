"""``manage.py klarefi_status --json`` on a large table: its time, and its queries.

One warm-up run, then the median of ``repeat`` timed runs; a last one, untimed, captures
its SQL: the number of queries, the slowest, and whether any counts the whole table
(``COUNT(*)`` with neither a WHERE nor a LIMIT), as ``bench/tables/lists.py`` judges the
list views.
"""

from __future__ import annotations

import io
import statistics
import time
from typing import Any


def run_status() -> int:
    from django.core.management import call_command

    try:
        call_command("klarefi_status", "--json", stdout=io.StringIO(), stderr=io.StringIO())
    except SystemExit as exit:
        return int(exit.code or 0)
    return 0


def time_status(repeat: int) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    run_status()
    timings = []
    for _ in range(repeat):
        began = time.perf_counter()
        exit_status = run_status()
        timings.append(time.perf_counter() - began)
    with CaptureQueriesContext(connection) as queries:
        run_status()
    captured = queries.captured_queries
    slowest = max(captured, key=lambda q: float(q["time"]), default={"sql": "", "time": "0"})
    return {
        "seconds": statistics.median(timings),
        "exit_status": exit_status,
        "queries": len(captured),
        "slowest_seconds": float(slowest["time"]),
        "slowest_sql": slowest["sql"],
        "count_over_table": any(_counts_table(q["sql"]) for q in captured),
    }


def _counts_table(sql: str) -> bool:
    upper = sql.upper()
    return "COUNT(" in upper and "WHERE" not in upper and "LIMIT" not in upper
