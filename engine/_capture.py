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
    deferred_decision,
    deferred_violation,
)

if TYPE_CHECKING:
    from ._spec import Spec
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
_NO_WARNINGS: Final[tuple[Any, ...]] = ()
# Whether mypyc compiled this module (its file is then the extension): see `new_decision`.
_COMPILED: Final = not __file__.endswith((".py", ".pyc"))
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
        """`suspects`, given the payment's cancelled and pending amounts."""
        found = self.screen(p, cancelled, pending, at, currency, key, amount, left, command)
        return suspect_names(found) if found else []

    def screen(self, p: Payment, cancelled: int, pending: int, at: datetime, currency: str | None, key: str | None,
               amount: int, left: int, command: bool) -> int:
        """`judge`'s guards as bits of SUSPECTS (0: none), which `decide_capture` tests without a list."""
        found = 0
        if cancelled:
            found |= _NOTHING_CANCELLED
        if pending:
            found |= _NOTHING_IN_FLIGHT
        if p.flow is _AUTOMATIC:
            found |= _MANUAL_FLOW
        if currency is not None:  # the payment's currency is read only when needed (most commands give none)
            authorized_in = p.currency
            if authorized_in is not None and currency != authorized_in:
                found |= _CURRENCY_MATCHES
        if key is not None:
            for use in p.keys:
                if use.key == key:
                    found |= _KEY_UNIQUE
                    break
            if command and self.keys_judged and not (
                    (self.low <= len(key) <= self.high
                     and (printable_ascii(key, self.spaces) if _COMPILED
                          else key.isascii() and key.isprintable() and (self.spaces or " " not in key)))
                    if self.shaped else self.key_ok(key)):
                found |= _KEY_VALID
        elif command and self.key_required:
            found |= _KEY_VALID
        if amount > left:
            found |= _WITHIN_CAPTURABLE
        if self.partial_no and amount < left:
            found |= _PARTIAL_ALLOWED
        if amount < self.clears_minimum or amount > self.amount_max or self.formatted:
            in_currency = p.currency or currency or "*"
            if (amount <= 0 or amount < self.policy.min_amount(in_currency) or amount > self.amount_max
                    or (self.formatted and in_currency != "*"
                        and fits_decimal(amount, in_currency, self.precision, self.scale))):
                found |= _AMOUNT_VALID
        if self.max_captures >= 0 and p.capture_count >= self.max_captures:
            found |= _BELOW_MAX_CAPTURES
        validity = p.validity
        if validity is not None:
            authorized_at = p.authorized_at
            if authorized_at is not None and at >= authorized_at + validity:
                found |= _NOT_EXPIRED
        return found


# The guards the screen may name, in the order it names them: bit i of `CaptureScreen.screen` is SUSPECTS[i].
SUSPECTS: Final[tuple[str, ...]] = (
    "nothing_cancelled", "nothing_in_flight", "manual_flow", "currency_matches", "key_unique", "key_valid",
    "within_capturable", "partial_allowed", "amount_valid", "below_max_captures", "not_expired")
_NOTHING_CANCELLED: Final = 1
_NOTHING_IN_FLIGHT: Final = 1 << 1
_MANUAL_FLOW: Final = 1 << 2
_CURRENCY_MATCHES: Final = 1 << 3
_KEY_UNIQUE: Final = 1 << 4
_KEY_VALID: Final = 1 << 5
_WITHIN_CAPTURABLE: Final = 1 << 6
_PARTIAL_ALLOWED: Final = 1 << 7
_AMOUNT_VALID: Final = 1 << 8
_BELOW_MAX_CAPTURES: Final = 1 << 9
_NOT_EXPIRED: Final = 1 << 10


def printable_ascii(key: str, spaces: bool) -> bool:
    """`key.isascii() and key.isprintable() and (spaces or " " not in key)`, for the compiled build:
    there each character is a C read, and the whole loop costs less than one str method call up to the
    longest key a shipped rule allows (the interpreter runs the str methods, faster there)."""
    for i in range(len(key)):
        c = ord(key[i])
        if c < 0x20 or c > 0x7E or (c == 0x20 and not spaces):
            return False
    return True


def suspect_names(found: int) -> list[str]:
    """The names of the bits set in `found`, in SUSPECTS' order."""
    return [name for i, name in enumerate(SUSPECTS) if found >> i & 1]


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
        self.exact_room = not policy.over_capture_percent  # the room is the capture's limit
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


class SpecPlan:
    """A spec and the plan that judges its captures (None: the general path judges them all)."""

    def __init__(self, spec: Spec | None, plan: CapturePlan | None) -> None:
        self.spec = spec
        self.plan = plan


class LastSpec:
    """The spec `decide` saw last, with its plan: a service decides on payments of one spec or a few,
    and this saves three attribute reads of frozen objects (the spec's table and policy, the table's
    plan) on each call. One entry, replaced whole, so a reader never pairs one spec with another's plan;
    it holds that spec alive, as the service's own use of it does."""

    def __init__(self) -> None:
        self.last = SpecPlan(None, None)


