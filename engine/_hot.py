"""The audit's hot loop: per-payment records, compiled moves and the per-line checks of the fast path.

This module is written for mypyc, which compiles it to a C extension at `pip install` (setup.py): its
classes become native classes (attributes at fixed offsets, no instance dict) and its loops C code,
which made the same fast path ~1.9x faster than as plain Python when measured (issue 13). It runs
unchanged as plain Python where no C compiler was available, or with CAPSTATE_NO_MYPYC=1
(`capstate._hotpath` chooses); the differential tests run both. So it keeps to what mypyc compiles
well: typed attributes, ints, strs, plain dicts, and no dynamic features beyond calls into the pure
modules it imports.

What a move is: for one (spec, state, event type), the steps of the spec's table, each with its route
and the condition under which each guard passes for a logged fact (as `observe`, command=False, lets it
pass), the policy's numbers as plain ints. `move` either applies the event to the record and returns
1 (2 when the payment is now settled), or changes nothing and returns 0: then the auditor takes the
exact path (`observe` on the materialized Payment). The fast path only ever decides "certainly clean".

Time on the fast path is the line's own text: an `at` of the exact shape `YYYY-MM-DDTHH:MM:SSZ` (UTC,
whole seconds) orders as its instant does, so comparisons are string comparisons. Each day is validated
once, by the exact parser, and remembered; a time of day is checked digit by digit (`clock_ok`). Expiry
and refund-window deadlines are kept in the same shape; a payment whose deadline has none (sub-second,
or out of range) takes the exact path for all its events.
"""

# The hot loop's functions take their facts as positional ints and strs (mypyc passes them unboxed), and
# compare small ints with `==` chains (compiled to C compares; `in` a tuple would box and scan).
# ruff: noqa: PLR0917, PLR1714, SIM109

from __future__ import annotations

import marshal
import pickle
import re
import struct
import sys
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import TYPE_CHECKING, Any, Final, cast

from msgspec.structs import astuple

from ._guards import op_of
from ._money import INT64_MAX, decimal_bounds, is_currency
from ._policy import _DOT_SEGMENTS  # refused as a path segment whatever the pattern
from ._time import parse_instant
from ._values import EventType, Flow, KeyUse, Payment, new_payment

if TYPE_CHECKING:  # named in annotations only (never evaluated at run time): mypyc compiles it to a C int64_t
    from mypy_extensions import i64

_astuple: Final = astuple
_BytesIO: Final = BytesIO
# The largest int mypyc holds unboxed (a tagged 63-bit int): an amount up to it is within int64 with one C
# compare, and only a larger one is compared with INT64_MAX, a boxed int.
_SHORT_MAX: Final = (1 << 62) - 1

_CANONICAL: Final = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")

# Validated days of canonical instants ("YYYY-MM-DDT"). Only valid days are added, so the set stays bounded
# by the calendar (~3.7 million days) whatever garbage a log holds. A time of day is judged by `clock_ok`
# instead: a log stamped to the second seldom repeats one (the bench log's 100,000 lines hold ~58,000), so
# a set of seen ones sent most lines through the regex and `parse_instant`.
DAYS: Final[set[str]] = set()
# The same days as `_day_code`s: `take` asks of a line's day here, past the four latest days it compares with,
# where it sliced the text, looked the slice up in DAYS and read the clock again (~750 instructions a line on
# the ~12% of the bench log's lines whose day was not one of the four).
DAY_CODES: Final[set[int]] = set()
# A record's `after` when the fast path may not judge its next event: above every canonical instant.
EXACT_ONLY: Final = "~"
# The longest of `_policy`'s dot segments: a reference longer than it is none of them.
_DOT_LONGEST: Final = max(map(len, _DOT_SEGMENTS))
# ISO 4217 codes seen valid (bounded by the table), so the fast path asks the table once per code; each
# maps to one shared instance, which the records hold (a line's own 3-letter str is ~50 bytes a payment).
CURRENCIES: Final[dict[str, str]] = {}

# Event types as small ints (the order of EventType), and what a move needs to know of each.
AUTHORIZED: Final = 0
CAPTURE_REQUESTED: Final = 1
CAPTURED: Final = 2
CAPTURE_FAILED: Final = 3
CANCELLED: Final = 4
REFUNDED: Final = 5
EXPIRED: Final = 6
TYPE_CODES: Final[dict[str, int]] = {"authorized": AUTHORIZED, "capture_requested": CAPTURE_REQUESTED,
                              "captured": CAPTURED, "capture_failed": CAPTURE_FAILED, "cancelled": CANCELLED,
                              "refunded": REFUNDED, "expired": EXPIRED}
# The same names in a tuple, as the very str objects `EventType` holds (`_lines.Line` decodes `type` to one of
# them): `plain` finds a line's type code by identity, and by value only for a str from elsewhere (a hand-built
# Line); `Record.moves` is indexed by that code.
_TYPE_NAMES: Final[tuple[str, ...]] = tuple(t.value for t in EventType)
assert tuple(TYPE_CODES) == _TYPE_NAMES
FLOWS: Final[dict[str, Flow]] = {f.value: f for f in Flow}
_AUTOMATIC: Final = Flow.AUTOMATIC
# Routes (_guards.ROUTES) by number; 0 is a step without a route.
ROUTES: Final[dict[str, int]] = {"leaves_remainder": 1, "takes_remainder": 2, "nothing_captured": 3,
                          "something_captured": 4}
# The merchant operation of each event type (_guards.op_of), which key_unique compares a reused key's with.
_OPS: Final[dict[int, str]] = {code: op_of(EventType(name)) for name, code in TYPE_CODES.items()}
# Those of the types whose success binds a key, as constants (`_counts` picks one by int compares: a dict of
# boxed ints cost more).
_OP_CAPTURE: Final = _OPS[CAPTURED]
_OP_REFUND: Final = _OPS[REFUNDED]
_OP_CANCEL: Final = _OPS[CANCELLED]
# What `move` returns.
NOT_DONE: Final = 0
APPLIED: Final = 1
SETTLES: Final = 2
# How many lines after its latest event a settled payment stays a Record before it is packed (at most a
# 16th of the settled window). Late events on the bench log come within 1,000 lines: 2,048 still keeps them
# off the packed ones, and holds half the young Records 4,096 did (~0.4 MB less at (d)'s peak). Packing costs
# ~1 us a settled payment and saves ~530 bytes of its ~920; 10**12 here turns it off (a constant: rebuild
# after changing it; the tests set `Kernel.young` instead).
YOUNG_LINES: Final = 2048
# What `Kernel.take` returns.
NOT_PLAIN: Final = 0
TAKEN: Final = 1
EXACT: Final = 2


def canonical_at(text: object) -> str | None:
    """`text` if it is a canonical instant the audit accepts, else None: the slow check, for a day or a
    time of day not seen before (`text[:11] in DAYS and clock_ok(text)` is the fast one)."""
    if not isinstance(text, str) or len(text) != 20 or not _CANONICAL.fullmatch(text):
        return None
    try:
        parse_instant(text)  # also the one rule for far instants (_time.instant_problem)
    except ValueError:
        return None
    DAYS.add(text[:11])
    DAY_CODES.add(_day_code(text))
    return text


def clock_ok(text: str) -> bool:
    """Whether `text[11:]` is a time of day "HH:MM:SSZ" that `canonical_at` accepts (its regex, then
    `parse_instant`, whose `fromisoformat` takes hours 0-23, minutes and seconds 0-59): the fast check,
    for a `text` whose first 11 characters are a day in DAYS (`_stamp` reads the whole instant)."""
    return _stamp(text) >= 0


def canonical(at: datetime) -> str | None:
    """The canonical text of an instant (UTC, whole seconds), or None when it has none."""
    if at.microsecond:
        return None
    try:
        text = at.astimezone(UTC).isoformat()
    except OverflowError:
        return None
    return text[:19] + "Z" if len(text) == 25 and text.endswith("+00:00") else None


# The date a day ("YYYYMMDD" as `_day_code` reads it, shifted left by _DAY_SHIFT) plus a number of whole days
# falls on, as text: an int key, where a (str, int) tuple cost a slice, a tuple and their hashing per call.
_SHIFTED: Final[dict[int, str]] = {}
_DAY_SHIFT: Final = 20
class _Shift:
    """A span `deadline` moves dates by: its whole days (-1 when it is not whole days, or too long for the
    key), and the latest day (`_day_code`) it moved with the date that gave (authorizations come in time
    order, so most fall on the day before's: two i64 compares, where the key's boxing, hashing and lookup
    cost ~1k instructions a deadline)."""

    def __init__(self, span: timedelta) -> None:
        self.days: i64 = (span.days if not span.seconds and not span.microseconds
                          and 0 <= span.days < 1 << _DAY_SHIFT else -1)
        self.code: i64 = -1
        self.day = ""


# Each span's _Shift: read once per call by the span (a timedelta keeps its hash), not three attribute lookups.
_SHIFTS: Final[dict[timedelta, _Shift]] = {}


def _shift(span: timedelta) -> _Shift:
    found = _SHIFTS.get(span)
    if found is None:
        found = _Shift(span)
        if len(_SHIFTS) < 1_000:  # bounded: a policy has a few spans
            _SHIFTS[span] = found
    return found


