"""Cursor pagination of the events API: no COUNT(*), however large the table."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination

__all__ = ["EventCursorPagination"]


class EventCursorPagination(CursorPagination):
    """Newest first, on the ``klarefi_event_received`` index (``-received_at``, ``-id``).

    A page is one query for ``page_size + 1`` rows past the cursor; there is no count and
    no page number. ``?page_size=`` asks for up to :attr:`max_page_size` rows.
    """

    ordering = ("-received_at", "-pk")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
