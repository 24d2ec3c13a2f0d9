"""Shared test settings: hypothesis profiles, and tests/ importable as helpers."""

from __future__ import annotations

import os
import sys

import pytest
import structlog
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=60, deadline=None)
# mutation testing: every run explores anew instead of replaying the failures it saved
settings.register_profile("fresh", max_examples=60, deadline=None, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture(autouse=True)
def _fresh_structlog():
    """The CLI configures structlog globally (as an app should); give each test the defaults."""
    yield
    structlog.reset_defaults()
