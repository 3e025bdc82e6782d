#!/usr/bin/env python
"""Time and peak memory per request at 1 KiB, 64 KiB and 1 MiB bodies, in one process.

Through Django's WSGI handler (what gunicorn calls), the receiver and the baseline view
take turns, new distinct signed events each (``document.processed``, padded with
extracted text to the exact size; 1 MiB is ``KLAREFI_MAX_BODY_BYTES``'s default, which is
accepted). Time: median seconds per request over interleaved chunks, and klarefi/baseline.
Peak memory: ``tracemalloc``'s peak above the level before the request, for requests run
one at a time in a separate pass (tracemalloc slows everything, so that pass is untimed),
as a multiple of the body size. Python allocations only: the database driver's and
SQLite's C buffers are not traced.

Writes ``payloads-<db>.json`` under ``--results`` (``bench/recorded.py``), which
``bench/report.py`` judges against issue 11 §3, and prints the table.

Usage::

    .venv/bin/python bench/payloads.py                  # SQLite
    .venv/bin/python bench/payloads.py --db postgres    # creates and drops klarefi_bench_payloads
    .venv/bin/python bench/payloads.py --requests 8     # fewer timed requests per size
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(ROOT)]

from bench import recorded  # noqa: E402
from bench.http import Corpus  # noqa: E402
from bench.run import Requests, bench_database, setup_django  # noqa: E402

SIZES = {"1 KiB": 1024, "64 KiB": 64 * 1024, "1 MiB": 1024 * 1024}
REQUESTS = {"1 KiB": 300, "64 KiB": 120, "1 MiB": 24}
#: Requests per view and size in the untimed pass that measures peak memory.
MEMORY_REQUESTS = 6
VIEWS = ("baseline", "klarefi")


def bodies(corpus: Corpus, size: int, count: int, tag: str) -> list[bytes]:
    corpus.body_bytes = size
    return [corpus.body(f"evt_payload_{corpus.run}_{tag}_{n}") for n in range(count)]


def environ(requests: Requests, view: str, body: bytes) -> dict[str, Any]:
    return requests.environs(view, [body])[0]


def send(handler: Any, env: dict[str, Any]) -> None:
    statuses: list[str] = []
    result = handler(env, lambda status, headers, exc_info=None: statuses.append(status))
    b"".join(result)
    if not statuses[0].startswith("200"):
        raise RuntimeError(f"answer {statuses[0]}")


def measure(handler: Any, counts: dict[str, int], chunk: int = 4) -> dict[str, Any]:
    """Per size: the median seconds per request and peak bytes of each view."""
    requests = Requests()
    corpus = Corpus(1024, ROOT)
    results: dict[str, Any] = {}
    for label, size in SIZES.items():
        count = counts[label]
        per_view = {v: bodies(corpus, size, count, f"{label[:-4]}{v}") for v in VIEWS}
        envs = {v: [environ(requests, v, b) for b in per_view[v]] for v in VIEWS}
        assert all(len(b) == size for v in VIEWS for b in per_view[v]), "padding"
        times: dict[str, list[float]] = {v: [] for v in VIEWS}
        for start in range(0, count, chunk):
            order = VIEWS if (start // chunk) % 2 == 0 else VIEWS[::-1]
            for view in order:
                began = time.perf_counter()
                for env in envs[view][start : start + chunk]:
                    send(handler, env)
                times[view].append((time.perf_counter() - began) / chunk)
        # Peak memory, one request at a time, on new events of the same size.
        peaks: dict[str, list[int]] = {v: [] for v in VIEWS}
        extra = {v: bodies(corpus, size, MEMORY_REQUESTS, f"{label[:-4]}mem{v}") for v in VIEWS}
        tracemalloc.start()
        try:
            for view in VIEWS:
                for body in extra[view]:
                    env = environ(requests, view, body)
                    tracemalloc.reset_peak()
                    before, _ = tracemalloc.get_traced_memory()
                    send(handler, env)
                    _, peak = tracemalloc.get_traced_memory()
                    peaks[view].append(peak - before)
        finally:
            tracemalloc.stop()
        results[label] = {
            "bytes": size,
            "seconds": {v: statistics.median(times[v]) for v in VIEWS},
            "peak_bytes": {v: statistics.median(peaks[v]) for v in VIEWS},
        }
    return results


def table(db: str, results: dict[str, Any]) -> str:
    first = results["1 KiB"]
    lines = [
        f"Payload sizes on {db} (in process, through the WSGI handler; machine shared):",
        "",
        "| body | baseline ms/request | klarefi ms/request | klarefi/baseline "
        "| klarefi time / its 1 KiB time | baseline peak | klarefi peak "
        "| klarefi peak / body |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        s, p = r["seconds"], r["peak_bytes"]
        lines.append(
            f"| {label} | {1000 * s['baseline']:.2f} | {1000 * s['klarefi']:.2f} "
            f"| {s['klarefi'] / s['baseline']:.2f}x "
            f"| {s['klarefi'] / first['seconds']['klarefi']:.1f}x "
            f"| {p['baseline'] / 1024:.0f} KiB | {p['klarefi'] / 1024:.0f} KiB "
            f"| {p['klarefi'] / r['bytes']:.1f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--pg-name", default="klarefi_bench_payloads")
    parser.add_argument(
        "--requests",
        type=int,
        metavar="N",
        help="timed requests per view and size (default: "
        + ", ".join(f"{n} at {label}" for label, n in REQUESTS.items())
        + ")",
    )
    recorded.add_results_argument(parser)
    args = parser.parse_args(argv)
    counts = dict.fromkeys(REQUESTS, args.requests) if args.requests else REQUESTS
    with bench_database(argparse.Namespace(db=args.db, pg_name=args.pg_name, sqlite_path=None)):
        handler = setup_django()
        results = measure(handler, counts)
        from django.db import connections

        connections.close_all()
    given = argv if argv is not None else sys.argv[1:]
    command = recorded.command_line(__file__, given)
    recorded.write(args.results, f"payloads-{args.db}", results, command)
    print(table(args.db, results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
