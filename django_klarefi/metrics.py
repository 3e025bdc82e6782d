"""Cheap metrics hooks for the receiver and the processing path.

The core calls these functions; each does nothing, at the cost of one function call and one
test, unless metrics are on: ``prometheus_client`` is installed
(``pip install "django-klarefi[prometheus]"``) and ``KLAREFI_METRICS`` is not False. Then
they update the Prometheus metrics of :mod:`django_klarefi.prometheus`, which is the only
module that imports ``prometheus_client``, and is imported on the first hook called with
metrics on: without the extra nothing imports it.

Labels are bounded: the endpoint's configured name, the answer's word (``outcome``, a
rejection's ``reason``), and the event type when it is a documented one (``"other"``
otherwise). Never an event id, a case id, a client address or other unbounded value.
"""

from __future__ import annotations

import re
from types import ModuleType
from typing import Any

from django.core.signals import setting_changed

from django_klarefi.conf import conf
from django_klarefi.event_types import EVENT_TYPES
from django_klarefi.log_fields import DEFAULT_ENDPOINT

__all__ = [
    "OTHER",
    "UNKNOWN_ENDPOINT",
    "count_delivery",
    "count_failure",
    "count_rejection",
    "metrics_enabled",
    "observe_processing",
]

#: The ``event_type`` label of an undocumented type, and the ``reason`` or ``outcome``
#: label of a word that is not one (so that no label takes unbounded values).
OTHER = "other"

#: The ``endpoint`` label of a rejection whose endpoint is not known.
UNKNOWN_ENDPOINT = "unknown"

# The words of answers: lower case, digits and underscores, short.
_WORD = re.compile(r"[a-z][a-z0-9_]{0,39}", re.ASCII)

# The loaded metrics module, None when metrics are off; _UNSET until first decided.
_UNSET = ModuleType("unset")
_recorder: ModuleType | None = _UNSET


def _load() -> ModuleType | None:
    if conf.METRICS is False:
        return None
    try:
        from django_klarefi import prometheus
    except ImportError:  # no prometheus_client: the extra is not installed
        return None
    return prometheus


def _active() -> ModuleType | None:
    global _recorder
    if _recorder is _UNSET:
        _recorder = _load()
    return _recorder


def _reset(*, setting: str, **kwargs: Any) -> None:
    # override_settings(KLAREFI_METRICS=...) in tests: decide again on the next hook.
    global _recorder
    if setting == "KLAREFI_METRICS":
        _recorder = _UNSET


setting_changed.connect(_reset, dispatch_uid="django_klarefi.metrics")


def metrics_enabled() -> bool:
    """Whether the hooks record anything (``prometheus_client`` installed, and
    ``KLAREFI_METRICS`` not False)."""
    return _active() is not None


def count_delivery(endpoint: str, outcome: str) -> None:
    """Count a verified delivery answered with ``outcome``, the JSON ``status``:
    ``klarefi_webhook_deliveries_total{endpoint, outcome}``."""
    recorder = _recorder if _recorder is not _UNSET else _active()
    if recorder is not None:
        recorder.DELIVERIES.labels(endpoint or DEFAULT_ENDPOINT, _word(outcome)).inc()


def count_rejection(endpoint: str | None, reason: str) -> None:
    """Count a delivery answered 4xx or 503 with the JSON ``error`` ``reason``:
    ``klarefi_webhook_rejections_total{endpoint, reason}``. ``endpoint`` None (not known,
    or not a configured name) is labelled ``unknown``."""
    recorder = _recorder if _recorder is not _UNSET else _active()
    if recorder is not None:
        recorder.REJECTIONS.labels(endpoint or UNKNOWN_ENDPOINT, _word(reason)).inc()


def observe_processing(endpoint: str, event_type: str, seconds: float) -> None:
    """Observe how long one attempt's handlers took:
    ``klarefi_event_processing_seconds{endpoint, event_type}``."""
    recorder = _recorder if _recorder is not _UNSET else _active()
    if recorder is not None:
        recorder.PROCESSING.labels(endpoint or DEFAULT_ENDPOINT, type_label(event_type)).observe(
            seconds
        )


def count_failure(endpoint: str, event_type: str) -> None:
    """Count a failed attempt: ``klarefi_events_failed_total{endpoint, event_type}``."""
    recorder = _recorder if _recorder is not _UNSET else _active()
    if recorder is not None:
        recorder.FAILURES.labels(endpoint or DEFAULT_ENDPOINT, type_label(event_type)).inc()


def type_label(event_type: str) -> str:
    """``event_type`` when it is documented (``EVENT_TYPES``), else ``"other"``."""
    return event_type if event_type in EVENT_TYPES else OTHER


def _word(value: str) -> str:
    text = str(value)
    return text if _WORD.fullmatch(text) else OTHER
