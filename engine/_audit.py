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
import importlib
from array import array
from collections import Counter, OrderedDict
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import partial as bind
from itertools import chain, compress, count, islice
from operator import attrgetter, eq
from types import ModuleType
from typing import Any, Protocol

import orjson
from attrs import field, frozen

from ._audit_fast import fast_spec
from ._bom import strip_bom
from ._builds import is_compiled, plain
from ._codes import Code
from ._engine import check_fact
from ._errors import AuditError, EventError
from ._hotpath import hot as _default_hot
from ._lines import Line, LineError, decode_line, to_line
from ._money import to_major_string
from ._policy import POLICY_PARSERS
from ._spec import Spec, _with_overrides, load_spec, shipped
from ._time import format_instant, instant_problem, parse_instant
from ._values import (
    Event,
    EventType,
    Flow,
    Payment,
    _Deferrable,
    deferred_slot,
    set_pending,
    surrogate_in,
    text_problem,
)

DEFAULT_SETTLED_WINDOW = 250_000
# Imported by name, as `_builds` imports `_capture`: a static `from . import` would pull the package's
# __init__ into the core's import cycle (where mypy can no longer type `capstate.shipped`).
_exact_imported: ModuleType = importlib.import_module(f"{__package__}._exact")


def _exact_for(hot: ModuleType) -> ModuleType:
    """The build of the exact path (`_exact`) that reads `hot`'s records: the compiled one (by mypyc, where a
    C compiler was available) with the compiled hot loop, else its plain-Python source."""
    return _exact_imported if is_compiled(hot) else plain(_exact_imported)


_exact = _exact_for(_default_hot)  # the default build's: what the findings are built with
_clip = _exact.clip
_CANCELLED = EventType.CANCELLED
_AUTOMATIC = Flow.AUTOMATIC
_loads = orjson.loads
# Event.from_dict without its look for lone surrogates: a line orjson decoded holds none, and `feed` looks
# in a dict given as such before anything else.
_from_dict = Event._from_object
_JSONDecodeError = orjson.JSONDecodeError
# Enum `.value` is a Python-level descriptor call (~1 us); findings read it through these dicts instead.
_CODE_VALUES: dict[Code, str] = {c: c.value for c in Code}
_CODES: dict[str, Code] = {c.value: c for c in Code}
_TAKEN, _EXACT = _default_hot.TAKEN, _default_hot.EXACT


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
# A finding's message is formatted on first read from its deferred state (`_Deferrable`). `_exact.breach` keeps
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
    f: Finding = _exact.new_finding(Finding, payment, line, file, _CODES[code], at, amount, currency)
    if type(message) is str:
        _set_message(f, message)
    else:
        set_pending(f, message)
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


_set_message = deferred_slot(Finding, "message").__set__
_get_pending = _Deferrable.__dict__["_pending"].__get__


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
class Index:
    """What the merge reads of a partial's findings, known without reading them again: every finding is of
    `file`, the i-th at `lines[i]`, and `counts` counts them by code (a count may be 0). A range worker's
    findings come as columns, and the parent reads its own while the worker still runs
    (`_cli.audit_ranges`): on the bench log the merge read ~116,000 findings for these (~12 ms)."""

    file: str
    lines: list[int]
    counts: Counter[Code]


@frozen
class Partial:
    """One auditor's result before the end-of-input judgement: what parallel runs send back to merge;
    `index` (optional, see `Index`) spares the merge reading the findings for their lines and codes."""

    findings: list[Finding]
    events: int
    payments: int
    providers: frozenset[str]
    latest: datetime | None
    dangling: list[Dangling] = field(factory=list)
    index: Index | None = field(default=None, eq=False, repr=False)


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


class OpenStore(Protocol):
    """Where an Auditor bounded by `max_open` keeps the open payments it spilled (the engine reads no file:
    the CLI gives it one on disk, `capstate._cli.spill`). Values are opaque bytes, keyed by payment."""

    def put(self, items: list[tuple[str, bytes]]) -> None:
        """Keep these (payment, record) pairs; no payment is given twice without a `take` between."""

    def take(self, ref: str) -> bytes | None:
        """Remove and return the payment's record, or None when it holds none."""

    def drain(self) -> Iterable[tuple[str, bytes]]:
        """Every pair still held, each once, in any order, leaving them held (read at the end of the
        audit, and by a byte-range stitch, `Auditor.held`)."""


