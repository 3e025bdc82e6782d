"""Test settings for servers started by the race and fault tests: the raceapp handlers."""

from __future__ import annotations

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.raceapp"]
