"""Auditing histories: every event is judged as `observe` judges it, and every breach is reported with its evidence.

`observe` is the rule source, so an audit and `decide` never disagree about a rule. A plain, clean move
is judged on a fast path compiled from the same spec (`_audit_fast`), on the payment's mutable record;
everything else goes through `observe` itself (`Auditor(fast=False)` sends every line there, and a
differential test holds the two equal). The audit adds only
what a single event cannot show: a malformed line (LOG_MALFORMED), an event stamped before the previous
event of its payment (OUT_OF_ORDER), and a remainder held on the card until the authorization lapsed
(DANGLING_AUTHORIZATION). A second success under one idempotency key is `observe`'s DUPLICATE_CAPTURE.

Streaming and memory. One pass; nothing is kept per line. Per payment the auditor keeps a Record (the
Payment's fields, mutable), the `at`, line and stream position of its latest event:
- payments that can still move money (not in a terminal state, or with a capture in flight) are kept
  until the end, because DANGLING_AUTHORIZATION is judged on them there;
- payments in a terminal state are remembered for `settled_window` lines of input after their latest
  event (default 250,000). Inside the window they stay exact: a late refund, a capture after a cancel
  or a duplicate capture under an old key is judged against the whole Payment. Past it the payment is
  forgotten, and a later event for it is judged as the first event of an unknown payment (like a log
  that starts mid-history: NOT_AUTHORIZED, and it counts as a payment again). Its memory is reclaimed
  within another 1/16 of the window (a sweep on every settle was ~8% of its profile).
The window is counted in input lines, not in payments, so whether a payment is remembered depends on
its own events only: a partition of a parallel run decides exactly as a single process does, and the
output stays byte-identical whatever the window. Keeping less per settled payment (a state code only)
would make exactly the late events an audit exists for report the wrong code.

Nothing here reads a file or a clock: lines come in as bytes, str, dicts or Events, with their line
number and file name, and time is the events' own.
"""

from __future__ import annotations

import gc
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from itertools import chain, islice
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from attrs import field, frozen

from ._audit_fast import EXACT_ONLY, canonical, fast_spec
from ._bom import strip_bom
from ._codes import Code
from ._engine import check_fact, judge, observe
from ._errors import AuditError, EventError
from ._guards import Fact, plain_state, room
from ._hotpath import hot as _default_hot
from ._lines import Line, LineError, decode_line, to_line
from ._money import INT64_MAX, to_major_string
from ._policy import POLICY_PARSERS
from ._spec import Spec, _with_overrides, load_spec, shipped
from ._time import format_instant, instant_problem, parse_instant
from ._values import (
    Event,
    EventType,
    Flow,
    Payment,
    Violation,
    _Deferrable,
    set_pending,
    surrogate_in,
    text_problem,
)

if TYPE_CHECKING:
    from ._hot import Logged

DEFAULT_SETTLED_WINDOW = 250_000
# A message quotes what it found in the line; a garbage line must not turn the report into garbage.
_MAX_MESSAGE = 300
_EXPIRED = EventType.EXPIRED
_CANCELLED = EventType.CANCELLED
_CAPTURED_TYPE, _REFUNDED_TYPE = EventType.CAPTURED, EventType.REFUNDED
_AUTOMATIC = Flow.AUTOMATIC
_AUTH_EXPIRED = Code.AUTHORIZATION_EXPIRED
_loads = orjson.loads
_new_object = object.__new__
# Event.from_dict without its look for lone surrogates: a line orjson decoded holds none, and `feed` looks
# in a dict given as such before anything else.
_from_dict = Event._from_object
_JSONDecodeError = orjson.JSONDecodeError
# Enum `.value` is a Python-level descriptor call (~1 us); findings read it through these dicts instead.
_TYPE_VALUES: dict[EventType, str] = {t: t.value for t in EventType}
_CODE_VALUES: dict[Code, str] = {c: c.value for c in Code}
_CODES: dict[str, Code] = {c.value: c for c in Code}
_TAKEN, _EXACT = _default_hot.TAKEN, _default_hot.EXACT
_TYPE_CODES: dict[EventType, int] = {t: _default_hot.TYPE_CODES[t.value] for t in EventType}


@frozen(weakref_slot=False)  # a log may hold millions: 8 bytes each that nothing uses
class Finding(_Deferrable):
    """One breach: which payment, where in which file, the code, the evidence and when it happened.

    `payment` is None for a line too broken to name one; `at` is the RFC 3339 instant (UTC) of the
    event, or of the lapse for DANGLING_AUTHORIZATION, and None when the line has no readable time.
    A finding from `observe` holds its Violation and formats `message` on first read (when the report
    is written): the evidence is all there, and a log with millions of breaches does not pay for text
    nobody reads twice.

    `amount` is the money at stake, in minor units of `currency` (None when no money moved): the excess
    over what could be captured (EXCEEDS_CAPTURABLE) or refunded (REFUND_EXCEEDS_CAPTURED), the remainder
    left held (DANGLING_AUTHORIZATION), and for any other breach by a `captured` or `refunded` event, that
    event's amount. A `capture_requested` moves no money, so it carries none (its `captured` will).
    `currency` is None where the log never said it (a capture with no authorization before it).
    """

    _deferred = ("message",)

    payment: str | None
    line: int
    file: str
    code: Code
    message: str
    at: str | None
    amount: int | None = None
    currency: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"payment": self.payment, "line": self.line, "file": self.file, "code": _CODE_VALUES[self.code],
                "message": self.message, "at": self.at, "amount": self.amount, "currency": self.currency}

    def __reduce__(self) -> tuple[Callable[..., Finding], tuple[Any, ...]]:
        # Parallel audits send every finding back from a worker: a plain call per finding, with the code
        # as its text, pickles several times faster than attrs' slots state and an Enum lookup. The
        # message goes as its deferred state when that is small (`message_state`), so that neither side
        # formats it before it is read.
        return _finding, (self.payment, self.line, self.file, _CODE_VALUES[self.code], message_state(self),
                          self.at, self.amount, self.currency)