class Auditor:
    """The streaming audit of one stream of lines (or one partition of it).

    `feed(item, line, file, pos)` for each line in order (`pos` increasing; default: the line), then
    `partial()`; `merge` turns partials into the report. `spec` None means each payment's first event
    names its provider. `settled_window` is how many lines a payment in a terminal state is remembered
    after its latest event. `columns`: the findings are collected as the columns a range worker sends
    (`columns()`), not as Findings (`partial()` then has none).
    """

    def __init__(self, spec: Spec | None = None, *, overrides: Mapping[str, Any] | None = None,
                 settled_window: int = DEFAULT_SETTLED_WINDOW, fast: bool = True, hot: ModuleType | None = None,
                 store: OpenStore | None = None, max_open: int = 0, columns: bool = False):
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
        self._store = store
        # The exact path: a line that may break a rule, judged as `observe` judges it (`_exact.Judge`).
        self._j = _exact_for(hot).Judge(self, self._k, hot, Finding, _said, _said_later, spec, self._moves,
                                        settled_window, fast)
        self._judge: Callable[..., None] = self._j.line
        # A malformed line and a lapse go where the exact path's findings go (`Judge.found`): the list, or
        # with `columns` its sink.
        self._found: Callable[..., None] = self._j.found
        if columns:
            self._j.sink = _exact_for(hot).Columns()
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
    def latest(self) -> datetime | None:
        """The latest instant of an event judged so far (the default as_of; see also `partial`)."""
        latest: datetime | None = self._j.latest
        return latest

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
            self._judge(item, line, file, pos)
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
        self._found(payment, line, file, Code.LOG_MALFORMED, _clip(message), at, None, None)

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

    def _lapsed(self, p: Payment, line: int, file: str, at: datetime) -> None:
        """Record DANGLING_AUTHORIZATION for an `expired` event, or a cancel at or after the lapse: the log
        itself records the lapse."""
        held = _money(p.capturable, p.currency)
        since = format_instant(p.authorized_at) if p.authorized_at else "?"
        deadline = p.expires_at
        how = (f"lapsed at {format_instant(at)}" if deadline is None or deadline >= at else
               f"was held until the authorization lapsed at {format_instant(deadline)} (released at "
               f"{format_instant(at)})")
        self._found(p.reference, line, file, Code.DANGLING_AUTHORIZATION,
                    f"the remainder {held} of {p.authorized} authorized at {since} was never captured nor "
                    f"released and {how}; {p.spec.name} releases it with a cancel",
                    format_instant(at), p.capturable, p.currency)

    # ------------------------------------------------------------------------- byte-range stitching
    # `_cli.audit_ranges` audits byte ranges of one input in separate processes, each from an empty state,
    # then continues the payments that cross a cut in the process that holds their earlier events. These
    # read and move what an auditor holds; nothing here runs inside an ordinary audit.

    def track_forgotten(self) -> array[int]:
        """From now on, every settled payment reclaimed past the window appends (hash of its id, its latest
        pos) to the array returned: with the payments still held at the end, where its ids were last seen."""
        marks: array[int] = array("q")
        self._k.forgotten = marks
        return marks

    def held(self) -> Iterator[tuple[str, Any, bool]]:
        """Every payment held now: (id, Record or packed bytes, settled). Spilled ones are read from the
        store, which keeps them (`OpenStore.drain`)."""
        for ref, r in self._live.items():
            yield ref, r, False
        for ref, r in self._settled.items():
            yield ref, r, True
        for ref, blob in self._k.packed.items():
            yield ref, blob, True
        if self._store is not None and self._k.spilled:
            for ref, blob in self._store.drain():
                yield ref, blob, False

    def held_ids(self) -> list[str]:
        """The ids `held` gives, in its order, without reading the records."""
        spilled = self._store.drain() if self._store is not None and self._k.spilled else ()
        return list(chain(self._live, self._settled, self._k.packed, (ref for ref, _ in spilled)))

    def mark_held(self, marks: array[int]) -> None:
        """Append (hash of its id, position) for every payment held now (what `held` gives), interleaved.

        Column by column in C maps (hash of the ids, `pos` of the records, `packed_pos` of the packed and
        spilled ones): a generator step, a tuple and two calls a record were ~40 ms of a bench worker's
        hand-over (50,000 records). Spilled ones are read one by one, as `held` reads them: all at once
        they could outgrow the memory bound they were spilled under."""
        pos = attrgetter("pos")
        packed_pos = self._hot.packed_pos
        packed = self._k.packed
        refs = list(chain(self._live, self._settled, packed))
        both: list[int] = [0] * (2 * len(refs))
        both[0::2] = map(hash, refs)
        both[1::2] = chain(map(pos, self._live.values()), map(pos, self._settled.values()),
                           map(packed_pos, packed.values()))
        marks.fromlist(both)
        if self._store is not None and self._k.spilled:
            for ref, blob in self._store.drain():
                marks.extend((hash(ref), packed_pos(blob)))

    def export(self) -> tuple[list[str], list[bytes], bytes, list[str], list[Any], list[str]]:
        """Everything held, packed, for `adopt` in another process: ids, records, whether each is settled,
        the names and validities the packed records number, and the providers whose specs they need."""
        k = self._k
        pack = k.pack
        refs, blobs, flags = [], [], bytearray()
        for ref, r, settled in self.held():
            refs.append(ref)
            blobs.append(r if type(r) is bytes else pack(r))
            flags.append(settled)
        return refs, blobs, bytes(flags), list(k.words), list(k.spans), list(self._moves)

    def number_from_cut(self, rebase: Callable[[int, str], int]) -> None:
        """Number lines from a cut in the middle of the input (`_cli.audit_ranges.audit_range`):
        `rebase(line, file)` is the line of `file` that this auditor's `line` of it stands for, which a
        message quoting a record's line says (`_exact.Judge.line_of`)."""
        self._j.rebase = rebase

    def adopt(self, exported: tuple[list[str], list[bytes], bytes, list[str], list[Any], list[str]],
              skip: Container[str], shift: int = 0, lines: int = 0, file: str = "") -> None:
        """Hold the records another auditor `export`ed (except the ids in `skip`) as this one's own, live or
        settled as they were there: it goes on from the state at the end of the other's input. No id
        held here may be among them. The other numbered from a cut (`number_from_cut`): `shift` is added
        to each position, and `lines` to the lines of `file`."""
        refs, blobs, flags, words, spans, providers = exported
        for name in providers:
            self._spec_of(name)  # its fast moves, which an unpacked record points at
        k = self._k
        reader = self._hot.Kernel(k.window, k.only, self._moves, OrderedDict())
        reader.words, reader.spans = words, spans
        # Shifted as they are unpacked, before the settled ones are ordered by position below (in Python,
        # three attribute updates a record were ~2k instructions: 0.1G for the bench log's 52,000 records).
        reader.shift, reader.shift_lines, reader.shift_file = shift, lines, file
        live = self._live
        settled = []
        for ref, blob, was_settled in zip(refs, blobs, flags, strict=True):
            if ref in skip:
                continue
            r = reader.unpack(ref, blob)
            if was_settled:
                settled.append((ref, r))
            else:
                live[ref] = r
        mine = self._settled
        if settled:
            # Kept ordered by position, oldest first (how the kernel reclaims them).
            settled.sort(key=lambda item: item[1].pos)
            if mine and next(reversed(mine.values())).pos > settled[0][1].pos:
                settled = sorted(chain(mine.items(), settled), key=lambda item: item[1].pos)
                mine.clear()
            mine.update(settled)
        while k.max_open and len(live) > k.max_open:
            self._spill()

    def latest_at(self) -> datetime | None:
        """The latest `at` of the events judged so far."""
        latest = self.latest
        if self._k.latest_s:
            fast_latest = parse_instant(self._k.latest_s)
            if latest is None or fast_latest > latest:
                latest = fast_latest
        return latest

    @property
    def providers(self) -> frozenset[str]:
        """The specs that judged a payment so far."""
        return frozenset(self._providers)

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
        latest = self.latest_at()
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

    def columns(self) -> tuple[list[Any], ...] | None:
        """The findings as columns (`_exact.Columns`), for an auditor made with `columns=True`; else None."""
        sink = self._j.sink
        return None if sink is None else sink.columns()


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
    findings: list[Finding] = []
    for p in parts:
        findings += p.findings  # a copy of the pointers (a comprehension: a bytecode loop a finding)
    if when is not None:
        findings += [_judge_dangling(d, when) for p in parts for d in p.dangling if d.expires_at <= when]
    index = _joined(parts, findings)
    if index is None:
        counts = _counts(findings)
        findings = _ordered(findings, files)
    else:  # one file: `_ordered` would sort by line (`_by_line`) too
        counts = {_CODE_VALUES[code]: n for code, n in sorted(index.counts.items()) if n}
        if findings:
            findings = _by_line(findings, index.lines)
    providers = frozenset().union(*(p.providers for p in parts)) if parts else frozenset()
    if provider is None and len(providers) == 1:
        provider = next(iter(providers))
    return AuditReport(provider, sum(p.events for p in parts), sum(p.payments for p in parts), tuple(findings),
                       counts, format_instant(when) if when is not None else None, tuple(sorted(providers)))


