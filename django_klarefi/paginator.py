"""A paginator that does not count a large table row by row.

``SELECT COUNT(*)`` over a table of millions of rows reads all of them, on every page of
the admin's changelist. For the unfiltered list, PostgreSQL keeps an estimate of the
table's row count (``pg_class.reltuples``, refreshed by autovacuum and ``ANALYZE``) that
costs one catalog lookup. A filtered list on PostgreSQL counts at most
``estimate_from + 1`` of its rows; past that, the planner's estimate for the filter is
shown instead (one ``EXPLAIN``), so no count reads more than that many index entries,
whatever the table's size. Small tables and other databases get the exact count.
"""

from __future__ import annotations

import json
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
    :attr:`estimate_from`, and the planner's estimate for a filtered list on PostgreSQL with
    more than :attr:`estimate_from` rows; otherwise it is the exact ``COUNT(*)``.
    :attr:`count_is_estimate` tells which, so that templates can say "about".
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

    @cached_property
    def filtered_count(self) -> tuple[int, bool] | None:
        """For a filtered list on PostgreSQL: ``(count, is_estimate)``. The count of at most
        :attr:`estimate_from` + 1 rows, exact when within that, else the planner's estimate
        for the filter. None for other lists (then :attr:`count` is exact)."""
        queryset = self.object_list
        if not isinstance(queryset, QuerySet) or self.table_estimate is not None:
            return None
        if connections[queryset.db].vendor != "postgresql" or queryset.query.is_sliced:
            return None
        capped = queryset[: self.estimate_from + 1].count()
        if capped <= self.estimate_from:
            return capped, False
        plan = json.loads(queryset.explain(format="json"))
        return max(int(plan[0]["Plan"]["Plan Rows"]), capped), True

    @property
    def count_is_estimate(self) -> bool:
        """Whether :attr:`count` is PostgreSQL's estimate rather than an exact count."""
        filtered = self.filtered_count
        return self.table_estimate is not None or (filtered is not None and filtered[1])

    @cached_property
    def count(self) -> int:
        """An estimate for a large table or filtered list on PostgreSQL, else the exact count."""
        if self.table_estimate is not None:
            return self.table_estimate
        if self.filtered_count is not None:
            return self.filtered_count[0]
        return super().count