def deadline(text: str | None, start: datetime, span: timedelta, stamp: i64 = -1) -> str:
    """`start + span` as canonical text ("" when it has none: sub-second, or past year 9999). `text`, the
    canonical text of `start` if known, lets a span of whole days move the date alone (cached per day);
    `stamp` is its `_stamp` where the caller has it (-1: read here)."""
    if text is not None:
        shift = _shift(span)
        days = shift.days
        if days >= 0 and stamp < 0:
            stamp = _stamp(text)
        if days >= 0 and stamp >= 0:
            code = stamp // 1_000_000  # the day, YYYYMMDD
            if code != shift.code:
                key = code << _DAY_SHIFT | days
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
                shift.day = day
                shift.code = code
            return shift.day + text[10:] if shift.day else ""
    try:
        return canonical(start + span) or ""
    except OverflowError:
        return ""


def known_currency(code: str) -> bool:
    if code in CURRENCIES:
        return True
    if not is_currency(code):
        return False
    CURRENCIES[code] = code
    return True


# ----------------------------------------------------------------------------------------- moves


_NO_MOVES: Final[list[Move | None]] = []  # a Step's `dest_moves` until its FastSpec sets them


class Step:
    """One transition of a (state, event type), as the fast path checks it: its route, each guard's
    pass condition as a flag or a policy number (-1: no limit), and where it goes."""

    def __init__(self, route: int, dest: str, terminal: bool) -> None:
        self.route = route
        self.dest = dest
        self.terminal = terminal
        self.dest_moves: list[Move | None] = _NO_MOVES
        self.amount_valid = False
        self.amount_min = -1  # -1 with amount_valid: per currency (min_amount)
        self.amount_max = -1
        self.amount_format = False
        self.format_p = 0
        self.format_s = 0
        self.currency_matches = False
        self.currency_supported = False
        self.reference_valid = False
        self.key_unique = False
        self.not_expired = False
        self.manual_flow = False
        self.within_capturable = False
        self.over_percent = 0
        self.partial_no = False
        self.max_captures = -1
        self.nothing_cancelled = False
        self.nothing_in_flight = False
        self.within_refundable = False
        self.max_refunds = -1
        self.within_refund_window = False
        self.cancels_whole = False
        self.expired_nothing_held = False
        # amount_format's `decimal_bounds` per currency (bounded by the ISO 4217 table).
        self.bounds: dict[str, tuple[int, int]] = {}


class Move:
    """The steps of one (state, event type) of one spec, tried in order as the table's `evaluate` does."""

    def __init__(self, trigger: int, steps: list[Step]) -> None:
        self.trigger = trigger
        self.steps = steps




class FastSpec:
    """The fast moves of one spec, `by_state[state][event type]`, and the policy they need at run time."""

    def __init__(self, spec: Any, by_state: dict[str, dict[str, Move]], policy: Any,
                 currencies: frozenset[str] | None, reference_ok: Any,
                 reference_parts: tuple[int, int, Any] | None = None, reference_in_path: bool = False) -> None:
        self.spec = spec
        self.name: str = spec.name
        self.initial: str = spec.initial
        self.by_state = by_state
        # The same moves by state as lists indexed by type code (`plain` finds a line's code), None where a
        # type has no fast move: a list read where a dict lookup hashed the line's type name.
        self.rows: dict[str, list[Move | None]] = {}
        for state, moves in by_state.items():
            row: list[Move | None] = [None] * len(_TYPE_NAMES)
            for name, mv in moves.items():
                row[TYPE_CODES[name]] = mv
            self.rows[state] = row
        for moves in by_state.values():
            for mv in moves.values():
                for step in mv.steps:
                    step.dest_moves = self.rows[step.dest]
        self.policy = policy
        self.currencies = currencies
        self.reference_ok = reference_ok
        # The acceptor's regex case as data (IdentifierRule.fullmatch_parts): judged here without the Python
        # frame of its lambda, once per new payment (~650 instructions a line on the bench log).
        self.ref_match: Any = None
        self.ref_lo = 0
        self.ref_hi = -1
        self.ref_in_path = reference_in_path
        if reference_parts is not None:
            self.ref_lo, self.ref_hi, self.ref_match = reference_parts
        # The same regex as pieces (`_audit_fast.ascii_pieces`), when it reads as them: an ASCII reference is
        # then matched here, ~40 instructions a character where `re` spent ~100 and a call (~2.6-5.4k a payment).
        self.ref_pieces = False
        self.ref_sets: list[bytes] = []
        self.ref_mins: list[int] = []
        self.ref_maxs: list[int] = []
        self.refund_window: timedelta | None = policy.refund_window
        self.mins: dict[str, int] = {}
        self.terminal: frozenset[str] = spec.terminal
        self.validities: dict[str, timedelta | None] = {}

    def reference_accepted(self, v: str) -> bool:
        """`reference_ok(v)`, the regex case inline."""
        match = self.ref_match
        if match is None:
            return bool(self.reference_ok(v))
        n = len(v)
        hi = self.ref_hi
        if self.ref_lo <= n and (hi < 0 or n <= hi):
            if self.ref_pieces and _pieces_match(v, self.ref_sets, self.ref_mins, self.ref_maxs):
                # Matched (so ASCII: the tables hold no other character); a value longer than every dot
                # segment is none of them, without hashing it.
                if not self.ref_in_path or n > _DOT_LONGEST or v not in _DOT_SEGMENTS:
                    return True
            # Not matched as pieces: refused, or it holds a character beyond ASCII, which `re` judges (and, in a
            # path, the long way below in any case).
            elif (not self.ref_pieces or not self.ref_in_path) and match(v) is not None and (
                    not self.ref_in_path or (v.isascii() and v not in _DOT_SEGMENTS)):
                return True
        # Refused by the regex case: final, but for a path segment, whose look-alikes the long way judges.
        return bool(self.reference_ok(v)) if self.ref_in_path else False

    def min_amount(self, currency: str) -> int:
        """The policy's `min_amount(currency)`, asked once per currency (a call into Python per line cost
        more than the rest of the amount check)."""
        found = self.mins.get(currency)
        if found is None:
            found = self.mins[currency] = int(self.policy.min_amount(currency))
        return found

    def validity_for(self, currency: str) -> timedelta | None:
        """The policy's `validity_for(currency)`, asked once per currency."""
        found = self.validities.get(currency)
        if found is not None or currency in self.validities:  # one lookup unless the policy gives none
            return found
        found = cast("timedelta | None", self.policy.validity_for(currency))
        self.validities[currency] = found
        return found


def _pieces_match(v: str, sets: list[bytes], mins: list[int], maxs: list[int]) -> bool:
    """Whether `v` fully matches the pieces (`_audit_fast.ascii_pieces`): each takes as many characters as its
    table allows, up to its most, and at least its least; greedy is the regex's only reading there. False for
    any `v` with a character beyond ASCII (no table holds one), whatever the regex says of it."""
    n: i64 = len(v)
    i: i64 = 0
    for k in range(len(sets)):
        table = sets[k]
        most: i64 = maxs[k]
        end = n if most < 0 or i + most > n else i + most
        start = i
        while i < end:
            c: i64 = ord(v[i])
            if c >= 128 or table[c] == 0:
                break
            i += 1
        least: i64 = mins[k]
        if i - start < least:
            return False
    return i == n


# ----------------------------------------------------------------------------------------- records

# KeyUse's slots, set directly: `KeyUse(...)` runs attrs' frozen __init__, a Python frame and a generic
# object.__setattr__ per field, ~8x the cost of this, and a materialized Payment holds one per key used.
# Compiled, `object.__setattr__(obj, "name", v)` is one C call into the slot (bypassing attrs' frozen
# __setattr__), ~3x cheaper than the slot's own setter, a method-wrapper called with an argument tuple;
# in the interpreter it is the other way round, so the plain build keeps the setters (as _capture does).
_COMPILED: Final = not __file__.endswith((".py", ".pyc"))
_NEW: Final = object.__new__
_KU_KEY: Final = KeyUse.__dict__["key"].__set__
_KU_OP: Final = KeyUse.__dict__["op"].__set__
_KU_AMOUNT: Final = KeyUse.__dict__["amount"].__set__
_KU_SUCCEEDED: Final = KeyUse.__dict__["succeeded"].__set__


def key_use(key: str, op: str, amount: int, succeeded: bool) -> KeyUse:
    """`KeyUse(key, op, amount, succeeded)` (a frozen attrs value without validators), built in C."""
    k: KeyUse = _NEW(KeyUse)
    if _COMPILED:
        object.__setattr__(k, "key", key)
        object.__setattr__(k, "op", op)
        object.__setattr__(k, "amount", amount)
        object.__setattr__(k, "succeeded", succeeded)
        return k
    _KU_KEY(k, key)
    _KU_OP(k, op)
    _KU_AMOUNT(k, amount)
    _KU_SUCCEEDED(k, succeeded)
    return k



def _payment(spec: Any, reference: str, state: str, currency: str | None, authorized: int, captured: int,
             cancelled: int, refunded: int, pending: int, capture_count: int, refund_count: int,
             authorized_at: datetime | None, validity: timedelta | None, flow: Flow | None,
             keys: tuple[KeyUse, ...]) -> Payment:
    """`new_payment(...)` for the compiled build, each slot set in one C call (see key_use): its 15 setters
    were most of the cost of materializing a record on a line that breaks a rule. (A function, not in
    Record.payment: mypyc refuses `object.__setattr__` on another object inside a native method.)"""
    p: Payment = _NEW(Payment)
    object.__setattr__(p, "spec", spec)
    object.__setattr__(p, "reference", reference)
    object.__setattr__(p, "state", state)
    object.__setattr__(p, "currency", currency)
    object.__setattr__(p, "authorized", authorized)
    object.__setattr__(p, "captured", captured)
    object.__setattr__(p, "cancelled", cancelled)
    object.__setattr__(p, "refunded", refunded)
    object.__setattr__(p, "pending", pending)
    object.__setattr__(p, "capture_count", capture_count)
    object.__setattr__(p, "refund_count", refund_count)
    object.__setattr__(p, "authorized_at", authorized_at)
    object.__setattr__(p, "validity", validity)
    object.__setattr__(p, "flow", flow)
    object.__setattr__(p, "keys", keys)
    # new_payment's (and __attrs_post_init__'s) counter test: the counters are ints here, so the OR alone
    # (negative iff one is); then the post-init names the culprit and raises, as Payment(...) would.
    if (authorized | captured | cancelled | refunded | pending | capture_count | refund_count) < 0:
        p.__attrs_post_init__()
    return p


