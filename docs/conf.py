"""Sphinx configuration for django-klarefi's documentation (``make docs``)."""

from __future__ import annotations

import sys
from pathlib import Path

import django
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# autodoc imports the modules, and the models need Django set up. A minimal project is
# enough: nothing here touches a database.
settings.configure(
    SECRET_KEY="docs-build-not-secret",  # noqa: S106 (the docs build serves nothing)
    INSTALLED_APPS=[
        "django.contrib.admin",
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "django.contrib.sessions",
        "django.contrib.messages",
        "django_klarefi",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    USE_TZ=True,
)
django.setup()

import django_klarefi  # noqa: E402

project = "django-klarefi"
author = "django-klarefi developers"
copyright = "2026, django-klarefi developers"
release = django_klarefi.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}

nitpicky = False
exclude_patterns = ["_build"]

html_theme = "furo"
html_title = f"django-klarefi {release}"
