#!/usr/bin/env bash
# The fast loop (make test-fast): the tests that start no browser, server or worker
# (-m "not slow and not browser"; tests/fast_loop.py enforces it), on SQLite and, when
# scripts/postgres.sh finds a server, on PostgreSQL at the same time: each pass is one
# process, and they share little but the CPU. The PostgreSQL pass's output follows the
# SQLite one's. Extra arguments go to both pytest runs.
set -u
py=${PYTHON:-.venv/bin/python}
args=(-m "not slow and not browser" -p tests.fast_loop "$@")
pg_log=""
if scripts/postgres.sh; then
  pg_log=$(mktemp)
  KLAREFI_TEST_DB=postgres "$py" -m pytest "${args[@]}" >"$pg_log" 2>&1 &
  pg_pid=$!
else
  echo "!! No PostgreSQL server is reachable: the fast loop runs on SQLite only." >&2
fi
echo "== pytest on SQLite (fast loop)"
KLAREFI_TEST_DB=sqlite "$py" -m pytest "${args[@]}"
status=$?
if [ -n "$pg_log" ]; then
  wait "$pg_pid" || status=1
  echo "== pytest on PostgreSQL (fast loop)"
  cat "$pg_log"
  rm -f "$pg_log"
fi
exit $status
