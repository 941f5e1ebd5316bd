"""decide, apply, replay and observe: the pure core.

- `decide(payment, command)` answers before any I/O: allowed or refused, every violation with its
  arithmetic, warnings for rules that rewrite or qualify the command, and the payment as it would be
  after success. A refusal is a value.
- `apply(payment, event)` records a fact. If the spec says the fact cannot happen it raises
  InvalidTransition and the payment, being immutable, is unchanged.
- `observe(payment, event)` records a fact whatever the spec says and returns the violations it broke:
  the audit's view, where facts are never refused.

All three run on the compiled table of the payment's spec; nothing here reads a clock, a file or a
socket.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from attrs import evolve

from ._builds import capture as _capture
from ._builds import chosen, is_compiled
from ._capture import Proposed as _Proposed
from ._codes import Code
from ._errors import CommandError, EventError, InvalidTransition
from ._guards import Fact, op_of
from ._money import is_currency, to_major_string
from ._time import FIRST_YEAR, LAST_YEAR, format_instant, instant_problem
from ._values import (
    Authorize,
    Cancel,
    Capture,
    Command,
    Decision,
    Event,
    EventType,
    Flow,
    KeyUse,
    Payment,
    PolicyWarning,
    Refund,
    Violation,
    deferred_decision,
    new_event,
    new_payment,
)

_AUTHORIZED = EventType.AUTHORIZED
_CAPTURE_REQUESTED = EventType.CAPTURE_REQUESTED
_CAPTURED = EventType.CAPTURED
_CAPTURE_FAILED = EventType.CAPTURE_FAILED
_CANCELLED = EventType.CANCELLED
_REFUNDED = EventType.REFUNDED
_EXPIRED = EventType.EXPIRED

# The judgement of one fact, compiled by mypyc where a C compiler was available (`_rules`; `_builds`
# chooses the build): the one copy of these rules, for observe, apply, decide and the audit.
# Imported by name (see `_builds`): a static `from . import` would pull the package's __init__ into the
# core's import cycle.
_rules = chosen(importlib.import_module(f"{__package__}._rules"))
RULES_COMPILED = is_compiled(_rules)
"""True when facts are judged by the mypyc-compiled rules."""
if TYPE_CHECKING:
    from ._rules import evaluate, judge, resolve_amount
else:
    resolve_amount, evaluate, judge = _rules.resolve_amount, _rules.evaluate, _rules.judge


def effect(p: Payment, e: Fact, amount: int, dest: str) -> Payment:
    """The payment after `e` moved `amount` and the machine went to `dest`."""
    t = e.type
    if t is _CAPTURED:
        keys = (*p.keys, KeyUse(e.key, "capture", amount)) if e.key is not None else None
        return p.moved(dest, captured=p.captured + amount, pending=0, capture_count=p.capture_count + 1, keys=keys)
    if t is _CAPTURE_REQUESTED:
        # The attempt is recorded with its key: reusing the key for another amount is a conflict even
        # if this capture fails (key_unique).
        keys = (*p.keys, KeyUse(e.key, "capture", amount, False)) if e.key is not None else None
        return p.moved(dest, pending=amount, keys=keys)
    if t is _CAPTURE_FAILED:
        # A failed attempt whose amount the fact shows (its own, or the capture in flight) binds its key
        # to that amount; an amount unknown binds nothing, as no conflict could be proved against it.
        keys = (*p.keys, KeyUse(e.key, "capture", amount, False)) if e.key is not None and amount > 0 else None
        return p.moved(dest, pending=0, keys=keys)
    if t is _REFUNDED:
        keys = (*p.keys, KeyUse(e.key, "refund", amount)) if e.key is not None else None
        return p.moved(dest, refunded=p.refunded + amount, refund_count=p.refund_count + 1, keys=keys)
    if t is _CANCELLED:
        keys = (*p.keys, KeyUse(e.key, "cancel", amount)) if e.key is not None else None
        return p.moved(dest, cancelled=p.cancelled + amount, keys=keys)
    if t is _EXPIRED:
        return p.moved(dest, cancelled=p.cancelled + amount)
    # authorized
    currency = e.currency if e.currency is not None else p.currency
    validity = p.spec.policy.validity_for(currency) if currency is not None else None
    if type(p) is not Payment:  # a subclass keeps its class, as attrs.evolve keeps it
        return evolve(p, state=dest, currency=currency, authorized=amount, authorized_at=e.at, validity=validity,
                      flow=e.flow)
    # Not attrs.evolve, which costs three times as much (once per audited payment).
    return new_payment(p.spec, p.reference, dest, currency, amount, p.captured, p.cancelled, p.refunded, p.pending,
                       p.capture_count, p.refund_count, e.at, validity, e.flow, p.keys)


def check_fact(event: Event) -> None:
    """Refuse an Event that is no fact: a hand-built Event has no validators (`Event.from_dict` is the
    parser), and `effect` would count it anyway. A str `type` would fall through to the authorization
    branch, a negative amount would un-capture money, True would count as 1, and a naive `at` would
    become the payment's clock. Raises EventError naming the field."""
    t = event.type
    amount = event.amount
    at = event.at
    flow = event.flow
    # The usual event in one test (~100 ns on observe's ~3 µs); anything else is judged field by field.
    if (type(t) is EventType and t is not _AUTHORIZED and (amount is None or (type(amount) is int and amount >= 0))
            and type(at) is datetime and type(at.tzinfo) is timezone and FIRST_YEAR <= at.year <= LAST_YEAR
            and (flow is None or type(flow) is Flow)):
        return
    if type(t) is not EventType:
        raise EventError(f"must be an EventType, got {t!r}", field="type")
    if amount is not None and (type(amount) is not int or amount < 0):
        raise EventError(f"must be an integer >= 0 of minor units, got {amount!r}", field="amount")
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise EventError(f"must be a timezone-aware datetime, got {at!r}", field="at")
    far = instant_problem(at)
    if far is not None:  # the rule Event.from_dict applies to text (_time.parse_instant)
        raise EventError(far, field="at")
    if flow is not None and type(flow) is not Flow:
        raise EventError(f"must be a Flow, got {flow!r}", field="flow")
    if t is _AUTHORIZED and event.currency is not None and not is_currency(event.currency):
        # The authorization fixes the payment's currency; every later message shows money in it.
        raise EventError(f"{event.currency!r} is not an ISO 4217 currency", field="currency")


