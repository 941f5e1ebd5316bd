"""The compiled transition table: the hot path's view of a spec.

It holds exactly the spec's transitions, indexed by (state, trigger), with guard and route names
resolved to functions once at load time. The transitions Machine built by `_machine` from the same
spec is the reference interpreter; a differential Hypothesis test proves the two agree.
"""

from __future__ import annotations

from collections.abc import Iterable

from attrs import frozen

from ._guards import GUARDS, ROUTES, Guard, Route
from ._values import EventType


@frozen
class Step:
    """One compiled transition."""

    trigger: EventType
    source: str
    dest: str
    route: Route | None
    guards: tuple[Guard, ...]


@frozen
class Table:
    steps: dict[tuple[str, EventType], tuple[Step, ...]]

    @classmethod
    def compile(cls, transitions: Iterable[tuple[EventType, str, str, str | None, tuple[str, ...]]]) -> Table:
        """Index (trigger, source, dest, route, guards) rows, keeping the spec's order within a key."""
        steps: dict[tuple[str, EventType], list[Step]] = {}
        for trigger, source, dest, route, guards in transitions:
            step = Step(trigger, source, dest, ROUTES[route] if route else None,
                        tuple(GUARDS[g] for g in guards))
            steps.setdefault((source, trigger), []).append(step)
        return cls({k: tuple(v) for k, v in steps.items()})

    def candidates(self, state: str, trigger: EventType) -> tuple[Step, ...]:
        return self.steps.get((state, trigger), ())
