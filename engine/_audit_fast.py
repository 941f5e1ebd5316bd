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
built per line. Each day and time of day is validated once, by the exact parser, and remembered.
Expiry and refund-window deadlines are kept in the same shape; a payment whose deadline has none
(sub-second, or out of range) takes the exact path for all its events.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ._guards import CAPTURE_TYPES, op_of
from ._money import fits_decimal
from ._policy import Policy
from ._spec import Spec
from ._table import Step
from ._time import parse_instant
from ._values import EventType, Flow, KeyUse, Payment, new_payment

_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")

# Validated halves of canonical instants: "YYYY-MM-DDT" and "HH:MM:SSZ". Only valid halves are added, so
# both stay bounded by the calendar (~3.7 million days, 86,400 times of day) whatever garbage a log holds.
DAYS: set[str] = set()
CLOCKS: set[str] = set()
# A record's `after` when the fast path may not judge its next event: above every canonical instant.
EXACT_ONLY = "~"


def canonical_at(text: object) -> str | None:
    """`text` if it is a canonical instant the audit accepts, else None: the slow check, for a day or a
    time of day not seen before (`text[:11] in DAYS and text[11:] in CLOCKS` is the fast one)."""
    if type(text) is not str or len(text) != 20 or not _CANONICAL.fullmatch(text):
        return None
    try:
        parse_instant(text)  # also the one rule for far instants (_time.instant_problem)
    except ValueError:
        return None
    DAYS.add(text[:11])
    CLOCKS.add(text[11:])
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


_SHIFTED: dict[tuple[str, int], str] = {}


def deadline(text: str | None, start: datetime, span: timedelta) -> str:
    """`start + span` as canonical text ("" when it has none: sub-second, or past year 9999). `text`, the
    canonical text of `start` if known, lets a span of whole days move the date alone (cached per day)."""
    if text is not None and not span.seconds and not span.microseconds:
        key = (text[:10], span.days)
        day = _SHIFTED.get(key)
        if day is None:
            try:
                # The UTC date: `text` is UTC, and a start logged with an offset has another local date
                # near midnight (the cache is shared, so a local date would shift every later payment's).
                day = (start.astimezone(UTC) + span).date().isoformat()
            except OverflowError:
                day = ""
            if len(_SHIFTED) < 100_000:  # bounded: a day-and-span pair is seldom new
                _SHIFTED[key] = day
        return day + text[10:] if day else ""
    try:
        return canonical(start + span) or ""
    except OverflowError:
        return ""


# ----------------------------------------------------------------------------------------- records


