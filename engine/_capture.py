"""A Capture judged on its table's CapturePlan: the capture screen, and `decide`'s common case.

This module is written for mypyc, which compiles it to a C extension at `pip install` (setup.py), as it
does `_hot`; it runs unchanged as plain Python where no C compiler was available, or with
CAPSTATE_NO_MYPYC=1 (`_builds` chooses; the differential tests run both builds). Compiled, the
screen is a native class whose policy numbers sit at fixed offsets, and `decide_capture` calls it
without a Python call frame.

`decide_capture(payment, command)` is the one implementation of a capture on a state the plan covers
(`_table.CapturePlan`): the transition picked by two facts instead of by calling routes, the screen
naming the guards that might refuse, only those run, and the Decision built in place with its
normalized command, fact and payment after left to their first read. It returns None for anything it
does not judge (a key used before, a partial capture the policy rewrites or qualifies, several guards
to run, a state or route the plan does not cover); `decide` then takes the general path, `_decide`.
Whatever it answers is what `_decide` answers: the differential and hot-path tests hold them equal.
"""

# The screen takes the fact's fields positionally (mypyc passes them unboxed; a keyword costs ~10 ns).
# ruff: noqa: PLR0917

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from ._codes import Code
from ._money import INT64_MAX, fits_decimal
from ._policy import Policy, printable_shape
from ._values import (
    Capture,
    Decision,
    EventType,
    Flow,
    Payment,
    Violation,
    set_allowed,
    set_before,
    set_code,
    set_pending,
    set_violations,
    set_warnings,
)

if TYPE_CHECKING:
    from ._table import Step

# Final: mypyc keeps these in C statics; any other module-level name is a dict lookup on every use.
_AUTOMATIC: Final = Flow.AUTOMATIC
_CAPTURED: Final = EventType.CAPTURED
_CAPTURE_REQUESTED: Final = EventType.CAPTURE_REQUESTED
_DECISION: Final = Decision
_VIOLATION: Final = Violation
_EXCEEDS_CAPTURABLE: Final = Code.EXCEEDS_CAPTURABLE
_CAPTURE: Final = Capture
_new: Final = object.__new__
_set_allowed: Final = set_allowed
_set_before: Final = set_before
_set_violations: Final = set_violations
_set_warnings: Final = set_warnings
_set_pending: Final = set_pending
_set_code: Final = set_code
_NO_WARNINGS: Final[tuple[Any, ...]] = ()
# A key length no rule reaches: the screen's "no maximum" (PrintableShape.high is math.inf there).
_UNBOUNDED: Final = 1 << 62


class Proposed:
    """The event a command would record, as guards read it (a `_guards.Fact`): a plain record, several
    times cheaper to build than a frozen Event. The Event itself is built only if a caller reads it."""

    __slots__ = ("amount", "at", "currency", "flow", "key", "type")

    def __init__(self, etype: EventType, at: datetime, amount: int | None, currency: str | None, key: str | None,
                 flow: Flow | None = None) -> None:
        self.type = etype
        self.at = at
        self.amount = amount
        self.currency = currency
        self.key = key
        self.flow = flow