class Record:
    """One payment as the auditor holds it: a Payment's fields, mutable, plus where its latest event was.

    `uses` holds the idempotency keys used flattened as (key, op, amount, succeeded, key, ...): one tuple,
    so `key in uses` is a C-level scan (an op name or amount matching a key only sends the event the
    exact way). `exp` and `rwin` are the expiry and refund-window deadlines as canonical text
    (None: none; "": one without canonical text). `after` is the latest event's canonical `at` ("" before
    any): an event stamped earlier goes the exact way (OUT_OF_ORDER), and EXACT_ONLY sends every event
    there (a non-canonical latest `at`, or deadlines without canonical text). `at_dt` is the latest `at`
    when the exact path set it. `moves` are the fast moves out of the current state, by event type.
    """

    def __init__(self, fast: FastSpec, reference: str) -> None:
        self.fast = fast
        self.spec: Any = fast.spec
        self.name = fast.name
        self.state = fast.initial
        self.moves: list[Move | None] = fast.rows[fast.initial]
        self.reference = reference
        self.reference_ok = -1  # unknown; then 0 or 1, judged once per payment
        self.currency: str | None = None
        self.authorized = 0
        self.captured = 0
        self.cancelled = 0
        self.refunded = 0
        self.pending = 0
        self.capture_count = 0
        self.refund_count = 0
        self._authorized_at: datetime | None = None
        # `authorized_at` as a stamp (`_stamp`, whole UTC seconds) where one is known, else -1: what `pack`
        # keeps of it (~1k instructions a pack less than datetime's `__reduce_ex__`); its setter forgets it.
        self.auth_stamp: i64 = -1
        self.validity: timedelta | None = None
        self.flow: Flow | None = None
        self.uses: tuple[Any, ...] = ()
        self.exp: str | None = None
        self.rwin: str | None = None
        self._after = ""
        # `after` as a stamp (`after_stamp`), which `take` compares a line's with; _STAMP_UNKNOWN when `after`'s
        # setter changed it: `take` then reads it from `after`.
        self.after_stamp: i64 = -1
        self.at_dt: datetime | None = None
        self.line = 0
        self.file = ""
        self.pos = 0

    @property
    def authorized_at(self) -> datetime | None:
        return self._authorized_at

    @authorized_at.setter
    def authorized_at(self, at: datetime | None) -> None:
        self._authorized_at = at
        self.auth_stamp = -1

    @property
    def after(self) -> str:
        return self._after

    @after.setter
    def after(self, text: str) -> None:
        self._after = text
        # Read when `take` first needs it: the exact path sets `after` on every event it judges (~700
        # instructions a line to read the text at once), and a payment it judges may never come back.
        self.after_stamp = _STAMP_UNKNOWN

    @property
    def capturable(self) -> int:
        return self.authorized - self.captured - self.cancelled - self.pending

    def when(self) -> datetime:
        """The latest event's instant."""
        if self.after and self.after != EXACT_ONLY:
            return parse_instant(self.after)
        at = self.at_dt
        assert at is not None
        return at

    def payment(self, whole: bool = True, key: str | None = None) -> Payment:
        """The Payment `observe` would hold now; with `whole` False, with only the key history of `key` (none
        when it is None): for judging a fact with that key, as the only readers of the history (key_unique
        and the capture screen) read the uses of the fact's own key alone. A KeyUse built is ~1.4k
        instructions, and most keys a line gives are fresh."""
        u = self.uses
        # Built afresh, not kept: a kept tuple of KeyUses was ~150 bytes a payment that breached a rule.
        if not u:
            keys: tuple[KeyUse, ...] = ()
        elif whole:
            keys = tuple(key_use(u[i], u[i + 1], u[i + 2], u[i + 3]) for i in range(0, len(u), 4))
        elif key is not None and key in u:  # a C-level scan (an op or amount equal to a key costs a loop)
            keys = tuple(key_use(u[i], u[i + 1], u[i + 2], u[i + 3]) for i in range(0, len(u), 4) if u[i] == key)
        else:
            keys = ()
        if not _COMPILED:
            return new_payment(self.spec, self.reference, self.state, self.currency, self.authorized,
                               self.captured, self.cancelled, self.refunded, self.pending, self.capture_count,
                               self.refund_count, self.authorized_at, self.validity, self.flow, keys)
        return _payment(self.spec, self.reference, self.state, self.currency, self.authorized, self.captured,
                        self.cancelled, self.refunded, self.pending, self.capture_count, self.refund_count,
                        self.authorized_at, self.validity, self.flow, keys)

    def load(self, p: Payment, at: datetime, text: str | None) -> None:
        """Take the Payment the exact path computed for an event at `at` (canonical `text`, if any)."""
        self.state = p.state
        self.moves = self.fast.rows[p.state]
        self.currency = p.currency
        self.authorized = p.authorized
        self.captured = p.captured
        self.cancelled = p.cancelled
        self.refunded = p.refunded
        self.pending = p.pending
        self.capture_count = p.capture_count
        self.refund_count = p.refund_count
        self.flow = p.flow
        self.uses = tuple(x for k in p.keys for x in (k.key, k.op, k.amount, k.succeeded))
        self.at_dt = at
        start = p.authorized_at
        if start is not self.authorized_at or p.validity != self.validity:
            # A new authorization (or the first): its deadlines as text.
            self.authorized_at = start
            self.validity = p.validity
            self.exp = None
            self.rwin = None
            if start is not None:
                start_text = canonical(start)
                if start_text is not None:
                    self.auth_stamp = _stamp(start_text)
                validity = self.validity
                if validity is not None:
                    self.exp = deadline(start_text, start, validity, self.auth_stamp)
                window = self.fast.refund_window
                if window is not None:
                    self.rwin = deadline(start_text, start, window, self.auth_stamp)
        self.after = text if text is not None and self.exp != "" and self.rwin != "" else EXACT_ONLY