class Record:
    """One payment as the auditor holds it: a Payment's fields, mutable, plus where its latest event was.

    `uses` holds the idempotency keys used flattened as (key, op, amount, succeeded, key, ...): one tuple,
    so `key in uses` is a C-level scan (an op name or amount matching a key only sends the event the
    exact way). `exp` and `rwin` are the expiry and refund-window deadlines as canonical text
    (None: none; "": one without canonical text). `after` is the latest event's canonical `at` ("" before
    any): an event stamped earlier goes the exact way (OUT_OF_ORDER), and EXACT_ONLY sends every event
    there (a non-canonical latest `at`, or deadlines without canonical text). `at_dt` is the latest `at`
    when the exact path set it.
    `moves` are the fast moves out of the current state, by event type.
    """

    __slots__ = ("after", "at_dt", "authorized", "authorized_at", "cancelled", "capture_count", "captured",
                 "currency", "exp", "fast", "file", "flow", "keys", "line", "moves", "name", "pending", "pos",
                 "reference",
                 "refund_count", "refunded", "rwin", "spec", "state", "uses", "validity")

    def __init__(self, fast: FastSpec, reference: str):
        spec = fast.spec
        self.spec = spec
        self.name = spec.name
        self.fast = fast
        self.state = spec.initial
        self.moves = fast.by_state[spec.initial]
        self.reference = reference
        self.currency: str | None = None
        self.authorized = self.captured = self.cancelled = self.refunded = self.pending = 0
        self.capture_count = self.refund_count = 0
        self.authorized_at: datetime | None = None
        self.validity: timedelta | None = None
        self.flow: Flow | None = None
        self.uses: tuple[Any, ...] = ()
        self.keys: tuple[KeyUse, ...] = ()  # the KeyUses of `uses`, built when the exact path needs them
        self.exp: str | None = None
        self.rwin: str | None = None
        self.after = ""
        self.at_dt: datetime | None = None
        self.line = 0
        self.file = ""
        self.pos = 0

    @property
    def capturable(self) -> int:
        return self.authorized - self.captured - self.cancelled - self.pending

    def when(self) -> datetime:
        """The latest event's instant."""
        if self.after and self.after != EXACT_ONLY:
            return parse_instant(self.after)
        assert self.at_dt is not None
        return self.at_dt

    def payment(self) -> Payment:
        """The Payment `observe` would hold now."""
        u = self.uses
        keys = self.keys
        if len(keys) * 4 != len(u):  # the fast path added keys since: build their KeyUses only
            keys = self.keys = keys + tuple(KeyUse(u[i], u[i + 1], u[i + 2], u[i + 3])
                                            for i in range(len(keys) * 4, len(u), 4))
        return new_payment(self.spec, self.reference, self.state, self.currency, self.authorized, self.captured,
                           self.cancelled, self.refunded, self.pending, self.capture_count, self.refund_count,
                           self.authorized_at, self.validity, self.flow, keys)

    def load(self, p: Payment, at: datetime, text: str | None) -> None:
        """Take the Payment the exact path computed for an event at `at` (canonical `text`, if any)."""
        self.state = p.state
        self.moves = self.fast.by_state[p.state]
        self.currency = p.currency
        self.authorized, self.captured, self.cancelled = p.authorized, p.captured, p.cancelled
        self.refunded, self.pending = p.refunded, p.pending
        self.capture_count, self.refund_count = p.capture_count, p.refund_count
        self.flow = p.flow
        if p.keys is not self.keys:
            self.keys = p.keys
            self.uses = tuple(x for k in p.keys for x in (k.key, k.op, k.amount, k.succeeded))
        self.at_dt = at
        start = p.authorized_at
        if start is not self.authorized_at or p.validity != self.validity:
            # A new authorization (or the first): its deadlines as text.
            self.authorized_at, self.validity = start, p.validity
            self.exp = self.rwin = None
            if start is not None:
                start_text = canonical(start)
                if self.validity is not None:
                    self.exp = deadline(start_text, start, self.validity)
                window = self.spec.policy.refund_window
                if window is not None:
                    self.rwin = deadline(start_text, start, window)
        self.after = text if text is not None and self.exp != "" and self.rwin != "" else EXACT_ONLY


# ----------------------------------------------------------------------------------- compilation

Move = Callable[[Record, str, Any, Any, Any, Any], int]
"""(record, at, amount as logged, currency, key, flow) -> 0: nothing done, go the exact way; 1: applied
clean; 2: applied clean, and the payment is now settled (a terminal state, no capture in flight)."""

