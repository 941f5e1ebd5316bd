"""Test configuration: Hypothesis profiles.

- `ci`: thorough; what `.ci/run` uses (it exports CI=true).
- `dev`: fast, for the edit-run loop; random, so each run explores new cases.
- `hunt`: long and random, for looking for bugs before a release (~20 minutes on 2 cores).

`ci` is derandomized: a submission passes or fails on its own merits, never on the luck of the draw.
Exploring is the job of `dev` (every edit-run loop) and `hunt`; a case either finds is pinned as a
plain test.

Choose one with CAPSTATE_HYPOTHESIS_PROFILE=ci|dev; without it, CI=true selects `ci` and anything else
`dev`. Stateful machines take their step count from the profile; `tests/test_stateful.py` sets the
rest on each `.TestCase`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.vendor.pretty import for_type_by_name

settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    stateful_step_count=40,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "hunt",
    max_examples=3000,
    deadline=None,
    stateful_step_count=60,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=40,
    deadline=None,
    stateful_step_count=25,
)


def _profile() -> str:
    chosen = os.environ.get("CAPSTATE_HYPOTHESIS_PROFILE")
    if chosen:
        return chosen
    return "ci" if os.environ.get("CI", "").lower() in {"true", "1"} else "dev"


settings.load_profile(_profile())

# A failing example prints its drawn payments field by field; their spec prints as its one-line repr
# (`<Spec vipps from specs/vipps.toml>`), not as every transition and policy number it holds.
for_type_by_name("capstate._spec", "Spec", lambda spec, printer, cycle: printer.text(repr(spec)))
