"""The fixed registry of guards and routes that specs may name.

A spec can never name arbitrary code: only the functions registered here. Each is pure: it reads the
payment, the event being judged, the resolved amount and the policy, and nothing else.

- A **guard** says whether a transition is legal. It returns None, or the Violation that refuses it.
  Its message shows the arithmetic, because "capture 800 > capturable 750 = authorized 1000 - captured
  250" is something a payment engineer can act on and "invalid amount" is not. The guards on common
  refusal paths leave that message to be formatted on first read (`deferred_violation`).
- A **route** chooses between transitions of one trigger from one state (Vipps: a partial capture
  stays `authorized`, a capture of the rest goes to `captured`). Routes of one group partition every
  case, so exactly one transition of a group matches; that is what lets the compiled table and the
  transitions Machine agree.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from attrs import frozen

from ._builds import capture as _capture
from ._builds import capture_imported as _capture_imported
from ._codes import Code
from ._money import INT64_MAX, fits_decimal, to_major_string
from ._policy import Policy
from ._time import format_instant
from ._values import EventType, Flow, Payment, Violation, deferred_violation, new_violation

if TYPE_CHECKING:
    from ._capture import CaptureScreen


class Fact(Protocol):
    """What guards and routes read of the event being judged. An `Event` is one; `decide` passes a
    lighter stand-in, because building a frozen Event it may never need costs more than the guards."""

    @property
    def type(self) -> EventType: ...
    @property
    def at(self) -> datetime: ...
    @property
    def amount(self) -> int | None: ...
    @property
    def currency(self) -> str | None: ...
    @property
    def key(self) -> str | None: ...
    @property
    def flow(self) -> Flow | None: ...


GuardFn = Callable[[Payment, Fact, int, Policy, bool], Violation | None]
# A guard's verdict from the event type and `room(payment, fact)` alone, for a guard that reads nothing
# else of the fact: decide's capture path has both at hand and so builds no stand-in event to call it.
RoomCheck = Callable[[Payment, EventType, int, int, Policy], Violation | None]
RouteFn = Callable[[Payment, Fact, int], bool]
# within_capturable by room, compiled with decide's capture plan (whose refusals run it), of the build
# `_builds` chose.
exceeds_capturable: RoomCheck = _capture.exceeds_capturable

CAPTURE_TYPES = frozenset({EventType.CAPTURE_REQUESTED, EventType.CAPTURED})
_OPS = {t: str(t.value) for t in EventType} | {
    EventType.CAPTURE_REQUESTED: "capture", EventType.CAPTURED: "capture", EventType.CANCELLED: "cancel",
    EventType.REFUNDED: "refund", EventType.AUTHORIZED: "authorize"}


def op_of(etype: EventType) -> str:
    """The merchant operation an event belongs to: capture, cancel, refund or authorize."""
    return _OPS[etype]


def _never_inert(policy: Policy) -> bool:
    return False


@frozen
class Guard:
    """A named guard. `inert(policy)` is True when, under that policy, the guard can never fail
    whatever the payment and event; the compiled table then leaves it out of the hot path."""

    name: str
    code: Code
    check: GuardFn
    doc: str
    inert: Callable[[Policy], bool] = _never_inert
    by_room: RoomCheck | None = None  # the same verdict and Violation as `check`, where it has one


@frozen
class Route:
    """A named route. `case`, where given, is the same predicate over the two facts every registered route
    reads (the amount leaves part of the room; something is captured), so the compiled table can pick a
    capture's transition without calling anything; a test holds `case` to `holds`."""

    name: str
    group: str
    holds: RouteFn
    doc: str
    case: Callable[[bool, bool], bool] | None = None


