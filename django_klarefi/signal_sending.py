"""Send a signal whose receivers must not change what django-klarefi does.

For ``webhook_rejected`` and ``event_failed``: a receiver that raises is logged, with its
traceback, and the others still run; the answer and the recorded outcome stay as they are.
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

__all__ = ["send_robustly"]

logger = logging.getLogger("django_klarefi.signals")


def send_robustly(
    signal: Signal, name: str, sender: Any, extra: dict[str, Any], **kwargs: Any
) -> int:
    """Send ``signal`` (called ``name`` in log lines) to every receiver; log each one that
    raises at ERROR, with ``extra`` on the record. Returns how many raised."""
    failed = 0
    for receiver, response in signal.send_robust(sender, **kwargs):
        if isinstance(response, Exception):
            failed += 1
            logger.error(
                "A receiver of django_klarefi.signals.%s raised; ignored (%s).",
                name,
                getattr(receiver, "__qualname__", repr(receiver)),
                exc_info=(type(response), response, response.__traceback__),
                extra=extra,
            )
    return failed
