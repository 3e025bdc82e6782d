"""Every Python block in the README and in docs/ runs in the suite, so a documented example
that breaks fails it.

Each fenced ``python`` block is preceded by one of these HTML comments (invisible on GitHub
and in the Sphinx site); a block without one fails :func:`test_every_python_block_is_an_example`:

* ``<!-- example -->``: run with a test database, in one namespace per file, in order (a
  later block can use an earlier one's names), with ``tests.urls_docs`` as the URLconf. Every
  ``test_*`` function a block defines (not one it imports) is then called with the pytest
  fixtures its parameters name, as pytest would (a coroutine function is run to its end).
  ``KLAREFI_ENCRYPTION_KEYS`` holds a fresh key, for the ``Endpoint`` rows of the examples.
  Signal receivers the blocks connect are disconnected after the file.
* ``<!-- example: settings -->``: settings lines, run on their own with no ``KLAREFI_*``
  variable in the environment (and a ``django-admin startproject`` project named ``mysite``
  importable, for a test settings module that imports ``mysite.settings``); they must not
  raise.
* ``<!-- example: urls -->``: a URLconf; run as a module, Django's URL checks find nothing.
* ``<!-- example: logging -->``: defines ``LOGGING``, which ``logging.config.dictConfig``
  must accept, and which must show a ``django_klarefi`` INFO record (in a subprocess, so the
  suite's own logging is left alone).
* ``<!-- example: excerpt PATH -->``: an excerpt of a file of this repository, which must
  contain it verbatim (the file itself runs in the suite).
* ``<!-- example: quickstart -->``: the README's quick start, pasted into a new
  ``startproject`` by tests/test_quickstart.py, and into one using the built wheel by
  tests/test_dist.py.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from asgiref.sync import async_to_sync
from cryptography.fernet import Fernet
from django.core import mail
from django.core.checks.urls import check_resolver
from django.urls import URLResolver
from django.urls.resolvers import RegexPattern

from django_klarefi.signals import EVENT_SIGNALS, event_received
from tests.docs_blocks import DOCUMENTS, PYTHON_FENCE, ROOT, Block, blocks
from tests.servers import subprocess_env

KINDS = {None, "settings", "urls", "logging", "excerpt", "quickstart"}


def _with(kind: str | None) -> list[Path]:
    return [path for path in DOCUMENTS if any(b.kind == kind for b in blocks(path))]


def _of(kind: str | None) -> list[Block]:
    return [b for path in DOCUMENTS for b in blocks(path) if b.kind == kind]


def _name(item: Path | Block) -> str:
    if isinstance(item, Block):
        return item.filename
    return str(item.relative_to(ROOT))


def test_every_python_block_is_an_example():
    for path in DOCUMENTS:
        text = path.read_text()
        marked = blocks(path)
        assert len(marked) == len(PYTHON_FENCE.findall(text)), (
            f"{_name(path)} has a python block without an <!-- example... --> marker"
        )
        assert {b.kind for b in marked} <= KINDS, _name(path)


def test_the_docs_have_examples():
    # The markers are easy to lose in an edit; the README and the docs keep some.
    assert any(b.kind is None for b in blocks(ROOT / "README.md"))
    assert len(_with(None)) >= 4
    for kind in KINDS - {None}:
        assert _of(kind), kind


@pytest.fixture
def receivers_left_as_they_were() -> Iterator[None]:
    signals = [*EVENT_SIGNALS.values(), event_received]
    before = [list(signal.receivers) for signal in signals]
    yield
    for signal, receivers in zip(signals, before, strict=True):
        with signal.lock:
            signal.receivers = receivers
            signal.sender_receivers_cache.clear()


@pytest.mark.parametrize("path", _with(None), ids=_name)
@pytest.mark.django_db(transaction=True)
def test_examples_run(path, request, settings, receivers_left_as_they_were):
    settings.KLAREFI_WEBHOOK_SECRET = "whsec_docs_examples"
    settings.ROOT_URLCONF = "tests.urls_docs"
    # A key for the database endpoints' secrets (docs/endpoints.md), made for this run.
    settings.KLAREFI_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    namespace: dict[str, object] = {"__name__": f"docs_example_{path.stem}"}
    for block in blocks(path):
        if block.kind is not None:
            continue
        before = set(namespace)
        exec(compile(block.code, block.filename, "exec"), namespace)
        for name in sorted(set(namespace) - before):
            function = namespace[name]
            code_object = getattr(function, "__code__", None)
            # Tests the block defines, not names it imports (sending.test_event, say).
            if (
                name.startswith("test_")
                and getattr(code_object, "co_filename", "") == block.filename
            ):
                mail.outbox.clear()  # as pytest-django does before each test
                parameters = inspect.signature(function).parameters
                arguments = {p: request.getfixturevalue(p) for p in parameters}
                if inspect.iscoroutinefunction(function):
                    async_to_sync(function)(**arguments)
                else:
                    function(**arguments)


@pytest.fixture
def mysite_importable(tmp_path) -> Iterator[None]:
    """A fresh ``startproject mysite`` on ``sys.path``, for settings that import it."""
    subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    sys.path.insert(0, str(tmp_path))
    yield
    sys.path.remove(str(tmp_path))
    for name in [name for name in sys.modules if name.split(".")[0] == "mysite"]:
        del sys.modules[name]


@pytest.mark.parametrize("block", _of("settings"), ids=_name)
def test_settings_examples_run_without_the_environment(block, monkeypatch, mysite_importable):
    for name in list(os.environ):
        if name.startswith("KLAREFI_"):
            monkeypatch.delenv(name)
    namespace: dict[str, object] = {}
    exec(compile(block.code, block.filename, "exec"), namespace)
    # Read from the environment, so empty here; or a test settings module's own secret.
    secret = namespace.get("KLAREFI_WEBHOOK_SECRET", "")
    assert secret in ("", ["", ""]) or str(secret).startswith("whsec_test"), secret


@pytest.mark.parametrize("block", _of("urls"), ids=_name)
def test_urls_examples_are_urlconfs_that_django_accepts(block):
    module = types.ModuleType(f"docs_example_urls_{block.number}")
    exec(compile(block.code, block.filename, "exec"), module.__dict__)
    resolver = URLResolver(RegexPattern(r"^/"), module)
    assert resolver.url_patterns
    assert check_resolver(resolver) == []


@pytest.mark.parametrize("block", _of("excerpt"), ids=_name)
def test_excerpts_are_in_their_file(block):
    assert block.code in (ROOT / block.arg).read_text()


def test_the_quickstart_block_is_the_one_the_quickstart_tests_run():
    from tests.test_quickstart import quickstart_block

    (block,) = _of("quickstart")
    assert block.path.name == "README.md"
    assert quickstart_block() == block.code


@pytest.mark.parametrize("block", _of("logging"), ids=_name)
def test_logging_examples_configure_the_logger(block):
    script = block.code + textwrap.dedent("""
        import logging.config
        logging.config.dictConfig(LOGGING)
        logging.getLogger("django_klarefi").info("an event was processed")
        logging.getLogger("django_klarefi").debug("not shown at INFO")
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "INFO django_klarefi: an event was processed" in result.stderr
    assert "not shown" not in result.stderr


def test_the_drf_example_schema_validates_with_fail_on_warn(tmp_path):
    """docs/drf.md's CaseStatusCallback, routed by tests.urls_docs_drf from the doc's code."""
    schema_file = tmp_path / "schema.yaml"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "spectacular",
            "--validate",
            "--fail-on-warn",
            "--urlconf",
            "tests.urls_docs_drf",
            "--file",
            str(schema_file),
        ],
        cwd=ROOT,
        env=subprocess_env("tests.settings_drf"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    operation = yaml.safe_load(schema_file.read_text())["paths"]["/api/case-status/"]["post"]
    assert operation["security"] == [{"KlarefiSignature": []}]
    assert "requestBody" in operation
    assert set(operation["responses"]) == {"200"}