# Module constants: an enum member looked up on its class costs a slow attribute access each time.
_CAPTURED = EventType.CAPTURED
_AUTHORIZED = EventType.AUTHORIZED
_AUTOMATIC = Flow.AUTOMATIC
# The same for the codes of the refusals (an enum attribute costs ~70 ns each time, on every refusal).
_AUTHORIZATION_EXPIRED = Code.AUTHORIZATION_EXPIRED
_REFUND_EXCEEDS_CAPTURED = Code.REFUND_EXCEEDS_CAPTURED
_AMOUNT_INVALID = Code.AMOUNT_INVALID
_AUTOMATIC_CAPTURE_FLOW = Code.AUTOMATIC_CAPTURE_FLOW
_CANCEL_AMOUNT_INVALID = Code.CANCEL_AMOUNT_INVALID
_CAPTURE_IN_FLIGHT = Code.CAPTURE_IN_FLIGHT
_CURRENCY_MISMATCH = Code.CURRENCY_MISMATCH
_CURRENCY_UNSUPPORTED = Code.CURRENCY_UNSUPPORTED
_DUPLICATE_CAPTURE = Code.DUPLICATE_CAPTURE
_EXCEEDS_CAPTURABLE = Code.EXCEEDS_CAPTURABLE
_IDEMPOTENCY_KEY_CONFLICT = Code.IDEMPOTENCY_KEY_CONFLICT
_IDEMPOTENCY_KEY_REQUIRED = Code.IDEMPOTENCY_KEY_REQUIRED
_INVALID_STATE = Code.INVALID_STATE
_MULTIPLE_CAPTURES_UNSUPPORTED = Code.MULTIPLE_CAPTURES_UNSUPPORTED
_MULTIPLE_REFUNDS_UNSUPPORTED = Code.MULTIPLE_REFUNDS_UNSUPPORTED
_NOT_AUTHORIZED = Code.NOT_AUTHORIZED
_PARTIAL_CAPTURE_UNSUPPORTED = Code.PARTIAL_CAPTURE_UNSUPPORTED
_REFERENCE_INVALID = Code.REFERENCE_INVALID
_REFUND_WINDOW_EXPIRED = Code.REFUND_WINDOW_EXPIRED
_REMAINDER_CANCELLED = Code.REMAINDER_CANCELLED


def room(p: Payment, e: Fact) -> int:
    """What a capture may still take. A `captured` event settles the capture in flight, so the
    pending amount is room for it; anything else must leave the pending amount alone."""
    base = p.authorized - p.captured - p.cancelled
    return base if e.type is _CAPTURED else base - p.pending


def room_arithmetic(p: Payment, etype: EventType, pol: Policy) -> str:
    """`room` for a fact of type `etype`, spelled out, plus any over-capture allowance."""
    return _room_text(p.authorized, p.captured, p.cancelled, p.pending, etype, pol.allowance(p.authorized))


def _room_text(authorized: int, captured: int, cancelled: int, pending: int, etype: EventType,  # noqa: PLR0917
               allowance: int) -> str:
    text = f"authorized {authorized} - captured {captured}"
    if cancelled:
        text += f" - cancelled {cancelled}"
    if pending and etype is not _CAPTURED:
        text += f" - pending {pending}"
    if allowance:
        text += f" + over-capture allowance {allowance}"
    return text


def _in_major(currency: str | None, amount: int, limit: int) -> str:
    """' (NOK 800.00 > 750.00)': the same comparison as a person reads money, minor units being exact."""
    if currency is None or amount < 0 or limit < 0:
        return ""
    return f" ({currency} {to_major_string(amount, currency)} > {to_major_string(limit, currency)})"


_v = new_violation  # Violation(code, message), built without attrs' frozen __init__

# Refusals whose message names only a few values (a state, a currency pair, a count) are built once per
# message and shared: a Violation is frozen, and equal by value to one built afresh. On the audit's exact
# path they are most of the lines that break a rule, and a hit skips the f-string and the Violation
# (~2k instructions) for a dict lookup. Bounded (a service may build specs by the thousand); keyed by
# what the message says, never by a Spec or Payment (it holds none of them).
_SHARED: dict[tuple[Any, ...], Violation] = {}
_MAX_SHARED = 4096


def _share(key: tuple[Any, ...], v: Violation) -> Violation:
    """`v`, kept as the shared Violation of `key` while there is room."""
    if len(_SHARED) < _MAX_SHARED:
        _SHARED[key] = v
    return v


# ------------------------------------------------------------------------------------------- guards


