# Two commands that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint typecheck docs tox bench clean

$(VENV)/.demo-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	cd example_project && ../$(PY) manage.py migrate --noinput
	cd example_project && ../$(PY) manage.py ensure_demo_admin
	@echo
	@echo "  Receiver:  http://127.0.0.1:8000/webhooks/klarefi"
	@echo "  Admin:     http://127.0.0.1:8000/admin/  (user admin, password admin; demo only)"
	@echo "  Send a signed test event from another terminal:"
	@echo "      .venv/bin/python example_project/send_event.py"
	@echo "  or: cd example_project && ../.venv/bin/python manage.py klarefi_send_test_event case.completed"
	@echo
	cd example_project && ../$(PY) manage.py runserver 127.0.0.1:8000

test: $(VENV)/.test-installed
	scripts/test.sh

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

# In process (for profiling), then gunicorn + wrk on SQLite and, when it can be had,
# PostgreSQL; the latter writes bench/results/latest.md.
bench: $(VENV)/.test-installed
	$(PY) bench/run.py
	if scripts/postgres.sh; then $(PY) bench/http.py; else $(PY) bench/http.py --db sqlite; fi

clean:
	rm -rf $(VENV) .tox build dist *.egg-info .artifacts docs/_build
