#!/usr/bin/env bash
# The Debian packages the test suite needs, installed with apt-get when run as root;
# otherwise the one command to run, and exit 1. make test runs this first; so does CI.
#   chromium, fonts-dejavu-core  the admin's browser tests (Playwright drives Debian's chromium)
#   postgresql                   the PostgreSQL pass (scripts/postgres.sh starts the cluster)
#   redis-server                 the django-tasks-rq worker tests
#   wrk                          the gunicorn benchmark's test (tests/test_bench.py)
#   pgbouncer                    servers behind PgBouncer in transaction pooling (tests/pgbouncer.py)
set -u
need=()
command -v chromium >/dev/null || need+=(chromium)
dpkg-query -W -f='${Status}' fonts-dejavu-core 2>/dev/null | grep -q "install ok installed" ||
  need+=(fonts-dejavu-core)
command -v pg_ctlcluster >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v wrk >/dev/null || need+=(wrk)
# PgBouncer for the tests that run servers behind it in transaction pooling (tests/pgbouncer.py).
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || need+=(pgbouncer)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Installing Debian's ${need[*]} for the test suite (apt-get)." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null && exit 0
  echo "apt-get could not install ${need[*]}." >&2
  exit 1
fi
echo "The test suite needs Debian's ${need[*]}. Install them, then run make test again:" >&2
echo "    sudo apt-get install -y ${need[*]}" >&2
exit 1
