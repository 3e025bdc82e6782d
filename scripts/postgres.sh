#!/usr/bin/env bash
# Make a PostgreSQL server reachable for the test suite, if this machine can have one.
#   scripts/postgres.sh            exit 0 when reachable (starting the local cluster if need be), 1 if not
# Honours KLAREFI_PG_HOST/PORT/USER/PASSWORD (defaults: 127.0.0.1, 5432, klarefi, klarefi).
set -u
host=${KLAREFI_PG_HOST:-127.0.0.1}
port=${KLAREFI_PG_PORT:-5432}
user=${KLAREFI_PG_USER:-klarefi}
password=${KLAREFI_PG_PASSWORD:-klarefi}

ready() { command -v pg_isready >/dev/null && pg_isready -q -h "$host" -p "$port"; }

if ! ready && command -v pg_ctlcluster >/dev/null && [ "$(id -u)" = 0 ]; then
  pg_ctlcluster 15 main start >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do ready && break; sleep 0.5; done
fi
ready || exit 1

# The role the tests log in as: it creates and drops the test databases.
if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
  su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='$user'\"" 2>/dev/null | grep -q 1 ||
    su postgres -c "psql -qc \"CREATE ROLE $user LOGIN SUPERUSER PASSWORD '$password'\"" >/dev/null
fi
PGPASSWORD=$password psql -qtAc "SELECT 1" -h "$host" -p "$port" -U "$user" postgres >/dev/null 2>&1
