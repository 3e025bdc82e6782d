"""Load the OpenAPI extensions for drf-spectacular, only when it is installed."""

from __future__ import annotations

from importlib import import_module

__all__ = ["load_schema_extensions"]

EXTENSIONS_MODULE = "django_klarefi.contrib.rest_framework.spectacular_extensions"


def load_schema_extensions() -> None:
    """Register django-klarefi's drf-spectacular extensions, if drf-spectacular is installed.

    Without it, nothing is imported. The views call this when they load, and the
    authentication class when it is instantiated (drf-spectacular instantiates a view's
    authenticators before it looks for their extension); importing drf-spectacular while
    DRF itself is still importing ``DEFAULT_AUTHENTICATION_CLASSES`` would be an import
    cycle.
    """
    try:
        import drf_spectacular  # noqa: F401
    except ImportError:
        return
    import_module(EXTENSIONS_MODULE)
