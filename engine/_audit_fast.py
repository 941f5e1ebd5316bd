"""The audit's fast path: mutable per-payment records, and per-spec transition functions compiled for them.

`observe` builds a frozen Event and a frozen 15-field Payment for every line; that exactness is what an
audit needs when something is wrong, and what it cannot afford on the ~90% of lines that are plain,
legal moves. For those the auditor works on the decoded dict and a mutable `Record`, and runs a function
compiled per (spec, state, event type) from the spec's own table and policy: the same routes, in the
same order, with each guard written as the condition under which `observe` (command=False) lets it pass.
The function either applies the effect in place and returns True, or changes nothing and returns False,
and the auditor then takes the exact path (`Event.from_dict` + `observe` on the materialized Payment).
So the fast path only ever decides "certainly clean"; everything it is unsure of (a guard that may fail,
a route that holds for none, a reused key, an `expired` that leaves money held) goes the exact way, and
a Hypothesis differential test compares the two paths on random logs.

Time on the fast path is the line's own text: an `at` of the exact shape `YYYY-MM-DDTHH:MM:SSZ` (UTC,
whole seconds) orders as its instant does, so comparisons are string comparisons and no datetime is
built per line. Each date and time-of-day part is validated once, by the exact parser, and remembered.
Expiry and refund-window deadlines are kept in the same shape; a payment whose deadline cannot be
(sub-second or out of range) is marked `slow` and always takes the exact path.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ._guards import CAPTURE_TYPES
from ._money import fits_decimal
from ._spec import Spec
from ._time import parse_instant
from ._values import EventType, Flow, KeyUse, Payment, new_payment

_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
# The audit refuses instants outside these years (a validity window would carry them out of range).
_FIRST_YEAR, _LAST_YEAR = 2, 9997

# Validated parts of canonical instants. Only valid parts are added, so both stay bounded by the
# calendar (at most ~3.7 million dates, 86,400 times of day), whatever garbage a log holds.
_DATES: set[str] = set()
_TIMES: set[str] = set()


def canonical_at(text: object) -> str | None:
    """`text` if it is a canonical instant the audit accepts (the slow way, for a part seen first), else None."""
    if type(text) is not str or len(text) != 20 or not _CANONICAL.fullmatch(text):
        return None
    try:
        at = parse_instant(text)
    except ValueError:
        return None
    if not _FIRST_YEAR <= at.year <= _LAST_YEAR:
        return None
    _DATES.add(text[:10])
    _TIMES.add(text[11:19])
    return text


def canonical(at: datetime) -> str | None:
    """The canonical text of an instant (UTC, whole seconds), or None when it has none."""
    if at.microsecond:
        return None
    try:
        text = at.astimezone(UTC).isoformat()
    except OverflowError:
        return None
    return text[:19] + "Z" if len(text) == 25 and text.endswith("+00:00") else None


def _deadline(start: datetime, span: timedelta) -> str | None:
    try:
        return canonical(start + span)
    except OverflowError:
        return None


# ----------------------------------------------------------------------------------------- records


class Record:
    """One payment as the auditor holds it: a Payment's fields, mutable, plus where its latest event was.

    `uses` holds the idempotency keys that succeeded flattened as (key, op, amount, key, op, amount, ...):
    one tuple, so `key in uses` is a C-level scan (an op name or amount matching a key only sends the
    event the exact way). `exp` and `rwin` are the expiry and refund-window deadlines as canonical text
    (None: none). `at_s` is the latest event's canonical `at`, `at_dt` its datetime when the exact path
    set it; at least one is set once the payment has an event.
    """

    __slots__ = ("at_dt", "at_s", "authorized", "authorized_at", "cancelled", "capture_count", "captured",
                 "currency", "exp", "fast", "file", "flow", "line", "pending", "pos", "reference", "refund_count",
                 "refunded", "rwin", "slow", "spec", "state", "uses", "validity")

    def __init__(self, spec: Spec, reference: str, fast: FastSpec):
        self.spec = spec
        self.fast = fast
        self.reference = reference
        self.state = spec.initial
        self.currency: str | None = None
        self.authorized = self.captured = self.cancelled = self.refunded = self.pending = 0
        self.capture_count = self.refund_count = 0
        self.authorized_at: datetime | None = None
        self.validity: timedelta | None = None
        self.flow: Flow | None = None
        self.uses: tuple[Any, ...] = ()
        self.exp: str | None = None
        self.rwin: str | None = None
        self.slow = False
        self.at_s: str | None = None
        self.at_dt: datetime | None = None
        self.line = 0
        self.file = ""
        self.pos = 0

    @property
    def capturable(self) -> int:
        return self.authorized - self.captured - self.cancelled - self.pending

    def when(self) -> datetime:
        """The latest event's instant."""
        if self.at_dt is None:
            assert self.at_s is not None
            self.at_dt = parse_instant(self.at_s)
        return self.at_dt

    def payment(self) -> Payment:
        """The Payment `observe` would hold now."""
        u = self.uses
        keys = tuple(KeyUse(u[i], u[i + 1], u[i + 2]) for i in range(0, len(u), 3)) if u else ()
        return new_payment(self.spec, self.reference, self.state, self.currency, self.authorized, self.captured,
                           self.cancelled, self.refunded, self.pending, self.capture_count, self.refund_count,
                           self.authorized_at, self.validity, self.flow, keys)

    def load(self, p: Payment) -> None:
        """Take the Payment the exact path computed."""
        self.state = p.state
        self.currency = p.currency
        self.authorized, self.captured, self.cancelled = p.authorized, p.captured, p.cancelled
        self.refunded, self.pending = p.refunded, p.pending
        self.capture_count, self.refund_count = p.capture_count, p.refund_count
        self.validity = p.validity
        self.flow = p.flow
        self.uses = tuple(x for k in p.keys for x in (k.key, k.op, k.amount))
        self.set_authorized_at(p.authorized_at)

    def set_authorized_at(self, at: datetime | None) -> None:
        """Record the authorization's instant and derive the deadlines the fast path compares with."""
        self.authorized_at = at
        self.exp = self.rwin = None
        self.slow = False
        if at is None:
            return
        if self.validity is not None:
            self.exp = _deadline(at, self.validity)
            self.slow = self.exp is None
        window = self.spec.policy.refund_window
        if window is not None:
            self.rwin = _deadline(at, window)
            self.slow = self.slow or self.rwin is None


