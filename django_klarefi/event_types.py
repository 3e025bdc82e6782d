"""The event types Klarefi documents: the one list that signals, samples and docs derive from."""

from __future__ import annotations

# Type string -> description, in the order of Klarefi's webhook page. "case.completed" is not in
# the page's table, but its SDK samples switch on it, so it is treated as documented too.
EVENT_TYPES: dict[str, str] = {
    "session.created": "New intake session created",
    "document.uploaded": "Document uploaded to a session",
    "document.processed": "Document extraction completed",
    "skill.resolved": "A skill extraction reached a decision",
    "skill.needs_review": "A skill extraction needs human review",
    "session.complete": "All required skills resolved",
    "session.submitted_incomplete": "Session submitted without full resolution",
    "session.expired": "Session TTL expired",
    "case.completed": "Processing of a case completed",
}

#: The top-level payload key that marks a test event built by django-klarefi (the samples
#: behind ``klarefi_send_test_event``, the admin's send-test page and ``testing``); stored
#: as ``Event.is_test``, so that handlers and the admin can tell test events apart.
TEST_EVENT_KEY = "django_klarefi_test"
