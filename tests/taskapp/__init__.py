"""Handlers for task-mode tests that run servers and workers as subprocesses."""

from __future__ import annotations
