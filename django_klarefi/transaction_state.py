"""Whether user code has left the attempt's transaction able to commit.

:func:`ensure_committable` runs after code that the attempt does not control (the event's
receivers, and the receivers of ``Event``'s own save signals), and turns a transaction they
broke into an error that fails the attempt, instead of a COMMIT that Django would turn into
a silent rollback, or one that commits outside the attempt.
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.db.transaction import TransactionManagementError

__all__ = ["ensure_committable"]


def ensure_committable(using: str) -> None:
    """Raise ``TransactionManagementError`` if the transaction cannot commit, or has ended.

    A receiver that catches a database error without an atomic block of its own, or calls
    ``transaction.set_rollback(True)``, leaves a transaction that Django would roll back
    without a word at the end of the block (and on PostgreSQL a statement that failed
    aborts the transaction even when the error was caught). A receiver that runs a raw
    ``COMMIT`` or ``ROLLBACK`` ends the attempt's transaction: what follows would run
    outside it, with no lock. Either way the event would be answered as processed with its
    record lost or unguarded; this makes it a failure instead.
    """
    connection = connections[using]
    if connection.needs_rollback or _driver_state(connection) != "open":
        raise TransactionManagementError(
            "A receiver caught a database error, marked the transaction for rollback "
            "(transaction.set_rollback), or ended it (a raw COMMIT or ROLLBACK), so the "
            "event's writes cannot be committed with it. Put a statement that may fail in "
            "a transaction.atomic() block of its own, and leave COMMIT to the attempt."
        )


def _driver_state(connection: Any) -> str:
    """``"open"``, ``"failed"`` or ``"none"``, as the database driver sees it."""
    raw = connection.connection
    if connection.vendor == "sqlite":
        return "open" if raw.in_transaction else "none"
    info = getattr(raw, "info", None)  # psycopg 3; psycopg2 has get_transaction_status()
    status = getattr(info, "transaction_status", None)
    if status is None and hasattr(raw, "get_transaction_status"):
        status = raw.get_transaction_status()
    # psycopg 3 and psycopg2 alike: 0 idle (no transaction), 3 in a failed transaction.
    return {0: "none", 3: "failed"}.get(status, "open") if status is not None else "open"