# Each guard (_guards.py) as the condition under which it passes for a logged fact (command=False), in
# the generated function's terms: r (the record), at (canonical text), amount (resolved), e_amount (as
# logged), cur, key. A policy number becomes a constant; a guard the policy makes inert becomes "True".
_GUARD_PASSES: dict[str, Callable[[Policy, EventType], str]] = {
    "amount_valid": lambda pol, t: _amount_valid(pol),
    "currency_matches": lambda pol, t: "(cur is None or r.currency is None or cur == r.currency)",
    "currency_supported": lambda pol, t: "True" if pol.currencies is None else "(cur or r.currency) in CURRENCIES",
    "reference_valid": lambda pol, t: "REFERENCE_OK(r.reference)",
    "key_valid": lambda pol, t: "True",  # judges commands only
    "key_unique": lambda pol, t: f"(key is None or key not in r.uses or KEY_OK(r.uses, key, {op_of(t)!r}, amount, cur, "
                                 f"r.currency))",
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


def _amount_valid(pol: Policy) -> str:
    parts = ["amount > 0"]
    if set(pol.amount_min) == {"*"}:
        parts.append(f"amount >= {pol.amount_min['*']}")
    else:
        parts.append("amount >= MIN_AMOUNT(r.currency or cur or '*')")
    if pol.amount_max is not None:
        parts.append(f"amount <= {pol.amount_max}")
    if pol.amount_format is not None:
        p, s = pol.amount_format
        parts.append(f"((r.currency or cur) is None or FITS(amount, r.currency or cur, {p}, {s}) "
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
        # Deadlines first: one without canonical text leaves the event to the exact path, unapplied.
        EventType.AUTHORIZED: ["currency = cur if cur is not None else r.currency",
                               "validity = VALIDITY_FOR(currency) if currency is not None else None",
                               "start = INSTANT(at)",
                               "exp = DEADLINE(at, start, validity) if validity is not None else None",
                               "rwin = DEADLINE(at, start, REFUND_WINDOW) if REFUND_WINDOW is not None else None",
                               "if exp == '' or rwin == '': return 0",
                               "r.currency = currency", "r.authorized = amount", "r.validity = validity",
                               "r.flow = flow", "r.authorized_at = start", "r.exp = exp", "r.rwin = rwin"],
    }[t]
    if t in keyed:
        lines.append(f"if key is not None: r.uses += (key, {keyed[t]!r}, amount, True)")
    elif t is EventType.CAPTURE_REQUESTED:  # an attempt binds its key (_engine.effect)
        lines.append("if key is not None: r.uses += (key, 'capture', amount, False)")
    elif t is EventType.CAPTURE_FAILED:
        lines.append("if key is not None and amount > 0: r.uses += (key, 'capture', amount, False)")
    return lines


def key_ok(uses: tuple[Any, ...], key: str, op: str, amount: int, cur: str | None,  # noqa: PLR0917 - generated calls
           currency: str | None) -> bool:
    """key_unique's verdict on a logged fact whose key `uses` holds: True when it passes. Only identical
    attempts that have not succeeded may share its key (an attempt's outcome, or a retry)."""
    for i in range(0, len(uses), 4):
        if uses[i] == key and ((cur is not None and cur != currency) or uses[i + 1] != op
                               or uses[i + 2] != amount or uses[i + 3]):
            return False
    return True


class FastSpec:
    """The fast moves of one spec: `by_state[state][event type]`, for the (state, type) pairs it has.

    Each move is Python source generated from the spec's steps and compiled once: the routes and guard
    conditions inline, policy numbers as constants, so a clean event costs one call and no per-guard
    calls. The source is this module's fixed templates; from the spec come only state names, as repr()
literals, and the policy's parsed integers.
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        self.by_state: dict[str, dict[str, Move]] = {state: {} for state in spec.states}
        pol = spec.policy
        namespace: dict[str, Any] = {
            "CURRENCIES": pol.currencies, "REFERENCE_OK": pol.reference.acceptor(), "AUTOMATIC": Flow.AUTOMATIC,
            "OVER": pol.over_capture_percent, "MIN_AMOUNT": pol.min_amount, "FITS": fits_decimal,
            "VALIDITY_FOR": pol.validity_for, "INSTANT": datetime.fromisoformat, "DEADLINE": deadline,
            "REFUND_WINDOW": pol.refund_window, "BY_STATE": self.by_state, "KEY_OK": key_ok,
        }
        cancellable = {state for (state, trigger) in spec.table.steps if trigger is EventType.CANCELLED}
        for (state, trigger), steps in spec.table.steps.items():
            source = self._source(spec, state, trigger, steps, state in cancellable)
            if source is None:
                continue
            code: dict[str, Any] = {}
            exec(compile(source, f"<capstate fast move {spec.name} {state} {trigger.value}>", "exec"),
                 namespace, code)
            self.by_state[state][trigger.value] = code["move"]

    @staticmethod
    def _source(spec: Spec, state: str, t: EventType, steps: tuple[Step, ...], cancellable: bool) -> str | None:
        """The move's source text, or None when a guard or route is one this module does not know."""
        pol = spec.policy
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
                body.append(f"{indent}if not ({' and '.join(conditions)}): return 0")
            body.extend(f"{indent}{line}" for line in _effect(t))
            body.append(f"{indent}r.state = {step.dest!r}")
            body.append(f"{indent}r.moves = BY_STATE[{step.dest!r}]")
            settles = "1 if r.pending else 2" if step.dest in spec.terminal else "1"
            body.append(f"{indent}return {settles}")
            if step.route is None:
                break  # evaluate() takes the first step without a route
        body.append("return 0")  # no route holds: INVALID_STATE, the exact way
        return "def move(r, at, e_amount, cur, key, flow):\n" + "".join(f"    {line}\n" for line in body)


_COMPILED: weakref.WeakKeyDictionary[Spec, FastSpec] = weakref.WeakKeyDictionary()


def fast_spec(spec: Spec) -> FastSpec:
    """The compiled moves of a spec (compiled once per Spec object: a spec under overrides is another)."""
    found = _COMPILED.get(spec)
    if found is None:
        found = _COMPILED[spec] = FastSpec(spec)
    return found