def amount_valid(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    currency = p.currency or e.currency or "*"
    if amount <= 0:
        if amount == 0 and not command and e.type is _AUTHORIZED:
            # A zero-amount authorization is a card check (Bambora's swagger: amount minimum 0): a legal
            # fact, which reserves nothing. What is refused is capturing from it (nothing is capturable).
            return None
        if e.amount is None:
            return _v(_AMOUNT_INVALID, f"nothing left to {op_of(e.type)}: amount resolves to {amount}")
        return _v(_AMOUNT_INVALID, f"{op_of(e.type)} amount must be a positive integer of minor units, "
                                       f"got {amount}")
    low = pol.min_amount(currency)
    if amount < low:
        return _v(_AMOUNT_INVALID, f"{op_of(e.type)} {amount} < minimum {low} {currency} minor units")
    if pol.amount_max is not None and amount > pol.amount_max:
        return _v(_AMOUNT_INVALID, f"{op_of(e.type)} {amount} > maximum {pol.amount_max} minor units")
    if amount > INT64_MAX:
        return _v(_AMOUNT_INVALID, f"{op_of(e.type)} {amount} > {INT64_MAX} minor units: beyond int64, "
                                       f"the largest amount any provider takes")
    # Checked for a full capture too: Pipwave's builder always sends `capture_amount` (research 4.3).
    if pol.amount_format is not None and currency != "*":
        precision, scale = pol.amount_format
        why = fits_decimal(amount, currency, precision, scale)
        if why:
            return _v(_AMOUNT_INVALID, f"{op_of(e.type)} {amount} is not representable as decimal"
                                           f"({precision},{scale}) in major units: {why}")
    return None


def currency_matches(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    given = e.currency
    held = p.currency
    if given is not None and held is not None and given != held:
        key = (_CURRENCY_MISMATCH, e.type, given, held)
        return _SHARED.get(key) or _share(key, _v(_CURRENCY_MISMATCH, f"{op_of(e.type)} in {given}, but the "
                                                                      f"payment was authorized in {held}"))
    return None


def currency_supported(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    currency = e.currency or p.currency
    if pol.currencies is not None and currency not in pol.currencies:
        return _v(_CURRENCY_UNSUPPORTED, f"{currency} is not one of the provider's currencies "
                                             f"({', '.join(sorted(pol.currencies))})")
    return None


def reference_valid(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    why = pol.reference.problem(p.reference)
    return _v(_REFERENCE_INVALID, f"payment reference {why}") if why else None


def key_valid(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    # Only requests carry the duty to send a key; logged facts often lack one (Vipps webhooks' key
    # is nullable), so this guard judges commands only.
    if not command or pol.idempotency == "none":
        return None
    if e.key is None:
        if pol.idempotency == "required":
            return _v(_IDEMPOTENCY_KEY_REQUIRED, f"the provider requires an idempotency key on {op_of(e.type)}")
        return None
    why = pol.idempotency_key.problem(e.key)
    return _v(_IDEMPOTENCY_KEY_REQUIRED, f"idempotency key {why}") if why else None


def key_unique(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    # A key is bound to its first request's parameters, whether that request succeeded or not: Vipps
    # answers a different request under a used key with "Capture idempotency conflict" ("The capture
    # request in an idempotent retry must be identical to the previous request(s)", ePayment FAQ,
    # research/providers.md 2.7). Only an identical retry may reuse it.
    if e.key is None:
        return None
    op = op_of(e.type)
    for use in p.keys:
        if use.key != e.key:
            continue
        # The message quotes the key, so it is seldom shared: formatted on first read (`_conflict_message`).
        if e.currency is not None and e.currency != p.currency:
            return deferred_violation(_IDEMPOTENCY_KEY_CONFLICT, (_conflict_message, e.key, use.succeeded, use.op,
                                                                  use.amount, p.currency, op, None, e.currency))
        if use.op != op or use.amount != amount:
            return deferred_violation(_IDEMPOTENCY_KEY_CONFLICT, (_conflict_message, e.key, use.succeeded, use.op,
                                                                  use.amount, None, op, amount, None))
        if not use.succeeded:
            continue  # an identical retry of an attempt that has not succeeded (or its outcome)
        if not command:
            # A second success under one key: the provider promised a replay, not a new capture.
            code = _DUPLICATE_CAPTURE if op == "capture" else _IDEMPOTENCY_KEY_CONFLICT
            return _v(code, f"a second successful {op} of {amount} under key {e.key!r}")
        if pol.idempotency == "none":
            # decide() answers identical retries as replays only where the provider dedupes them; here
            # a resend is a second movement of money, the double capture on retry.
            code = _DUPLICATE_CAPTURE if op == "capture" else _IDEMPOTENCY_KEY_CONFLICT
            return _v(code, f"key {e.key!r} already succeeded for {op} {amount} and the provider has no "
                            f"idempotency, so sending it again would {op} twice; reconcile instead")
    return None


def _conflict_message(key: str, succeeded: bool, used_op: str, used_amount: int, currency: str | None,  # noqa: PLR0917
                      op: str, amount: int | None, reused_in: str | None) -> tuple[str]:
    """key_unique's IDEMPOTENCY_KEY_CONFLICT: a key reused in another currency (`reused_in`), else for
    another operation or amount."""
    did = "already did" if succeeded else "was used by an attempted"
    if reused_in is not None:
        return (f"key {key!r} {did} {used_op} {used_amount} {currency}; reused for {op} in {reused_in}",)
    tail = "" if succeeded else " that has not succeeded"
    return (f"key {key!r} {did} {used_op} {used_amount}{tail}; reused for {op} {amount}"
            + (tail and ": only an identical retry may reuse its key"),)


# The messages left to be formatted on first read hold plain values (ints, strs, enum members, instants),
# never the Payment or the event: a finding keeps its Violation's message state until the report is
# written, and a Payment in it was most of a finding's memory (issue 13 (d)); plain values also pickle
# small, for a worker sending its findings to the parent unformatted.


def not_expired(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    # `p.expires_at` spelled out: a property is a Python frame entered from C (~0.6k instructions), and
    # this guard runs on most exact-path lines of the audit.
    start = p.authorized_at
    validity = p.validity
    if start is not None and validity is not None and e.at >= start + validity:
        # Not `expires` itself: it is authorized_at + validity, and a finding keeps this state until the
        # report is written (a datetime less each, ~0.6 MB of the bench log's peak RSS).
        return deferred_violation(_AUTHORIZATION_EXPIRED, (_expired_message, _OPS[e.type], e.at, p.authorized_at,
                                                           p.validity))
    return None


def _expired_message(op: str, at: datetime, authorized_at: datetime, validity: timedelta) -> tuple[str]:
    expires = authorized_at + validity  # `Payment.expires_at`, which did not overflow when judged
    return (f"{op} at {format_instant(at)} is at or past expiry {format_instant(expires)} "
            f"= authorized {format_instant(authorized_at)} + {validity.days}d"
            + (f" {validity.seconds // 3600}h" if validity.seconds else ""),)


def manual_flow(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    if p.flow is _AUTOMATIC:
        if e.type is EventType.CANCELLED:
            return _v(_AUTOMATIC_CAPTURE_FLOW, "the payment was authorized in an automatic-capture flow, "
                                                  "which captures it by itself: there is nothing to void")
        return _v(_AUTOMATIC_CAPTURE_FLOW, "the payment was authorized in an automatic-capture flow, "
                                              "which refuses manual captures")
    return None


def within_capturable(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    return exceeds_capturable(p, e.type, amount, room(p, e), pol)


def exceeds_message(p: Payment, etype: EventType, amount: int, limit: int, pol: Policy) -> tuple[str]:
    """The message of `exceeds_capturable`'s Violation, formatted on its first read."""
    return exceeds_text(*exceeds_values(p, etype, amount, limit, pol))


def exceeds_values(p: Payment, etype: EventType, amount: int, limit: int, pol: Policy) -> tuple[Any, ...]:
    """What `exceeds_text` reads of the payment and policy, as plain values (see `compact`)."""
    return (p.currency, p.authorized, p.captured, p.cancelled, p.pending, etype, amount, limit,
            pol.allowance(p.authorized))


def exceeds_text(currency: str | None, authorized: int, captured: int, cancelled: int, pending: int,  # noqa: PLR0917
                 etype: EventType, amount: int, limit: int, allowance: int) -> tuple[str]:
    return (f"capture {amount} > capturable {limit} = "
            f"{_room_text(authorized, captured, cancelled, pending, etype, allowance)}"
            f"{_in_major(currency, amount, limit)}",)


def partial_allowed(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    full = room(p, e)
    if pol.partial_capture == "no" and amount < full:
        return _v(_PARTIAL_CAPTURE_UNSUPPORTED,
                  f"capture {amount} < capturable {full}; the provider captures in full only")
    return None


def below_max_captures(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    most = pol.max_captures
    count = p.capture_count
    if most is not None and count >= most:
        key = (_MULTIPLE_CAPTURES_UNSUPPORTED, count, most)
        return _SHARED.get(key) or _share(key, _v(_MULTIPLE_CAPTURES_UNSUPPORTED, f"{count} capture(s) already made; "
                                                                                  f"the provider allows {most}"))
    return None


def nothing_cancelled(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    if p.cancelled:
        return _v(_REMAINDER_CANCELLED, f"the remainder was released (cancelled {p.cancelled}); "
                                            f"nothing can be captured after a cancel")
    return None


def nothing_in_flight(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    if p.pending:
        return _v(_CAPTURE_IN_FLIGHT, f"a capture of {p.pending} is still pending")
    return None


def outcome_only(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    # The provider's answer settles a capture in flight; a new capture command must wait for it.
    if command:
        return _v(_CAPTURE_IN_FLIGHT, f"a capture of {p.pending} is still pending; wait for its outcome "
                                          f"(or reconcile) before another capture")
    return None


def within_refundable(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    captured = p.captured
    refundable = captured - p.refunded  # `p.refundable`, without a property's frame
    if amount > refundable:
        return deferred_violation(_REFUND_EXCEEDS_CAPTURED, (_over_refund_message, amount, refundable, captured,
                                                             p.refunded, p.currency))
    return None


def _over_refund_message(amount: int, refundable: int, captured: int, refunded: int,
                         currency: str | None) -> tuple[str]:
    return (f"refund {amount} > refundable {refundable} = captured {captured} - refunded {refunded}"
            f"{_in_major(currency, amount, refundable)}",)


def below_max_refunds(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    if pol.max_refunds is not None and p.refund_count >= pol.max_refunds:
        return _v(_MULTIPLE_REFUNDS_UNSUPPORTED,
                  f"{p.refund_count} refund(s) already made; the provider allows {pol.max_refunds}")
    return None


def within_refund_window(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    if pol.refund_window is None or p.authorized_at is None:
        return None
    closes = p.authorized_at + pol.refund_window
    if e.at >= closes:
        return _v(_REFUND_WINDOW_EXPIRED, f"refund at {format_instant(e.at)} is at or past "
                                              f"{format_instant(closes)}, the end of the refund window")
    return None


def cancels_whole_remainder(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> Violation | None:
    whole = max(p.capturable, 0)
    if e.amount is not None and e.amount != whole:
        return _v(_CANCEL_AMOUNT_INVALID, f"cancel {e.amount} != remainder {whole}; the provider always "
                                              f"releases the whole remainder")
    return None


GUARDS: dict[str, Guard] = {g.name: g for g in (
    Guard("amount_valid", Code.AMOUNT_INVALID, amount_valid,
          "amount is positive, within the provider's bounds, and representable in its format"),
    Guard("currency_matches", Code.CURRENCY_MISMATCH, currency_matches,
          "the currency, when given, equals the authorized currency"),
    Guard("currency_supported", Code.CURRENCY_UNSUPPORTED, currency_supported,
          "the provider takes this currency", lambda pol: pol.currencies is None),
    Guard("reference_valid", Code.REFERENCE_INVALID, reference_valid,
          "the payment reference obeys the provider's length and charset rules"),
    Guard("key_valid", Code.IDEMPOTENCY_KEY_REQUIRED, key_valid,
          "a required idempotency key is present and well-formed (commands only)",
          lambda pol: pol.idempotency == "none"),
    Guard("key_unique", Code.IDEMPOTENCY_KEY_CONFLICT, key_unique,
          "an idempotency key is never reused with other parameters, nor succeeds twice"),
    Guard("not_expired", Code.AUTHORIZATION_EXPIRED, not_expired,
          "the authorization's validity window has not passed"),
    Guard("manual_flow", Code.AUTOMATIC_CAPTURE_FLOW, manual_flow,
          "the payment is not in an automatic-capture flow"),
    Guard("within_capturable", Code.EXCEEDS_CAPTURABLE, within_capturable,
          "amount <= authorized - captured - cancelled - pending (+ allowance)", by_room=exceeds_capturable),
    Guard("partial_allowed", Code.PARTIAL_CAPTURE_UNSUPPORTED, partial_allowed,
          "a partial amount only where the provider captures part", lambda pol: pol.partial_capture != "no"),
    Guard("below_max_captures", Code.MULTIPLE_CAPTURES_UNSUPPORTED, below_max_captures,
          "fewer captures so far than max_captures", lambda pol: pol.max_captures is None),
    Guard("nothing_cancelled", Code.REMAINDER_CANCELLED, nothing_cancelled,
          "no remainder has been released"),
    Guard("nothing_in_flight", Code.CAPTURE_IN_FLIGHT, nothing_in_flight,
          "no capture is pending"),
    Guard("outcome_only", Code.CAPTURE_IN_FLIGHT, outcome_only,
          "only the provider's outcome settles a capture in flight; a new capture command is refused"),
    Guard("within_refundable", Code.REFUND_EXCEEDS_CAPTURED, within_refundable,
          "amount <= captured - refunded"),
    Guard("below_max_refunds", Code.MULTIPLE_REFUNDS_UNSUPPORTED, below_max_refunds,
          "fewer refunds so far than max_refunds", lambda pol: pol.max_refunds is None),
    Guard("within_refund_window", Code.REFUND_WINDOW_EXPIRED, within_refund_window,
          "the refund window since authorization has not passed", lambda pol: pol.refund_window is None),
    Guard("cancels_whole_remainder", Code.CANCEL_AMOUNT_INVALID, cancels_whole_remainder,
          "a cancel amount, when given, is the whole remainder"),
)}


# Guards that pass, whatever else they read, on a logged fact (`command` False): they judge commands only.
FACT_INERT = frozenset({"key_valid", "outcome_only"})
# Guards that pass, whatever else they read, on a fact with no idempotency key: they judge its key alone.
KEYED = frozenset({"key_unique"})


# ----------------------------------------------------------------------------- capture fast path

# The guards `capture_suspects` screens. A capture step whose guards are all among them runs only the
# guards the screen cannot clear: none for a well-formed capture, usually one for a refused one.
CAPTURE_SCREENED = frozenset({"key_valid", "key_unique", "amount_valid", "currency_matches", "not_expired",
                              "nothing_cancelled", "nothing_in_flight", "below_max_captures", "partial_allowed",
                              "within_capturable", "manual_flow"})


def capture_suspects(p: Payment, e: Fact, amount: int, pol: Policy, command: bool) -> list[str]:
    """The guards of CAPTURE_SCREENED that might refuse this capture; empty when none can (see
    `_capture.CaptureScreen`: a guard left out can never fail)."""
    # The screen compiled per policy is the one implementation; this builds it afresh for any policy
    # (a spec evolved by hand onto a policy its table was not compiled for).
    return capture_screen(pol)(p, e.at, e.amount, e.currency, e.key, amount, room(p, e), command)


def capture_screen(pol: Policy) -> CaptureScreen:
    """The capture screen (see `capture_suspects`) compiled for one policy: `_capture.CaptureScreen`, of
    the build `_builds` chose (mypyc's, or the plain-Python source)."""
    screen: CaptureScreen = _capture.CaptureScreen(pol)
    return screen


# ------------------------------------------------------------------------------------------- routes


ROUTES: dict[str, Route] = {r.name: r for r in (
    Route("leaves_remainder", "remainder", lambda p, e, amount: amount < room(p, e),
          "the capture leaves part of the authorization uncaptured", lambda short, some: short),
    Route("takes_remainder", "remainder", lambda p, e, amount: amount >= room(p, e),
          "the capture takes all that is left (or more)", lambda short, some: not short),
    Route("nothing_captured", "captures", lambda p, e, amount: p.captured == 0,
          "nothing has been captured yet", lambda short, some: not some),
    Route("something_captured", "captures", lambda p, e, amount: p.captured > 0,
          "something has been captured", lambda short, some: some),
)}

# Each group's routes partition every (payment, event, amount): exactly one holds.
ROUTE_GROUPS: dict[str, frozenset[str]] = {}
for _route in ROUTES.values():
    ROUTE_GROUPS[_route.group] = ROUTE_GROUPS.get(_route.group, frozenset()) | {_route.name}



# ------------------------------------------------------------------------------- message state

def _exceeds_state(p: Payment, etype: EventType, amount: int, limit: int, pol: Policy) -> tuple[Any, ...]:
    return (exceeds_text, *exceeds_values(p, etype, amount, limit, pol))


# The deferred messages whose state holds the Payment (decide's compiled `exceeds_capturable` defers its
# message with `_capture.exceeds_message`, of either build), and their state as plain values.
PLAIN_STATE: dict[Any, Callable[..., tuple[Any, ...]]] = {
    _capture.exceeds_message: _exceeds_state, _capture_imported.exceeds_message: _exceeds_state}


def plain_state(pending: tuple[Any, ...]) -> tuple[Any, ...]:
    """A deferred message's state `(settle, *args)` with plain values only: the same text on first read,
    without the Payment a compiled guard's state may hold."""
    to_plain = PLAIN_STATE.get(pending[0])
    return to_plain(*pending[1:]) if to_plain is not None else pending


# ------------------------------------------------------------------------------------ no such move

# Plain Python on purpose, though its caller (`_rules.evaluate`) is compiled: it is a chain of guard calls
# and attribute reads of attrs slots, which the interpreter does inline (~20 instructions a read) and a
# compiled caller through a generic call and getattr each (~150); as one Python frame it cost ~2x less.
_REFUNDED = EventType.REFUNDED
_CANCELLED = EventType.CANCELLED
_TYPE_VALUES = {t: t.value for t in EventType}  # `.value` is a descriptor call


def explain_missing(p: Payment, e: Fact, amount: Any) -> Violation:
    """Why the spec has no transition for `e` from `p`'s state, in the most specific code that fits.

    Judged from the aggregate, not from state names, so a user's own spec gets the same precision.
    """
    policy = p.spec.policy
    t = e.type
    if p.authorized_at is None and t is not _AUTHORIZED:
        key: tuple[Any, ...] = (_NOT_AUTHORIZED, t, p.state)
        return _SHARED.get(key) or _share(key, new_violation(_NOT_AUTHORIZED, f"{op_of(t)} needs a successful "
                                                                              f"authorization; payment is {p.state!r}"))
    if t is _AUTHORIZED:
        return new_violation(_INVALID_STATE, f"{p.spec.name} has no {_TYPE_VALUES[t]} transition from state "
                                             f"{p.state!r}: the payment is already authorized")
    if t is _REFUNDED:
        v = within_refundable(p, e, amount, policy, True) or below_max_refunds(p, e, amount, policy, True)
        if v is not None:
            return v
    elif t in CAPTURE_TYPES or t is _CANCELLED:
        if p.pending and t is not _CAPTURED:
            return new_violation(_CAPTURE_IN_FLIGHT, f"a capture of {p.pending} is still pending "
                                                     f"(state {p.state!r})")
        expired = not_expired(p, e, amount, policy, True)
        if expired is not None:
            return expired
        if p.state == "expired":
            return new_violation(_AUTHORIZATION_EXPIRED, f"the authorization lapsed (state {p.state!r})")
        if t is not _CANCELLED:
            v = nothing_cancelled(p, e, amount, policy, True) or below_max_captures(p, e, amount, policy, True)
            if v is not None:
                return v
            left = room(p, e)
            if left <= 0:
                if amount <= 0:
                    return new_violation(_EXCEEDS_CAPTURABLE, f"nothing left to capture: capturable {left} "
                                                              f"= {room_arithmetic(p, e.type, policy)}")
                v = within_capturable(p, e, amount, policy, True)
                if v is not None:
                    return v
    key = (_INVALID_STATE, p.spec.name, t, p.state)
    return _SHARED.get(key) or _share(key, new_violation(_INVALID_STATE, f"{p.spec.name} has no {_TYPE_VALUES[t]} "
                                                                         f"transition from state {p.state!r}"))
