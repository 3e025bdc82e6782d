#!/usr/bin/env python
"""Render ``bench/results/latest.md``: every target of issue 11, measured, met or missed.

Reads the result files the harnesses wrote under ``--results`` (``bench/recorded.py``) and
writes one table per section of the issue: each target with where it was measured, the
value, the target, and **met**, **missed** or *not measured* (a target whose result file
is missing is never left out), then the exact commands that produced the values.

Usage::

    .venv/bin/python bench/report.py            # bench/results/*.json -> bench/results/latest.md
    .venv/bin/python bench/report.py --clear    # remove the result files (before a full run)
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(ROOT)]

from bench import recorded  # noqa: E402
from bench.targets import commands, endpoints, ingest, operating, payloads, tables  # noqa: E402
from bench.targets.rows import MET, MISSED, NOT_MEASURED, Row  # noqa: E402

SECTIONS = (ingest, endpoints, tables, commands, payloads, operating)


def all_rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    """Every row, by section (§1, §2, §3, §4), in each section the targets' order."""
    found = [row for module in SECTIONS for row in module.rows(results)]
    order = {section: number for number, section in enumerate(sorted({r.section for r in found}))}
    return sorted(found, key=lambda row: order[row.section])  # stable within a section


def render(results: dict[str, dict[str, Any]], directory: Path) -> str:
    rows = all_rows(results)
    notes: dict[str, list[str]] = {}
    for module in SECTIONS:
        for section, lines in module.notes(results).items():
            notes.setdefault(section, []).extend(lines)
    verdicts = Counter(row.verdict for row in rows if row.has_target)
    targets = sum(verdicts.values())
    extra = sum(not row.has_target for row in rows)
    lines = [
        "**Issue 11: every target, measured**",
        "",
        f"Rendered {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} by `bench/report.py` "
        f"from the result files in `{_shown(directory)}/`. **{targets} targets: "
        f"{verdicts[MET]} met, {verdicts[MISSED]} missed, {verdicts[NOT_MEASURED]} not "
        f"measured**; {_more(extra)} shown without a target.",
        "Measured on a machine that may have been running other work: compare ratios taken "
        "in the same run, not absolute rates.",
    ]
    for section in dict.fromkeys(row.section for row in rows):
        in_section = [row for row in rows if row.section == section]
        lines += ["", f"**{section}**", ""]
        lines += [note + "\n" for note in notes.get(section, [])]
        lines += ["| target | at | measured | aim | verdict |", "|---|---|---|---|---|"]
        lines += [
            "| "
            + " | ".join(
                _cell(text) for text in (row.what, row.at, row.measured, row.target, _mark(row))
            )
            + " |"
            for row in in_section
        ]
        lines += ["", "Commands:", ""]
        lines += [_command(results, source, directory) for source in _sources(in_section)]
    return "\n".join(lines) + "\n"


def _more(count: int) -> str:
    return f"{count} more measurement is" if count == 1 else f"{count} more measurements are"


def _sources(rows: list[Row]) -> list[str]:
    return list(dict.fromkeys(row.source for row in rows))


def _command(results: dict[str, dict[str, Any]], source: str, directory: Path) -> str:
    found = results.get(source)
    if found is None:
        return (
            f"- {source}: **not measured** (no `{source}.json` in `{_shown(directory)}/`; "
            f"`{recorded.RESULT_FILES[source]}` writes it)"
        )
    return (
        f"- {source}: `{found['command']}` (finished {found['finished_at']}; Python "
        f"{found['python']}, Django {found['django']}, {found['cpus']} CPUs)"
    )


def _mark(row: Row) -> str:
    return f"**{row.verdict}**" if row.verdict in (MET, MISSED) else row.verdict


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _shown(directory: Path) -> str:
    try:
        return str(directory.resolve().relative_to(ROOT))
    except ValueError:
        return str(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--results", type=Path, default=recorded.RESULTS_DIR, metavar="DIR",
        help="where the result files are (default bench/results/)",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, help="default: latest.md in --results")
    parser.add_argument(
        "--clear", action="store_true", help="remove the result files from --results, and stop"
    )
    args = parser.parse_args(argv)
    if args.clear:
        for path in recorded.clear(args.results):
            print(f"removed {_shown(path)}", file=sys.stderr)
        return 0
    text = render(recorded.read_all(args.results), args.results)
    output = args.output or args.results / "latest.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(text)
    print(f"wrote {_shown(output)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
