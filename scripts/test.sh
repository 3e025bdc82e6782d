#!/usr/bin/env bash
# The whole suite: a SQLite pass, then a PostgreSQL pass when a server can be had.
# KLAREFI_REQUIRE_POSTGRES=1 (set by .ci/run) turns a missing PostgreSQL into a failure.
set -eu
py=${PYTHON:-.venv/bin/python}
echo "== pytest on SQLite"
KLAREFI_TEST_DB=sqlite "$py" -m pytest "$@"
if scripts/postgres.sh; then
  echo "== pytest on PostgreSQL"
  KLAREFI_TEST_DB=postgres "$py" -m pytest "$@"
elif [ "${KLAREFI_REQUIRE_POSTGRES:-0}" = 1 ]; then
  echo "PostgreSQL is required (KLAREFI_REQUIRE_POSTGRES=1) but no server is reachable." >&2
  exit 1
else
  echo "!! No PostgreSQL server is reachable: ran the SQLite pass only." >&2
  echo "!! The PostgreSQL-only tests (races, locking, load) did not run." >&2
fi
