"""django-klarefi: receive Klarefi webhooks in Django.

The public names here are pure Python and safe to import before Django is set up.
"""

from __future__ import annotations

from django_klarefi.signature import (
    WebhookVerificationError,
    sign_webhook_payload,
    verify_webhook_signature,
)

__all__ = ["WebhookVerificationError", "sign_webhook_payload", "verify_webhook_signature"]
__version__ = "0.1.0"