# ------------------------------------------------------------------------- findings across a pipe
#
# A finding's message is formatted on first read from its deferred state (`_Deferrable`). `_breach` keeps
# that state small and picklable by construction: a module-level function and plain values (ints, strs,
# enum members, instants; `_guards.plain_state`), never a Payment, an Event or a Violation
# (tests/test_audit_fastpath.py holds it so for every deferred guard message). A worker of a parallel
# audit therefore sends the state as it is, and neither process formats a message before the report is
# written; a finding built with its message sends the text.


def message_state(f: Finding) -> str | tuple[Any, ...]:
    """What crosses a pipe for a finding's message: the deferred state it was built with (the same text on
    first read, wherever that is), else its text."""
    try:
        return _get_pending(f)  # type: ignore[no-any-return]
    except AttributeError:  # built with its message, or read since
        return f.message


def _finding(payment: str | None, line: int, file: str, code: str,  # noqa: PLR0917 - pickle calls it
             message: str | tuple[Any, ...], at: str | None, amount: int | None = None,
             currency: str | None = None) -> Finding:
    """The finding `Finding.__reduce__` and `audit_ranges.pack` sent: the message as text or deferred state."""
    f: Finding = _new_object(Finding)
    _set_payment(f, payment)
    _set_line(f, line)
    _set_file(f, file)
    _set_code(f, _CODES[code])
    if type(message) is str:
        _set_message(f, message)
    else:
        set_pending(f, message)
    _set_at(f, at)
    _set_amount(f, amount)
    _set_currency(f, currency)
    return f


def _said(kind: str, logged: int | None, text: str) -> tuple[str]:
    """The message of a finding by an event of type `kind` (with the amount `logged`) that broke a rule
    `text` explains."""
    if logged is None:
        return (f"{kind}: {text}",)
    return (f"{kind} {logged}: {text}",)


def _said_later(kind: str, logged: int | None, settle: Callable[..., tuple[str]], *args: Any) -> tuple[str]:
    """`_said` for a rule whose text is left to `settle(*args)` (a Violation's deferred message)."""
    return _said(kind, logged, settle(*args)[0])


# A Violation's message slot, read without `_Deferrable.__getattr__`: AttributeError while deferred.
_violation_text = Violation.__dict__["message"].__get__
_violation_pending = _Deferrable.__dict__["_pending"].__get__
# The codes whose guards leave their message to be formatted on first read (deferred_violation), usually.
_DEFERRED_CODES = frozenset({Code.EXCEEDS_CAPTURABLE, Code.REFUND_EXCEEDS_CAPTURED, Code.AUTHORIZATION_EXPIRED})
# Rule texts seen, each kept once, and the states of breaches with no amount (`_breach`); bounded, as a
# text that quotes a key or an amount seldom repeats.
_TEXTS: dict[str, str] = {}
_STATES: dict[tuple[str, str], tuple[Any, ...]] = {}
_MAX_TEXTS = 4096


_set_payment = Finding.__dict__["payment"].__set__
_set_line = Finding.__dict__["line"].__set__
_set_file = Finding.__dict__["file"].__set__
_set_code = Finding.__dict__["code"].__set__
_set_at = Finding.__dict__["at"].__set__
_set_amount = Finding.__dict__["amount"].__set__
_set_currency = Finding.__dict__["currency"].__set__
_set_message = Finding.__dict__["message"].__set__
_get_pending = _Deferrable.__dict__["_pending"].__get__