def apply(payment: Payment, event: Event) -> Payment:
    """Record a fact. Returns the new payment.

    Raises InvalidTransition (carrying the violations) when the spec says the event cannot happen,
    or when the event belongs to another payment; EventError for an Event that is no fact (a str type,
    a negative or non-int amount, a naive `at`). The given payment is never changed.
    """
    if event.payment != payment.reference:
        raise InvalidTransition(f"event for payment {event.payment!r} applied to payment {payment.reference!r}")
    check_fact(event)
    amount = resolve_amount(payment, event)
    step, violations = evaluate(payment, event, amount, command=False)
    if violations or step is None:
        detail = "; ".join(f"{v.code.value}: {v.message}" for v in violations)
        raise InvalidTransition(f"{payment.spec.name}: {event.type.value} from state {payment.state!r} is "
                                f"impossible: {detail}", violations)
    return effect(payment, event, amount, step.dest)


def observe(payment: Payment, event: Event) -> tuple[Payment, tuple[Violation, ...]]:
    """Record a fact even when the spec forbids it; return the payment and what the fact broke.

    Money that moved is counted (an over-capture raises `captured`); a move the spec does not have
    leaves the state where it was. An Event that is no fact raises EventError, as `apply` does.
    """
    if event.payment != payment.reference:
        raise InvalidTransition(f"event for payment {event.payment!r} applied to payment {payment.reference!r}")
    check_fact(event)
    amount, dest, violations = judge(payment, event)
    return effect(payment, event, amount, dest), violations


def replay(events: Iterable[Event], spec: object = None) -> Payment:
    """Fold one payment's events through `apply`, from the spec's initial state.

    `spec` is a Spec; when None it is loaded from the first event's `provider`. Raises
    InvalidTransition for an impossible event, ValueError for an empty history or mixed payments.
    """
    from ._spec import Spec, load_spec

    payment: Payment | None = None
    for event in events:
        if payment is None:
            if spec is None:
                if event.provider is None:
                    raise ValueError("replay needs a spec, or a provider on the first event")
                spec = load_spec(event.provider)
            if not isinstance(spec, Spec):
                raise TypeError(f"spec must be a Spec, got {type(spec).__name__}")
            payment = Payment.new(spec, event.payment)
        elif event.payment != payment.reference:
            raise ValueError(f"replay takes one payment's events: {event.payment!r} after {payment.reference!r}")
        payment = apply(payment, event)
    if payment is None:
        raise ValueError("replay needs at least one event")
    return payment


# --------------------------------------------------------------------------------------------- decide


