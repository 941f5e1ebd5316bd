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
from ._guards import CAPTURE_TYPES, FACT_INERT, KEYED, Fact, explain_missing, room
from ._table import Step
from ._values import EventType, Payment, Violation, new_violation

# Final: mypyc keeps these in C statics; any other module-level name is a dict lookup on every use.
_CAPTURED: Final = EventType.CAPTURED
_CAPTURE_FAILED: Final = EventType.CAPTURE_FAILED
_CANCELLED: Final = EventType.CANCELLED
_EXPIRED: Final = EventType.EXPIRED
_CAPTURE_TYPES: Final = CAPTURE_TYPES
_FACT_INERT: Final = FACT_INERT
_KEYED: Final = KEYED
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


class Move:
    """What `evaluate` reads of one Step, read once (see `Moves`)."""

    def __init__(self, step: Step, fresh: bool) -> None:
        self.step = step
        self.holds: Any = step.holds
        self.fresh = fresh
        self.suspects: Any = step.suspects  # the screen compiled for this policy
        self.screen: Any = step.screen
        self.by_name: dict[str, Any] = step.by_name
        # A spec evolved by hand onto another policy keeps a table compiled for the old one: its pruned checks
        # may not fit, so it is judged with every guard.
        self.checks: tuple[tuple[str, Any], ...] = (step.checks if fresh
                                                    else tuple((g.name, g.check) for g in step.guards))


class Moves:
    """What `evaluate` reads of a spec for one (state, event type): its policy and the steps, each as a Move.
    Compiled, a read of an attrs value's field is a generic attribute lookup (~150 instructions): a line
    that breaks a rule read ~10 of them here, for values that never change (a Spec is frozen)."""

    def __init__(self, spec: Any, steps: tuple[Step, ...] | None) -> None:
        self.policy: Any = spec.policy
        fresh = spec.table.policy is self.policy
        self.moves: list[Move] = [Move(step, fresh) for step in steps] if steps else []


# spec -> state -> event type -> its Moves: a Spec is hashed by identity (eq=False), so no key is built.
# Bounded: a service may build specs by the thousand (each is held here).
_MOVES: Final[dict[Any, dict[str, dict[EventType, Moves]]]] = {}
_MAX_SPECS: Final = 64


def moves_of(spec: Any, state: str, etype: EventType) -> Moves:
    """The Moves of `spec` from `state` by an event of type `etype`, read once and kept."""
    by_state = _MOVES.get(spec)
    if by_state is None:
        if len(_MOVES) >= _MAX_SPECS:
            _MOVES.clear()
        by_state = _MOVES[spec] = {}
    by_type = by_state.get(state)
    if by_type is None:
        by_type = by_state[state] = {}
    found = by_type.get(etype)
    if found is None:
        found = by_type[etype] = Moves(spec, spec.table.steps.get((state, etype)))
    return found


def evaluate(p: Payment, e: Fact, amount: Any, command: bool) -> tuple[Step | None, tuple[Violation, ...]]:
    """The transition `e` takes from `p` and the violations its guards report.

    The step is None when the spec has no transition at all; it is returned even when guards fail,
    so that `observe` knows where a forbidden fact leads.
    """
    spec = p.spec
    known = moves_of(spec, p.state, e.type)
    if not known.moves:
        return None, (explain_missing(p, e, amount),)
    policy = known.policy
    for move in known.moves:
        holds = move.holds
        if holds is None or holds(p, e, amount):
            step = move.step
            fresh = move.fresh
            suspects: list[str] | None = None
            if fresh:  # the screen compiled for this policy
                fast: Any = move.suspects
                if fast is not None:
                    suspects = fast(p, e.at, e.amount, e.currency, e.key, amount, room(p, e), command)
            else:
                screen = move.screen
                if screen is not None:
                    suspects = screen(p, e, amount, policy, command)
            if suspects is not None:
                if not suspects:
                    return step, _NO_VIOLATIONS
                if len(suspects) == 1 and fresh:  # the usual refusal: one guard to run, found by name
                    check = move.by_name.get(suspects[0])
                    v = check(p, e, amount, policy, command) if check is not None else None
                    return step, (v,) if v is not None else _NO_VIOLATIONS
            violations: list[Violation] | None = None
            # A guard that passes whatever it reads is not called (a call is most of a passing guard's cost):
            # on a logged fact, those that judge commands only; with no key, those that judge the key alone.
            keyless = e.key is None
            for name, guard in move.checks:
                if suspects is not None and name not in suspects:
                    continue  # the screen proved it passes
                if (not command and name in _FACT_INERT) or (keyless and name in _KEYED):
                    continue
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