class CaptureScreen:
    """The guards of `_guards.CAPTURE_SCREENED` that might refuse a capture, compiled for one policy.

    Each test is a sufficient condition for the guard named beside it to pass, so a guard left out can
    never fail; a guard named may still pass, and the guard itself then judges (and explains). Its worst
    mistake would be a missed violation, which the differential test (table, which screens, against the
    transitions Machine, which runs every guard) is there to catch.

    Called with the payment, then the fact's at, own amount, currency and key, the resolved amount,
    `room(payment, fact)`, and whether it judges a command: so `decide` needs no stand-in event to
    screen a capture, and passes the room it already computed to pick the transition. The policy's
    numbers are read once here; the key's format is tested with str methods (the shipped key rules are
    a PrintableShape) or `IdentifierRule.acceptor`, never a regex on this path.
    """

    def __init__(self, pol: Policy) -> None:
        self.keys_judged = pol.idempotency != "none"
        self.key_required = pol.idempotency == "required"
        self.key_ok = pol.idempotency_key.acceptor()
        shape = printable_shape(pol.idempotency_key)
        self.shaped = shape is not None
        self.low = shape.low if shape is not None else 0
        self.high = int(shape.high) if shape is not None and shape.high < _UNBOUNDED else _UNBOUNDED
        self.spaces = shape.spaces if shape is not None else False
        self.partial_no = pol.partial_capture == "no"
        # An amount at or above every minimum (and above 0) passes the minimum whatever the currency.
        self.clears_minimum = max(1, pol.amount_min.get("*", 1), *pol.amount_min.values())
        # No maximum still means int64's: every provider's amount field is one (see amount_valid).
        self.amount_max = pol.amount_max if pol.amount_max is not None else INT64_MAX
        fmt = pol.amount_format
        self.formatted = fmt is not None
        self.precision = fmt[0] if fmt is not None else 0
        self.scale = fmt[1] if fmt is not None else 0
        self.max_captures = pol.max_captures if pol.max_captures is not None else -1
        self.policy = pol

    def __call__(self, p: Payment, at: datetime, given: int | None, currency: str | None, key: str | None,
                 amount: int, left: int, command: bool) -> list[str]:
        return self.suspects(p, at, given, currency, key, amount, left, command)

    def suspects(self, p: Payment, at: datetime, given: int | None, currency: str | None, key: str | None,
                 amount: int, left: int, command: bool) -> list[str]:
        return self.judge(p, p.cancelled, p.pending, at, currency, key, amount, left, command)

    def judge(self, p: Payment, cancelled: int, pending: int, at: datetime, currency: str | None, key: str | None,
              amount: int, left: int, command: bool) -> list[str]:
        """`suspects`, given the payment's cancelled and pending amounts, which `decide_capture` has read."""
        suspects: list[str] = []
        if cancelled:
            suspects.append("nothing_cancelled")
        if pending:
            suspects.append("nothing_in_flight")
        if p.flow is _AUTOMATIC:
            suspects.append("manual_flow")
        authorized_in = p.currency
        if currency is not None and authorized_in is not None and currency != authorized_in:
            suspects.append("currency_matches")
        if key is not None:
            for use in p.keys:
                if use.key == key:
                    suspects.append("key_unique")
                    break
            if command and self.keys_judged and not (
                    (self.low <= len(key) <= self.high and key.isascii() and key.isprintable()
                     and (self.spaces or " " not in key))
                    if self.shaped else self.key_ok(key)):
                suspects.append("key_valid")
        elif command and self.key_required:
            suspects.append("key_valid")
        if amount > left:
            suspects.append("within_capturable")
        if self.partial_no and amount < left:
            suspects.append("partial_allowed")
        if amount < self.clears_minimum or amount > self.amount_max or self.formatted:
            in_currency = authorized_in or currency or "*"
            if (amount <= 0 or amount < self.policy.min_amount(in_currency) or amount > self.amount_max
                    or (self.formatted and in_currency != "*"
                        and fits_decimal(amount, in_currency, self.precision, self.scale))):
                suspects.append("amount_valid")
        if self.max_captures >= 0 and p.capture_count >= self.max_captures:
            suspects.append("below_max_captures")
        validity = p.validity
        if validity is not None:
            authorized_at = p.authorized_at
            if authorized_at is not None and at >= authorized_at + validity:
                suspects.append("not_expired")
        return suspects


class CaptureStep:
    """A capture transition as the plan takes it: where it goes, its screen, and the guards to run when
    the screen names them (`_table.Step`'s fields of the same names)."""

    def __init__(self, step: Step, screen: CaptureScreen) -> None:
        self.dest: str = step.dest
        self.suspects = screen
        self.by_room: dict[str, Any] = step.by_room
        self.by_name: dict[str, Any] = step.by_name
        # Whether the step has within_capturable, which refusals over the room are: by room, that guard is
        # `exceeds_capturable` (the registry's `Guard.by_room`), called here without a dict or boxing.
        self.room_checked = step.by_room.get("within_capturable") is exceeds_capturable


