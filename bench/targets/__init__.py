"""Issue 11's targets, one module per section, each turning result files into report rows."""

from __future__ import annotations