def _breach(payment: str, line: int, file: str, kind: str, logged: int | None,  # noqa: PLR0917 - one per breach
            violation: Violation, at: str | None, amount: int | None, currency: str | None) -> Finding:
    """The Finding of a violation `observe` found by an event of type `kind` (with the amount `logged`), its
    message left to be formatted on first read: no text is built for it before then (a log with a
    million breaches holds a million findings). What it keeps for that is small and picklable: the
    Violation's text, or its deferred message's function and plain values (`_guards.plain_state`),
    never the Violation, the Payment or the Event."""
    f: Finding = _new_object(Finding)
    _set_payment(f, payment)
    _set_line(f, line)
    _set_file(f, file)
    code = violation.code
    _set_code(f, code)
    _set_at(f, at)
    _set_amount(f, amount)
    _set_currency(f, currency)
    # A Violation's message is either its text or deferred state. Which is asked first is a guess by the
    # code (a raised AttributeError costs more than the rest of the finding).
    text: str | None = None
    if code not in _DEFERRED_CODES:
        try:
            text = _violation_text(violation)
        except AttributeError:  # deferred after all
            text = None
    if text is None:
        try:
            pending = _violation_pending(violation)
        except AttributeError:  # built with its text
            text = _violation_text(violation)
        else:
            set_pending(f, (_said_later, kind, logged, *plain_state(pending)))
            return f
    # Many breaches share their rule's text (a currency pair, a state with no such transition): one copy
    # of each serves them all, and with no amount the whole state (~100 and ~70 bytes a finding: 5 MB of
    # the bench log's peak RSS).
    shared = _TEXTS.get(text)
    if shared is None:
        shared = text
        if len(_TEXTS) < _MAX_TEXTS:
            _TEXTS[text] = text
    if logged is not None:
        set_pending(f, (_said, kind, logged, shared))
    else:
        known = _STATES.get((kind, shared))
        if known is None:
            known = (_said, kind, None, shared)
            if len(_STATES) < _MAX_TEXTS:
                _STATES[kind, shared] = known
        set_pending(f, known)
    return f


