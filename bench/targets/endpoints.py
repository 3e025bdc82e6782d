"""§1, issue 16 §6: an endpoint in the settings and one in the database, beside ``default``.

From ``http-*.json`` (``bench/http.py``, ``bench/endpoint_targets.py``). For each path, the
endpoint's ingest ratio (its requests/s over the baseline's in the same round, the median
of the rounds) must not fall below the default endpoint's by more than the run's noise:
the spread (highest minus lowest) of the default endpoint's own ratios over the rounds of
that path. And per delivery, on every path: a settings endpoint runs no more SQL
statements than ``default``, and a cached database endpoint adds none.
"""

from __future__ import annotations

from typing import Any

from bench.targets.ingest import DATABASES, PATHS, SECTION
from bench.targets.rows import Row, Section, times

ENDPOINTS = {"settings": "settings endpoint", "database": "database endpoint"}
RATIO_TARGET = "≥ default's - noise"
STATEMENTS_TARGET = {
    "settings": "no more than default's",
    "database": "no more than default's (cached: no added query)",
}


def rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    found = []
    for db, name in DATABASES.items():
        section = Section(SECTION, f"http-{db}")
        data = results.get(section.source, {}).get("data") or {}
        measured = data.get("endpoints", {})
        for target, title in ENDPOINTS.items():
            for path, path_title in PATHS.items():
                default = data.get("paths", {}).get(path)
                ours = measured.get(target, {}).get(path)
                found.append(_ratio_row(section, f"{title}, {path_title}", name, default, ours))
            found.append(_statements_row(section, title, name, data.get("statements"), target))
    return found


def noise(default: dict[str, Any]) -> float:
    """The spread of the default endpoint's ratios over the rounds."""
    return max(default["rounds"]) - min(default["rounds"])


def _ratio_row(section: Section, title: str, db: str, default: dict[str, Any] | None,
               ours: dict[str, Any] | None) -> Row:  # fmt: skip
    what = f"{title}: requests/s ratio vs the default endpoint's"
    if default is None or ours is None:
        return section.check(what, db, None, RATIO_TARGET)
    spread = noise(default)
    rounds = ", ".join(f"{ratio:.2f}" for ratio in ours["rounds"])
    shown = (
        f"{times(ours['rps_ratio'])} vs default {times(default['rps_ratio'])}, noise "
        f"{spread:.2f} (rounds {rounds}; CPU per request {times(ours['cpu_ratio'])} vs "
        f"default {times(default['cpu_ratio'])})"
    )
    passed = ours["rps_ratio"] >= default["rps_ratio"] - spread
    return section.check(what, db, passed, RATIO_TARGET, shown)


Counts = dict[str, dict[str, float]]


def _statements_row(section: Section, title: str, db: str, statements: Counts | None,
                    target: str) -> Row:  # fmt: skip
    what = f"{title}: SQL statements per delivery vs the default endpoint's"
    if not statements or target not in statements:
        return section.check(what, db, None, STATEMENTS_TARGET[target])
    default, ours = statements["klarefi"], statements[target]
    shown = "; ".join(
        f"{PATHS[path]}: {ours[path]:g} vs {default[path]:g}" for path in PATHS if path in ours
    )
    passed = all(ours[path] <= default[path] for path in ours)
    return section.check(what, db, passed, STATEMENTS_TARGET[target], shown)


def notes(results: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    return {
        SECTION: [
            "Issue 16 §6: `eu` (in `KLAREFI_ENDPOINTS`) and `tenant-1` (an `Endpoint` row, "
            "its secret encrypted with a Fernet key made for the run) are served by the same "
            "gunicorn, in the same interleaved rounds as `default`. The noise of a path is "
            "the spread (highest - lowest) of the default endpoint's ratios over its rounds. "
            "The SQL statements are counted in process after a first delivery to each "
            "endpoint, which fills the database endpoint's cache."
        ]
    }
