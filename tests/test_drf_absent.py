"""Without DRF: the core works, and the contrib package says what to install.

Each check runs in a fresh interpreter where DRF and drf-spectacular cannot be imported;
``tox -e nodrf`` also runs this file where they are not installed at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

# Makes the named top-level packages unimportable, as if they were not installed.
BLOCKER = """
import importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""


def run_python(code: str, *, blocked: tuple[str, ...], tmp_path: Path) -> dict:
    script = f"BLOCKED = {blocked!r}\n{BLOCKER}\n{textwrap.dedent(code)}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "KLAREFI_TEST_DB": "sqlite",
        "KLAREFI_SQLITE_NAME": str(tmp_path / "db.sqlite3"),
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_contrib_without_drf_raises_improperly_configured(tmp_path):
    outcome = run_python(
        """
        import json, django
        django.setup()
        from django.core.exceptions import ImproperlyConfigured
        try:
            import django_klarefi.contrib.rest_framework.urls
        except ImproperlyConfigured as exc:
            print(json.dumps({"error": str(exc)}))
        """,
        blocked=("rest_framework", "drf_spectacular"),
        tmp_path=tmp_path,
    )
    assert 'pip install "django-klarefi[drf]"' in outcome["error"]


CORE_WORKS = """
import json, importlib, pathlib, django
django.setup()
from django.core.management import call_command
import django_klarefi

# Every core module imports (the contrib package, the pytest plugin and the prometheus
# extra's module aside: tox's nodrf env has no prometheus_client either).
package = pathlib.Path(django_klarefi.__file__).parent
for path in sorted(package.rglob("*.py")):
    parts = path.relative_to(package.parent).with_suffix("").parts
    if parts[1] not in ("contrib", "migrations", "pytest_plugin", "prometheus"):
        importlib.import_module(".".join(parts).removesuffix(".__init__"))

call_command("migrate", verbosity=0)
call_command("check", fail_level="ERROR")
from django.test import Client
from django_klarefi.models import Event
from django_klarefi.testing import capture_signals, post_event
with capture_signals() as sent:
    response = post_event(Client(), "case.completed")
print(json.dumps({
    "status": response.status_code,
    "events": Event.objects.count(),
    "signals": len(sent),
    "loaded": sorted(
        name for name in sys.modules
        if name.partition(".")[0] in ("rest_framework", "drf_spectacular")
    ),
}))
"""


def test_core_imports_and_receives_without_drf(tmp_path):
    outcome = run_python(
        "import sys\n" + CORE_WORKS,
        blocked=("rest_framework", "drf_spectacular"),
        tmp_path=tmp_path,
    )
    assert outcome == {"status": 200, "events": 1, "signals": 2, "loaded": []}


def test_permission_classes_check_neither_reports_nor_imports_drf_without_it(tmp_path):
    # E013 validates KLAREFI_API_PERMISSION_CLASSES where DRF is installed; without DRF the
    # events API cannot be routed, so a path into DRF is no error, and DRF stays unloaded.
    outcome = run_python(
        """
        import json, sys, django
        django.setup()
        from django.conf import settings
        from django.core import checks
        settings.KLAREFI_API_PERMISSION_CLASSES = ["rest_framework.permissions.IsAdminUser"]
        print(json.dumps({
            "ids": sorted(m.id for m in checks.run_checks() if m.id.startswith("django_klarefi")),
            "loaded": sorted(
                name for name in sys.modules
                if name.partition(".")[0] in ("rest_framework", "drf_spectacular")
            ),
        }))
        """,
        blocked=("rest_framework", "drf_spectacular"),
        tmp_path=tmp_path,
    )
    assert outcome == {"ids": [], "loaded": []}
