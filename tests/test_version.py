"""One version string: ``django_klarefi.__version__``, which pyproject.toml reads (dynamic
version), and which the CHANGELOG's next release heading names.

The CHANGELOG's top section may be a plain ``## Unreleased`` (entries for a release whose
number is not chosen yet); the first heading with a number is then the one that must agree.
tests/test_dist.py checks the built archives' metadata against it too.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import django_klarefi

ROOT = Path(__file__).resolve().parent.parent
_VERSION_HEADING = re.compile(r"(?P<version>\d+\.\d+\.\d+\S*) \((?:unreleased|\d{4}-\d\d-\d\d)\)")


def release_headings(changelog: str) -> list[str]:
    return re.findall(r"^## (.+?)\s*$", changelog, re.MULTILINE)


def next_release_version(changelog: str) -> str:
    """The version of the first numbered ``## X.Y.Z (unreleased)`` or ``## X.Y.Z (date)``
    heading; only a plain ``## Unreleased`` may come before it."""
    for heading in release_headings(changelog):
        if heading == "Unreleased":
            continue
        match = _VERSION_HEADING.fullmatch(heading)
        assert match, f"CHANGELOG heading {heading!r} is not 'X.Y.Z (unreleased)' or 'X.Y.Z (date)'"
        return match["version"]
    raise AssertionError("the CHANGELOG has no release heading")


def test_pyproject_reads_the_version_from_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "django_klarefi.__version__"}


def test_the_changelogs_next_release_heading_is_the_version():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert next_release_version(changelog) == django_klarefi.__version__


def test_an_unreleased_section_on_top_is_allowed():
    changelog = "# Changelog\n\n## Unreleased\n\n- a fix\n\n## 1.2.0 (2026-01-31)\n\n- x\n"
    assert next_release_version(changelog) == "1.2.0"
    assert next_release_version("## 1.3.0 (unreleased)\n\n## 1.2.0 (2026-01-31)\n") == "1.3.0"
