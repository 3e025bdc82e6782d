"""django-klarefi's benchmarks: the receiver against a minimal verify-and-insert view, and
the events table at scale, against the targets of issue 11.

``make bench`` runs every harness (``run.py``, ``http.py``, ``payloads.py``,
``big_tables.py``) and renders ``bench/results/latest.md`` with ``report.py``; see
docs/performance.md.
"""

from __future__ import annotations