_LAST: Final = LastSpec()


def plan_of(spec: Spec) -> CapturePlan | None:
    """The spec's CapturePlan, or None when it has none or was evolved by hand onto another policy
    (its table, compiled for the old one, may not fit)."""
    last = _LAST.last
    if last.spec is spec:
        return last.plan
    plan = spec.table.capture
    if plan is not None and plan.policy is not spec.policy:
        plan = None
    _LAST.last = SpecPlan(spec, plan)
    return plan


def decide_capture(p: Payment, command: Capture) -> Decision | None:
    """`decide(p, command)` for a Capture (its exact class) on a state the plan covers; None for anything
    else, which the general path judges."""
    plan = plan_of(p.spec)
    if plan is None:
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
    # The amount as an object for the deferred fields' tuples: the command's own int when it gave one
    # (compiled, `amount` is a C integer, and boxing it again allocates an int each time).
    boxed: object = given
    if given is None:
        boxed = amount
    step = picks[(2 if amount < left else 0) + (1 if captured > 0 else 0)]
    if step is None or (plan.partial_general and given is not None and 0 < given < capturable):
        return None
    key = command.key
    at = command.at
    currency = command.currency
    found = step.suspects.screen(p, cancelled, pending, at, currency, key, amount, left, True)
    e: Proposed | None = None
    if found:
        # Several guards to run take the general path; so does key_unique, named for any key used
        # before, which may make this a replay.
        if found & (found - 1) or found == _KEY_UNIQUE:
            return None
        v: Violation | None = None
        policy = plan.policy
        if found == _WITHIN_CAPTURABLE and step.room_checked:  # most refusals
            # With no over-capture allowance the room is the limit, and the screen found it exceeded.
            v = (exceeds(p, plan.etype, boxed, left, policy) if plan.exact_room
                 else exceeds_capturable(p, plan.etype, amount, left, policy))
        else:
            name = SUSPECTS[found.bit_length() - 1]
            by_room = step.by_room.get(name)
            if by_room is not None:  # no stand-in event needed
                v = by_room(p, plan.etype, amount, left, policy)
            else:
                check = step.by_name.get(name)  # None: pruned as inert under this policy, so it passes
                if check is not None:
                    e = Proposed(plan.etype, at, given, currency, key)
                    v = check(p, e, amount, policy, True)
        if v is not None:
            return new_decision(False, p, (v,), (_SETTLE_REFUSED, p, command, boxed))
    if command.final or plan.remainder_lapses or (key is not None and plan.keys_unused):
        # A warning or a release to add: `_engine._allowed`, which the general path ends in too.
        from ._engine import _allowed

        return _allowed(p, command, e or Proposed(plan.etype, at, given, currency, key), amount,
                        step.dest, warnings=[])
    return new_decision(True, p, _NO_WARNINGS, (_SETTLE_CAPTURE, p, command, plan.etype, boxed, step.dest))


def new_decision(allowed: bool, before: Payment, violations: tuple[Violation, ...],
                 pending: tuple[Any, ...]) -> Decision:
    """`_values.deferred_decision(allowed, before, violations, (), pending)`, built the cheaper way for the build.

    Compiled, `object.__setattr__` is one C call into the slot; the slots' own setters that
    deferred_decision calls are method-wrappers, each called with an argument tuple, ~3x slower there
    (and twice as fast as object.__setattr__ in the interpreter, which is why the plain build calls it)."""
    if not _COMPILED:
        return deferred_decision(allowed, before, violations, _NO_WARNINGS, pending)
    d: Decision = _new(_DECISION)
    object.__setattr__(d, "allowed", allowed)
    object.__setattr__(d, "before", before)
    object.__setattr__(d, "violations", violations)
    object.__setattr__(d, "warnings", _NO_WARNINGS)
    object.__setattr__(d, "_pending", pending)
    return d


def exceeds_capturable(p: Payment, etype: EventType, amount: int, left: int, pol: Policy) -> Violation | None:
    """The within_capturable guard by room (`_guards.RoomCheck`): it judges most refused captures, so it
    is compiled here, and the guard registry names this function."""
    limit = left + pol.allowance(p.authorized) if pol.over_capture_percent else left
    return exceeds(p, etype, amount, limit, pol) if amount > limit else None


def exceeds(p: Payment, etype: EventType, amount: object, limit: int, pol: Policy) -> Violation:
    """EXCEEDS_CAPTURABLE for `amount` (an int, kept boxed) over `limit`, its message formatted on first
    read (`_values.deferred_violation`, with object.__setattr__ compiled: see `new_decision`)."""
    pending = (_EXCEEDS_MESSAGE, p, etype, amount, limit, pol)
    if not _COMPILED:
        return deferred_violation(_EXCEEDS_CAPTURABLE, pending)
    v: Violation = _new(_VIOLATION)
    object.__setattr__(v, "code", _EXCEEDS_CAPTURABLE)
    object.__setattr__(v, "_pending", pending)
    return v


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