# ----------------------------------------------------------------------------------- compilation

Move = Callable[[Record, str, Any, Any, Any, Any], bool]
"""(record, at, amount as logged, currency, key, flow) -> True when applied clean, False to go the exact way."""

# Each guard as the condition under which it passes for a logged fact (command=False), over the
# generated function's locals: r (the record), at, amount (resolved), e_amount (as logged), cur, key.
# `{room}` is what a capture may still take for this trigger; `{cur_any}` the currency amount_valid reads.
_GUARD_PASSES: dict[str, Callable[[Any, EventType], str]] = {
    "amount_valid": lambda pol, t: _amount_valid(pol),
    "currency_matches": lambda pol, t: "(cur is None or r.currency is None or cur == r.currency)",
    "currency_supported": lambda pol, t: "True" if pol.currencies is None else "(cur or r.currency) in CURRENCIES",
    "reference_valid": lambda pol, t: "REFERENCE_PROBLEM(r.reference) is None",
    "key_valid": lambda pol, t: "True",  # judges commands only
    "key_unique": lambda pol, t: "(key is None or key not in r.uses)",
    "not_expired": lambda pol, t: "(r.exp is None or at < r.exp)",
    "manual_flow": lambda pol, t: "r.flow is not AUTOMATIC",
    "within_capturable": lambda pol, t: (f"amount <= {_room(t)}"
                                         + (" + r.authorized * OVER // 100" if pol.over_capture_percent else "")),
    "partial_allowed": lambda pol, t: f"amount >= {_room(t)}" if pol.partial_capture == "no" else "True",
    "below_max_captures": lambda pol, t: ("True" if pol.max_captures is None
                                          else f"r.capture_count < {pol.max_captures}"),
    "nothing_cancelled": lambda pol, t: "not r.cancelled",
    "nothing_in_flight": lambda pol, t: "not r.pending",
    "outcome_only": lambda pol, t: "True",  # refuses commands only
    "within_refundable": lambda pol, t: "amount <= r.captured - r.refunded",
    "below_max_refunds": lambda pol, t: "True" if pol.max_refunds is None else f"r.refund_count < {pol.max_refunds}",
    "within_refund_window": lambda pol, t: "True" if pol.refund_window is None else "(r.rwin is None or at < r.rwin)",
    "cancels_whole_remainder": lambda pol, t: ("(e_amount is None or e_amount == max(r.authorized - r.captured"
                                               " - r.cancelled - r.pending, 0))"),
}
_ROUTE_HOLDS: dict[str, Callable[[EventType], str]] = {
    "leaves_remainder": lambda t: f"amount < {_room(t)}",
    "takes_remainder": lambda t: f"amount >= {_room(t)}",
    "nothing_captured": lambda t: "r.captured == 0",
    "something_captured": lambda t: "r.captured > 0",
}
_CAPTURABLE = "r.authorized - r.captured - r.cancelled - r.pending"


def _room(t: EventType) -> str:
    # _guards.room: a `captured` event settles the capture in flight, so the pending amount is room for it.
    return "(r.authorized - r.captured - r.cancelled)" if t is EventType.CAPTURED else f"({_CAPTURABLE})"


def _amount_valid(pol: Any) -> str:
    parts = ["amount > 0"]
    if set(pol.amount_min) == {"*"}:
        parts.append(f"amount >= {pol.amount_min['*']}")
    else:
        parts.append("amount >= MIN_AMOUNT(r.currency or cur or '*')")
    if pol.amount_max is not None:
        parts.append(f"amount <= {pol.amount_max}")
    if pol.amount_format is not None:
        p, s = pol.amount_format
        parts.append(f"(e_amount is None or (r.currency or cur) is None or FITS(amount, r.currency or cur, {p}, {s}) "
                     f"is None)")
    return " and ".join(parts)


