"""Race settings with ``ATOMIC_REQUESTS = True`` on every database."""

from __future__ import annotations

import copy

from tests.settings_races import *  # noqa: F403
from tests.settings_races import DATABASES

DATABASES = copy.deepcopy(DATABASES)
for _database in DATABASES.values():
    _database["ATOMIC_REQUESTS"] = True
