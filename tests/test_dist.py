"""The published archives, as ``make dist`` builds them: what is in them, what PyPI would
show, and the README's quick start run against the **wheel** in a fresh virtualenv.

``make dist`` runs this module on the archives it built (``KLAREFI_DIST_DIR=dist``); in the
suite, the module builds its own into a temporary folder.
"""

from __future__ import annotations

import email
import json
import os
import re
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

import django_klarefi
from django_klarefi import sign_webhook_payload
from tests.servers import free_port
from tests.test_quickstart import paste_settings, paste_urls, quickstart_block, split_files

ROOT = Path(__file__).resolve().parent.parent
VERSION = django_klarefi.__version__
SECRET = "whsec_from_the_wheel"

pytestmark = pytest.mark.slow

# Anywhere in either archive: bytecode, databases, build output, benchmark results.
FORBIDDEN = re.compile(
    r"(^|/)(__pycache__|\.pytest_cache|\.mypy_cache|_build|build|dist|bench|results|\.artifacts)/"
    r"|\.py[cod]$|\.sqlite3(-journal)?$|\.egg$|\.whl$|\.tar\.gz$"
)
# The sdist's top level: the README, LICENSE, CHANGELOG, the docs, the tests and the package,
# plus what the build itself needs to build the wheel from it.
SDIST_ALLOWED = re.compile(
    r"(README\.md|LICENSE|CHANGELOG\.md"
    r"|PKG-INFO|pyproject\.toml|setup\.cfg|MANIFEST\.in|django_klarefi\.egg-info/[\w.-]+"
    r"|docs/.+|tests/.+|django_klarefi/.+)"
)
WHEEL_ALLOWED = re.compile(
    r"(django_klarefi/(.+\.py|py\.typed|templates/.+\.html|static/.+\.(css|js|svg|png))"
    rf"|django_klarefi-{re.escape(VERSION)}\.dist-info/"
    r"(METADATA|WHEEL|RECORD|entry_points\.txt|top_level\.txt|licenses/LICENSE))"
)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    given = os.environ.get("KLAREFI_DIST_DIR")
    if given:
        return Path(given).resolve()
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


@pytest.fixture(scope="module")
def sdist(dist) -> Path:
    (path,) = dist.glob("*.tar.gz")
    assert path.name == f"django_klarefi-{VERSION}.tar.gz"
    return path


@pytest.fixture(scope="module")
def wheel(dist) -> Path:
    (path,) = dist.glob("*.whl")
    assert path.name == f"django_klarefi-{VERSION}-py3-none-any.whl"
    return path


def sdist_files(path: Path) -> list[str]:
    with tarfile.open(path) as archive:
        names = [member.name for member in archive.getmembers() if member.isfile()]
    prefix = f"django_klarefi-{VERSION}/"
    assert all(name.startswith(prefix) for name in names)
    return sorted(name.removeprefix(prefix) for name in names)


def wheel_files(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as archive:
        return sorted(name for name in archive.namelist() if not name.endswith("/"))


def wheel_metadata(path: Path) -> email.message.Message:
    with zipfile.ZipFile(path) as archive:
        text = archive.read(f"django_klarefi-{VERSION}.dist-info/METADATA").decode()
    return email.message_from_string(text)


def test_the_sdist_holds_the_readme_license_changelog_docs_tests_and_package_only(sdist):
    files = sdist_files(sdist)
    unexpected = [f for f in files if not SDIST_ALLOWED.fullmatch(f) or FORBIDDEN.search(f)]
    assert unexpected == []
    for required in [
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "pyproject.toml",
        "docs/index.md",
        "docs/conf.py",
        "tests/conftest.py",
        "tests/settings.py",
        "django_klarefi/__init__.py",
        "django_klarefi/py.typed",
        "django_klarefi/migrations/0001_initial.py",
    ]:
        assert required in files


def test_the_wheel_holds_the_package_templates_static_migrations_and_py_typed_only(wheel):
    files = wheel_files(wheel)
    unexpected = [f for f in files if not WHEEL_ALLOWED.fullmatch(f) or FORBIDDEN.search(f)]
    assert unexpected == []
    assert "django_klarefi/py.typed" in files
    assert "django_klarefi/migrations/0001_initial.py" in files
    assert any(f.startswith("django_klarefi/templates/admin/") for f in files)
    assert any(f.startswith("django_klarefi/static/") for f in files)
    assert f"django_klarefi-{VERSION}.dist-info/licenses/LICENSE" in files
    assert not any(f.startswith(("tests/", "docs/", "example_project/")) for f in files)


def test_the_wheel_metadata_names_the_license_version_and_user_extras_only(wheel):
    metadata = wheel_metadata(wheel)
    assert metadata["Version"] == VERSION
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert sorted(metadata.get_all("Provides-Extra")) == [
        "drf",
        "encryption",
        "progress",
        "prometheus",
        "spectacular",
        "tasks",
    ]
    assert metadata.get_all("Project-URL") is None
    assert metadata["Requires-Dist"].startswith("Django>=5.2")
    with zipfile.ZipFile(wheel) as archive:
        license_text = archive.read(f"django_klarefi-{VERSION}.dist-info/licenses/LICENSE")
    assert license_text == (ROOT / "LICENSE").read_bytes()


def test_the_license_is_the_mit_text():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) django-klarefi developers\n")
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


