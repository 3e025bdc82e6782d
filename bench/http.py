#!/usr/bin/env python
"""The receiver under gunicorn and wrk, against the hand-written baseline view.

For each database (SQLite file, PostgreSQL): gunicorn (``--workers`` sync workers) on
127.0.0.1 serves bench.settings_http (``DEBUG = False``, production logging), with both
views in one URLconf. Debian's ``wrk`` (``--connections`` connections) drives one target at
a time with ``bench/wrk_corpus.lua`` over a corpus of distinct signed events (about
``--body-bytes`` each), written before the window starts. Windows of ``--seconds`` are
interleaved, ``--rounds`` rounds per target, the order alternating (A B, B A, ...). The
CPU time of the gunicorn processes (master and workers, from /proc) is read around each
window.

Targets: the baseline; the receiver's ``default`` endpoint (``klarefi``); and, unless
``--endpoints`` says otherwise, an endpoint defined in ``KLAREFI_ENDPOINTS`` (``settings``)
and one in the database with an encrypted secret (``database``): issue 16 §6,
``bench/endpoint_targets.py``. Each target's ratio is taken against the baseline's window of
the same round; the SQL statements per delivery to each endpoint are counted in process.

Paths: *new* (sync processing), *redelivery* (each event the target accepted in its new
window, sent again, in a loop), and *task* (a second server with
``KLAREFI_PROCESSING = "task"`` on the Tasks framework's DummyBackend, which only
enqueues; the baseline does its usual insert there). After each server: no answer was
other than 2xx, no socket error, no corpus ran out, and every accepted event is stored
exactly once (and counted as redelivered as often as it was).

Writes ``http-<db>.json`` per database under ``--results`` (``bench/recorded.py``): per
path, the medians of the ratios klarefi/baseline of requests/s and CPU per request, and the
checks' problems; ``bench/report.py`` marks each target met or missed (and this script
prints that section). Only ratios measured in the same run are comparable; absolute rates
depend on the machine.

Usage::

    .venv/bin/python bench/http.py                       # SQLite and PostgreSQL
    .venv/bin/python bench/http.py --db sqlite --seconds 3 --results /tmp/quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:1] = [str(ROOT)]

from bench import endpoint_targets, recorded  # noqa: E402
from bench.run import SAFE_PG_NAME, bench_database, setup_django  # noqa: E402

TARGETS = ("baseline", "klarefi")
ENDPOINT_TARGETS = ("settings", "database")
URLS = {"baseline": "/baseline/", **endpoint_targets.URLS}
SCRIPT = ROOT / "bench" / "wrk_corpus.lua"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", nargs="+", choices=("sqlite", "postgres"), default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5, help="length of each window")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--body-bytes", type=int, default=1024, help="size of each event")
    parser.add_argument(
        "--max-rate", type=int, default=6000, help="requests/s the corpus is sized for"
    )
    parser.add_argument("--no-task", action="store_true", help="skip task mode")
    parser.add_argument(
        "--endpoints", nargs="*", choices=ENDPOINT_TARGETS, default=list(ENDPOINT_TARGETS),
        help="the endpoints measured besides default (default: both; none: --endpoints)",
    )  # fmt: skip
    parser.add_argument("--pg-name", default="klarefi_bench_http")
    recorded.add_results_argument(parser)
    parser.add_argument("--measure-one", choices=("sqlite", "postgres"), help=argparse.SUPPRESS)
    parser.add_argument("--raw", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.db = args.db or ["sqlite", "postgres"]
    if "postgres" in args.db and not SAFE_PG_NAME.fullmatch(args.pg_name):
        parser.error("--pg-name must be a plain lower-case name containing 'bench'")
    if shutil.which("wrk") is None:
        parser.error("Debian's wrk is needed: apt-get install wrk")
    return args


# --- the corpus --------------------------------------------------------------------------


class Corpus:
    """Distinct signed events of about ``body_bytes`` each, as wrk_corpus.lua reads them."""

    def __init__(self, body_bytes: int, directory: Path) -> None:
        from django.conf import settings

        from django_klarefi.samples import sample_event
        from django_klarefi.signature import sign_webhook_payload

        self.body_bytes = body_bytes
        self.directory = directory
        self.secret = settings.KLAREFI_WEBHOOK_SECRET  # default's; write() takes another
        self.sign = sign_webhook_payload
        self.sample = sample_event
        self.run = datetime.now(UTC).strftime("%H%M%S")
        self.files = 0

    def body(self, event_id: str) -> bytes:
        """A signed-to-be ``document.processed`` event padded to exactly ``body_bytes``."""
        payload = self.sample("document.processed", event_id=event_id)
        payload["data"]["extracted_text"] = ""
        short = len(json.dumps(payload, separators=(",", ":")))
        payload["data"]["extracted_text"] = "x" * max(0, self.body_bytes - short)
        return json.dumps(payload, separators=(",", ":")).encode()

    def write(
        self, prefix: str, count: int, secret: str | None = None
    ) -> tuple[Path, dict[str, bytes]]:
        """A corpus file of ``count`` new events signed with ``secret`` (default's); their
        lines by event id."""
        self.files += 1
        path = self.directory / f"corpus_{self.files}.txt"
        lines = {}
        with path.open("wb") as out:
            for number in range(count):
                event_id = f"evt_{prefix}_{self.run}_{self.files}_{number}"
                body = self.body(event_id)
                signature = self.sign(body, secret or self.secret)
                line = signature.encode() + b"\t" + body + b"\n"
                lines[event_id] = line
                out.write(line)
        return path, lines

    def subset(self, lines: dict[str, bytes], event_ids: set[str]) -> Path:
        """A corpus of those lines whose event was stored: the redeliveries."""
        self.files += 1
        path = self.directory / f"corpus_{self.files}.txt"
        with path.open("wb") as out:
            for event_id, line in lines.items():
                if event_id in event_ids:
                    out.write(line)
        return path


# --- gunicorn and wrk ----------------------------------------------------------------------


@contextmanager
def gunicorn(args: argparse.Namespace, processing: str, log: Path) -> Iterator[tuple[str, int]]:
    """gunicorn on a free port; yields (base URL, master pid)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.settings_http",
        KLAREFI_BENCH_PROCESSING=processing,
        PYTHONPATH=str(ROOT),
    )
    command = [
        sys.executable, "-m", "gunicorn", "bench.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
        "--worker-class", "sync", "--timeout", "60", "--graceful-timeout", "5",
    ]  # fmt: skip
    with log.open("ab") as out:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base, server, args.workers)
        yield base, server.pid
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_serving(base: str, server: subprocess.Popen[bytes], workers: int) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        try:
            urllib.request.urlopen(base + "/baseline/", timeout=1)
        except urllib.error.HTTPError:
            if len(_children(server.pid)) >= workers:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError("gunicorn did not answer")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(master: int) -> float:
    """User + system CPU of the gunicorn master and its live workers."""
    total = 0
    for pid in [master, *_children(master)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


@dataclass
class Window:
    target: str
    path: str
    requests: int
    seconds: float
    cpu: float
    statuses: dict[str, int]
    exhausted: int
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_per_request(self) -> float:
        return self.cpu / self.requests

    @property
    def accepted(self) -> int:
        return sum(count for status, count in self.statuses.items() if status.startswith("2"))


def window(
    args: argparse.Namespace, base: str, master: int, target: str, path: str, corpus: Path,
    *, wrap: bool = False, seconds: int | None = None,
) -> Window:  # fmt: skip
    env = dict(os.environ)
    env.update(
        KLAREFI_WRK_CORPUS=str(corpus),
        KLAREFI_WRK_THREADS=str(args.threads),
        KLAREFI_WRK_WRAP="1" if wrap else "0",
    )
    duration = seconds or args.seconds
    command = [
        "wrk", "-t", str(args.threads), "-c", str(args.connections),
        "-d", f"{int(duration)}s", "--timeout", "10s", "-s", str(SCRIPT), base + URLS[target],
    ]  # fmt: skip
    before = cpu_seconds(master)
    finished = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    cpu = cpu_seconds(master) - before
    line = next(
        (line for line in finished.stdout.splitlines() if line.startswith("KLAREFI_WRK ")), None
    )
    if finished.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed: {finished.stdout}\n{finished.stderr}")
    data = json.loads(line.removeprefix("KLAREFI_WRK "))
    return Window(
        target=target,
        path=path,
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        cpu=cpu,
        statuses=data["statuses"],
        exhausted=data["exhausted"],
        socket_errors=data["socket_errors"],
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


# --- one server's rounds and the checks ---------------------------------------------------


@dataclass
class Ledger:
    """What each target accepted, to check against the tables afterwards."""

    targets: tuple[str, ...] = TARGETS
    new: dict[str, int] = field(default_factory=dict)
    redelivered: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    windows: int = 0

    def __post_init__(self) -> None:
        self.new = dict.fromkeys(self.targets, 0)
        self.redelivered = dict.fromkeys(self.targets, 0)

    def record(self, measured: Window) -> None:
        self.windows += 1
        bad = {s: c for s, c in measured.statuses.items() if not s.startswith("2")}
        if bad:
            self.problems.append(f"{measured.target} {measured.path}: non-2xx answers {bad}")
        if measured.socket_errors:
            self.problems.append(
                f"{measured.target} {measured.path}: {measured.socket_errors} socket errors"
            )
        if measured.exhausted:
            self.problems.append(
                f"{measured.target} {measured.path}: the corpus ran out ({measured.exhausted} "
                "repeats); raise --max-rate"
            )
        book = self.redelivered if measured.path == "redelivery" else self.new
        book[measured.target] += measured.accepted


def stored_ids(target: str, prefix: str) -> set[str]:
    from bench.models import BaselineEvent
    from django_klarefi.models import Event

    model = BaselineEvent if target == "baseline" else Event
    return set(model.objects.filter(event_id__startswith=prefix).values_list("event_id", flat=True))


def serve_rounds(
    args: argparse.Namespace, corpus: Corpus, processing: str, paths: list[str], log: Path
) -> tuple[list[Window], Ledger]:
    windows: list[Window] = []
    targets = targets_of(args)
    ledger = Ledger(targets)
    per_window = int(args.max_rate * args.seconds)
    with gunicorn(args, processing, log) as (base, master):
        for target in targets:  # warm-up: imports, connections, caches; not measured
            warm, _ = corpus.write(
                f"{processing}_warm_{target}", int(args.max_rate * 2), _secret(target)
            )
            ledger.record(window(args, base, master, target, "warm-up", warm, seconds=2))
        for number in range(args.rounds):
            order = targets if number % 2 == 0 else targets[::-1]
            for target in order:
                prefix = f"evt_{processing}_r{number}_{target}"
                path, lines = corpus.write(prefix.removeprefix("evt_"), per_window, _secret(target))
                first = window(args, base, master, target, paths[0], path)
                ledger.record(first)
                windows.append(first)
                if "redelivery" in paths:
                    again = corpus.subset(lines, stored_ids(target, prefix))
                    second = window(args, base, master, target, "redelivery", again, wrap=True)
                    ledger.record(second)
                    windows.append(second)
                path.unlink()
    return windows, ledger


def targets_of(args: argparse.Namespace) -> tuple[str, ...]:
    """The baseline, default, then the endpoints measured (``--endpoints``)."""
    return (*TARGETS, *(t for t in ENDPOINT_TARGETS if t in args.endpoints))


def _secret(target: str) -> str | None:
    return None if target in TARGETS else endpoint_targets.secret(target)


def check_tables(ledgers: list[tuple[str, Ledger]], connections: int) -> list[str]:
    """Every accepted new event stored once; every accepted redelivery counted on its row."""
    from django.db.models import Count, Sum

    from bench.models import BaselineEvent
    from django_klarefi.models import Event

    problems = [problem for _, ledger in ledgers for problem in ledger.problems]
    targets = ledgers[0][1].targets
    receivers = [target for target in targets if target != "baseline"]
    accepted = {t: sum(ledger.new[t] for _, ledger in ledgers) for t in targets}
    redelivered = {t: sum(ledger.redelivered[t] for _, ledger in ledgers) for t in receivers}
    # wrk counts the answers it read; when a window ends it closes its connections with up
    # to one request each still in the server, which is stored but not counted. So each
    # table holds the accepted events plus at most that many more, never fewer, and the
    # unique event_id keeps every one of them stored once.
    windows = sum(ledger.windows for _, ledger in ledgers)
    slack = windows * connections
    counted = {"baseline": BaselineEvent.objects.count()}
    for target in receivers:
        name = endpoint_targets.ENDPOINT_NAMES[target]
        counted[target] = Event.objects.filter(endpoint=name).count()
    if sum(counted[t] for t in receivers) != Event.objects.count():
        problems.append("klarefi: events stored for an endpoint that was not measured")
    for target in targets:
        extra = counted[target] - accepted[target]
        if not 0 <= extra <= slack:
            problems.append(
                f"{target}: {counted[target]} rows for {accepted[target]} accepted "
                f"(at most {slack} more allowed, in flight when wrk stopped)"
            )
    for target in receivers:
        rows = Event.objects.filter(endpoint=endpoint_targets.ENDPOINT_NAMES[target])
        deliveries = rows.aggregate(total=Sum("deliveries"))["total"] or 0
        extra = deliveries - accepted[target] - redelivered[target]
        if not 0 <= extra <= slack:
            problems.append(
                f"{target}: {deliveries} deliveries counted for "
                f"{accepted[target] + redelivered[target]} accepted"
            )
    duplicated = (
        Event.objects.values("endpoint", "event_id").annotate(n=Count("pk")).filter(n__gt=1)
    ).exists()
    if duplicated:
        problems.append("klarefi: an event_id is stored twice")
    for processing, _ in ledgers:
        status = "pending" if processing == "task" else "processed"
        wrong = Event.objects.filter(event_id__startswith=f"evt_{processing}_").exclude(
            status=status
        )
        if wrong.exists():
            problems.append(f"{processing}: {wrong.count()} events not {status}")
    return problems


# --- the results ---------------------------------------------------------------------------


def ratios(windows: list[Window], path: str, target: str = "klarefi") -> dict[str, Any]:
    """``target`` against the baseline on ``path``: each round's ratio, and their medians.

    The result keeps the key ``klarefi`` for the receiver, whichever endpoint it is.
    """
    pair = {"baseline": "baseline", "klarefi": target}
    rounds = {t: [w for w in windows if w.target == pair[t] and w.path == path] for t in TARGETS}
    pairs = list(zip(rounds["baseline"], rounds["klarefi"], strict=True))
    return {
        "rps_ratio": statistics.median(k.rate / b.rate for b, k in pairs),
        "cpu_ratio": statistics.median(k.cpu_per_request / b.cpu_per_request for b, k in pairs),
        "rps": {t: statistics.median(w.rate for w in rounds[t]) for t in TARGETS},
        "cpu_ms": {
            t: 1000 * statistics.median(w.cpu_per_request for w in rounds[t]) for t in TARGETS
        },
        "p99_ms": {t: statistics.median(w.p99_ms for w in rounds[t]) for t in TARGETS},
        "rounds": [round(k.rate / b.rate, 3) for b, k in pairs],
        "cpu_rounds": [round(k.cpu_per_request / b.cpu_per_request, 3) for b, k in pairs],
    }


def measure(args: argparse.Namespace, db: str) -> dict[str, Any]:
    """Both servers' rounds on one fresh database, and the checks; in this process."""
    bench_args = argparse.Namespace(db=db, pg_name=args.pg_name, sqlite_path=None)
    args.endpoints, skipped = endpoint_targets.usable_targets(args.endpoints)
    if skipped:
        print(f"{db}: {skipped}", file=sys.stderr, flush=True)
    with bench_database(bench_args), tempfile.TemporaryDirectory() as temp:
        setup_django()
        if "database" in args.endpoints:
            endpoint_targets.create_database_endpoint()
        corpus = Corpus(args.body_bytes, Path(temp))
        log = ROOT / ".artifacts" / f"bench-gunicorn-{db}.log"
        log.parent.mkdir(exist_ok=True)
        log.unlink(missing_ok=True)
        print(f"{db}: sync mode ...", file=sys.stderr, flush=True)
        windows, ledger = serve_rounds(args, corpus, "sync", ["new", "redelivery"], log)
        ledgers = [("sync", ledger)]
        names = ["new", "redelivery"]
        if not args.no_task:
            print(f"{db}: task mode ...", file=sys.stderr, flush=True)
            task_windows, task_ledger = serve_rounds(args, corpus, "task", ["task"], log)
            ledgers.append(("task", task_ledger))
            windows += task_windows
            names.append("task")
        paths = {path: ratios(windows, path) for path in names}
        endpoints = {
            target: {path: ratios(windows, path, target) for path in names}
            for target in args.endpoints
        }
        problems = check_tables(ledgers, args.connections)
        # After the checks, which count every row: these deliveries add their own.
        statements = endpoint_targets.count_statements(["klarefi", *args.endpoints])
        from django.db import connections

        connections.close_all()
    return {
        "paths": paths,
        "endpoints": endpoints,
        "endpoint_names": {t: endpoint_targets.ENDPOINT_NAMES[t] for t in args.endpoints},
        "statements": statements,
        "problems": problems,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.measure_one:
        # A child: one database per process, since Django is set up once per process.
        Path(args.raw).write_text(json.dumps(measure(args, args.measure_one)))
        return 0
    given = argv if argv is not None else sys.argv[1:]
    command = recorded.command_line(__file__, given)
    settings = {
        name: getattr(args, name)
        for name in (
            "workers", "threads", "connections", "rounds", "seconds", "body_bytes", "endpoints"
        )
    }  # fmt: skip
    problems = False
    for db in args.db:
        with tempfile.NamedTemporaryFile(suffix=".json") as raw:
            child = [sys.executable, __file__, *given, "--measure-one", db, "--raw", raw.name]
            subprocess.run(child, check=True)
            measured = json.loads(Path(raw.name).read_text())
        recorded.write(args.results, f"http-{db}", {"settings": settings, **measured}, command)
        problems = problems or bool(measured["problems"])
    from bench.targets import endpoints, ingest

    found = recorded.read_all(args.results)
    http = {name: found[name] for name in found if name.startswith("http-")}
    for row in ingest.rows(http) + endpoints.rows(http):
        if row.at in {ingest.DATABASES[db] for db in args.db}:
            print(f"{row.at}: {row.what}: {row.measured or '-'} [{row.target}: {row.verdict}]")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