# A state's capture steps by [the amount leaves part of the room][something is captured]; None: no route holds.
Picks = tuple[tuple[CaptureStep | None, CaptureStep | None], tuple[CaptureStep | None, CaptureStep | None]]


class CapturePlan:
    """How `decide` judges a Capture command under the table's policy without the general machinery.

    `picks` holds the states from which every capture step is screened and routed by `Route.case` alone:
    for each, the step a capture takes by [the amount leaves part of the room][something is captured]
    (None: no route holds). A state absent from it takes the general path (so does a spec with no such
    state). The flags are the policy's answers `decide` needs on every capture.
    """

    def __init__(self, policy: Policy, etype: EventType, picks: dict[str, Picks]) -> None:
        self.policy = policy  # what it was compiled for: a spec evolved onto another takes the general path
        self.etype = etype  # what a capture command records: `captured`, or `capture_requested` when async
        self.settles = etype is _CAPTURED
        self.picks = picks
        # A partial capture takes the general path: partial_capture = becomes_full rewrites it, and a "yes"
        # that is only a marked default warns (PARTIAL_MAY_BECOME_FULL).
        self.partial_general = policy.partial_capture == "becomes_full" or policy.partial_assumed() is not None
        self.remainder_lapses = policy.remainder == "lapses"
        self.keys_unused = policy.idempotency == "none"  # a key only draws a warning
        # picks flattened for decide: index 2 * (leaves part) + (something captured).
        self.flat: dict[str, tuple[CaptureStep | None, ...]] = {
            state: (rows[0][0], rows[0][1], rows[1][0], rows[1][1]) for state, rows in picks.items()}


def compile_plan(steps: dict[tuple[str, EventType], tuple[Step, ...]], policy: Policy) -> CapturePlan:
    """The plan of a table compiled for `policy`, from its steps (`_table.Table.compile`)."""
    etype = _CAPTURE_REQUESTED if policy.capture == "async" else _CAPTURED
    picks: dict[str, Picks] = {}
    for (state, trigger), candidates in steps.items():
        if trigger is etype and all(isinstance(s.suspects, CaptureScreen)
                                    and (s.route is None or s.route.case is not None) for s in candidates):
            picks[state] = _picks(candidates)
    return CapturePlan(policy, etype, picks)


def _picks(candidates: tuple[Step, ...]) -> Picks:
    return ((_pick(candidates, False, False), _pick(candidates, False, True)),
            (_pick(candidates, True, False), _pick(candidates, True, True)))


def _pick(candidates: tuple[Step, ...], short: bool, some: bool) -> CaptureStep | None:
    """The first step whose route holds, as `_engine.evaluate` picks it."""
    for step in candidates:
        route = step.route
        if route is None or (route.case is not None and route.case(short, some)):
            screen = step.suspects
            assert isinstance(screen, CaptureScreen)  # compile_plan takes screened steps only
            return CaptureStep(step, screen)
    return None


def decide(payment: Payment, command: object) -> Decision:  # object: a non-command is the general path's CommandError
    """Judge `command` against the payment's spec before anything is sent. Pure; never raises for a
    policy refusal (only CommandError for something that is not a command).

    The common case, a Capture on a state the table's CapturePlan covers, is judged by the plan
    (`decide_capture`); anything else by the general path, `_engine._decide`."""
    if type(command) is _CAPTURE:
        d = decide_capture(payment, command)
        if d is not None:
            return d
    from ._engine import _decide

    return _decide(payment, command)  # type: ignore[arg-type]


