#!/usr/bin/env python
"""The receiver's CPU per request with the Prometheus metrics on, against the same run with
them off (issue 19: at most 3% more).

In process, through Django's WSGI handler: rounds of signed new events and of forged
deliveries (refused 401), each round once with ``KLAREFI_METRICS`` on and once off, in
alternating order; CPU is the process's (``time.process_time``), so the machine's other
load counts less than in wall time. The ratio is the median over rounds of on/off.

Usage::

    .venv/bin/python bench/metrics_cpu.py                       # SQLite, 12 rounds
    .venv/bin/python bench/metrics_cpu.py --rounds 4 --events 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(ROOT)]

from bench import recorded  # noqa: E402
from bench.run import SAFE_PG_NAME, Requests, bench_database, send_all, setup_django  # noqa: E402

RESULT_NAME = "metrics-cpu"
PATHS = ("new event", "rejected (bad signature)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--events", type=int, default=200, help="requests per path and round")
    parser.add_argument("--sqlite-path", help="SQLite file to create (default: a temporary one)")
    parser.add_argument("--pg-name", default="klarefi_bench_metrics")
    recorded.add_results_argument(parser)
    args = parser.parse_args(argv)
    if min(args.rounds, args.events) < 1:
        parser.error("--rounds and --events must be positive")
    if args.db == "postgres" and not SAFE_PG_NAME.fullmatch(args.pg_name):
        parser.error("--pg-name must be a plain lower-case name containing 'bench'")
    return args


def environs(requests: Requests, path: str, count: int) -> list[dict[str, Any]]:
    if path == "new event":
        return requests.environs("klarefi", requests.new_bodies(count))
    forged = requests.environs("klarefi", requests.new_bodies(count))
    for environ in forged:
        environ["HTTP_X_KLAREFI_SIGNATURE"] = "t=1,v1=" + "0" * 64
    return forged


def cpu_per_request(handler: Any, batch: list[dict[str, Any]], metrics_on: bool) -> float:
    """CPU milliseconds per request of ``batch`` with the metrics on or off."""
    from django.test import override_settings

    with override_settings(KLAREFI_METRICS=None if metrics_on else False):
        began = time.process_time()
        statuses = send_all(handler, batch)
        spent = time.process_time() - began
    if len(statuses) != len(batch):
        raise SystemExit("a request was not answered")
    return spent * 1000 / len(batch)


def measure(args: argparse.Namespace, handler: Any) -> dict[str, Any]:
    from django_klarefi import metrics

    requests = Requests()
    results: dict[str, Any] = {}
    for path in PATHS:
        cpu_per_request(handler, environs(requests, path, 20), True)  # warm-up
        cpu_per_request(handler, environs(requests, path, 20), False)
        ratios, on_ms, off_ms = [], [], []
        for number in range(args.rounds):
            order = (True, False) if number % 2 == 0 else (False, True)
            spent = {}
            for metrics_on in order:
                batch = environs(requests, path, args.events)  # built before the clock
                spent[metrics_on] = cpu_per_request(handler, batch, metrics_on)
            on_ms.append(spent[True])
            off_ms.append(spent[False])
            ratios.append(spent[True] / spent[False])
        results[path] = {
            "ratio": statistics.median(ratios),
            "rounds": ratios,
            "cpu_ms_on": statistics.median(on_ms),
            "cpu_ms_off": statistics.median(off_ms),
        }
    return {
        "rounds": args.rounds,
        "events": args.events,
        "db": args.db,
        "metrics_installed": metrics.metrics_enabled(),
        "paths": results,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = recorded.command_line(__file__, argv if argv is not None else sys.argv[1:])
    with bench_database(args):
        handler = setup_django()
        data = measure(args, handler)
    path = recorded.write(args.results, RESULT_NAME, data, command)
    for name, measured in data["paths"].items():
        print(
            f"{name}: metrics on/off CPU per request {measured['ratio']:.3f}x "
            f"({measured['cpu_ms_on']:.3f} ms vs {measured['cpu_ms_off']:.3f} ms)"
        )
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
