"""Without prometheus_client (or with KLAREFI_METRICS = False), nothing imports it: the
receiver, the reports and the commands run, and the hooks do nothing.

Each check runs in a fresh interpreter; the blocker makes the package unimportable, as if
the ``prometheus`` extra were not installed."""

from __future__ import annotations

import pytest

from tests.test_drf_absent import run_python

pytestmark = pytest.mark.slow

RUNS_WITHOUT_METRICS = """
import io, json, importlib, pathlib, sys, django
django.setup()
from django.conf import settings
if METRICS_OFF:
    settings.KLAREFI_METRICS = False
from django.core.management import call_command
import django_klarefi

# Every core module imports, but the one that is the extra's (and contrib, the plugin).
package = pathlib.Path(django_klarefi.__file__).parent
for path in sorted(package.rglob("*.py")):
    parts = path.relative_to(package.parent).with_suffix("").parts
    if parts[1] not in ("contrib", "migrations", "pytest_plugin", "prometheus"):
        importlib.import_module(".".join(parts).removesuffix(".__init__"))

call_command("migrate", verbosity=0)
from django.test import Client
from django_klarefi import metrics
from django_klarefi.failures import report_failure
from django_klarefi.models import Event
from django_klarefi.rejections import report_rejection
from django_klarefi.testing import post_event

client = Client()
ok = post_event(client, "case.completed").status_code
forged = post_event(client, "case.completed", secret="whsec_forged").status_code
metrics.count_delivery("default", "processed")
metrics.observe_processing("default", "case.completed", 0.1)
report_rejection(client="10.0.0.1", status=401, reason="no_matching_signature", detail="",
                 sender=None, endpoint="default")
event = Event.objects.get()
event.status = "failed"
report_failure(event, ValueError("boom"))
try:
    call_command("klarefi_status", stdout=io.StringIO())
    code = 0
except SystemExit as exit:
    code = exit.code
print(json.dumps({
    "answers": [ok, forged],
    "enabled": metrics.metrics_enabled(),
    "status": code,
    "loaded": sorted(name for name in sys.modules if name.startswith("prometheus_client")
                     or name == "django_klarefi.prometheus"),
}))
"""


def test_without_the_extra_nothing_imports_prometheus_client(tmp_path):
    outcome = run_python(
        "METRICS_OFF = False\n" + RUNS_WITHOUT_METRICS,
        blocked=("prometheus_client",),
        tmp_path=tmp_path,
    )
    assert outcome == {"answers": [200, 401], "enabled": False, "status": 0, "loaded": []}


def test_klarefi_metrics_false_imports_nothing_either(tmp_path):
    outcome = run_python(
        "METRICS_OFF = True\n" + RUNS_WITHOUT_METRICS, blocked=(), tmp_path=tmp_path
    )
    assert outcome == {"answers": [200, 401], "enabled": False, "status": 0, "loaded": []}


def test_with_the_extra_the_hooks_load_it(tmp_path):
    # The same script with metrics on: the check above is not vacuous.
    outcome = run_python(
        "METRICS_OFF = False\n" + RUNS_WITHOUT_METRICS, blocked=(), tmp_path=tmp_path
    )
    assert outcome["enabled"] is True
    assert "prometheus_client" in outcome["loaded"]
    assert "django_klarefi.prometheus" in outcome["loaded"]