def _passes(s: Step, r: Record, t: int, at: str, amount: int, e_amount: int, cur: str | None,
            key: str | None) -> bool:
    """Whether every guard of step `s` passes for this fact (`e_amount` -1: the line gave none)."""
    if s.amount_valid:
        if amount <= 0:
            return False
        money = r.currency if r.currency is not None else cur
        if s.amount_min >= 0:
            if amount < s.amount_min:
                return False
        elif amount < r.fast.min_amount(money if money is not None else "*"):
            return False
        if s.amount_max >= 0 and amount > s.amount_max:
            return False
        if s.amount_format and money is not None:
            bounds = s.bounds.get(money)
            if bounds is None:
                bounds = s.bounds[money] = decimal_bounds(money, s.format_p, s.format_s)
            if amount % bounds[0] or amount >= bounds[1]:  # fits_decimal fails (amount > 0 here)
                return False
    if s.currency_matches and cur is not None and r.currency is not None and cur != r.currency:
        return False
    if s.currency_supported:
        currencies = r.fast.currencies
        wanted = cur if cur is not None else r.currency
        if currencies is None or wanted is None or wanted not in currencies:
            return False
    if s.reference_valid:
        if r.reference_ok < 0:
            r.reference_ok = 1 if r.fast.reference_accepted(r.reference) else 0
        if not r.reference_ok:
            return False
    # key_ok scans the key slots alone (`key in uses` compared every op and amount too).
    if s.key_unique and key is not None and r.uses and not key_ok(r.uses, key, t, amount, cur, r.currency):
        return False
    if s.not_expired and r.exp is not None and not at < r.exp:
        return False
    if s.manual_flow and r.flow is _AUTOMATIC:
        return False
    if s.within_capturable or s.partial_no:
        room = r.authorized - r.captured - r.cancelled
        if t != CAPTURED:
            room -= r.pending
        if s.within_capturable:
            allowed = room + (r.authorized * s.over_percent // 100 if s.over_percent else 0)
            if amount > allowed:
                return False
        if s.partial_no and amount < room:
            return False
    if s.max_captures >= 0 and r.capture_count >= s.max_captures:
        return False
    if s.nothing_cancelled and r.cancelled:
        return False
    if s.nothing_in_flight and r.pending:
        return False
    if s.within_refundable and amount > r.captured - r.refunded:
        return False
    if s.max_refunds >= 0 and r.refund_count >= s.max_refunds:
        return False
    if s.within_refund_window and r.rwin is not None and not at < r.rwin:
        return False
    if s.cancels_whole and e_amount >= 0:
        rest = r.capturable
        if e_amount != (rest if rest > 0 else 0):
            return False
    if s.expired_nothing_held:
        # The audit reports the remainder held before the lapse (Auditor._lapsed: the payment's capturable
        # before the event), whatever amount the `expired` line gives: 0 logged with 100 held is a lapse.
        return r.capturable <= 0
    return True


def key_ok(uses: tuple[Any, ...], key: str, t: int, amount: int, cur: str | None, currency: str | None) -> bool:
    """key_unique's verdict on a logged fact of type `t` with `key`: True when it passes. Only identical
    attempts that have not succeeded may share its key (an attempt's outcome, or a retry)."""
    for i in range(0, len(uses), 4):
        used: str = uses[i]  # a key is a str: typed, the test is a str compare, not a generic rich compare
        if used == key and ((cur is not None and cur != currency) or uses[i + 1] != _OPS[t]
                            or uses[i + 2] != amount or uses[i + 3]):
            return False
    return True


def _authorize(r: Record, at: str, amount: int, cur: str | None, flow: Flow | None, stamp: i64) -> bool:
    """An authorization's effect on the fast path (`stamp`: `at`'s); False (nothing changed) when a deadline has
    no canonical text."""
    currency = cur if cur is not None else r.currency
    start = _instant(at)  # `at` is canonical (plain); a bound constant, not a method looked up by name
    validity, exp, rwin = _terms(r, currency, at, start, stamp)
    if exp == "" or rwin == "":
        return False
    _authorized(r, amount, currency, flow, start, validity, exp, rwin, stamp)
    return True


def _terms(r: Record, currency: str | None, text: str | None, start: datetime,
           stamp: i64) -> tuple[timedelta | None, str | None, str | None]:
    """An authorization's validity under the policy, and its expiry and refund-window deadlines as text
    (`deadline`: "" when one has no canonical text; `stamp`: `text`'s, -1 when it has none)."""
    validity = r.fast.validity_for(currency) if currency is not None else None
    window = r.fast.refund_window
    return (validity, deadline(text, start, validity, stamp) if validity is not None else None,
            deadline(text, start, window, stamp) if window is not None else None)


def _authorized(r: Record, amount: int, currency: str | None, flow: Flow | None, start: datetime,
                validity: timedelta | None, exp: str | None, rwin: str | None, stamp: i64) -> None:
    """`stamp`: `start`'s (`_stamp` of its canonical text), or -1 when it has none."""
    r.currency = CURRENCIES.get(currency, currency) if currency is not None else None
    r.authorized = amount
    r.validity = validity
    r.flow = flow
    r._authorized_at = start
    r.auth_stamp = stamp
    r.exp = exp
    r.rwin = rwin


def _counts(r: Record, t: int, amount: int, key: str | None) -> None:
    """What a fact of type `t` (not an authorization) that moved `amount` does to the record's money and
    keys: `_engine.effect`'s counting, in place."""
    if t == CAPTURED:
        r.captured += amount
        r.pending = 0
        r.capture_count += 1
    elif t == REFUNDED:
        r.refunded += amount
        r.refund_count += 1
    elif t == CAPTURE_REQUESTED:
        r.pending = amount
    elif t == CAPTURE_FAILED:
        r.pending = 0
    else:  # cancelled, expired
        r.cancelled += amount
    if key is not None:
        if t == CAPTURED:
            use = (key, _OP_CAPTURE, amount, True)
        elif t == REFUNDED:
            use = (key, _OP_REFUND, amount, True)
        elif t == CANCELLED:
            use = (key, _OP_CANCEL, amount, True)
        elif t == CAPTURE_REQUESTED or (t == CAPTURE_FAILED and amount > 0):
            use = (key, _OP_CAPTURE, amount, False)  # an attempt binds its key (_engine.effect)
        else:
            return
        # A payment's first key use is the tuple itself: `() + use` made and freed one more.
        r.uses = r.uses + use if r.uses else use


def settle(r: Record, t: int, amount: int, dest: str, cur: str | None, key: str | None, flow: Flow | None,
           at: datetime, text: str | None, line: int, file: str, pos: int) -> bool:
    """Apply a fact the exact path judged (`_engine.evaluate`: `amount` resolved, `dest` where it leads) to
    the record in place, as `_engine.effect` applies it to a Payment: the one in-place effect, which the
    fast path's `move` runs too. `at` is the fact's instant, `text` its canonical text or None; `line`,
    `file` and `pos` where it was. True when the payment is now settled (a terminal state, nothing in
    flight)."""
    if t == AUTHORIZED:
        currency = cur if cur is not None else r.currency
        # Two statements: mypyc boxes an i64 in `x if c else -1`.
        stamp: i64 = -1
        if text is not None:
            stamp = _stamp(text)
        validity, exp, rwin = _terms(r, currency, text, at, stamp)
        _authorized(r, amount, currency, flow, at, validity, exp, rwin, stamp)
    else:
        _counts(r, t, amount, key)
    r.state = dest
    r.moves = r.fast.rows[dest]
    if text is not None and r.exp != "" and r.rwin != "":
        r.after = text
        r.at_dt = None  # `when()` reads `after`
    else:
        r.after = EXACT_ONLY
        r.at_dt = at
    r.line = line
    r.file = file
    r.pos = pos
    return dest in r.fast.terminal and not r.pending


def move(r: Record, mv: Move, at: str, e_amount: int, cur: str | None, key: str | None, flow: Flow | None,
         stamp: i64) -> int:
    """Apply a clean event to `r` in place (APPLIED, or SETTLES when the payment is now settled), or
    change nothing and return NOT_DONE. `e_amount` is the amount as logged, -1 when absent; `stamp` is `at`'s."""
    t = mv.trigger
    if t == EXPIRED:
        # A lapse releases exactly what was left, whatever amount the line claims (_rules.resolve_amount).
        amount = max(r.capturable, 0)
    elif e_amount >= 0:
        amount = e_amount
    elif t == CAPTURED:
        amount = max(r.authorized - r.captured - r.cancelled, 0)
    elif t == CAPTURE_REQUESTED or t == CANCELLED:
        amount = max(r.capturable, 0)
    elif t == CAPTURE_FAILED:
        amount = r.pending
    else:
        amount = 0
    for s in mv.steps:
        route = s.route
        if route:
            room = r.authorized - r.captured - r.cancelled
            if t != CAPTURED:
                room -= r.pending
            if route == 1:
                holds = amount < room
            elif route == 2:
                holds = amount >= room
            elif route == 3:
                holds = r.captured == 0
            else:
                holds = r.captured > 0
            if not holds:
                continue
        if not _passes(s, r, t, at, amount, e_amount, cur, key):
            return NOT_DONE
        if t == AUTHORIZED:
            if not _authorize(r, at, amount, cur, flow, stamp):
                return NOT_DONE
        else:
            _counts(r, t, amount, key)
        r.state = s.dest
        r.moves = s.dest_moves
        return SETTLES if s.terminal and not r.pending else APPLIED
    return NOT_DONE  # no route holds: INVALID_STATE, the exact way


# ----------------------------------------------------------------------------------------- lines


class Logged:
    """A valid logged event the fast path hands to the exact path: an `Event`'s fields (the type, instant and
    flow as the engine's values) plus `text`, the canonical text of `at`. What `judge` and the guards read
    of a fact (`_guards.Fact`), built in C from the decoded line: a frozen Event costs a Python-level call
    and a slot setter per field, on every line that breaks a rule."""

    def __init__(self, payment: str, type: EventType, at: datetime, amount: int | None, currency: str | None,
                 provider: str | None, key: str | None, flow: Flow | None, reason: str | None, text: str) -> None:
        self.payment = payment
        self.type = type
        self.at = at
        self.amount = amount
        self.currency = currency
        self.provider = provider
        self.key = key
        self.flow = flow
        self.reason = reason
        self.text = text


_EVENT_TYPES: Final[dict[str, EventType]] = {t.value: t for t in EventType}
_instant: Final = datetime.fromisoformat  # what parse_instant returns, for text canonical_at has vetted


def logged(ev: Any) -> Logged:
    """The Logged of a decoded line `take` found plain (its type known, its `at` canonical)."""
    f: tuple[Any, ...] = _astuple(ev)
    flow: str | None = f[7]
    at: str = f[2]
    return Logged(f[0], _EVENT_TYPES[f[1]], _instant(at), f[3], f[4], f[5], f[6],
                  FLOWS[flow] if flow is not None else None, f[8], at)


def plain(payment: str, etype: str, at: str, amount: int | None, cur: str | None, flow: str | None,
          day_ok: bool = False) -> int:
    """The type code of a decoded line the fast path may judge (-1: not one): what Event.from_dict would
    accept, with a canonical `at` inside the audit's years and an amount within int64. The decoder gave every field its
    type (provider, key and reason a str or None: nothing more to check there). `day_ok` says that `at`
    opens with a day in DAYS ("YYYY-MM-DDT") and its time of day passes `clock_ok`, sparing the slice and
    set lookup (`Kernel.take` remembers the last four days: 90% of the bench log's lines fall on one)."""
    if not payment:
        return -1
    code = 0
    for name in _TYPE_NAMES:
        if etype is name:
            break
        code += 1
    else:
        code = 0
        for name in _TYPE_NAMES:
            if etype == name:
                break
            code += 1
        else:
            return -1
    if not day_ok and not (at[:11] in DAYS and clock_ok(at)) and canonical_at(at) is None:
        return -1
    if amount is None:
        if code == AUTHORIZED or code == CAPTURED or code == REFUNDED:
            return -1
    elif amount < 0 or (amount > _SHORT_MAX and amount > INT64_MAX):
        return -1
    if cur is None:
        if code == AUTHORIZED:
            return -1
    elif not known_currency(cur):
        return -1
    return code if flow is None or flow in FLOWS else -1


# The stamp of EXACT_ONLY: above every canonical instant's (the largest, year 9999, is ~10**14).
_EXACT_STAMP: Final = 1 << 62
# A `Record.after_stamp` not yet read from its `after` (every stamp `after_stamp` gives is -1 or more).
_STAMP_UNKNOWN: Final = -2


def _stamp(at: str) -> i64:
    """The instant of `at` as the number YYYYMMDDHHMMSS when it is a canonical instant in shape: a date of
    digits (which may still be no day: DAY_CODES says), hours 00-23, minutes and seconds 00-59, as
    `canonical_at`'s regex and `parse_instant` take them; else -1. Stamps order as the instants (and the
    canonical texts) do: `take` compares two with one C compare, where two strs were a generic rich compare
    (~150 instructions). Each character is read as its code into an i64 (a direct read, compiled) and judged
    as a code (`ord(c) - 48` was a tagged subtraction per digit); the date and the time of day in one
    function, where two (one for each) cost a second call, length check and decoding of the str's kind."""
    if len(at) != 20:
        return -1
    c1: i64 = ord(at[4])
    c2: i64 = ord(at[7])
    c3: i64 = ord(at[10])
    c4: i64 = ord(at[13])
    c5: i64 = ord(at[16])
    c6: i64 = ord(at[19])
    y1: i64 = ord(at[0])
    y2: i64 = ord(at[1])
    y3: i64 = ord(at[2])
    y4: i64 = ord(at[3])
    m1: i64 = ord(at[5])
    m2: i64 = ord(at[6])
    d1: i64 = ord(at[8])
    d2: i64 = ord(at[9])
    h1: i64 = ord(at[11])
    h2: i64 = ord(at[12])
    n1: i64 = ord(at[14])
    n2: i64 = ord(at[15])
    s1: i64 = ord(at[17])
    s2: i64 = ord(at[18])
    # - - T : : Z; the date's eight digits; hours 00-23 ('0'-'2', then '0'-'9', at most "23"), minutes and
    # seconds 00-59.
    if (c1 != 45 or c2 != 45 or c3 != 84 or c4 != 58 or c5 != 58 or c6 != 90 or y1 < 48 or y1 > 57 or y2 < 48
            or y2 > 57 or y3 < 48 or y3 > 57 or y4 < 48 or y4 > 57 or m1 < 48 or m1 > 57 or m2 < 48 or m2 > 57
            or d1 < 48 or d1 > 57 or d2 < 48 or d2 > 57 or h1 < 48 or h1 > 50 or h2 < 48 or h2 > 57
            or h1 * 10 + h2 > 551 or n1 < 48 or n1 > 53 or n2 < 48 or n2 > 57 or s1 < 48 or s1 > 53 or s2 < 48
            or s2 > 57):
        return -1
    # The digits' codes summed as digits: 48 * 11111111111111 subtracted once. No conditional expression and
    # no named constant: mypyc reads a Final int constant, or an `x if c else -1` of an i64, as a boxed int,
    # and boxed the stamp (~200 instructions a line).
    return ((((((((((((((y1 * 10 + y2) * 10 + y3) * 10 + y4) * 10 + m1) * 10 + m2) * 10 + d1) * 10 + d2) * 10
                  + h1) * 10 + h2) * 10 + n1) * 10 + n2) * 10 + s1) * 10 + s2) - 533333333333328)


def after_stamp(text: str) -> i64:
    """The stamp `Record.after_stamp` holds for an `after` of `text`: -1 for "" (before any event: every
    stamp is later), `_stamp` for a canonical instant, and _EXACT_STAMP for EXACT_ONLY (every stamp earlier)."""
    if not text:
        return -1
    stamp = _stamp(text)
    if stamp < 0:  # a statement: mypyc boxed the stamp in `stamp if stamp >= 0 else _EXACT_STAMP`
        return _EXACT_STAMP
    return stamp


def _day_code(at: str) -> i64:
    """The day a canonical instant `at` falls on as the number YYYYMMDD (its `_stamp` // 10**6), or -1 when it
    has no stamp."""
    stamp = _stamp(at)
    if stamp < 0:
        return -1
    return stamp // 1_000_000


def _uncut(raw: bytes) -> bytes:
    """A line as `bytes.split(b"\n")` gives it: without the "\n" `readlines` leaves."""
    return raw[:len(raw) - 1] if raw and raw[len(raw) - 1] == 10 else raw


class Kernel:
    """The fast path's side of one Auditor: the payments it holds and the counts it keeps.

    `live` holds the payments that can still move money; `settled` (an OrderedDict, oldest latest event
    first) those in a terminal state, remembered for `window` lines, and `packed` the settled ones no
    longer young, as bytes (`recall` finds a settled one either way). The Auditor's exact path works on
    the same containers and counts, so the two paths are one audit. `take` judges one decoded line (a
    `Line`) and returns False, having changed nothing, when the exact path must.
    """

    def __init__(self, window: int, only: FastSpec | None, by_provider: dict[str, FastSpec],
                 settled: Any) -> None:
        self.window = window
        self.sweep_every = max(1, window // 16)
        self.sweep_at = 0
        self.only = only
        self.by_provider = by_provider
        self.live: dict[str, Record] = {}
        self.settled = settled
        self.to_end: Any = settled.move_to_end  # bound once: a method looked up by name per call cost ~100 more
        self.pop_first: Any = settled.popitem
        # Settled payments are kept as Records while young (`young` lines after their latest event: late
        # events mostly come soon), then packed into bytes (`pack`), ~4x smaller, in `packed`, in the
        # order they left `settled` (so oldest first, as `forget_before` needs). `recall` finds either.
        self.packed: dict[str, bytes] = {}
        self.young = min(window // 16, YOUNG_LINES)
        self.pack_every = max(1, min(window // 16, 1024))
        self.pack_at = 0
        # What a packed record names by number: its spec, state, currency and file; its validity.
        self.words: list[str] = []
        self.word_ids: dict[str, int] = {}
        self.spans: list[timedelta] = []
        self.span_ids: dict[timedelta, int] = {}
        self.providers: set[str] = set()
        self.events = 0
        self.payments = 0
        self.latest_s = ""  # the latest canonical `at` the fast path saw (text orders as time does)
        self.latest_stamp: i64 = -1  # its `_stamp`
        # The days of the latest lines `take` judged plain (in DAYS), most recent first, as `_day_code`s.
        self.day1: i64 = -1
        self.day2: i64 = -1
        self.day3: i64 = -1
        self.day4: i64 = -1
        # The memory bound (Auditor, `max_open`): past `max_open` live payments (0: no bound) the oldest
        # go to the auditor's store through `spill()`; `unspill(ref)` brings one back (a Record or None).
        self.max_open = 0
        self.spilled = 0
        self.spill: Any = None
        self.unspill: Any = None
        # A byte-range worker's record of the settled payments it reclaims (`_cli.audit_ranges`): an
        # array("q") given (hash of the id, latest pos) pairs, or None (every other audit).
        self.forgotten: Any = None
        # A reader of another auditor's records that numbered its lines from a cut (`Auditor.adopt`): added
        # to each record's pos as it is unpacked, and `shift_lines` to its line when it is of `shift_file`.
        self.shift = 0
        self.shift_lines = 0
        self.shift_file = ""

    def find(self, ref: str) -> Record | None:
        """A live payment, or one spilled to the store, brought back live."""
        rec = self.live.get(ref)
        if rec is None and self.spilled:
            rec = self.unspill(ref)
        return rec

    def recall(self, ref: str) -> Record | None:
        """A settled payment (whether or not past the window: the caller judges that), unpacked if it was
        packed. An unpacked one joins `settled` at the end: the caller moves it there or out anyway."""
        # Read as a dict (an OrderedDict is one): a native lookup, where a method call on `Any` cost ~3x.
        rec = cast("dict[str, Record]", self.settled).get(ref)
        if rec is None and self.packed:
            blob = self.packed.get(ref)
            if blob is not None:
                del self.packed[ref]
                rec = self.unpack(ref, blob)
                self.settled[ref] = rec
        return rec

    def pack(self, r: Record) -> bytes:
        """`r` as bytes that `unpack` turns back into an equal Record (the reference is the caller's key).
        The shape every record the audit settles has (instants in UTC, amounts within int64, plain strs)
        packs into fixed fields (`_pack_plain`, ~3x cheaper than marshal); any other into a marshalled tuple."""
        at = r.authorized_at
        if r.at_dt is None and (at is None or (at.tzinfo is _UTC and type(at) is _DATETIME)):
            blob = self._pack_plain(r, at)
            if blob:
                return blob
        return self._pack_any(r)

    def _pack_plain(self, r: Record, at: datetime | None) -> bytes:
        """The fixed fields (`_HEAD_SMALL` and up to four key uses, each a `_use` field; or `_HEAD`), then `after`,
        `exp`, `rwin` and the keys of the uses held in fields as ASCII, then any other key uses marshalled; b""
        when `r` does not fit them."""
        after = r._after
        exp = r.exp
        rwin = r.rwin
        n_exp = -1 if exp is None else len(exp)
        n_rwin = -1 if rwin is None else len(rwin)
        if len(after) > 127 or n_exp > 127 or n_rwin > 127:
            return b""
        # The numbers of the names, read from the table here (`word` adds a new one: a call each cost ~200
        # instructions, four a record).
        ids = self.word_ids
        found = ids.get(r.name)
        name = found if found is not None else self.word(r.name)
        found = ids.get(r.state)
        state = found if found is not None else self.word(r.state)
        cur = r.currency
        found = ids.get(cur) if cur is not None else _NONE
        currency = found if found is not None else self.word(cur) if cur is not None else _NONE
        found = ids.get(r.file)
        file = found if found is not None else self.word(r.file)
        validity = r.validity
        found = self.span_ids.get(validity) if validity is not None else _NONE
        span = found if found is not None else self.span(validity) if validity is not None else _NONE
        if name < 0 or state < 0 or currency < 0 or file < 0 or span < 0:
            return b""
        flow = r.flow
        flow_code = 0 if flow is None else 1 if flow is _MANUAL else 2
        pos = r.pos
        line = r.line
        authorized = r.authorized
        captured = r.captured
        cancelled = r.cancelled
        refunded = r.refunded
        pending = r.pending
        captures = r.capture_count
        refunds = r.refund_count
        reference_ok = r.reference_ok
        # The authorization's instant as its stamp (-1: none), where the record knows it: every authorization
        # the fast path applied (`at` is UTC here, so the stamp gives back an equal datetime, in UTC).
        auth: i64 = -1
        if at is not None:
            auth = r.auth_stamp
        small = ((at is None or auth >= 0) and 0 <= pos <= _INT32_MAX and 0 <= line <= _INT32_MAX
                 and 0 <= authorized <= _INT32_MAX and 0 <= captured <= _INT32_MAX and 0 <= cancelled <= _INT32_MAX
                 and 0 <= refunded <= _INT32_MAX and 0 <= pending <= _INT32_MAX and 0 <= captures <= _INT32_MAX
                 and 0 <= refunds < _REFUNDS_SMALL and name < _NAME_SMALL and -1 <= reference_ok <= 1 and _SMALL_OK)
        # Up to four key uses in fields of their own, their keys after the texts: `marshal.dumps` of the uses
        # cost ~4k instructions a record (it builds a table of the objects it wrote, for back-references).
        uses = r.uses
        n = len(uses)
        held = 0
        u1: i64 = 0
        u2: i64 = 0
        u3: i64 = 0
        u4: i64 = 0
        k1 = ""
        k2 = ""
        k3 = ""
        k4 = ""
        if small and n and n <= 16 and not n & 3:
            u1, k1 = _use(uses, 0, "")
            if u1 >= 0 and n > 4:
                u2, k2 = _use(uses, 4, uses[0])
                if u2 >= 0 and n > 8:
                    u3, k3 = _use(uses, 8, uses[4])
                    if u3 >= 0 and n > 12:
                        u4, k4 = _use(uses, 12, uses[8])
            if u1 >= 0 and u2 >= 0 and u3 >= 0 and u4 >= 0:
                held = n >> 2
        # One str built at once (an f-string of strs compiles to one allocation; each `+=` made another).
        text = f"{after}{exp or ''}{rwin or ''}{k1}{k2}{k3}{k4}" if held else f"{after}{exp or ''}{rwin or ''}"
        raw = text.encode()
        if len(raw) != len(text):
            if not held:
                return b""
            held = 0  # a key beyond ASCII: the uses go marshalled
            text = f"{after}{exp or ''}{rwin or ''}"
            raw = text.encode()
            if len(raw) != len(text):
                return b""
        if small:
            # Every number of the bench log's records fits: two to a 64-bit field, the small ones in bit
            # fields (see `_HEAD_SMALL`). Seven ints to box and pack instead of twenty: ~2,000 instructions less.
            smalls = _smalls(_PLAIN_SMALL + held, file, reference_ok, flow_code, len(after), n_exp, n_rwin, refunds)
            first = _pair(pos, line)
            second = _pair(authorized, captured)
            third = _pair(cancelled, refunded)
            fourth = _pair(pending, captures)
            names = _names(span, currency, state, name)
            if held == 0:
                head: bytes = _pack_small(smalls, first, second, third, fourth, names, auth)
            elif held == 1:
                head = _pack_small1(smalls, first, second, third, fourth, names, auth, u1)
            elif held == 2:
                head = _pack_small2(smalls, first, second, third, fourth, names, auth, u1, u2)
            elif held == 3:
                head = _pack_small3(smalls, first, second, third, fourth, names, auth, u1, u2, u3)
            else:
                head = _pack_small4(smalls, first, second, third, fourth, names, auth, u1, u2, u3, u4)
            if held:
                return head + raw
        else:
            if at is not None:
                # Typed, so that the two indexings are native reads (a generic `PyObject_GetItem` each as Any).
                reduced: tuple[Any, tuple[bytes, Any]] = _reduce(at, 4)
                state_of_at = reduced[1][0]
            else:
                state_of_at = _NO_INSTANT
            try:
                head = _pack_head(_PLAIN, pos, line, authorized, captured, cancelled, refunded, pending, captures,
                                  refunds, reference_ok, flow_code, name, state, currency, span, file, len(after),
                                  n_exp, n_rwin, state_of_at)
            except struct.error:  # beyond int64
                return b""
        if not uses:
            return head + raw
        try:
            keys: bytes = _dumps(uses, 4)
            return head + raw + keys
        except ValueError:  # a key of a str subclass (an Event built by hand)
            return b""

    def _pack_any(self, r: Record) -> bytes:
        flow = r.flow
        validity = r.validity
        # `pos` first, where `packed_pos` reads it.
        fields = (r.pos, r.name, r.state, r.currency, r.authorized, r.captured, r.cancelled, r.refunded, r.pending,
                  r.capture_count, r.refund_count, _instant_code(r.authorized_at),
                  validity.__reduce__()[1] if validity is not None else None,
                  0 if flow is None else 1 if flow is _MANUAL else 2, r.uses, r.exp, r.rwin, r._after,
                  _instant_code(r.at_dt), r.line, r.file, r.reference_ok)
        try:
            return marshal.dumps(fields, 4)
        except ValueError:  # a subclass of str or int (an Event built by hand): pickle keeps its type
            return pickle.dumps(fields, pickle.HIGHEST_PROTOCOL)

    def word(self, text: str) -> int:
        """The number of a name, state, currency or file in the packed fields; -1 past 65,535 of them."""
        return _number(self.word_ids, self.words, text, str)

    def span(self, validity: timedelta) -> int:
        """The number of an authorization validity in the packed fields; -1 past 65,535 of them."""
        return _number(self.span_ids, self.spans, validity, timedelta)

    def unpack(self, ref: str, blob: bytes) -> Record:
        tag = blob[0]
        auth: i64 = -1
        held = 0
        if _PLAIN <= tag <= _PLAIN_SMALL + 4:
            if tag != _PLAIN:
                held = tag - _PLAIN_SMALL
                q1: i64
                q2: i64
                q3: i64
                q4: i64
                q5: i64
                q6: i64
                q7: i64
                q6, q1, q2, q3, q4, q5, q7 = _HEAD_SMALL.unpack_from(blob)
                auth = q7
                authorized_at = _from_stamp(q7) if q7 >= 0 else None
                pos: int = q1 & _LOW32
                line: int = q1 >> 32
                authorized: int = q2 & _LOW32
                captured: int = q2 >> 32
                cancelled: int = q3 & _LOW32
                refunded: int = q3 >> 32
                pending: int = q4 & _LOW32
                capture_count: int = q4 >> 32
                i_span: int = q5 & 0xFFFF
                i_currency: int = (q5 >> 16) & 0xFFFF
                i_state: int = (q5 >> 32) & 0xFFFF
                i_name: int = q5 >> 48
                i_file: int = (q6 >> 8) & 0xFFFF
                reference_ok: int = ((q6 >> 24) & 3) - 1
                flow: int = (q6 >> 26) & 3
                n_after: int = (q6 >> 28) & 0xFF
                n_exp: int = ((q6 >> 36) & 0xFF) - 1
                n_rwin: int = ((q6 >> 44) & 0xFF) - 1
                refund_count: int = q6 >> 52
                start = _HEAD_SMALL.size + 8 * held
            else:
                (_, pos, line, authorized, captured, cancelled, refunded, pending, capture_count, refund_count,
                 reference_ok, flow, i_name, i_state, i_currency, i_span, i_file, n_after, n_exp, n_rwin,
                 at) = _HEAD.unpack_from(blob)
                authorized_at = _from_state(at, UTC) if at != _NO_INSTANT else None
                start = _HEAD.size
            words = self.words
            end = start + n_after + max(n_exp, 0) + max(n_rwin, 0)
            if held:  # the keys of the uses follow the texts, to the end
                text = blob[start:].decode()
                held_uses = _uses_of(blob, held, text, end - start)
            else:
                text = blob[start:end].decode()
                held_uses = marshal.loads(blob[end:]) if len(blob) > end else ()
            rest = n_after + max(n_exp, 0)
            return self._record(ref, pos, words[i_name], words[i_state],
                                words[i_currency] if i_currency != _NONE else None, authorized, captured,
                                cancelled, refunded, pending, capture_count, refund_count,
                                authorized_at, self.spans[i_span] if i_span != _NONE else None, flow,
                                held_uses, text[n_after:rest] if n_exp >= 0 else None,
                                text[rest:end - start] if n_rwin >= 0 else None,
                                text[:n_after], None, line, words[i_file], reference_ok, auth)
        (pos, name, state, currency, authorized, captured, cancelled, refunded, pending, capture_count, refund_count,
         authorized_at, validity, flow, uses, exp, rwin, after, at_dt, line, file, reference_ok) = _fields(blob)
        return self._record(ref, pos, name, state, CURRENCIES.get(currency, currency) if currency is not None else None,
                            authorized, captured, cancelled, refunded, pending, capture_count, refund_count,
                            _instant_of(authorized_at), timedelta(*validity) if validity is not None else None, flow,
                            uses, exp, rwin, after, _instant_of(at_dt), line, file, reference_ok, -1)

    def _record(self, ref: str, pos: int, name: str, state: str, currency: str | None, authorized: int, captured: int,
                cancelled: int, refunded: int, pending: int, capture_count: int, refund_count: int,
                authorized_at: datetime | None, validity: timedelta | None, flow: int, uses: tuple[Any, ...],
                exp: str | None, rwin: str | None, after: str, at_dt: datetime | None, line: int, file: str,
                reference_ok: int, auth: i64) -> Record:
        """A Record of these fields (`auth`: the stamp of `authorized_at`, or -1)."""
        only = self.only
        r = Record(only if only is not None else self.by_provider[name], ref)
        r.state = state
        r.moves = r.fast.rows[state]
        r.currency = currency
        r.authorized = authorized
        r.captured = captured
        r.cancelled = cancelled
        r.refunded = refunded
        r.pending = pending
        r.capture_count = capture_count
        r.refund_count = refund_count
        r._authorized_at = authorized_at
        r.auth_stamp = auth
        r.validity = validity
        r.flow = None if flow == 0 else _MANUAL if flow == 1 else _AUTOMATIC
        r.uses = uses
        r.exp = exp
        r.rwin = rwin
        r.after = after
        r.at_dt = at_dt
        if self.shift:
            pos += self.shift
            if file == self.shift_file:
                line += self.shift_lines
        r.line = line
        r.file = file
        r.pos = pos
        r.reference_ok = reference_ok
        return r

    def take(self, ev: Any, line: int, file: str, pos: int) -> int:
        """Judge one decoded line on the fast path: TAKEN; or, having changed nothing, NOT_PLAIN (not
        a line the fast path may judge: the exact path parses it again) or EXACT (a valid event the
        fast path cannot vouch for: the exact path judges it as decoded)."""
        # The Line's fields in one C call: each `ev.x` was a generic attribute lookup by name.
        # Typed as a tuple, each `f[i]` is a direct read (as Any, a generic PyObject_GetItem).
        f: tuple[Any, ...] = _astuple(ev)
        ref: str = f[0]
        etype: str = f[1]
        at: str = f[2]
        raw_amount: int | None = f[3]
        cur: str | None = f[4]
        raw_flow: str | None = f[7]
        stamp = _stamp(at)
        day: i64 = -1
        if stamp >= 0:
            day = stamp // 1_000_000  # its `_day_code`
        recent = day >= 0 and (day == self.day1 or day == self.day2 or day == self.day3 or day == self.day4)
        code = plain(ref, etype, at, raw_amount, cur, raw_flow, recent or (day >= 0 and day in DAY_CODES))
        if code < 0:
            return NOT_PLAIN
        if not recent:  # a valid day (`at` is canonical), now in DAYS
            self.day4 = self.day3
            self.day3 = self.day2
            self.day2 = self.day1
            self.day1 = day
        provider: str | None = f[5]
        live = self.live
        # Typed by casts: a value of type Any (the store's, the OrderedDict's) would make every later
        # `rec.x` a generic attribute lookup by name instead of a native slot read.
        rec = live.get(ref)
        if rec is None and self.spilled:
            rec = cast("Record | None", self.unspill(ref))
        where = 0  # live
        if rec is None:
            rec = self.recall(ref)
            if rec is not None:
                if pos - rec.pos > self.window:
                    return EXACT  # forgotten: the exact path drops it
                where = 1  # settled
            else:
                only = self.only
                if only is not None:
                    if provider is not None and provider != only.name:
                        return EXACT
                    fast: FastSpec | None = only
                elif provider is None:
                    return EXACT
                else:
                    fast = self.by_provider.get(provider)
                if fast is None:
                    return EXACT
                rec = Record(fast, ref)
                where = 2  # new
        # `at` is canonical here, so `stamp` is its instant: one C compare, where `at < rec.after` was a generic
        # rich compare of two strs (new: after "", nothing to compare).
        if where != 2:
            after = rec.after_stamp
            if after == _STAMP_UNKNOWN:
                after = rec.after_stamp = after_stamp(rec._after)
            if stamp < after:
                return EXACT
        if provider is not None and provider != rec.name:
            return EXACT
        mv = rec.moves[code]
        if mv is None:
            return EXACT
        flow = FLOWS[raw_flow] if raw_flow is not None else None
        done = move(rec, mv, at, raw_amount if raw_amount is not None else -1, cur, f[6], flow, stamp)
        if not done:
            return EXACT
        # Applied: the audit's own bookkeeping, as the exact path does it.
        self.events += 1
        # By stamps: a str comparison was a generic rich compare.
        if stamp > self.latest_stamp:
            self.latest_stamp = stamp
            self.latest_s = at
        rec._after = at  # its stamp set alongside, without the setter's reading of the text again
        rec.after_stamp = stamp
        rec.line = line
        rec.file = file
        rec.pos = pos
        if where == 0:
            if done == SETTLES:
                del live[ref]
                self.settled[ref] = rec
                self.sweep(pos)
        elif where == 1:
            if done == SETTLES:
                self.to_end(ref)
                self.sweep(pos)
            else:
                del self.settled[ref]
                live[ref] = rec
                if self.max_open and len(live) > self.max_open:
                    self.spill()
        else:
            self.providers.add(rec.name)
            self.payments += 1
            if done == SETTLES:
                self.settled[ref] = rec
                self.sweep(pos)
            else:
                live[ref] = rec
                if self.max_open and len(live) > self.max_open:
                    self.spill()
        return TAKEN

    def feed_lines(self, lines: list[bytes], number: int, file: str, start: int, decode: Any, slow: Any,
                   exact: Any) -> None:
        """Audit consecutive raw lines, the first numbered `number + 1` (`start + number + 1` in the whole
        input). A line the decoder refuses, or that `take` finds not plain, goes to `slow(raw, line, file,
        pos, None)`, to be parsed again; a valid event `take` leaves to the exact path goes to
        `exact(Logged, line, file, pos, canonical text of its at)`."""
        self._feed(lines, number, file, start, decode, slow, exact, False)

    def _feed(self, lines: list[bytes], number: int, file: str, start: int, decode: Any, slow: Any, exact: Any,
              cut: bool) -> None:
        """`feed_lines`; `cut`: a line may end with "\n", which `slow` is given without."""
        for raw in lines:
            number += 1
            try:
                ev = decode(raw)
            except Exception:  # msgspec's DecodeError or ValidationError: the exact way reports it
                slow(_uncut(raw) if cut else raw, number, file, start + number, None)
                continue
            taken = self.take(ev, number, file, start + number)
            if taken == EXACT:
                fact = logged(ev)
                exact(fact, number, file, start + number, fact.text)
            elif taken != TAKEN:
                slow(_uncut(raw) if cut else raw, number, file, start + number, None)

    def feed_block(self, block: bytes, number: int, file: str, start: int, decode: Any, slow: Any,
                   exact: Any) -> int:
        """`feed_lines` for the lines of `block` (joined by "\n", as `block.split(b"\n")` would cut them);
        returns how many it held. The lines are cut by `BytesIO.readlines` (memchr: ~3.5x cheaper than
        `bytes.split`'s byte-by-byte loop), so each but the last keeps its "\n": the decoder reads it as
        trailing whitespace, and `slow` is given the line without it."""
        lines: list[bytes] = _BytesIO(block).readlines()
        if not block or block[len(block) - 1] == 10:  # a last line that is empty
            lines.append(b"")
        self._feed(lines, number, file, start, decode, slow, exact, True)
        return len(lines)

    def feed_numbered(self, lines: list[bytes], numbers: list[int], file: str, base: int, pos_base: int,
                      decode: Any, slow: Any, exact: Any) -> None:
        """`feed_lines` for lines that are not consecutive (a partition's share of a range of the input):
        line `base + numbers[i]`, at `pos_base + numbers[i]` in the whole input."""
        for i in range(len(lines)):
            raw = lines[i]
            number = base + numbers[i]
            pos = pos_base + numbers[i]
            try:
                ev = decode(raw)
            except Exception:  # msgspec's DecodeError or ValidationError: the exact way reports it
                slow(raw, number, file, pos, None)
                continue
            taken = self.take(ev, number, file, pos)
            if taken == EXACT:
                fact = logged(ev)
                exact(fact, number, file, pos, fact.text)
            elif taken != TAKEN:
                slow(raw, number, file, pos, None)

    def sweep(self, pos: int) -> None:
        """Pack the settled payments no longer young, at most every `pack_every` lines, and reclaim those past
        the window, at most every `sweep_every` lines: a lookup judges the window itself, so reclaiming late
        changes nothing but memory (bounded by window + 1/16)."""
        if pos >= self.sweep_at:
            self.sweep_at = pos + self.sweep_every
            self.forget_before(pos - self.window)
        if pos >= self.pack_at:
            self.pack_at = pos + self.pack_every
            settled = self.settled
            packed = self.packed
            limit = pos - self.young
            # The old ones are a prefix (oldest first): taken off the front one by one, and the first young one
            # put back in front. Reading the prefix by the OrderedDict's iterator (which finds its node by key
            # each step, and gives a pair) and deleting each by key cost ~1.5x as much.
            pop_first = self.pop_first
            while settled:
                first: tuple[str, Record] = pop_first(False)
                ref, oldest = first
                if oldest.pos >= limit:
                    settled[ref] = oldest
                    self.to_end(ref, False)
                    break
                packed[ref] = self.pack(oldest)

    def forget_before(self, limit: int) -> None:
        """Reclaim the settled payments whose latest event is more than the window behind."""
        packed = self.packed
        forgotten = self.forgotten
        if packed:
            gone = []
            for ref, blob in packed.items():
                pos = packed_pos(blob)
                if pos >= limit:
                    break
                gone.append(ref)
                if forgotten is not None:
                    forgotten.extend((hash(ref), pos))
            if len(gone) == len(packed):
                packed.clear()
            else:
                for ref in gone:
                    del packed[ref]
        settled = self.settled
        while settled:
            oldest: Record = next(iter(settled.values()))
            if oldest.pos >= limit:
                return
            settled.popitem(False)
            if forgotten is not None:
                forgotten.extend((hash(oldest.reference), oldest.pos))


_MANUAL: Final = Flow.MANUAL


def _instant_code(at: datetime | None) -> bytes | None:
    """An instant as `pack` keeps it: a UTC one (all the audit's own) as the 10 bytes datetime pickles its
    value as (the cheapest way out: 4x faster than counting microseconds), any other zone pickled whole,
    so that it comes back as it was."""
    if at is None:
        return None
    if at.tzinfo is UTC and type(at) is datetime:
        state: Any = at.__reduce_ex__(4)[1][0]
        return bytes(state)
    return pickle.dumps(at, pickle.HIGHEST_PROTOCOL)


def _from_stamp(stamp: i64) -> datetime:
    """The UTC instant of a stamp (`_stamp`: YYYYMMDDHHMMSS)."""
    return _DATETIME(stamp // 10_000_000_000, stamp // 100_000_000 % 100, stamp // 1_000_000 % 100,
                     stamp // 10_000 % 100, stamp // 100 % 100, stamp % 100, tzinfo=_UTC)


def _instant_of(code: bytes | None) -> datetime | None:
    if code is None:
        return None
    if len(code) == 10:
        found: datetime = _from_state(code, UTC)
        return found
    found = pickle.loads(code)
    return found


def _number(ids: dict[Any, int], values: list[Any], value: Any, kind: type) -> int:
    """`value`'s number in `values` (added if new), or -1 when it is not exactly of `kind` or 65,535 are taken."""
    found = ids.get(value)
    if found is None:
        if type(value) is not kind or len(values) >= _NONE:
            return -1
        found = ids[value] = len(values)
        values.append(value)
    return found


def _pair(low: int, high: int) -> i64:
    """Two numbers of 0..2**31-1 in one 64-bit field (`_HEAD_SMALL`), `low` in its low half."""
    lo: i64 = low
    hi: i64 = high
    return (hi << 32) | lo


def _names(span: int, currency: int, state: int, name: int) -> i64:
    """The numbers of a record's validity, currency, state (16 bits each) and spec name (15) in one field."""
    a: i64 = span
    b: i64 = currency
    c: i64 = state
    d: i64 = name
    return (d << 48) | (c << 32) | (b << 16) | a


def _smalls(tag: int, file: int, reference_ok: int, flow: int, n_after: int, n_exp: int, n_rwin: int,
            refunds: int) -> i64:
    """The tag (_PLAIN_SMALL plus the key uses in fields: the low 8 bits, the blob's first byte), the file's
    number (16 bits), reference_ok + 1 and the flow's code (2 each), the lengths of `after`, `exp` + 1 and
    `rwin` + 1 (8 each) and the refund count (11) in one field."""
    t: i64 = tag
    a: i64 = file
    b: i64 = reference_ok + 1
    c: i64 = flow
    d: i64 = n_after
    e: i64 = n_exp + 1
    f: i64 = n_rwin + 1
    g: i64 = refunds
    return (g << 52) | (f << 44) | (e << 36) | (d << 28) | (c << 26) | (b << 24) | (a << 8) | t


def _use(uses: tuple[Any, ...], i: int, before: str) -> tuple[i64, str]:
    """The key use at `uses[i:i + 4]` (`Record.uses`) as a `_HEAD_SMALL` field, and the text to keep of its
    key: the key's length (8 bits), the op (2: capture, refund, cancel), succeeded (1), whether the key is
    `before` (1: the previous use's key, then not kept again; "" before the first), and above them the amount
    (0..2**51-1); (-1, "") when it has another shape (`_pack_plain` marshals the uses then)."""
    key = uses[i]
    amount = uses[i + 2]
    if type(key) is not str or type(amount) is not int:
        return -1, ""
    k: str = key
    a: int = amount
    n: i64 = len(k)
    if a < 0 or a > _USE_AMOUNT_MAX or n > 255:
        return -1, ""
    op = uses[i + 1]
    o: i64 = 0
    if op is _OP_REFUND:
        o = 1
    elif op is _OP_CANCEL:
        o = 2
    elif op is not _OP_CAPTURE:  # the very str `_counts` and `load` (`op_of`) give; any other, marshalled
        return -1, ""
    succeeded = uses[i + 3]
    s: i64 = 0
    if succeeded is True:
        s = 1
    elif succeeded is not False:
        return -1, ""
    high: i64 = a
    if k == before:
        return (high << 12) | (1 << 11) | (s << 10) | (o << 8), ""
    return (high << 12) | (s << 10) | (o << 8) | n, k


def _uses_of(blob: bytes, held: int, text: str, start: int) -> tuple[Any, ...]:
    """The `held` key uses of a `_HEAD_SMALL` blob (`_use`), their keys read from `text` at `start`."""
    out: list[Any] = []
    key = ""
    for i in range(held):
        code: int = _USE.unpack_from(blob, _HEAD_SMALL.size + 8 * i)[0]
        if not code >> 11 & 1:  # a key of its own (else the previous one's)
            end = start + (code & 0xFF)
            key = text[start:end]
            start = end
        out += (key, _USE_OPS[code >> 8 & 3], code >> 12, bool(code >> 10 & 1))
    return tuple(out)


def _fields(blob: bytes) -> Any:
    return pickle.loads(blob) if blob[0] == _PICKLED else marshal.loads(blob)


_PICKLED = pickle.dumps(None, pickle.HIGHEST_PROTOCOL)[0]  # what a pickle opens with; marshal's tuple ")"


def packed_pos(blob: bytes) -> int:
    """The `pos` of a packed record, without unpacking the rest: the low half of the second fixed field
    (read byte by byte: compiled, four indexings cost less than a call), or after the tag of the wide ones;
    else marshal (version 4) writes a tuple of fewer than 256 items as ")" and a 1-byte count, then its
    first item, and reads one object, ignoring the bytes after it."""
    tag = blob[0]
    if _PLAIN_SMALL <= tag <= _PLAIN_SMALL + 4:
        return blob[8] | (blob[9] << 8) | (blob[10] << 16) | (blob[11] << 24)
    if tag == _PLAIN:
        found: int = _POS.unpack_from(blob, 1)[0]
        return found
    pos: int = _fields(blob)[0] if tag == _PICKLED else marshal.loads(blob[2:])
    return pos


# The fixed fields of a plain packed record: a tag, pos, line, the five amounts, the two counts (int64),
# reference_ok, flow, the numbers of its spec name, state, currency, validity and file (_NONE: None), the
# lengths of `after`, `exp` and `rwin` (-1: None), and `authorized_at`'s state as datetime pickles it.
_HEAD: Final = struct.Struct("<BqqqqqqqqqbBHHHHHbbb10s")
# The same in seven native 64-bit fields, when pos, line, the amounts and the capture count are each in
# 0..2**31-1, the refund count below 2**11, the spec name's number below 2**15 and the authorization's instant
# has a stamp (`Record.auth_stamp`) or is None: `_smalls` (whose low byte, the blob's first, is the tag
# _PLAIN_SMALL), then (pos, line), (authorized, captured), (cancelled, refunded), (pending, capture count) as
# `_pair`s (the first in the low half), `_names`, and the stamp (-1: None). Seven ints to box and pack instead
# of 20; native ("n": `PyLong_AsSsize_t`) because the standard "q" converts an int past
# 2**30 through `_PyLong_AsByteArray`, ~4x the cost. Only where "n" is 8 bytes, little-endian (the tag first).
_HEAD_SMALL: Final = struct.Struct("@nnnnnnn")
_SMALL_OK: Final = _HEAD_SMALL.size == 56 and sys.byteorder == "little"
_INT32_MAX: Final = (1 << 31) - 1
_LOW32: Final = (1 << 32) - 1
_REFUNDS_SMALL: Final = 1 << 11
_NAME_SMALL: Final = 1 << 15
# Bound once (a method looked up per call was a fifth of a pack's cost), and Final: mypyc then reads them
# from C statics, not the module's dict.
_UTC: Final = UTC
_DATETIME: Final = datetime
_pack_head: Final[Any] = _HEAD.pack
_pack_small: Final[Any] = _HEAD_SMALL.pack
# The same followed by one to four key uses (`_use`), the tag _PLAIN_SMALL + their count.
_pack_small1: Final[Any] = struct.Struct("@8n").pack
_pack_small2: Final[Any] = struct.Struct("@9n").pack
_pack_small3: Final[Any] = struct.Struct("@10n").pack
_pack_small4: Final[Any] = struct.Struct("@11n").pack
_USE: Final = struct.Struct("@n")
_USE_AMOUNT_MAX: Final = (1 << 51) - 1
_USE_OPS: Final = (_OP_CAPTURE, _OP_REFUND, _OP_CANCEL)
_reduce: Final[Any] = datetime.__reduce_ex__
_dumps: Final[Any] = marshal.dumps
_POS: Final = struct.Struct("<q")
_PLAIN: Final = 1  # the tags; marshal's tuple opens ")" (or with its ref flag), a pickle 0x80
_PLAIN_SMALL: Final = 2
_NONE: Final = 0xFFFF
_NO_INSTANT: Final = bytes(10)  # month 0: no datetime's state
# datetime's pickle constructor: `datetime(state, tzinfo)`, from the 10 bytes its `__reduce_ex__` gives.
_from_state: Any = datetime
