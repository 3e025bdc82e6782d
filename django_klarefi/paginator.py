"""A paginator that does not count a large table row by row.

``SELECT COUNT(*)`` over a table of millions of rows reads all of them, on every page of
the admin's changelist. For the unfiltered list, PostgreSQL keeps an estimate of the
table's row count (``pg_class.reltuples``, refreshed by autovacuum and ``ANALYZE``) that
costs one catalog lookup. Filtered lists, small tables and other databases get the real
count: with a filter, the count runs on the filter's index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.paginator import Paginator
from django.db import connections
from django.db.models import QuerySet
from django.utils.functional import cached_property

__all__ = ["EstimatedCountPaginator"]

if TYPE_CHECKING:
    _Paginator = Paginator[Any]
else:  # Paginator is generic in django-stubs only.
    _Paginator = Paginator


class EstimatedCountPaginator(_Paginator):
    """A :class:`~django.core.paginator.Paginator` whose count may be an estimate.

    The count is PostgreSQL's row estimate when the object list is a whole table (a
    queryset with no WHERE clause, no DISTINCT and no slicing) whose estimate reaches
    :attr:`estimate_from`; otherwise it is the exact ``COUNT(*)``. :attr:`count_is_estimate`
    tells which, so that templates can say "about".
    """

    #: Below this many rows (by the estimate), the exact count is cheap: use it.
    estimate_from = 10_000

    @cached_property
    def table_estimate(self) -> int | None:
        """The table's estimated row count, or None when it must not (or cannot) be used."""
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return None
        query = queryset.query
        if query.where or query.distinct or query.is_sliced or query.combinator:
            return None
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return None
        table = connection.ops.quote_name(queryset.model._meta.db_table)
        with connection.cursor() as cursor:
            # reltuples is -1 for a table never vacuumed or analyzed: the check below
            # sends that to the exact count.
            cursor.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", [table]
            )
            row: Any = cursor.fetchone()
        if row is None or row[0] is None or row[0] < self.estimate_from:
            return None
        return int(row[0])

    @property
    def count_is_estimate(self) -> bool:
        """Whether :attr:`count` is PostgreSQL's estimate rather than an exact count."""
        return self.table_estimate is not None

    @cached_property
    def count(self) -> int:
        """The estimated number of rows for a large unfiltered table, else the exact count."""
        estimate = self.table_estimate
        if estimate is not None:
            return estimate
        return super().count
