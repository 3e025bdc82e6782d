"""Settings for the gunicorn + wrk mode (``bench/http.py``): bench.settings, as deployed.

``DEBUG = False`` (as in bench.settings), and logging as a production project has it:
warnings and errors of every logger, and django-klarefi's INFO, to stderr (which gunicorn
hands to its log). ``KLAREFI_BENCH_PROCESSING`` chooses sync or task mode per server.
"""

from __future__ import annotations

import os

from bench.settings import *  # noqa: F403

KLAREFI_PROCESSING = os.environ.get("KLAREFI_BENCH_PROCESSING", "sync")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {"django_klarefi": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
}
