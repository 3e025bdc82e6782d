"""The parts of ``bench/big_tables.py``: load, list views, ingest, prune, reprocess."""

from __future__ import annotations