def _proposed(p: Payment, cmd: Command) -> _Proposed:
    if isinstance(cmd, Capture):
        etype = _CAPTURE_REQUESTED if p.spec.policy.capture == "async" else _CAPTURED
        return _Proposed(etype, cmd.at, cmd.amount, cmd.currency, cmd.key)
    if isinstance(cmd, Cancel):
        return _Proposed(_CANCELLED, cmd.at, cmd.amount, None, cmd.key)
    if isinstance(cmd, Refund):
        return _Proposed(_REFUNDED, cmd.at, cmd.amount, cmd.currency, cmd.key)
    if isinstance(cmd, Authorize):
        return _Proposed(_AUTHORIZED, cmd.at, cmd.amount, cmd.currency, cmd.key, flow=cmd.flow)
    raise CommandError(f"decide takes Authorize, Capture, Cancel or Refund, got {type(cmd).__name__}")


def _recorded(p: Payment, e: _Proposed, amount: int) -> Event:
    """The canonical fact that success records: the resolved amount, in the payment's currency."""
    return new_event(p.reference, e.type, e.at, amount, e.currency or p.currency, None, e.key, e.flow)


# decide(payment, command): judge a command before anything is sent (see `_capture.decide`, compiled with
# its capture plan by mypyc where a C compiler was available; `_builds` chooses the build).
decide: Callable[[Payment, Command], Decision] = _capture.decide


def _decide(p: Payment, command: Command) -> Decision:
    """`decide` for every command, by the general machinery."""
    policy = p.spec.policy
    warnings: list[PolicyWarning] = []
    may_be_full: PolicyWarning | None = None
    if (isinstance(command, Capture) and policy.partial_capture == "becomes_full" and command.amount is not None
            and 0 < command.amount < p.capturable):
        # Pipwave: "If PG not supporting partial capture, full capture will be done" (research 4.3).
        warnings.append(PolicyWarning(Code.PARTIAL_BECOMES_FULL,
                                      f"partial capture {command.amount} becomes a full capture of "
                                      f"{p.capturable}: the gateway cannot capture part"))
        command = evolve(command, amount=p.capturable)
    elif (isinstance(command, Capture) and command.amount is not None and 0 < command.amount < p.capturable
          and policy.partial_assumed() is not None):
        # The spec says the provider captures part, but only as a marked default: a gateway without partial
        # capture takes it all (Pipwave: "If PG not supporting partial capture, full capture will be done").
        # A warning on every partial capture it allows, so no one overcharges a customer unawares.
        may_be_full = PolicyWarning(Code.PARTIAL_MAY_BECOME_FULL,
                                    f"partial capture {command.amount} of {p.capturable}: {p.spec.name} may capture "
                                    f"the full {p.capturable} if the gateway cannot capture part; set "
                                    f"partial_capture for your gateway to settle it")
    e = _proposed(p, command)
    amount = resolve_amount(p, e)
    key = e.key

    # An identical retry under a used key is a replay: the provider answers as before and moves no
    # money. "Identical" includes the currency; another currency is another request (and refused below).
    if key is not None and p.keys and policy.idempotency != "none" and e.currency in (None, p.currency):
        # An omitted amount ("capture the rest", "cancel the rest") under a key that already took the rest
        # is that same request again; while money is left, it would be a new request under an old key.
        for used in p.keys:
            if used.key == key and used.succeeded and used.op == op_of(e.type) and (
                    used.amount == amount or (e.amount is None and amount <= 0)):
                warnings.append(PolicyWarning(Code.IDEMPOTENT_REPLAY,
                                              f"key {key!r} already succeeded for {used.op} {used.amount}; the "
                                              f"provider replays the result and moves no money"))
                return Decision(True, _normalize(p, command, used.amount), p, (), tuple(warnings), None, p)

    step, violations = evaluate(p, e, amount, command=True)
    if violations or step is None:
        return deferred_decision(False, p, violations, tuple(warnings), (_settle_refused, p, command, amount))
    if may_be_full is not None:
        warnings.append(may_be_full)
    return _allowed(p, command, e, amount, step.dest, warnings=warnings)