def test_twine_check_strict_passes(dist, sdist, wheel):
    result = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(sdist), str(wheel)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_description_has_no_link_or_image_that_only_resolves_in_the_repository(wheel):
    description = wheel_metadata(wheel).get_payload()
    assert description == (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)", description) + re.findall(
        r"""(?:src|href)=["']([^"']+)""", description
    )
    assert targets, "the README links to Klarefi at least"
    relative = [t for t in targets if not re.match(r"(https?|mailto):", t)]
    assert relative == []


# --- The README's quick start against the wheel, in a fresh virtualenv ------------------------


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("KLAREFI_", "DJANGO_", "PYTHON", "VIRTUAL_ENV"))
    }
    return {**env, **extra}


def test_the_quick_start_on_the_installed_wheel_receives_a_signed_event(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=_clean_env(),
    )
    assert install.returncode == 0, install.stderr
    project = tmp_path / "project"
    project.mkdir()

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, *args],
            cwd=project,
            env=_clean_env(**env),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    # The package comes from the wheel in the venv, not from this clone.
    where = run("-c", "import django_klarefi; print(django_klarefi.__file__)")
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    assert run("-m", "django", "startproject", "mysite", ".").returncode == 0
    files = split_files(quickstart_block())
    settings_path = project / "mysite" / "settings.py"
    settings_path.write_text(paste_settings(settings_path.read_text(), files["settings.py"]))
    urls_path = project / "mysite" / "urls.py"
    urls_path.write_text(paste_urls(urls_path.read_text(), files["urls.py"]))

    migrate = run("manage.py", "migrate", "--noinput")  # before the secret is set, as a user would
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    check = run("manage.py", "check", "--fail-level", "WARNING", KLAREFI_WEBHOOK_SECRET=SECRET)
    assert check.returncode == 0, check.stdout + check.stderr

    port = free_port()
    server = subprocess.Popen(
        [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=project,
        env=_clean_env(KLAREFI_WEBHOOK_SECRET=SECRET),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        body = json.dumps({"id": "evt_wheel_1", "event": "case.completed"}).encode()
        answer = _post_when_up(
            f"http://127.0.0.1:{port}/webhooks/klarefi", body, sign_webhook_payload(body, SECRET)
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert answer == (200, {"status": "processed", "event_id": "evt_wheel_1"})
    stored = run(
        "manage.py",
        "shell",
        "-c",
        textwrap.dedent("""
            from django_klarefi.models import Event
            print(list(Event.objects.values_list("event_id", "status")))
        """),
        KLAREFI_WEBHOOK_SECRET=SECRET,
    )
    assert stored.stdout.strip().splitlines()[-1] == "[('evt_wheel_1', 'processed')]", stored.stderr


def _post_when_up(url: str, body: bytes, signature: str) -> tuple[int, object]:
    """POST once the server answers; Klarefi's request, signed."""
    import time
    import urllib.error

    deadline = time.monotonic() + 60
    while True:
        request = urllib.request.Request(
            url,
            data=body,
            headers={"Content-Type": "application/json", "X-Klarefi-Signature": signature},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
