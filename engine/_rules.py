"""The judgement of one fact: which transition it takes and which guards it breaks (`evaluate`), for
`observe`, `apply`, `decide`'s general path and the audit's exact path alike.

This module is written for mypyc, which compiles it to a C extension at `pip install` (setup.py), as it
does `_hot` and `_capture`; it runs unchanged as plain Python where no C compiler was available, or with
CAPSTATE_NO_MYPYC=1 (`_builds` chooses; `_engine` re-exports the chosen build's functions, and the
differential tests run both). It is the one copy of these rules: compiled, a line that breaks a rule
is judged without a Python frame per step, which was most of its cost (issue 13 (a)).
"""

from __future__ import annotations

from typing import Any, Final

from ._codes import Code
from ._guards import CAPTURE_TYPES, Fact, explain_missing, room
from ._table import Step
from ._values import EventType, Payment, Violation, new_violation

# Final: mypyc keeps these in C statics; any other module-level name is a dict lookup on every use.
_CAPTURED: Final = EventType.CAPTURED
_CAPTURE_FAILED: Final = EventType.CAPTURE_FAILED
_CANCELLED: Final = EventType.CANCELLED
_EXPIRED: Final = EventType.EXPIRED
_CAPTURE_TYPES: Final = CAPTURE_TYPES
_INVALID_STATE: Final = Code.INVALID_STATE
_NO_VIOLATIONS: Final[tuple[Violation, ...]] = ()
_COMPILED: Final = not __file__.endswith((".py", ".pyc"))
_NEW: Final = object.__new__
_TYPE_VALUES: Final[dict[EventType, str]] = {t: t.value for t in EventType}  # `.value` is a descriptor call



# An amount is taken and returned as the object it is, not as mypyc's unboxed int: the amount a line logged
# is kept by the findings it breaks (their message state), and boxed again it would be a second int each.
# Typed Any for that only: it is always an int.


def resolve_amount(p: Payment, e: Fact) -> Any:
    """The amount an event moves: its own, or the one its type implies when absent
    (a capture takes what is capturable, a cancel or a lapse releases the remainder)."""
    t = e.type
    if t is _EXPIRED:
        # A lapse releases exactly what was left, whatever amount a log line claims.
        return max(p.capturable, 0)
    given: Any = e.amount
    if given is not None:
        return given
    # After an over-capture within an allowance nothing is left (never a negative amount).
    if t in _CAPTURE_TYPES:
        return max(room(p, e), 0)
    if t is _CANCELLED:
        return max(p.capturable, 0)
    if t is _CAPTURE_FAILED:
        pending: Any = p.pending
        return pending
    return 0


def evaluate(p: Payment, e: Fact, amount: Any, command: bool) -> tuple[Step | None, tuple[Violation, ...]]:
    """The transition `e` takes from `p` and the violations its guards report.

    The step is None when the spec has no transition at all; it is returned even when guards fail,
    so that `observe` knows where a forbidden fact leads.
    """
    spec = p.spec
    table = spec.table
    steps: tuple[Step, ...] | None = table.steps.get((p.state, e.type))
    if not steps:
        return None, (explain_missing(p, e, amount),)
    policy = spec.policy
    for step in steps:
        holds = step.holds
        if holds is None or holds(p, e, amount):
            # A spec evolved by hand onto another policy keeps a table compiled for the old one: its
            # pruned checks may not fit, so judge with every guard.
            fresh = table.policy is policy
            suspects: list[str] | None = None
            if fresh:  # the screen compiled for this policy
                fast: Any = step.suspects
                if fast is not None:
                    suspects = fast(p, e.at, e.amount, e.currency, e.key, amount, room(p, e), command)
            else:
                screen = step.screen
                if screen is not None:
                    suspects = screen(p, e, amount, policy, command)
            if suspects is not None:
                if not suspects:
                    return step, _NO_VIOLATIONS
                if len(suspects) == 1 and fresh:  # the usual refusal: one guard to run, found by name
                    check = step.by_name.get(suspects[0])
                    v = check(p, e, amount, policy, command) if check is not None else None
                    return step, (v,) if v is not None else _NO_VIOLATIONS
            checks = step.checks if fresh else tuple((g.name, g.check) for g in step.guards)
            violations: list[Violation] | None = None
            for name, guard in checks:
                if suspects is not None and name not in suspects:
                    continue  # the screen proved it passes
                found = guard(p, e, amount, policy, command)
                if found is not None:
                    if violations is None:
                        violations = [found]
                    else:
                        violations.append(found)
            return step, tuple(violations) if violations else _NO_VIOLATIONS
    return None, (new_violation(_INVALID_STATE, f"{spec.name}: no route for {_TYPE_VALUES[e.type]} from state "
                                                f"{p.state!r} holds"),)


def judge(payment: Payment, event: Fact) -> tuple[Any, str, tuple[Violation, ...]]:
    """`observe`'s judgement without its effect: the amount the fact moves, the state it leads to (where
    it was, when the spec has no such move) and what it broke. For a fact already checked (`check_fact`)
    and known to be the payment's: the audit applies the effect to its own mutable record."""
    amount = resolve_amount(payment, event)
    step, violations = evaluate(payment, event, amount, False)
    return amount, (step.dest if step is not None else payment.state), violations
