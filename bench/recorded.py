"""The measurements' result files: one JSON file per harness and database.

Each measuring script writes its results with :func:`write` under ``--results`` (default
``bench/results/``), with the command line that produced them and when it finished;
``bench/report.py`` renders ``latest.md`` from whatever files are there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"

#: Every result file a harness writes, in the report's order: name -> what measured it.
RESULT_FILES = {
    "http-sqlite": "bench/http.py --db sqlite",
    "http-postgres": "bench/http.py --db postgres",
    "payloads-sqlite": "bench/payloads.py --db sqlite",
    "payloads-postgres": "bench/payloads.py --db postgres",
    "big-tables-postgres": "bench/big_tables.py",
    "metrics-cpu": "bench/metrics_cpu.py",
}


def add_results_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--results DIR`` option of every measuring script."""
    parser.add_argument(
        "--results",
        type=Path,
        default=RESULTS_DIR,
        metavar="DIR",
        help=f"where to write the results as JSON (default {RESULTS_DIR.relative_to(ROOT)}/)",
    )


def command_line(script: str, argv: list[str]) -> str:
    """The command as typed from the repository's root: interpreter, script, arguments."""
    python = Path(sys.executable)
    shown = str(python.relative_to(ROOT)) if python.is_relative_to(ROOT) else str(python)
    script_path = Path(script).resolve()
    if script_path.is_relative_to(ROOT):
        script = str(script_path.relative_to(ROOT))
    return shlex.join([shown, script, *argv])


def write(directory: Path, name: str, data: dict[str, Any], command: str) -> Path:
    """Write ``data`` as ``<directory>/<name>.json``, with the command and the moment."""
    import django

    if name not in RESULT_FILES:
        raise ValueError(f"unknown result file {name!r}")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    envelope = {
        "name": name,
        "command": command,
        "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "django": django.get_version(),
        "cpus": os.cpu_count(),
        "data": data,
    }
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(envelope, indent=1) + "\n")
    temporary.replace(path)  # a reader never sees half a file
    return path


def read_all(directory: Path) -> dict[str, dict[str, Any]]:
    """The result files found in ``directory``, by name."""
    found = {}
    for name in RESULT_FILES:
        path = directory / f"{name}.json"
        if path.exists():
            found[name] = json.loads(path.read_text())
    return found


def clear(directory: Path) -> list[Path]:
    """Remove the result files from ``directory`` (before a full run); the removed paths."""
    removed = []
    for name in RESULT_FILES:
        path = directory / f"{name}.json"
        if path.exists():
            path.unlink()
            removed.append(path)
    return removed