# The merge reads each field it needs once per finding, in a comprehension (a specialized slot read, ~110
# instructions a finding against an attrgetter's ~250), and works on those lists: on a large audit each
# read of a finding is also a likely cache miss (the bench log's 116,000 findings are ~12 MB). Its
# first form read every finding four times (a sort key, a list of lines, a Counter and a set of files).
_code_of = attrgetter("code")


def _joined(parts: list[Partial], findings: list[Finding]) -> Index | None:
    """The index of the findings the merge joins (the parts', then those it judged itself, read here),
    when every part with findings has one and they are all of one file; else None (the merge reads the
    findings)."""
    name: str | None = None
    lines: list[int] = []
    counts: Counter[Code] = Counter()
    for p in parts:
        if not p.findings:
            continue
        index = p.index
        if index is None or (name is not None and index.file != name):
            return None
        name = index.file
        lines += index.lines
        counts.update(index.counts)
    return index_of(findings, Index(name or "", lines, counts))


def index_of(findings: list[Finding], index: Index | None = None) -> Index | None:
    """`index` (of the first findings) extended by the rest of `findings`, read here; None when they are
    not all of one file. With no `index`, that of all of `findings`."""
    done = 0 if index is None else len(index.lines)
    new = findings[done:]
    if not new:
        return index if index is not None else Index("", [], Counter())
    name = new[0].file if index is None or not index.lines else index.file
    lines = [f.line for f in new if f.file == name]
    if len(lines) != len(new):
        return None
    if index is None or not index.lines:
        return Index(name, lines, Counter([f.code for f in new]))
    index.lines.extend(lines)
    index.counts.update([f.code for f in new])
    return index


