"""Shared pytest configuration of the test suite."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# Hypothesis budgets (see docs/reliability.md).  "ci", the default, keeps the
# property tests to a few seconds; "long" is for the documented long runs:
#   HYPOTHESIS_PROFILE=long .venv/bin/python -m pytest tests/test_properties*.py
# Each example of the HTTP properties is one or more real requests, so the
# per-example deadline is off and the "too slow" health check is not wanted.
settings.register_profile(
    "ci",
    max_examples=60,
    stateful_step_count=20,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "long",
    max_examples=2000,
    stateful_step_count=50,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
