# Two commands that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-fast lint typecheck docs tox bench dist clean

$(VENV)/.demo-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e . --group dev
	touch $@ $(VENV)/.demo-installed

# make demo PORT=8020 when 8000 is taken; DEMO_DIR is a copy of example_project (for tests).
PORT ?= 8000
DEMO_DIR ?= example_project
DEMO_PY := $(abspath $(PY))

demo: $(VENV)/.demo-installed
	cd $(DEMO_DIR) && $(DEMO_PY) manage.py migrate --noinput
	cd $(DEMO_DIR) && $(DEMO_PY) manage.py ensure_demo_admin
	@echo
	@echo "  Receiver:  http://127.0.0.1:$(PORT)/webhooks/klarefi"
	@echo "  Admin:     http://127.0.0.1:$(PORT)/admin/  (user admin, password admin; demo only)"
	@echo "  Send a signed test event from another terminal:"
	@echo "      $(PY) example_project/send_event.py $(PORT)"
	@echo "  or: cd example_project && $(if $(filter /%,$(PY)),,../)$(PY) manage.py klarefi_send_test_event case.completed --url http://127.0.0.1:$(PORT)"
	@echo
	cd $(DEMO_DIR) && $(DEMO_PY) manage.py runserver 127.0.0.1:$(PORT)

# The whole suite, on SQLite then PostgreSQL, in random order (pytest-randomly; the seed is
# printed: -p randomly -p "randomly_seed=N" repeats an order). scripts/system-deps.sh installs
# the Debian packages it needs first (as root; otherwise it prints the command to run).
test: $(VENV)/.test-installed
	scripts/system-deps.sh
	scripts/test.sh

# The loop to run after every change: the core's behaviour on SQLite and PostgreSQL (both
# passes at once), without the browser, servers or workers (docs/development.md).
# FAST adds pytest arguments: make test-fast FAST="-x --lf".
test-fast: $(VENV)/.test-installed
	scripts/test-fast.sh $(FAST)

# The release archives in dist/: the sdist and the wheel, twine check --strict, then
# tests/test_dist.py on them (their contents, and the README's quick start run against the
# wheel installed in a fresh virtualenv). See "Releasing" in docs/development.md.
dist: $(VENV)/.test-installed
	rm -rf dist
	$(PY) -m build --outdir dist .
	$(PY) -m twine check --strict dist/*
	KLAREFI_DIST_DIR=dist $(PY) -m pytest -p no:randomly -p no:cacheprovider tests/test_dist.py tests/test_version.py

lint: $(VENV)/.test-installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.test-installed
	$(VENV)/bin/mypy django_klarefi
	cd examples/typed_usage && $(abspath $(VENV))/bin/mypy .

# The Sphinx site, warnings as errors; open docs/_build/html/index.html.
docs: $(VENV)/.test-installed
	$(VENV)/bin/sphinx-build -W --keep-going -b html -q docs docs/_build/html

tox: $(VENV)/.test-installed
	scripts/tox.sh

# Every measurement of issue 11, then one report: bench/results/latest.md (see
# docs/performance.md). In process (for profiling), gunicorn + wrk and payload sizes on
# SQLite and, when scripts/postgres.sh finds a server, PostgreSQL, then the large tables on
# PostgreSQL. A step that fails does not stop the others; its targets are reported as not
# measured and `make bench` exits 1. The full run takes 25-35 minutes; a light one:
#   make bench BENCH_SIZES="20000 60000" BENCH_FAILED=2000 BENCH_HTTP="--rounds 1 --seconds 2"
BENCH_RESULTS ?= bench/results
BENCH_SIZES ?= 1000000 3000000
BENCH_FAILED ?= 100000
BENCH_HTTP ?=
BENCH_PAYLOADS ?=
BENCH_BIG ?=
BENCH_METRICS ?=
BENCH_PG ?= klarefi_bench

bench: $(VENV)/.test-installed
	$(PY) bench/report.py --results $(BENCH_RESULTS) --clear
	status=0; \
	$(PY) bench/run.py || status=1; \
	$(PY) bench/http.py --db sqlite --results $(BENCH_RESULTS) $(BENCH_HTTP) || status=1; \
	$(PY) bench/payloads.py --db sqlite --results $(BENCH_RESULTS) $(BENCH_PAYLOADS) || status=1; \
	$(PY) bench/metrics_cpu.py --results $(BENCH_RESULTS) $(BENCH_METRICS) || status=1; \
	if scripts/postgres.sh; then \
	  $(PY) bench/http.py --db postgres --pg-name $(BENCH_PG)_http \
	    --results $(BENCH_RESULTS) $(BENCH_HTTP) || status=1; \
	  $(PY) bench/payloads.py --db postgres --pg-name $(BENCH_PG)_payloads \
	    --results $(BENCH_RESULTS) $(BENCH_PAYLOADS) || status=1; \
	  $(PY) bench/big_tables.py --sizes $(BENCH_SIZES) --failed-rows $(BENCH_FAILED) \
	    --pg-name $(BENCH_PG)_big --results $(BENCH_RESULTS) $(BENCH_BIG) || status=1; \
	else \
	  echo "No PostgreSQL server: its targets are reported as not measured." >&2; \
	fi; \
	$(PY) bench/report.py --results $(BENCH_RESULTS) || status=1; \
	exit $$status

clean:
	rm -rf $(VENV) .tox build dist *.egg-info .artifacts docs/_build