def _allowed(p: Payment, command: Command, e: _Proposed, amount: int, dest: str, *,
             warnings: list[PolicyWarning]) -> Decision:
    """An allowed command's decision: the warnings its policy attaches, and the remainder a final
    capture releases."""
    policy = p.spec.policy
    key = e.key
    if key is not None and policy.idempotency == "none":
        warnings.append(PolicyWarning(Code.IDEMPOTENCY_KEY_UNUSED,
                                      f"{p.spec.name} has no idempotency mechanism; key {key!r} is kept "
                                      f"locally only, so reconcile before any retry"))
    # What the capture leaves uncaptured matters for a final capture that must release it by a cancel,
    # or where the remainder lapses (it may stay held); otherwise it is simply left to capture later.
    remainder_rule = policy.remainder
    if (isinstance(command, Capture) and (remainder_rule == "lapses" or command.final)
            and p.remainder - amount > 0):
        if command.final and remainder_rule == "reserved_until_cancel":
            return _release_remainder(p, command, e, amount, dest=dest, warnings=warnings)
        if remainder_rule == "lapses":
            held = _remainder_held(p, amount)
            if held is not None:
                warnings.append(held)
    # The normalized command, the fact and the payment after are built when first read (Decision).
    pending = (_settle, p, command, e, amount, dest)
    return deferred_decision(True, p, (), tuple(warnings) if warnings else (), pending)


def _settle(p: Payment, cmd: Command, e: _Proposed, amount: int, dest: str
            ) -> tuple[Command, Event | None, Payment | None]:
    """An allowed decision's deferred fields: the normalized command, the fact, the payment after."""
    fact = _recorded(p, e, amount)
    return _normalize(p, cmd, amount), fact, effect(p, fact, amount, dest)


def _settle_refused(p: Payment, cmd: Command, amount: int) -> tuple[Command, Event | None, Payment | None]:
    return _normalize(p, cmd, amount), None, None


def _normalize(p: Payment, cmd: Command, amount: int) -> Command:
    # Rebuilt only when something changes; evolve() would re-run every validator on every call.
    if isinstance(cmd, Capture):
        currency = cmd.currency or p.currency
        if cmd.amount == amount and cmd.currency == currency:
            return cmd
        return Capture(at=cmd.at, amount=amount, currency=currency, key=cmd.key, final=cmd.final)
    if isinstance(cmd, Cancel):
        return cmd if cmd.amount == amount else Cancel(at=cmd.at, amount=amount, key=cmd.key)
    if isinstance(cmd, Refund):
        if cmd.currency is not None or p.currency is None:
            return cmd
        return Refund(amount=cmd.amount, at=cmd.at, currency=p.currency, key=cmd.key)
    return cmd


# What a capture leaves uncaptured, `left`, is judged from the payment before it: a capture of `amount`
# leaves remainder - amount whether it settles at once (captured) or goes in flight (pending).


def _shown(left: int, currency: str | None) -> str:
    return f"{to_major_string(left, currency)} {currency}" if currency else str(left)


def _release_remainder(p: Payment, cmd: Capture, e: _Proposed, amount: int, *, dest: str,
                       warnings: list[PolicyWarning]) -> Decision:
    """A final capture where the provider releases the remainder only by a cancel sent after it: the
    decision's `after` includes that cancel, or the capture is refused if the cancel could not follow."""
    fact = _recorded(p, e, amount)
    after = effect(p, fact, amount, dest)
    normalized = _normalize(p, cmd, amount)
    left = after.capturable
    cancel = Event(after.reference, _CANCELLED, cmd.at)
    step, violations = evaluate(after, cancel, left, command=False)
    if violations or step is None:
        return Decision(False, normalized, p, violations, tuple(warnings))
    released = effect(after, cancel, left, step.dest)
    warnings.append(PolicyWarning(Code.REMAINDER_RELEASED,
                                  f"final capture: the remainder {left} ({_shown(left, after.currency)}) is "
                                  f"released by a cancel after the capture; {after.spec.name} releases only by "
                                  f"cancel"))
    return Decision(True, normalized, p, (), tuple(warnings), fact, released)


def _remainder_held(p: Payment, amount: int) -> PolicyWarning | None:
    """REMAINDER_HELD, on a provider whose remainder lapses: the capture leaves money on the card that
    nothing can release any more, because no further capture is allowed."""
    policy = p.spec.policy
    left = p.remainder - amount
    captures = p.capture_count + 1  # this capture, settled or in flight
    if policy.max_captures is not None and captures >= policy.max_captures:
        until = format_instant(p.expires_at) if p.expires_at else "the authorization lapses (validity unknown)"
        return PolicyWarning(Code.REMAINDER_HELD,
                             f"the capture leaves {left} ({_shown(left, p.currency)}) of {p.authorized} held on "
                             f"the card until {until}; {p.spec.name} cannot release it after a capture")
    return None
