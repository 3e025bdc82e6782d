"""§3, payload sizes: time and peak memory per request at 1 KiB, 64 KiB, 1 MiB
(``payloads-*.json``).

"Time grows linearly": the time each extra KiB costs from 64 KiB to 1 MiB is at most
:data:`LINEAR_SLACK` times what it costs from 1 KiB to 64 KiB (a cost per byte that
does not grow with the body). "Peak memory a small, stated multiple of the body": at most
:data:`MEMORY_MULTIPLE` times the body at 64 KiB and 1 MiB (at 1 KiB the ~20 KiB any Django
request allocates dominates, so no multiple of the body means anything there).
"""

from __future__ import annotations

from typing import Any

from bench.payloads import MEMORY_REQUESTS
from bench.targets.rows import Row, Section, times

SECTION = "§3 Payload sizes (in process)"
DATABASES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
SIZES = ("1 KiB", "64 KiB", "1 MiB")
LINEAR_SLACK = 1.5
MEMORY_MULTIPLE = 4.0


def per_kib_growth(measured: dict[str, Any], view: str) -> float:
    """Cost per extra KiB from 64 KiB to 1 MiB over that from 1 KiB to 64 KiB."""
    small, middle, large = (measured[size] for size in SIZES)
    below = (middle["seconds"][view] - small["seconds"][view]) / (
        (middle["bytes"] - small["bytes"]) / 1024
    )
    above = (large["seconds"][view] - middle["seconds"][view]) / (
        (large["bytes"] - middle["bytes"]) / 1024
    )
    return float(above / max(below, 1e-9))


def rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    found = []
    for db, name in DATABASES.items():
        section = Section(SECTION, f"payloads-{db}")
        measured = results.get(section.source, {}).get("data")
        found.append(_linear_row(section, name, measured))
        for size in SIZES[1:]:
            found.append(_memory_row(section, name, measured, size))
        vs_baseline = None
        if measured:
            ratios = (measured[s]["seconds"]["klarefi"] / measured[s]["seconds"]["baseline"]
                      for s in SIZES)  # fmt: skip
            vs_baseline = " / ".join(map(times, ratios)) + f" at {' / '.join(SIZES)}"
        found.append(section.reported("time per request vs the baseline's", name, vs_baseline))
    return found


def _linear_row(section: Section, db: str, measured: dict[str, Any] | None) -> Row:
    growth, shown = None, ""
    if measured:
        growth = per_kib_growth(measured, "klarefi")
        shown = (
            " / ".join(f"{1000 * measured[s]['seconds']['klarefi']:.2f}" for s in SIZES)
            + f" ms at {' / '.join(SIZES)}: each KiB above 64 KiB costs {times(growth)} "
            f"what one below does (baseline {times(per_kib_growth(measured, 'baseline'))})"
        )
    target = f"cost per KiB above 64 KiB ≤ {LINEAR_SLACK}x that below"
    what = "time per request grows linearly with the body"
    return section.at_most(what, db, growth, LINEAR_SLACK, target, shown)


def _memory_row(section: Section, db: str, measured: dict[str, Any] | None, size: str) -> Row:
    multiple, shown = None, ""
    if measured:
        peak, body = measured[size]["peak_bytes"], measured[size]["bytes"]
        multiple = peak["klarefi"] / body
        shown = (
            f"{multiple:.1f}x ({peak['klarefi'] / 1024:.0f} KiB; baseline "
            f"{peak['baseline'] / body:.1f}x)"
        )
    target = f"≤ {MEMORY_MULTIPLE:g}x the body"
    what = f"peak memory per request at {size}, as a multiple of the body"
    return section.at_most(what, db, multiple, MEMORY_MULTIPLE, target, shown)


def notes(results: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    return {
        SECTION: [
            "Through Django's WSGI handler, new distinct signed events padded to exactly each "
            "size, the receiver and the baseline in turns: the median time per request. Peak "
            "memory: tracemalloc's peak above the level before the request (Python "
            "allocations; the drivers' C buffers are not traced), the median of "
            f"{MEMORY_REQUESTS} requests. "
            f"Stated criteria: each KiB above 64 KiB costs at most {LINEAR_SLACK}x what one "
            f"below does; peak at most {MEMORY_MULTIPLE:g}x the body at 64 KiB and 1 MiB (at "
            "1 KiB the ~20 KiB any Django request allocates dominates)."
        ]
    }