@frozen
class AuditReport:
    """What an audit found. `violations` are sorted by file (in input order), line, then code.

    `provider` is the spec's name when one spec judged every event, else None. `events` counts valid
    events, `payments` the payments they named. `as_of` is the instant DANGLING_AUTHORIZATION was judged at.
    `providers` names every spec that judged a payment, sorted.
    """

    provider: str | None
    events: int
    payments: int
    violations: tuple[Finding, ...]
    counts: Mapping[str, int]
    as_of: str | None = None
    providers: tuple[str, ...] = ()

    @property
    def clean(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        """The `capstate audit --json` object."""
        return {"provider": self.provider, "events": self.events, "payments": self.payments,
                "violations": [f.to_dict() for f in self.violations], "counts": dict(self.counts)}


@frozen
class Dangling:
    """A payment that may have held its remainder until it lapsed; judged once `as_of` is known."""

    payment: str
    file: str
    line: int
    provider: str
    currency: str | None
    authorized: int
    remainder: int
    authorized_at: datetime
    expires_at: datetime


@frozen
class Partial:
    """One auditor's result before the end-of-input judgement: what parallel runs send back to merge."""

    findings: list[Finding]
    events: int
    payments: int
    providers: frozenset[str]
    latest: datetime | None
    dangling: list[Dangling] = field(factory=list)


def overrides_for(name: str, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The overrides that apply to the spec `name`: unprefixed keys, and keys prefixed with `name.`
    (`hellgate.authorization_validity`). Keys prefixed with another provider's name are left out."""
    out: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        head, dot, rest = str(key).partition(".")
        if dot and head not in POLICY_PARSERS:
            if head == name:
                out[rest] = value
            continue
        out[str(key)] = value
    return out


def resolve_spec(spec: Spec | str | None, overrides: Mapping[str, Any] | None = None) -> Spec | None:
    """A Spec from a Spec, a shipped name or a path, with the overrides that apply to it."""
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = load_spec(spec)
    if not isinstance(spec, Spec):
        raise AuditError(f"spec must be a Spec, a shipped name or a path, got {type(spec).__name__}")
    mine = overrides_for(spec.name, overrides)
    return _with_overrides(spec, mine) if mine else spec


def parse_as_of(as_of: datetime | str | None) -> datetime | None:
    if as_of is None:
        return None
    if isinstance(as_of, str):
        try:
            return parse_instant(as_of)
        except ValueError as exc:
            raise AuditError(f"as_of: {exc}") from None
    if not isinstance(as_of, datetime) or as_of.utcoffset() is None:
        raise AuditError(f"as_of must be a timezone-aware datetime, got {as_of!r}")
    far = instant_problem(as_of)
    if far is not None:  # the rule parse_instant applies to the text form
        raise AuditError(f"as_of: {far}")
    return as_of


def _json_problem(item: bytes | str, exc: Exception) -> str:
    """A line's parse error as read without its line terminator, so that a line reads the same whether it
    came with its "\\n" (read line by line) or without (split from a block of lines)."""
    bare = item.rstrip(b"\r\n" if isinstance(item, bytes) else "\r\n")  # type: ignore[arg-type]
    if len(bare) != len(item):
        try:
            _loads(bare)
        except _JSONDecodeError as again:
            return str(again)
    return str(exc)


def _place(track: Any, file: str) -> str:
    return f"line {track.line}" if track.file == file else f"{track.file}:{track.line}"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


class OpenStore(Protocol):
    """Where an Auditor bounded by `max_open` keeps the open payments it spilled (the engine reads no file:
    the CLI gives it one on disk, `capstate._cli.spill`). Values are opaque bytes, keyed by payment."""

    def put(self, items: list[tuple[str, bytes]]) -> None:
        """Keep these (payment, record) pairs; no payment is given twice without a `take` between."""

    def take(self, ref: str) -> bytes | None:
        """Remove and return the payment's record, or None when it holds none."""

    def drain(self) -> Iterable[tuple[str, bytes]]:
        """Every pair still held, each once, in any order (the end of the audit)."""


class Auditor:
    """The streaming audit of one stream of lines (or one partition of it).

    `feed(item, line, file, pos)` for each line in order (`pos` increasing; default: the line), then
    `partial()`; `merge` turns partials into the report. `spec` None means each payment's first event
    names its provider. `settled_window` is how many lines a payment in a terminal state is remembered
    after its latest event.
    """

    def __init__(self, spec: Spec | None = None, *, overrides: Mapping[str, Any] | None = None,
                 settled_window: int = DEFAULT_SETTLED_WINDOW, fast: bool = True, hot: ModuleType | None = None,
                 store: OpenStore | None = None, max_open: int = 0):
        if settled_window < 0:
            raise AuditError(f"settled_window must be >= 0, got {settled_window}")
        if max_open < 0 or (max_open and store is None):
            raise AuditError(f"max_open must be >= 0, and needs a store, got {max_open} and {store!r}")
        self._spec = spec
        self._overrides = overrides
        self._window = settled_window
        # fast=False judges every line the exact way: the reference the fast path is tested against.
        self._fast = fast
        # The build of the hot loop (`_hotpath`): the compiled one, unless the tests name its plain twin.
        self._hot = hot = hot if hot is not None else _default_hot
        self._settle = hot.settle
        self._logged = hot.logged
        self._specs: dict[str | None, Spec | str] = {}
        # The compiled fast moves of each provider's spec (filled as payments name them).
        self._moves: dict[str, Any] = {}
        self._cancellable: dict[tuple[int, str], bool] = {}
        # Ordered by the position of each payment's latest event, oldest first, so that forgetting is
        # popping from the front (O(1); a plain dict's front deletions rescan its dead slots).
        settled: OrderedDict[str, Any] = OrderedDict()
        self._k = hot.Kernel(settled_window, fast_spec(spec, hot) if spec is not None else None, self._moves,
                             settled)
        self._live: dict[str, Any] = self._k.live
        self._settled = settled
        self._providers: set[str] = self._k.providers
        self.findings: list[Finding] = []
        self.latest: datetime | None = None
        self._store = store
        if max_open:
            self._k.max_open = max_open
            self._k.spill = self._spill
            self._k.unspill = self._unspill

    # ------------------------------------------------------------------------------ memory bound

    def _spill(self) -> None:
        """Move the oldest eighth of the live payments to the store: they come back when their next event
        arrives (`_unspill`), or at the end (`partial`). Their Records go whole, so nothing is judged
        differently; only where they wait changes. An eighth, not more: the packed batch is held in memory
        while it is written, on top of the budget."""
        live = self._live
        batch = [(ref, self._pack(live[ref])) for ref in islice(live, max(1, len(live) // 8))]
        for ref, _ in batch:
            del live[ref]
        assert self._store is not None
        self._store.put(batch)
        self._k.spilled += len(batch)

    def _unspill(self, ref: str) -> Any:
        assert self._store is not None
        blob = self._store.take(ref)
        if blob is None:
            return None
        self._k.spilled -= 1
        rec = self._live[ref] = self._unpack(ref, blob)
        return rec

    def _pack(self, r: Any) -> bytes:
        blob: bytes = self._k.pack(r)  # the kernel's packing, which also keeps its settled payments
        return blob

    def _unpack(self, ref: str, blob: bytes) -> Any:
        return self._k.unpack(ref, blob)

    @property
    def events(self) -> int:
        """Valid events judged so far."""
        return int(self._k.events)

    @property
    def payments(self) -> int:
        """Payments named by them."""
        return int(self._k.payments)

    # ------------------------------------------------------------------------------------ input

    def feed(self, item: bytes | str | Mapping[str, Any] | Event, line: int, file: str, pos: int = -1) -> None:
        """Audit one line: raw JSON (bytes or str), a decoded object, or an Event. Never raises for
        bad input; a blank line is skipped. `pos` is the line's position in the whole input.

        A plain, clean move is judged on the fast path (`_hot`), on the payment's record in place:
        the line decoded by msgspec into a typed `Line`. Whatever it cannot vouch for, it changes
        nothing and hands on: a line the strict decoder refuses goes through orjson and
        `Event.from_dict` as before; a valid event that might break a rule, or needs what only the exact
        path does (a provider's first payment, a payment past the settled window, an `at` out of order
        or not canonical), goes as an Event to `_judge`.
        """
        if pos < 0:
            pos = line
        kind = type(item)
        if kind is bytes or kind is str or isinstance(item, bytes | str):
            if self._fast:
                try:
                    decoded = decode_line(item)  # type: ignore[arg-type]
                except LineError:
                    pass
                else:
                    taken = self._k.take(decoded, line, file, pos)
                    if taken != _TAKEN:
                        self._slow(item, line, file, pos, decoded if taken == _EXACT else None)  # type: ignore[arg-type]
                    return
            self._parse(item, line, file, pos)  # type: ignore[arg-type]
            return
        if kind is Event:
            # A hand-built Event has no validators (from_dict is the parser): a naive `at` or a list as
            # the payment would break the audit's own bookkeeping before `observe` could refuse it.
            ref = item.payment  # type: ignore[union-attr]
            if type(ref) is not str or not ref:
                self.malformed(line, file, _clip(f"not a valid event: payment: must be a non-empty string, "
                                                 f"got {ref!r}"))
                return
            text = text_problem(item)
            if text is not None:
                self.malformed(line, file, _clip(f"not a valid event: {text[0]}: {text[1]}"),
                               None if text[0] == "payment" else ref)
                return
            try:
                check_fact(item)  # type: ignore[arg-type]
            except EventError as exc:
                self.malformed(line, file, _clip(f"not a valid event: {exc}"), ref)
                return
            self._judge(item, line, file, pos)  # type: ignore[arg-type]
            return
        self.feed_object(item, line, file, pos)

    def feed_lines(self, lines: list[bytes], number: int, file: str, start: int) -> None:
        """Audit consecutive raw lines, the first numbered `number + 1` and at `start + number + 1` in the
        whole input: `feed` for each, with the loop in the hot module."""
        if self._fast:
            self._k.feed_lines(lines, number, file, start, decode_line, self._slow, self._judge)
            return
        for k, raw in enumerate(lines, number + 1):
            self._parse(raw, k, file, start + k)

    def feed_block(self, block: bytes, number: int, file: str, start: int) -> int:
        """`feed_lines` for the lines of `block` (joined by "\n"); returns how many it held."""
        if self._fast:
            n: int = self._k.feed_block(block, number, file, start, decode_line, self._slow, self._judge)
            return n
        lines = block.split(b"\n")
        self.feed_lines(lines, number, file, start)
        return len(lines)

    def feed_numbered(self, lines: list[bytes], numbers: list[int], file: str, base: int, pos_base: int) -> None:
        """Audit raw lines numbered `base + numbers[i]`, at `pos_base + numbers[i]` in the whole input (a
        partition's share of one range of a file, in order)."""
        if self._fast:
            self._k.feed_numbered(lines, numbers, file, base, pos_base, decode_line, self._slow, self._judge)
            return
        for raw, number in zip(lines, numbers, strict=True):
            self._parse(raw, base + number, file, pos_base + number)

    def _slow(self, raw: bytes | str, line: int, file: str, pos: int, decoded: Line | None) -> None:
        """A line the fast path left: judged the exact way as decoded, or parsed again when `decoded` is None."""
        if decoded is None:
            self._parse(raw, line, file, pos)
            return
        fact = self._logged(decoded)  # built in C: the fields `_judge` reads of an Event
        self._judge(fact, line, file, pos, fact.text)

    def _parse(self, item: bytes | str, line: int, file: str, pos: int) -> None:
        try:
            obj = _loads(item)
        except _JSONDecodeError as exc:
            if not item.strip():
                return
            self.malformed(line, file, f"not valid JSON ({_json_problem(item, exc)})")
            return
        self._decoded(obj, line, file, pos)

    def feed_object(self, obj: object, line: int, file: str, pos: int = -1) -> None:
        """Audit one decoded JSON value (what `feed` does after parsing)."""
        if pos < 0:
            pos = line
        if isinstance(obj, dict) and text_problem(obj) is not None:
            # A dict built in Python may hold a lone surrogate, which no line read from a file can (orjson
            # refuses them): Event.from_dict refuses it, so the fast path must not take it.
            try:
                Event.from_dict(obj)
            except EventError as exc:
                self._invalid(obj, exc, line, file)
            return
        self._decoded(obj, line, file, pos)

    def _decoded(self, obj: object, line: int, file: str, pos: int) -> None:
        """`feed_object` for a value orjson decoded (so one holding no lone surrogate)."""
        if self._fast and type(obj) is dict:
            try:
                decoded = to_line(obj)
            except LineError:
                pass
            else:
                taken = self._k.take(decoded, line, file, pos)
                if taken == _TAKEN:
                    return
                if taken == _EXACT:
                    self._slow(b"", line, file, pos, decoded)
                    return
        try:
            event = _from_dict(obj)
        except EventError as exc:
            self._invalid(obj, exc, line, file)
            return
        self._judge(event, line, file, pos)

    def _invalid(self, obj: object, exc: EventError, line: int, file: str) -> None:
        """LOG_MALFORMED for a JSON value that is not an event, with what the line does say."""
        payment = at = None
        if isinstance(obj, dict):
            raw_payment, raw_at = obj.get("payment"), obj.get("at")
            # A payment name no UTF-8 report could carry is left out (the message quotes it, escaped).
            payment = (raw_payment if isinstance(raw_payment, str) and raw_payment and not surrogate_in(raw_payment)
                       else None)
            if isinstance(raw_at, str):
                try:
                    at = format_instant(parse_instant(raw_at))
                except (ValueError, OverflowError):
                    at = None
        self.malformed(line, file, f"not a valid event: {exc}", payment, at)

    def malformed(self, line: int, file: str, message: str, payment: str | None = None,
                  at: str | None = None) -> None:
        """Record a line that could not be audited (LOG_MALFORMED)."""
        self.findings.append(Finding(payment, line, file, Code.LOG_MALFORMED, _clip(message), at))

    # ---------------------------------------------------------------------------------- judging

    def _spec_of(self, provider: str | None) -> Spec | str:
        """The spec for a payment's first event, or why there is none (a message)."""
        found = self._specs.get(provider)
        if found is not None:
            return found
        if provider is None:
            found = "no provider: the event names none and the audit was given no spec (--provider)"
        elif provider not in shipped():
            found = f"provider {_clip(repr(provider))} is not a shipped spec ({', '.join(shipped())})"
        else:
            # A bad override is the caller's error, not the line's: SpecError propagates.
            found = load_spec(provider, overrides_for(provider, self._overrides) or None)
            self._moves[provider] = fast_spec(found, self._hot)
        self._specs[provider] = found
        return found

    def _judge(self, event: Event | Logged, line: int, file: str, pos: int, text: str | None = None) -> None:
        """The exact path: `observe` on the payment's record materialized as a Payment. `text` is the
        canonical text of the event's `at` when the caller knows it. `event` is an Event, or for a line
        the fast path decoded, the same fields as a `_hot.Logged` (fast mode only: `observe` takes Events)."""
        # Its `at` passed the one rule for instants (_time.instant_problem) where the event was made:
        # Event.from_dict, canonical_at on the fast path, or check_fact in `feed` for an Event.
        at = event.at
        logged = event.amount
        etype = event.type
        # Past int64 a log holds garbage, and JSON readers disagree about it (orjson reads up to 2**64 - 1
        # as an int, beyond as a float): malformed, not a fact for amount_valid to judge.
        if logged is not None and logged > INT64_MAX:
            self.malformed(line, file, f"not a valid event: amount: {_clip(str(logged))} is beyond int64 "
                                       f"({INT64_MAX}), the largest amount any provider takes", event.payment,
                           format_instant(at))
            return
        k = self._k
        k.events += 1
        if text is None:
            text = canonical(at)
        ref = event.payment
        live = self._live
        track = k.find(ref)
        settled = False
        if track is None:
            track = k.recall(ref)
            if track is not None:
                if pos - track.pos > self._window:
                    # Past the window: forgotten, whether or not memory was already reclaimed.
                    del self._settled[ref]
                    track = None
                else:
                    settled = True
        provider = event.provider
        if track is None:
            spec = self._spec
            if spec is None:
                found = self._spec_of(provider)
                if isinstance(found, str):
                    self.malformed(line, file, found, ref, format_instant(at))
                    return
                spec = found
            elif provider is not None and provider != spec.name:
                self.malformed(line, file, f"event from provider {_clip(repr(provider))}, but the audit's "
                                           f"spec is {spec.name!r}", ref, format_instant(at))
                return
            self._providers.add(spec.name)
            k.payments += 1
            track = self._hot.Record(k.only if k.only is not None else self._moves[str(provider)], ref)
            track.at_dt, track.after = at, EXACT_ONLY
            track.line, track.file, track.pos = line, file, pos
            live[ref] = track
            payment = Payment.new(spec, ref)
        else:
            if provider is not None and provider != track.spec.name:
                self.malformed(line, file, f"event from provider {_clip(repr(provider))} for a payment audited "
                                           f"under {track.spec.name!r} since line {track.line}",
                               ref, format_instant(at))
                return
            previous = track.after
            # Both canonical: the text orders as time does, and no datetime needs parsing.
            canonical_pair = text is not None and previous and previous != EXACT_ONLY
            if (text < previous) if canonical_pair else (at < track.when()):
                before = track.when()
                self.findings.append(Finding(
                    ref, line, file, Code.OUT_OF_ORDER,
                    f"{_TYPE_VALUES[etype]} at {format_instant(at)} is earlier than the payment's previous event "
                    f"at {format_instant(before)} ({_place(track, file)}); applied in file order",
                    format_instant(at)))
            payment = track.payment()
        # Only an event the audit judges sets the default as_of: a line it refused (no spec for its
        # provider) is LOG_MALFORMED, and must not move the instant every other payment is judged at.
        latest = self.latest
        if latest is None or at > latest:
            self.latest = at
        try:
            if self._fast:
                # The judgement alone: the effect is applied to the record in place (`_hot.settle`, the
                # fast path's own), with no Payment built after it and loaded back.
                amount, dest, violations = judge(payment, event)
                after = None
            else:  # the reference: observe's own effect, on a Payment, loaded back into the record
                assert isinstance(event, Event)  # `_slow`, which builds Logged facts, is the fast mode's
                after, violations = observe(payment, event)
        except (ValueError, TypeError, ArithmeticError) as exc:
            # A fact the engine cannot even count (it never happens with valid events) is reported, and
            # the payment stays as it was, so the rest of the audit is unaffected.
            self.malformed(line, file, f"cannot be judged: {type(exc).__name__}: {exc}", ref, format_instant(at))
            return
        lapsed = etype is _EXPIRED
        if (etype is _CANCELLED and payment.capturable > 0
                and any(v.code is _AUTH_EXPIRED for v in violations)):
            # A cancel that succeeded at or after the lapse is no merchant's: the provider refuses those
            # ("Cancel period expired") and releases the remainder itself (Vipps cancels automatically at
            # the deadline, https://developer.vippsmobilepay.com/docs/knowledge-base/payment-rules). What
            # it records is the remainder held until the lapse, not a late cancel.
            violations = tuple(v for v in violations if v.code is not _AUTH_EXPIRED)
            lapsed = True
        if violations:
            stamp = text if text is not None else format_instant(at)  # the same text, when canonical
            kind = _TYPE_VALUES[etype]
            currency = payment.currency or event.currency
            # The record's own reference (the live map's key), not the line's copy of it.
            ref = payment.reference
            append = self.findings.append
            for v in violations:
                append(_breach(ref, line, file, kind, logged, v, stamp, _at_stake(payment, event, v.code), currency))
        if lapsed and payment.capturable > 0 and self._can_cancel(payment.spec, payment.state, payment.flow):
            self.findings.append(self._lapsed(payment, line, file, at))
        if after is None:
            terminal = self._settle(track, _TYPE_CODES[etype], amount, dest, event.currency, event.key,
                                    event.flow, at, text, line, file, pos)
        else:
            track.load(after, at, text)
            track.line = line
            track.file = file
            track.pos = pos
            terminal = track.state in track.spec.terminal and not track.pending
        if terminal:
            settled_map = self._settled
            if settled:
                settled_map.move_to_end(ref)
            else:
                del live[ref]
                settled_map[ref] = track
            k.sweep(pos)
        elif settled:
            del self._settled[ref]
            live[ref] = track
        if k.max_open and len(live) > k.max_open:
            self._spill()

    def _can_cancel(self, spec: Spec, state: str, flow: Flow | None = None) -> bool:
        """Whether the merchant could have released the remainder from this state with a cancel.

        Never on an automatic-capture flow: the provider captures it by itself (Hellgate keeps it
        `processing` until the capture completes, research/providers.md 3.2), so nothing there is the
        merchant's to release, whatever the spec's cancel transition allows.
        """
        if flow is _AUTOMATIC:
            return False
        key = (id(spec), state)
        known = self._cancellable.get(key)
        if known is None:
            known = self._cancellable[key] = bool(spec.table.candidates(state, _CANCELLED))
        return known

    def _lapsed(self, p: Payment, line: int, file: str, at: datetime) -> Finding:
        """DANGLING_AUTHORIZATION for an `expired` event, or a cancel at or after the lapse: the log itself
        records the lapse."""
        held = _money(p.capturable, p.currency)
        since = format_instant(p.authorized_at) if p.authorized_at else "?"
        deadline = p.expires_at
        how = (f"lapsed at {format_instant(at)}" if deadline is None or deadline >= at else
               f"was held until the authorization lapsed at {format_instant(deadline)} (released at "
               f"{format_instant(at)})")
        return Finding(p.reference, line, file, Code.DANGLING_AUTHORIZATION,
                       f"the remainder {held} of {p.authorized} authorized at {since} was never captured nor "
                       f"released and {how}; {p.spec.name} releases it with a cancel",
                       format_instant(at), p.capturable, p.currency)

    # ------------------------------------------------------------------------------------ output

    def release(self) -> None:
        """Break the one reference cycle an auditor with a store is in (its kernel's spill hooks are its
        own bound methods), so that dropping the last reference frees every record at once: the collector
        is off through an audit, and the records would otherwise live through the merge (~25 MB of the
        bench log's peak). The auditor spills nothing after this; call it after `partial`."""
        self._k.spill = self._k.unspill = None

    def partial(self, as_of: datetime | None = None, *, alone: bool = False) -> Partial:
        """The findings so far and the payments that may dangle; call once, after the last line.

        `alone`: this auditor saw the whole input, so the instant DANGLING_AUTHORIZATION is judged at is
        known now (`as_of`, else the latest event), and only payments that lapsed by then are kept (with
        millions of open payments, a list of them all would outgrow any memory bound).
        """
        latest = self.latest
        if self._k.latest_s:
            fast_latest = parse_instant(self._k.latest_s)
            if latest is None or fast_latest > latest:
                latest = fast_latest
        until = (as_of or latest) if alone else None
        dangling = []
        # Only payments not in a terminal state. A terminal state has no exits (the loader refuses them),
        # so the shipped specs can release nothing there; and judging settled payments would depend on
        # which of them a partition still holds, breaking byte-identical parallel output.
        spilled = self._store.drain() if self._store is not None and self._k.spilled else ()
        records = chain(self._live.items(), ((ref, self._unpack(ref, blob)) for ref, blob in spilled))
        for ref, p in records:
            if (p.authorized_at is None or p.validity is None or p.capturable <= 0
                    or not self._can_cancel(p.spec, p.state, p.flow)):
                continue
            try:
                expires = p.authorized_at + p.validity
            except OverflowError:  # a validity override of millennia: it never lapses
                continue
            if until is not None and expires > until:
                continue
            dangling.append(Dangling(ref, p.file, p.line, p.spec.name, p.currency, p.authorized,
                                     p.capturable, p.authorized_at, expires))
        return Partial(self.findings, self.events, self.payments, frozenset(self._providers), latest, dangling)


def _money(amount: int, currency: str | None) -> str:
    if currency is None:
        return str(amount)
    return f"{amount} ({currency} {to_major_string(amount, currency)})"


def _judge_dangling(d: Dangling, as_of: datetime) -> Finding:
    return Finding(d.payment, d.line, d.file, Code.DANGLING_AUTHORIZATION,
                   f"the remainder {_money(d.remainder, d.currency)} of {d.authorized} authorized at "
                   f"{format_instant(d.authorized_at)} was never captured nor released; the authorization "
                   f"lapsed at {format_instant(d.expires_at)} (judged at {format_instant(as_of)}); "
                   f"{d.provider} releases it with a cancel", format_instant(d.expires_at), d.remainder, d.currency)


def _at_stake(p: Payment, e: Fact, code: Code) -> int | None:
    """The money a breach by `e` on `p` (the payment before it) moved, in minor units (see Finding.amount)."""
    if e.type is not _CAPTURED_TYPE and e.type is not _REFUNDED_TYPE:
        return None
    amount = e.amount if e.amount is not None else 0
    # After an earlier excess the room is negative; that excess was counted on its own finding, so the
    # room is taken as 0, not counted twice.
    if code is Code.EXCEEDS_CAPTURABLE:
        policy = p.spec.policy
        limit = room(p, e) + (policy.allowance(p.authorized) if policy.over_capture_percent else 0)
        return max(0, amount - max(0, limit))
    if code is Code.REFUND_EXCEEDS_CAPTURED:
        return max(0, amount - max(0, p.refundable))
    return amount


def merge(partials: Iterable[Partial], *, as_of: datetime | str | None = None,
          files: Sequence[str] = (), provider: str | None = None) -> AuditReport:
    """One report from the partials of one input (one or several partitions of it).

    `as_of` defaults to the latest `at` over all partials. `files` gives the order of the input files,
    which the violations follow; `provider` is the audit's spec name when it was given one.
    """
    # The collector stays off while the findings are ordered: the sort keys and lists are acyclic, and a
    # collection set off by their allocations would walk every finding (~90% of a merge's time with it on).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _merge(list(partials), as_of, files, provider)
    finally:
        if was_enabled:
            gc.enable()


def _merge(parts: list[Partial], as_of: datetime | str | None, files: Sequence[str],
           provider: str | None) -> AuditReport:
    when = parse_as_of(as_of)
    if when is None:
        latest = [p.latest for p in parts if p.latest is not None]
        when = max(latest) if latest else None
    findings = [f for p in parts for f in p.findings]
    if when is not None:
        findings.extend(_judge_dangling(d, when) for p in parts for d in p.dangling if d.expires_at <= when)
    rank = {name: i for i, name in reversed(list(enumerate(files)))}
    values = _CODE_VALUES
    # Sorted by (file, line, code, message, payment); the message is read only to order findings that
    # tie on the rest (several of one code on one line), so the others stay unformatted until written.
    findings.sort(key=lambda f: (rank.get(f.file, len(rank)), f.file, f.line, values[f.code]))
    start = 0
    while start < len(findings):
        first = findings[start]
        end = start + 1
        while (end < len(findings) and findings[end].line == first.line and findings[end].code is first.code
               and findings[end].file == first.file):
            end += 1
        if end - start > 1:
            findings[start:end] = sorted(findings[start:end], key=lambda f: (f.message, f.payment or ""))
        start = end
    counts: dict[str, int] = {}
    for f in findings:
        code = values[f.code]
        counts[code] = counts.get(code, 0) + 1
    providers = frozenset().union(*(p.providers for p in parts)) if parts else frozenset()
    if provider is None and len(providers) == 1:
        provider = next(iter(providers))
    return AuditReport(provider, sum(p.events for p in parts), sum(p.payments for p in parts), tuple(findings),
                       dict(sorted(counts.items())), format_instant(when) if when is not None else None,
                       tuple(sorted(providers)))


def audit(lines: Iterable[bytes | str | Mapping[str, Any] | Event], spec: Spec | str | None = None, *,
          as_of: datetime | str | None = None, overrides: Mapping[str, Any] | None = None,
          source: str = "-", fast: bool = True) -> AuditReport:
    """Audit a history: one pass over `lines` (raw JSONL lines, decoded objects or Events).

    `spec` is a Spec, a shipped name or a path; None lets each payment's first event pick its spec by
    its `provider`. `overrides` are policy overrides (`{"max_captures": 2}`, or prefixed with a provider
    name). `as_of` (default: the latest `at` in the input) is when DANGLING_AUTHORIZATION is judged.
    `source` names the input in every finding. Never raises for a bad line: it becomes LOG_MALFORMED.
    Raises SpecError for a bad spec or override, AuditError for a bad `as_of`. `fast=False` judges every
    line through `observe` (the reference the fast path is tested against; the report is the same).
    """
    when = parse_as_of(as_of)
    resolved = resolve_spec(spec, overrides)
    auditor = Auditor(resolved, overrides=overrides if resolved is None else None, fast=fast)
    feed = auditor.feed
    for number, item in enumerate(lines, start=1):
        if number == 1 and isinstance(item, bytes | str):
            # A UTF-8 byte order mark opens the file, not its first line: ignored, as RFC 8259 8.1 allows.
            item = strip_bom(item)
        feed(item, number, source)
    return merge([auditor.partial(when, alone=True)], as_of=when, files=(source,),
                 provider=resolved.name if resolved is not None else None)


