#!/usr/bin/env python
"""How long deliveries wait while ``migrate`` adds named endpoints to a large events table.

A deploy as it happens: the previous release keeps serving while the new one migrates.

1. A fresh PostgreSQL database (``--pg-name``, dropped at the end unless ``--keep``) is
   migrated to ``0002`` and loaded with ``--rows`` events by ``COPY``
   (``bench/tables/load.py``).
2. A *deliverer* process runs the previous release's code (``--old-ref``, by default the
   commit before named endpoints, exported with ``git archive``): it signs new events and
   hands them to its receiver through Django's WSGI handler, one after the other, at
   most ``--rate`` a second, timing each, and retries a 409/503 after a pause, as Klarefi
   would. Redeliveries of stored events are mixed in, so that the dedupe path runs too.
3. Meanwhile this process runs ``manage.py migrate django_klarefi 0003`` with this
   checkout's code, and times it.
4. When it is done, the deliverer keeps going for a few seconds, then stops; every event
   it got a 2xx for must be stored exactly once.

``--plain`` runs, instead of the migration, the SQL a plain atomic migration would run
(ADD COLUMN, then the unique constraint built in the same transaction), for comparison.

Writes ``migration-lock-postgres.json`` under ``--results``.

Usage::

    .venv/bin/python bench/migration_lock.py --rows 1000000
    .venv/bin/python bench/migration_lock.py --rows 100000 --plain
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The deliverer runs this file with the previous release's tree first on the path.
sys.path[:1] = [os.environ.get("KLAREFI_BENCH_CODE", str(ROOT))]

RESULT_NAME = "migration-lock-postgres"
DEFAULT_OLD_REF = "f4c627c"  # main before named endpoints
PLAIN_SQL = [
    "BEGIN",
    "ALTER TABLE django_klarefi_event ADD COLUMN endpoint varchar(64) DEFAULT 'default' NOT NULL",
    "ALTER TABLE django_klarefi_event DROP CONSTRAINT django_klarefi_event_event_id_key",
    "ALTER TABLE django_klarefi_event ADD CONSTRAINT klarefi_event_unique_id "
    "UNIQUE (event_id, endpoint)",
    "CREATE INDEX klarefi_event_endpoint ON django_klarefi_event (endpoint, received_at DESC)",
    "COMMIT",
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=50.0, help="deliveries per second, at most")
    parser.add_argument("--after", type=float, default=3.0, help="seconds of deliveries after")
    parser.add_argument("--before", type=float, default=3.0, help="seconds of deliveries before")
    parser.add_argument("--old-ref", default=DEFAULT_OLD_REF)
    parser.add_argument("--pg-name", default="klarefi_bench_migration")
    parser.add_argument("--plain", action="store_true", help="a plain atomic migration instead")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--results", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--deliverer", metavar="STOP_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def environment(args: argparse.Namespace, python_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "KLAREFI_BENCH_DB": "postgres",
        "KLAREFI_BENCH_PG_NAME": args.pg_name,
        "PYTHONPATH": str(python_path),
        "KLAREFI_BENCH_CODE": str(python_path),
    }


# --- the deliverer: the previous release, serving -------------------------------------


def deliver(args: argparse.Namespace) -> None:
    """Run in the old code's tree until STOP_FILE exists; write what happened to --out."""
    import django

    django.setup()
    from django.test import Client

    import django_klarefi
    from django_klarefi.testing import build_event, encode_event, signed_headers

    client = Client()
    stop = Path(args.deliverer)
    samples: list[tuple[float, float, int, str]] = []  # (start, seconds, status, id)
    delivered: list[str] = []
    interval = 1.0 / args.rate
    number = 0
    while not stop.exists():
        number += 1
        redelivery = number % 5 == 0 and delivered
        event_id = delivered[number % len(delivered)] if redelivery else f"evt_during_{number}"
        body = encode_event(build_event("case.completed", id=event_id))
        status = 0
        began = time.time()
        for _attempt in range(100):
            start = time.perf_counter()
            response = client.post(
                "/webhooks/klarefi/",
                data=body,
                content_type="application/json",
                headers=signed_headers(body),
            )
            samples.append((time.time(), time.perf_counter() - start, response.status_code,
                            event_id))  # fmt: skip
            status = response.status_code
            if status not in (409, 503):
                break
            time.sleep(1.0)  # Klarefi's retry, much sooner
        if 200 <= status < 300 and not redelivery:
            delivered.append(event_id)
        time.sleep(max(0.0, interval - (time.time() - began)))
    Path(args.out).write_text(
        json.dumps({"code": django_klarefi.__file__, "samples": samples, "delivered": delivered})
    )


# --- the run ---------------------------------------------------------------------------


