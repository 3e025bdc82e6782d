"""Test settings for the admin under a Content Security Policy of ``style-src 'self'``.

On Django 6.0+ the policy is Django's own (``SECURE_CSP`` and its middleware). Django 5.2
has no CSP support, so there a small middleware sets the same header. ``DEBUG`` is on so
that ``runserver`` serves the static files, as in development.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import django

from tests.settings import *  # noqa: F403
from tests.settings import MIDDLEWARE as BASE_MIDDLEWARE

DEBUG = True

#: The policy: nothing inline, for styles or scripts; images may be data: URLs (the admin's
#: icons are files, but browsers' own UI may use data: images).
POLICY = {
    "default-src": ["'self'"],
    "style-src": ["'self'"],
    "script-src": ["'self'"],
    "img-src": ["'self'", "data:"],
}

if django.VERSION >= (6, 0):
    SECURE_CSP = POLICY
    MIDDLEWARE = [*BASE_MIDDLEWARE, "django.middleware.csp.ContentSecurityPolicyMiddleware"]
else:
    MIDDLEWARE = [*BASE_MIDDLEWARE, "tests.settings_admin_csp.content_security_policy"]


def content_security_policy(get_response: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Django 5.2: set the policy's header, as Django 6's middleware does."""
    header = "; ".join(f"{name} {' '.join(values)}" for name, values in POLICY.items())

    def middleware(request: Any) -> Any:
        response = get_response(request)
        response["Content-Security-Policy"] = header
        return response

    return middleware