def _resolve(t: EventType) -> str:
    """_engine.resolve_amount, for a trigger known in advance."""
    if t is EventType.EXPIRED:
        return f"max({_CAPTURABLE}, 0)"
    if t in CAPTURE_TYPES:
        implied = f"max({_room(t)}, 0)"
    elif t is EventType.CANCELLED:
        implied = f"max({_CAPTURABLE}, 0)"
    elif t is EventType.CAPTURE_FAILED:
        implied = "r.pending"
    else:
        implied = "0"
    return f"e_amount if e_amount is not None else {implied}"


def _effect(t: EventType) -> list[str]:
    """_engine.effect, in place."""
    keyed = {EventType.CAPTURED: "capture", EventType.REFUNDED: "refund", EventType.CANCELLED: "cancel"}
    lines = {
        EventType.CAPTURED: ["r.captured += amount", "r.pending = 0", "r.capture_count += 1"],
        EventType.CAPTURE_REQUESTED: ["r.pending = amount"],
        EventType.CAPTURE_FAILED: ["r.pending = 0"],
        EventType.REFUNDED: ["r.refunded += amount", "r.refund_count += 1"],
        EventType.CANCELLED: ["r.cancelled += amount"],
        EventType.EXPIRED: ["r.cancelled += amount"],
        EventType.AUTHORIZED: ["currency = cur if cur is not None else r.currency", "r.currency = currency",
                               "r.authorized = amount",
                               "r.validity = VALIDITY_FOR(currency) if currency is not None else None",
                               "r.flow = flow", "r.set_authorized_at(INSTANT(at))"],
    }[t]
    if t in keyed:
        lines.append(f"if key is not None: r.uses += (key, {keyed[t]!r}, amount)")
    return lines


class FastSpec:
    """The fast moves of one spec: `moves[event type][state]`, for the (state, type) pairs it has."""

    def __init__(self, spec: Spec):
        self.spec = spec
        self.terminal = spec.terminal
        self.moves: dict[str, dict[str, Move]] = {t.value: {} for t in EventType}
        pol = spec.policy
        namespace: dict[str, Any] = {
            "CURRENCIES": pol.currencies, "REFERENCE_PROBLEM": pol.reference.problem, "AUTOMATIC": Flow.AUTOMATIC,
            "OVER": pol.over_capture_percent, "MIN_AMOUNT": pol.min_amount, "FITS": fits_decimal,
            "VALIDITY_FOR": pol.validity_for, "INSTANT": parse_instant,
        }
        cancellable = {state for (state, trigger) in spec.table.steps if trigger is EventType.CANCELLED}
        for (state, trigger), steps in spec.table.steps.items():
            source = self._source(pol, state, trigger, steps, state in cancellable)
            if source is None:
                continue
            code: dict[str, Any] = {}
            exec(compile(source, f"<capstate fast move {spec.name} {state} {trigger.value}>", "exec"),
                 namespace, code)
            self.moves[trigger.value][state] = code["move"]

    @staticmethod
    def _source(pol: Any, state: str, t: EventType, steps: Any, cancellable: bool) -> str | None:
        """The move's source text, or None when a guard or route is one this module does not know."""
        body = [f"amount = {_resolve(t)}"]
        for step in steps:
            if step.route is not None and step.route.name not in _ROUTE_HOLDS:
                return None
            conditions = []
            for guard in step.guards:
                passes = _GUARD_PASSES.get(guard.name)
                if passes is None:
                    return None
                text = passes(pol, t)
                if text != "True":
                    conditions.append(text)
            if t is EventType.EXPIRED and cancellable:
                # The audit reports money left to lapse where a cancel could have released it.
                conditions.append("amount <= 0")
            indent = ""
            if step.route is not None:
                body.append(f"if {_ROUTE_HOLDS[step.route.name](t)}:")
                indent = "    "
            if conditions:
                body.append(f"{indent}if not ({' and '.join(conditions)}): return False")
            body.extend(f"{indent}{line}" for line in _effect(t))
            body.append(f"{indent}r.state = {step.dest!r}")
            body.append(f"{indent}return True")
            if step.route is None:
                break  # evaluate() takes the first step without a route
        body.append("return False")  # no route holds: INVALID_STATE, the exact way
        return "def move(r, at, e_amount, cur, key, flow):\n" + "".join(f"    {line}\n" for line in body)


_COMPILED: weakref.WeakKeyDictionary[Spec, FastSpec] = weakref.WeakKeyDictionary()


def fast_spec(spec: Spec) -> FastSpec:
    """The compiled moves of a spec (compiled once per Spec object: a spec under overrides is another)."""
    found = _COMPILED.get(spec)
    if found is None:
        found = _COMPILED[spec] = FastSpec(spec)
    return found