def _counts(findings: list[Finding]) -> dict[str, int]:
    """How many findings of each code, by code value in order."""
    counts = Counter([f.code for f in findings])
    return {_CODE_VALUES[code]: n for code, n in sorted(counts.items())}


def _ordered(findings: list[Finding], files: Sequence[str]) -> list[Finding]:
    """The findings sorted by (file, line, code, message, payment): files in the order of `files` (others
    after them, by name), equal keys in the order given."""
    if not findings:
        return findings
    # The lines of the first finding's file: all of them when there is one file (the usual case), which
    # this one comprehension tells (a str == is an identity or a memcmp) and reads the lines with.
    name = findings[0].file
    lines = [f.line for f in findings if f.file == name]
    if len(lines) == len(findings):
        return _by_line(findings, lines)
    rank = {name: i for i, name in reversed(list(enumerate(files)))}
    names = sorted({f.file for f in findings}, key=lambda n: (rank.get(n, len(rank)), n))
    buckets: dict[str, list[Finding]] = {name: [] for name in names}
    for f in findings:
        buckets[f.file].append(f)
    return [f for bucket in buckets.values() for f in _by_line(bucket, [f.line for f in bucket])]


def _by_line(findings: list[Finding], lines: list[int]) -> list[Finding]:
    """Findings of one file (with their `lines`) sorted by (line, code, message, payment), ties in the
    order given; sorts both lists in place.

    Each partial's findings come in line order, so a stable sort on the line (int keys) mostly merges
    runs, which timsort does in C. Its key hands out the lines, read once, in order: `list.sort`
    computes a key for each element once, first to last. The lines sort the same way on their own. Only
    the lines with more than one finding are then ordered by code, and by message only where the code
    ties too, so that other messages stay unformatted until written."""
    findings.sort(key=bind(next, iter(lines)))
    lines.sort()
    # The positions whose line repeats the one before: a line with two findings is one such position (the
    # bench log's 11,000 are all pairs), ordered in place; a longer run is sorted as a group.
    repeats = list(compress(count(1), map(eq, lines, islice(lines, 1, None))))
    last = len(repeats) - 1
    k = 0
    while k <= last:
        i = repeats[k]
        k += 1
        if k <= last and repeats[k] == i + 1:
            while k <= last and repeats[k] == repeats[k - 1] + 1:
                k += 1
            findings[i - 1:repeats[k - 1] + 1] = _by_code(findings[i - 1:repeats[k - 1] + 1])
            continue
        a, b = findings[i - 1], findings[i]
        if b.code < a.code or (b.code is a.code and _tie(b) < _tie(a)):  # a Code compares as its value
            findings[i - 1], findings[i] = b, a
    return findings


def _tie(f: Finding) -> tuple[str, str]:
    """What orders findings of one code on one line (the message is formatted here, only for these)."""
    return f.message, f.payment or ""


def _by_code(group: list[Finding]) -> list[Finding]:
    """One line's findings in (code, message, payment) order, ties in the order given."""
    group.sort(key=_code_of)
    out: list[Finding] = []
    i = 0
    while i < len(group):
        j = i + 1
        while j < len(group) and group[j].code is group[i].code:
            j += 1
        out.extend(sorted(group[i:j], key=_tie) if j - i > 1 else group[i:j])
        i = j
    return out


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


