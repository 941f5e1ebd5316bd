"""The compiled transition table: the hot path's view of a spec.

It holds exactly the spec's transitions, indexed by (state, trigger), with guard and route names
resolved to functions once at load time. The transitions Machine built by `_machine` from the same
spec is the reference interpreter; a differential Hypothesis test proves the two agree.

Compiled against a policy, each step also keeps `checks`: its guard functions minus those that policy
makes inert (a `key_valid` where the provider has no idempotency, a `below_max_captures` with no
maximum). Leaving them out changes no verdict and saves a call each on every event. A capture step
keeps the capture screen compiled for that policy, and the table a `CapturePlan` (`_capture`, compiled
by mypyc): for each state, the step a capture command takes, picked by two facts instead of by calling
routes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from attrs import field, frozen

from ._builds import capture
from ._guards import (
    CAPTURE_SCREENED,
    CAPTURE_TYPES,
    GUARDS,
    ROUTES,
    Fact,
    Guard,
    GuardFn,
    RoomCheck,
    Route,
    RouteFn,
    capture_screen,
    capture_suspects,
)
from ._policy import Policy
from ._values import EventType, Payment

if TYPE_CHECKING:
    from ._capture import CapturePlan, CaptureScreen


@frozen
class Step:
    """One compiled transition. `holds` is the route's predicate (None: no route); `checks` the guard
    functions that can fail under the table's policy, in the spec's order."""

    trigger: EventType
    source: str
    dest: str
    route: Route | None
    guards: tuple[Guard, ...]
    holds: RouteFn | None = field(default=None, eq=False, repr=False)
    checks: tuple[tuple[str, GuardFn], ...] = field(default=(), eq=False, repr=False)
    # Names the guards that might fail (`_guards.capture_suspects`), so only those run; None: run them all.
    screen: Callable[[Payment, Fact, int, Policy, bool], list[str]] | None = field(default=None, eq=False,
                                                                                   repr=False)
    by_name: dict[str, GuardFn] = field(factory=dict, eq=False, repr=False)  # `checks` by guard name
    # `screen` compiled for the table's policy (`_capture.CaptureScreen`); None without a policy.
    suspects: CaptureScreen | None = field(default=None, eq=False, repr=False)
    by_room: dict[str, RoomCheck] = field(factory=dict, eq=False, repr=False)  # `checks` that have `Guard.by_room`


@frozen
class Table:
    steps: dict[tuple[str, EventType], tuple[Step, ...]]
    policy: Policy | None = field(default=None, eq=False, repr=False)  # what `checks` were compiled for
    capture: CapturePlan | None = field(default=None, eq=False, repr=False)  # None without a policy

    @classmethod
    def compile(cls, transitions: Iterable[tuple[EventType, str, str, str | None, tuple[str, ...]]],
                policy: Policy | None = None) -> Table:
        """Index (trigger, source, dest, route, guards) rows, keeping the spec's order within a key.

        Without a policy every guard is kept in `checks`."""
        steps: dict[tuple[str, EventType], list[Step]] = {}
        screen = capture_screen(policy) if policy is not None else None
        for trigger, source, dest, route_name, guard_names in transitions:
            route = ROUTES[route_name] if route_name else None
            guards = tuple(GUARDS[g] for g in guard_names)
            checks = tuple((g.name, g.check) for g in guards if policy is None or not g.inert(policy))
            screened = trigger in CAPTURE_TYPES and guards and set(guard_names) <= CAPTURE_SCREENED
            kept = dict(checks)
            step = Step(trigger, source, dest, route, guards, route.holds if route else None, checks,
                        capture_suspects if screened else None, kept, screen if screened else None,
                        {g.name: g.by_room for g in guards if g.by_room is not None and g.name in kept})
            steps.setdefault((source, trigger), []).append(step)
        compiled = {k: tuple(v) for k, v in steps.items()}
        return cls(compiled, policy, capture.compile_plan(compiled, policy) if policy is not None else None)

    def candidates(self, state: str, trigger: EventType) -> tuple[Step, ...]:
        return self.steps.get((state, trigger), ())