def export_old_code(ref: str, into: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "django_klarefi", "bench"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=__import__("io").BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def run_sql(args: argparse.Namespace, statements: list[str]) -> None:
    import psycopg

    with psycopg.connect(
        host=os.environ.get("KLAREFI_PG_HOST", "127.0.0.1"),
        port=os.environ.get("KLAREFI_PG_PORT", "5432"),
        user=os.environ.get("KLAREFI_PG_USER", "klarefi"),
        password=os.environ.get("KLAREFI_PG_PASSWORD", "klarefi"),
        dbname=args.pg_name,
        autocommit=True,
    ) as connection:
        for statement in statements:
            connection.execute(statement)


def summarize(samples: list[list[Any]], began: float, ended: float) -> dict[str, Any]:
    during = [s for s in samples if began <= s[0] <= ended or began <= s[0] + s[1] <= ended]
    seconds = sorted(s[1] for s in samples)
    statuses: dict[str, int] = {}
    for sample in samples:
        statuses[str(sample[2])] = statuses.get(str(sample[2]), 0) + 1
    return {
        "attempts": len(samples),
        "attempts_during_migration": len(during),
        "statuses": statuses,
        "max_seconds": max(seconds) if seconds else None,
        "max_seconds_during_migration": max((s[1] for s in during), default=None),
        "p99_seconds": seconds[int(len(seconds) * 0.99) - 1] if len(seconds) >= 100 else None,
        "median_seconds": statistics.median(seconds) if seconds else None,
        "over_2_seconds": sum(1 for s in seconds if s > 2.0),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.deliverer:
        deliver(args)
        return 0
    from bench.run import SAFE_PG_NAME, _pg_admin

    if not SAFE_PG_NAME.fullmatch(args.pg_name):
        raise SystemExit("--pg-name must be a plain lower-case name containing 'bench'")
    _pg_admin(f'DROP DATABASE IF EXISTS "{args.pg_name}" WITH (FORCE)')
    _pg_admin(f'CREATE DATABASE "{args.pg_name}"')
    work = Path(tempfile.mkdtemp(prefix="klarefi_migration_bench_"))
    old = work / "old"
    export_old_code(args.old_ref, old)
    python = sys.executable
    try:
        new_env = environment(args, ROOT)
        # Each tree runs from its own directory: "python -m" puts the current one first.
        subprocess.run([python, "-m", "django", "migrate", "django_klarefi", "0002",
                        "--verbosity", "0", "--skip-checks"], env=new_env, cwd=ROOT,
                       check=True)  # fmt: skip
        subprocess.run([python, "-m", "django", "migrate", "--verbosity", "0", "--skip-checks"],
                       env=environment(args, old), cwd=old, check=True)  # fmt: skip
        applied = subprocess.run(
            [python, "-m", "django", "showmigrations", "django_klarefi", "--skip-checks"],
            env=new_env, cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        assert "[ ] 0003_endpoints" in applied, applied  # not yet: the run is about it
        load = subprocess.run(
            [python, "-c", "import django; django.setup(); from bench.tables.load import load;"
             f"print(load(0, {args.rows}, 120, seed=1))"],
            env=environment(args, old), cwd=old, check=True, capture_output=True, text=True,
        )  # fmt: skip
        print(f"loaded {args.rows} rows in {float(load.stdout):.0f} s", flush=True)

        stop, out = work / "stop", work / "deliveries.json"
        deliverer = subprocess.Popen(
            [python, str(Path(__file__).resolve()), "--pg-name",
             args.pg_name, "--rate", str(args.rate), "--deliverer", str(stop), "--out", str(out)],
            env=environment(args, old), cwd=old,
        )  # fmt: skip
        time.sleep(args.before)
        began = time.time()
        if args.plain:
            run_sql(args, PLAIN_SQL)
        else:
            migrate = [python, "-m", "django", "migrate", "django_klarefi", "0003"]
            subprocess.run(
                [*migrate, "--verbosity", "0", "--skip-checks"], env=new_env, cwd=ROOT, check=True
            )
        ended = time.time()
        print(f"migration took {ended - began:.1f} s", flush=True)
        time.sleep(args.after)
        stop.touch()
        deliverer.wait(timeout=600)
        delivered = json.loads(out.read_text())
        check = subprocess.run(
            [python, "-c", "import django, json, sys; django.setup();"
             "from django_klarefi.models import Event;"
             "ids = json.load(sys.stdin);"
             "from collections import Counter;"
             "rows = Event.objects.filter(event_id__in=ids).values_list('event_id', flat=True);"
             "c = Counter(rows);"
             "print(json.dumps({'missing': [i for i in ids if c[i] == 0],"
             " 'duplicated': [i for i, n in c.items() if n > 1]}))"],
            input=json.dumps(delivered["delivered"]), env=new_env, cwd=ROOT, check=True,
            capture_output=True, text=True,
        )  # fmt: skip
        result = {
            "rows": args.rows,
            "kind": "plain atomic SQL" if args.plain else "0003_endpoints (concurrent)",
            "old_code": delivered["code"],
            "migration_seconds": ended - began,
            "deliveries": summarize(delivered["samples"], began, ended),
            "stored_check": json.loads(check.stdout),
            "delivered_new_events": len(delivered["delivered"]),
        }
        print(json.dumps(result, indent=2))
        results = Path(args.results)
        results.mkdir(parents=True, exist_ok=True)
        suffix = "-plain" if args.plain else ""
        (results / f"{RESULT_NAME}{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
        over = result["deliveries"]["over_2_seconds"]
        lost = result["stored_check"]["missing"] or result["stored_check"]["duplicated"]
        return 1 if over or lost else 0
    finally:
        if not args.keep:
            _pg_admin(f'DROP DATABASE IF EXISTS "{args.pg_name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