def decide_capture(p: Payment, command: Capture) -> Decision | None:
    """`decide(p, command)` for a Capture (its exact class) on a state the plan covers; None for anything
    else, which the general path judges."""
    spec = p.spec
    plan = spec.table.capture
    if plan is None:
        return None
    policy = spec.policy
    if plan.policy is not policy:  # a spec evolved by hand onto another policy
        return None
    picks = plan.flat.get(p.state)
    if picks is None:
        return None
    captured = p.captured
    cancelled = p.cancelled
    pending = p.pending
    given = command.amount
    left = p.authorized - captured - cancelled  # `_guards.room`
    capturable = left - pending
    if not plan.settles:
        left = capturable
    amount = given if given is not None else left if left > 0 else 0  # `_engine.resolve_amount`
    step = picks[(2 if amount < left else 0) + (1 if captured > 0 else 0)]
    if step is None or (plan.partial_general and given is not None and 0 < given < capturable):
        return None
    key = command.key
    suspects = step.suspects.judge(p, cancelled, pending, command.at, command.currency, key, amount, left, True)
    e: Proposed | None = None
    if suspects:
        # The screen names key_unique for any key used before, which may make this a replay.
        if len(suspects) > 1 or suspects[0] == "key_unique":
            return None
        name = suspects[0]
        v: Violation | None = None
        if name == "within_capturable" and step.room_checked:  # most refusals
            v = exceeds_capturable(p, plan.etype, amount, left, policy)
        else:
            by_room = step.by_room.get(name)
            if by_room is not None:  # no stand-in event needed
                v = by_room(p, plan.etype, amount, left, policy)
            else:
                check = step.by_name.get(name)  # None: pruned as inert under this policy, so it passes
                if check is not None:
                    e = Proposed(plan.etype, command.at, given, command.currency, key)
                    v = check(p, e, amount, policy, True)
        if v is not None:
            d: Decision = _new(_DECISION)  # _values.deferred_decision(False, ...), written out
            _set_allowed(d, False)
            _set_before(d, p)
            _set_violations(d, (v,))
            _set_warnings(d, _NO_WARNINGS)
            _set_pending(d, (_SETTLE_REFUSED, p, command, amount))
            return d
    if command.final or plan.remainder_lapses or (key is not None and plan.keys_unused):
        # A warning or a release to add: `_engine._allowed`, which the general path ends in too.
        from ._engine import _allowed

        return _allowed(p, command, e or Proposed(plan.etype, command.at, given, command.currency, key), amount,
                        step.dest, warnings=[])
    d = _new(_DECISION)  # _values.deferred_decision(True, ...), written out
    _set_allowed(d, True)
    _set_before(d, p)
    _set_violations(d, _NO_WARNINGS)
    _set_warnings(d, _NO_WARNINGS)
    _set_pending(d, (_SETTLE_CAPTURE, p, command, plan.etype, amount, step.dest))
    return d


def exceeds_capturable(p: Payment, etype: EventType, amount: int, left: int, pol: Policy) -> Violation | None:
    """The within_capturable guard by room (`_guards.RoomCheck`): it judges most refused captures, so it
    is compiled here, and the guard registry names this function."""
    limit = left + pol.allowance(p.authorized) if pol.over_capture_percent else left
    if amount > limit:
        v: Violation = _new(_VIOLATION)  # _values.deferred_violation(...), written out
        _set_code(v, _EXCEEDS_CAPTURABLE)
        _set_pending(v, (_EXCEEDS_MESSAGE, p, etype, amount, limit, pol))
        return v
    return None


def exceeds_message(p: Payment, etype: EventType, amount: int, limit: int, pol: Policy) -> tuple[str]:
    """`_guards.exceeds_message`, on the first read of the Violation's message."""
    from ._guards import exceeds_message

    return exceeds_message(p, etype, amount, limit, pol)


def settle_capture(p: Payment, cmd: Capture, etype: EventType, amount: int, dest: str) -> tuple[Any, Any, Any]:
    """An allowed capture's deferred fields (`_engine._settle`), on the first read of one."""
    from ._engine import _settle

    return _settle(p, cmd, Proposed(etype, cmd.at, cmd.amount, cmd.currency, cmd.key), amount, dest)


def settle_refused(p: Payment, cmd: Capture, amount: int) -> tuple[Any, Any, Any]:
    """A refused capture's deferred fields (`_engine._settle_refused`), on the first read of one."""
    from ._engine import _settle_refused

    return _settle_refused(p, cmd, amount)


_SETTLE_CAPTURE: Final = settle_capture
_SETTLE_REFUSED: Final = settle_refused
_EXCEEDS_MESSAGE: Final = exceeds_message
