"""The Python examples in the README and in docs/ run, so a documented example that breaks
fails the suite.

A fenced ``python`` block preceded by one of these HTML comments (invisible on GitHub and in
the Sphinx site) is an example:

* ``<!-- example -->``: run with a test database, in one namespace per file, in order (a
  later block can use an earlier one's receivers). Every ``test_*`` function a block defines
  (not one it imports) is then called with the pytest fixtures its parameters name, as
  pytest would.
* ``<!-- example: settings -->``: settings lines, run on their own with no
  ``KLAREFI_*`` variable in the environment; they must not raise.
* ``<!-- example: logging -->``: defines ``LOGGING``, which ``logging.config.dictConfig``
  must accept, and which must show a ``django_klarefi`` INFO record (in a subprocess, so the
  suite's own logging is left alone).
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(
    r"^<!-- example(?:: (?P<kind>[a-z]+))? -->\n```python\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)


def examples(path: Path, kind: str | None) -> list[str]:
    text = path.read_text()
    return [m["code"] for m in _BLOCK.finditer(text) if m["kind"] == kind]


def _with_examples(kind: str | None) -> list[Path]:
    return [path for path in DOCUMENTS if examples(path, kind)]


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_docs_have_examples():
    # The markers are easy to lose in an edit; the README and the docs keep some.
    assert examples(ROOT / "README.md", None)
    assert len(_with_examples(None)) >= 4
    assert _with_examples("settings")
    assert _with_examples("logging")


@pytest.mark.parametrize("path", _with_examples(None), ids=_name)
@pytest.mark.django_db(transaction=True)
def test_examples_run(path, request, settings):
    settings.KLAREFI_WEBHOOK_SECRET = "whsec_docs_examples"
    namespace: dict[str, object] = {"__name__": f"docs_example_{path.stem}"}
    for number, code in enumerate(examples(path, None), start=1):
        filename = f"{_name(path)} example {number}"
        before = set(namespace)
        exec(compile(code, filename, "exec"), namespace)
        for name in sorted(set(namespace) - before):
            function = namespace[name]
            code_object = getattr(function, "__code__", None)
            # Tests the block defines, not names it imports (sending.test_event, say).
            if name.startswith("test_") and getattr(code_object, "co_filename", "") == filename:
                parameters = inspect.signature(function).parameters
                function(**{p: request.getfixturevalue(p) for p in parameters})


@pytest.mark.parametrize("path", _with_examples("settings"), ids=_name)
def test_settings_examples_run_without_the_environment(path, monkeypatch):
    for name in list(os.environ):
        if name.startswith("KLAREFI_"):
            monkeypatch.delenv(name)
    for code in examples(path, "settings"):
        namespace: dict[str, object] = {}
        exec(code, namespace)
        assert namespace.get("KLAREFI_WEBHOOK_SECRET", "") == ""


@pytest.mark.parametrize("path", _with_examples("logging"), ids=_name)
def test_logging_examples_configure_the_logger(path):
    for code in examples(path, "logging"):
        script = code + textwrap.dedent("""
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
