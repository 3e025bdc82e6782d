"""django-klarefi's benchmark: the receiver view against a minimal verify-and-insert view.

Run it with ``make bench`` (``.venv/bin/python bench/run.py``); see the README's
"Performance" section.
"""

from __future__ import annotations
