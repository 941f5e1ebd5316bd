"""The audit's exact path: a line that may break a rule, judged as `observe` judges it, and its findings.

This module is written for mypyc, which compiles it to a C extension at `pip install` (setup.py), as it
does `_hot`, `_capture` and `_rules`; it runs unchanged as plain Python where no C compiler was available,
or with CAPSTATE_NO_MYPYC=1 (`_audit` chooses the build through `_builds.chosen`). Compiled, a line that
breaks a rule (a tenth of the bench log's) costs no Python frame for the bookkeeping around the rules,
nor for building its findings: that was most of its cost (issue 13 (a)).

`Judge` is one Auditor's exact path (`Auditor._judge` is its bound `line`); the auditor keeps everything
else (its kernel, records and findings are shared with it). Nothing here imports `_audit`: the Finding
class and the message functions findings hold come in as arguments, so a pickled finding names
`capstate._audit`'s functions whichever build made it.
"""

# ruff: noqa: PLR0917 - positional on purpose: compiled, keywords cost a dict per call

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from weakref import proxy

from ._audit_fast import EXACT_ONLY, canonical
from ._codes import Code
from ._engine import _rules, observe
from ._guards import PLAIN_STATE
from ._hot import Kernel, Logged, Record, settle
from ._money import INT64_MAX
from ._rules import judge as _native_judge
from ._time import format_instant
from ._values import Event, EventType, Flow, Payment, Violation, _Deferrable, deferred_slot

_MAX_MESSAGE: Final = 300  # a message quotes what it found in the line; a garbage line must not flood it
_EXPIRED: Final = EventType.EXPIRED
_CANCELLED: Final = EventType.CANCELLED
_CAPTURED: Final = EventType.CAPTURED
_REFUNDED: Final = EventType.REFUNDED
_AUTOMATIC: Final = Flow.AUTOMATIC
_AUTH_EXPIRED: Final = Code.AUTHORIZATION_EXPIRED
_EXCEEDS_CAPTURABLE: Final = Code.EXCEEDS_CAPTURABLE
_REFUND_EXCEEDS_CAPTURED: Final = Code.REFUND_EXCEEDS_CAPTURED
_OUT_OF_ORDER: Final = Code.OUT_OF_ORDER
_KEY_CONFLICT: Final = Code.IDEMPOTENCY_KEY_CONFLICT
_INT64_MAX: Final = INT64_MAX
_COMPILED: Final = not __file__.endswith((".py", ".pyc"))
_NEW: Final = object.__new__
_judge: Final = _rules.judge  # of the build `_engine` chose
# Compiled, the compiled `_rules.judge` is called directly (a C call; through `_judge` it is a Python-level
# call that boxes its arguments); the differential tests hold both builds of `_rules` to one verdict.
# Enum `.value` is a Python-level descriptor call (~1 us); the findings read it through this dict instead.
_TYPE_VALUES: Final[dict[EventType, str]] = {t: t.value for t in EventType}
_CODE_VALUES: Final[dict[Code, str]] = {c: c.value for c in Code}
# A Violation's message slot and its deferred state, read without the message's property (which would
# format it): AttributeError while unset.
_violation_text: Final = deferred_slot(Violation, "message").__get__
_violation_pending: Final = _Deferrable.__dict__["_pending"].__get__
_set_pending: Final = _Deferrable.__dict__["_pending"].__set__
# Rule texts seen, each kept once, and the states of breaches with no amount (`breach`); bounded, as a
# text that quotes a key or an amount seldom repeats.
_TEXTS: Final[dict[str, str]] = {}
_STATES: Final[dict[tuple[str, str], tuple[Any, ...]]] = {}
_MAX_TEXTS: Final = 4096
_PLAIN_STATE: Final = PLAIN_STATE


def clip(text: str) -> str:
    """`text` cut to what a message may quote of a line."""
    return text if len(text) <= _MAX_MESSAGE else text[:_MAX_MESSAGE] + "..."


def place(track: Any, line: int, file: str) -> str:
    """Where a record's latest event was (at `line` of its file), as a message says it from a line of `file`."""
    return f"line {line}" if track.file == file else f"{track.file}:{line}"


# The ints a finding keeps (its line, the logged amount in its message state, the amount at stake) are
# taken as objects, not as mypyc's unboxed ints: boxed again they would be a new int per finding where the
# line's own object is shared (several findings on one line, an amount that is both logged and at stake),
# ~1.4 MB more on the bench log's peak RSS.


def new_finding(cls: Any, payment: str | None, line: Any, file: str, code: Code, at: str | None,
                amount: Any, currency: str | None) -> Any:
    """A `cls` (the audit's Finding) with every field but its message, which the caller sets or defers.
    Compiled, each slot is set in one C call (attrs' frozen __init__ costs ~8x as much, the slots' own
    setters ~3x: method-wrappers called with an argument tuple); the interpreter keeps the setters."""
    f = _NEW(cls)
    if _COMPILED:
        object.__setattr__(f, "payment", payment)
        object.__setattr__(f, "line", line)
        object.__setattr__(f, "file", file)
        object.__setattr__(f, "code", code)
        object.__setattr__(f, "at", at)
        object.__setattr__(f, "amount", amount)
        object.__setattr__(f, "currency", currency)
        return f
    slots = cls.__dict__
    slots["payment"].__set__(f, payment)
    slots["line"].__set__(f, line)
    slots["file"].__set__(f, file)
    slots["code"].__set__(f, code)
    slots["at"].__set__(f, at)
    slots["amount"].__set__(f, amount)
    slots["currency"].__set__(f, currency)
    return f


def defer(f: Any, state: tuple[Any, ...]) -> None:
    """Set a finding's deferred message state. Compiled, one generic slot set; the slot's own setter is a
    method-wrapper called with an argument tuple (~3x as much), which the interpreter keeps."""
    if _COMPILED:
        object.__setattr__(f, "_pending", state)
    else:
        _set_pending(f, state)


def breach(cls: Any, said: Any, said_later: Any, payment: str, line: Any, file: str, kind: str,
           logged: Any, violation: Violation, code: Code, at: str | None, amount: Any,
           currency: str | None) -> Any:
    """The Finding (`cls`) of a violation `observe` found by an event of type `kind` (with the amount
    `logged`), its message left to be formatted on first read from `breach_state`: no text is built for
    it before then (a log with a million breaches holds a million findings)."""
    f = new_finding(cls, payment, line, file, code, at, amount, currency)
    defer(f, breach_state(said, said_later, kind, logged, violation, code))
    return f


def breach_state(said: Any, said_later: Any, kind: str, logged: Any, violation: Violation,
                 code: Code) -> tuple[Any, ...]:
    """The deferred message state of a breach (`breach`'s finding, or a range worker's message column,
    `Columns`): small and picklable, `(said, kind, logged, text)` with the Violation's text, or
    `(said_later, kind, logged, settle, *values)` with its deferred message's function and plain values
    (`_guards.plain_state`), never the Violation, the Payment or the Event."""
    # A Violation's message is either its text or deferred state. Which is asked first is a guess by the
    # code (a raised AttributeError costs more than the rest of the finding).
    text: str | None = None
    if (code is not _EXCEEDS_CAPTURABLE and code is not _REFUND_EXCEEDS_CAPTURED and code is not _AUTH_EXPIRED
            and code is not _KEY_CONFLICT):
        try:
            text = _violation_text(violation)
        except AttributeError:  # deferred after all
            text = None
    if text is None:
        try:
            pending: tuple[Any, ...] = _violation_pending(violation)
        except AttributeError:  # built with its text
            text = _violation_text(violation)
        else:
            # `_guards.plain_state`, without its Python frame where the state is plain already
            to_plain = _PLAIN_STATE.get(pending[0])
            return (said_later, kind, logged) + (to_plain(*pending[1:]) if to_plain is not None else pending)
    assert text is not None
    # Many breaches share their rule's text (a currency pair, a state with no such transition): one copy
    # of each serves them all, and with no amount the whole state (~100 and ~70 bytes a finding: 5 MB of
    # the bench log's peak RSS).
    shared = _TEXTS.get(text)
    if shared is None:
        shared = text
        if len(_TEXTS) < _MAX_TEXTS:
            _TEXTS[text] = text
    if logged is not None:
        return (said, kind, logged, shared)
    known = _STATES.get((kind, shared))
    if known is None:
        known = (said, kind, None, shared)
        if len(_STATES) < _MAX_TEXTS:
            # The object the dict holds, not `known`: compiled, a tuple literal is a C struct, boxed
            # anew each time it is used as an object, so the first finding kept a copy of its own.
            known = _STATES.setdefault((kind, shared), known)
    return known


class Columns:
    """A range worker's findings as the columns it sends back (`audit_ranges._packed`'s, in its order:
    payment, line, file, the code as its text, the message as its text or deferred state, at, amount,
    currency), collected as they are found (`Auditor(columns=True)`). The worker never reads its findings:
    building ~50,000 Findings (~1.6k instructions each on the bench log) only to take them apart again
    into these columns was ~0.05 s of its share (issue 13 (b))."""

    def __init__(self) -> None:
        self.payments: list[Any] = []
        self.lines: list[Any] = []
        self.files: list[Any] = []
        self.codes: list[str] = []
        self.messages: list[Any] = []
        self.ats: list[Any] = []
        self.amounts: list[Any] = []
        self.currencies: list[Any] = []

    def add(self, payment: str | None, line: Any, file: str, code: Code, message: Any, at: str | None,
            amount: Any, currency: str | None) -> None:
        """One finding: what `new_finding` takes, and its message (text or deferred state)."""
        self.payments.append(payment)
        self.lines.append(line)
        self.files.append(file)
        self.codes.append(_CODE_VALUES[code])
        self.messages.append(message)
        self.ats.append(at)
        self.amounts.append(amount)
        self.currencies.append(currency)

    def columns(self) -> tuple[list[Any], ...]:
        return (self.payments, self.lines, self.files, self.codes, self.messages, self.ats, self.amounts,
                self.currencies)


def at_stake(p: Payment, t: EventType, given: Any, code: Code) -> Any:
    """The money a breach by an event of type `t` and logged amount `given` on `p` (the payment before it)
    moved, in minor units (see Finding.amount)."""
    if t is not _CAPTURED and t is not _REFUNDED:
        return None
    amount: Any = given if given is not None else 0
    # After an earlier excess the room is negative; that excess was counted on its own finding, so the
    # room is taken as 0, not counted twice.
    if code is _EXCEEDS_CAPTURABLE:
        policy = p.spec.policy
        allowance: int = policy.allowance(p.authorized) if policy.over_capture_percent else 0
        room: int = p.authorized - p.captured - p.cancelled  # `_guards.room` for an event of type `t`
        limit: int = (room if t is _CAPTURED else room - p.pending) + allowance
        return max(0, amount - max(0, limit))
    if code is _REFUND_EXCEEDS_CAPTURED:
        refundable: int = p.refundable
        return max(0, amount - max(0, refundable))
    return amount


class Judge:
    """One Auditor's exact path: `observe` on the payment's record materialized as a Payment.

    `auditor` answers what this does not hold (the spec of a provider's first payment, a malformed line,
    a lapse, spilling); `kernel` is its hot loop's (`_hot.Kernel`), whose live and settled records this
    reads and moves; `findings` is the auditor's list, unless `sink` holds the auditor's `Columns` (a range
    worker's), which takes every finding instead. `latest` is the latest instant judged here (the
    default as_of). The build must match the hot loop's (`build_for`): compiled, the kernel and records
    are read as `_hot`'s native classes, at fixed offsets, and `settle` and `Record.payment` are direct
    C calls; the plain build takes the plain `_hot`'s, and calls whatever `hot` gives."""

    def __init__(self, auditor: Any, kernel: Any, hot: Any, finding: Any, said: Any, said_later: Any,
                 spec: Any, moves: dict[str, Any], window: int, fast: bool) -> None:
        # A proxy: the auditor holds this, and a cycle would keep both (and every record) alive until the
        # collector ran, which is off through an audit (`Auditor.release`).
        self.auditor: Any = proxy(auditor)
        self.k: Kernel = kernel
        self.hot = hot
        self.finding = finding
        self.said = said
        self.said_later = said_later
        self.spec = spec
        self.moves = moves
        self.window = window
        self.fast = fast
        self.live: dict[str, Any] = kernel.live
        self.settled: Any = kernel.settled
        self.providers: set[str] = kernel.providers
        self.findings: list[Any] = auditor.findings
        self.sink: Columns | None = None
        self.latest: datetime | None = None
        self.settle: Any = hot.settle
        self.type_codes: dict[EventType, int] = {t: hot.TYPE_CODES[t.value] for t in EventType}
        # None, but in a byte-range worker: there `(line, file)` gives the line of `file` a record's `line`
        # stands for (`audit_ranges.audit_range` numbers its first file from its cut; `Auditor.number_from_cut`).
        self.rebase: Any = None

    def line_of(self, track: Record) -> int:
        """The line of a record's latest event, as one process numbers it: what a message quotes."""
        rebase = self.rebase
        if rebase is None:
            return track.line
        line: int = rebase(track.line, track.file)
        return line

    def line(self, event: Any, line: Any, file: str, pos: int, text: str | None = None) -> None:
        """Judge one valid event the exact way. `text` is the canonical text of the event's `at` when the
        caller knows it. `event` is an Event, or for a line the fast path decoded, the same fields as a
        `_hot.Logged` (fast mode only: `observe` takes Events)."""
        # Its `at` passed the one rule for instants (_time.instant_problem) where the event was made:
        # Event.from_dict, canonical_at on the fast path, or check_fact in `feed` for an Event.
        # Every field it reads, read once: a Logged's at fixed offsets (compiled), an Event's generically.
        at: datetime
        logged: Any
        etype: EventType
        ref: str
        provider: Any  # a hand-built Event's is not checked as a str
        currency: str | None
        key: str | None
        flow: Flow | None
        if isinstance(event, Logged):
            fact: Logged = event
            at, logged, etype, ref = fact.at, fact.amount, fact.type, fact.payment
            provider, currency, key, flow = fact.provider, fact.currency, fact.key, fact.flow
        else:
            at, logged, etype, ref = event.at, event.amount, event.type, event.payment
            provider, currency, key, flow = event.provider, event.currency, event.key, event.flow
        a = self.auditor
        # Past int64 a log holds garbage, and JSON readers disagree about it (orjson reads up to 2**64 - 1
        # as an int, beyond as a float): malformed, not a fact for amount_valid to judge.
        if logged is not None and logged > _INT64_MAX:
            a.malformed(line, file, f"not a valid event: amount: {clip(str(logged))} is beyond int64 "
                                    f"({_INT64_MAX}), the largest amount any provider takes", ref,
                        format_instant(at))
            return
        k = self.k
        k.events += 1
        if text is None:
            text = canonical(at)
        live = self.live
        track: Record | None = k.find(ref)
        settled = False
        if track is None:
            track = k.recall(ref)
            if track is not None:
                if pos - track.pos > self.window:
                    # Past the window: forgotten, whether or not memory was already reclaimed.
                    del self.settled[ref]
                    track = None
                else:
                    settled = True
        payment: Payment
        if track is None:
            spec = self.spec
            if spec is None:
                found = a._spec_of(provider)
                if isinstance(found, str):
                    a.malformed(line, file, found, ref, format_instant(at))
                    return
                spec = found
            elif provider is not None and provider != spec.name:
                a.malformed(line, file, f"event from provider {clip(repr(provider))}, but the audit's "
                                        f"spec is {spec.name!r}", ref, format_instant(at))
                return
            self.providers.add(spec.name)
            k.payments += 1
            fast = k.only if k.only is not None else self.moves[str(provider)]
            track = Record(fast, ref) if _COMPILED else self.hot.Record(fast, ref)
            track.at_dt, track.after = at, EXACT_ONLY
            track.line, track.file, track.pos = line, file, pos
            live[ref] = track
            payment = Payment.new(spec, ref)
        else:
            if provider is not None and provider != track.spec.name:
                a.malformed(line, file, f"event from provider {clip(repr(provider))} for a payment audited "
                                        f"under {track.spec.name!r} since line {self.line_of(track)}",
                            ref, format_instant(at))
                return
            previous: str = track.after
            # Both canonical: the text orders as time does, and no datetime needs parsing.
            if (text < previous) if (text is not None and previous and previous != EXACT_ONLY) else (
                    at < track.when()):
                before = track.when()
                self.found(
                    ref, line, file, _OUT_OF_ORDER,
                    f"{_TYPE_VALUES[etype]} at {format_instant(at)} is earlier than the payment's previous event "
                    f"at {format_instant(before)} ({place(track, self.line_of(track), file)}); applied in file order",
                    format_instant(at), None, None)
            # With the key history of the fact's own key alone (`Record.payment`); `observe` (the reference)
            # is given the whole Payment.
            payment = track.payment(not self.fast, key)
        # Only an event the audit judges sets the default as_of: a line it refused (no spec for its
        # provider) is LOG_MALFORMED, and must not move the instant every other payment is judged at.
        latest = self.latest
        if latest is None or at > latest:
            self.latest = at
        amount = 0
        dest = ""
        after: Payment | None = None
        violations: tuple[Violation, ...]
        try:
            if self.fast:
                # The judgement alone: the effect is applied to the record in place (`_hot.settle`, the
                # fast path's own), with no Payment built after it and loaded back.
                if _COMPILED:
                    amount, dest, violations = _native_judge(payment, event)
                else:
                    amount, dest, violations = _judge(payment, event)
            else:  # the reference: observe's own effect, on a Payment, loaded back into the record
                assert isinstance(event, Event)  # `_slow`, which builds Logged facts, is the fast mode's
                after, violations = observe(payment, event)
        except (ValueError, TypeError, ArithmeticError) as exc:
            # A fact the engine cannot even count (it never happens with valid events) is reported, and
            # the payment stays as it was, so the rest of the audit is unaffected.
            a.malformed(line, file, f"cannot be judged: {type(exc).__name__}: {exc}", ref, format_instant(at))
            return
        lapsed = etype is _EXPIRED
        if (etype is _CANCELLED and track.capturable > 0
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
            # The record's fields, not the Payment's (the same objects: it was built from them, and the
            # record is settled only below); its own reference (the live map's key), not the line's copy.
            held: Any = track.currency or currency
            ref = track.reference
            findings = self.findings
            sink = self.sink
            for v in violations:
                code: Code = v.code
                stake = at_stake(payment, etype, logged, code)
                if sink is None:
                    findings.append(breach(self.finding, self.said, self.said_later, ref, line, file, kind, logged,
                                           v, code, stamp, stake, held))
                else:
                    sink.add(ref, line, file, code, breach_state(self.said, self.said_later, kind, logged, v, code),
                             stamp, stake, held)
        if lapsed and track.capturable > 0 and a._can_cancel(track.spec, track.state, track.flow):
            a._lapsed(payment, line, file, at)
        terminal: bool
        if after is None:
            type_code = self.type_codes[etype]
            if _COMPILED:  # a native call (the plain build's record is the plain `_hot`'s)
                terminal = settle(track, type_code, amount, dest, currency, key, flow, at, text, line, file, pos)
            else:
                terminal = self.settle(track, type_code, amount, dest, currency, key, flow, at, text, line, file,
                                       pos)
        else:
            track.load(after, at, text)
            track.line = line
            track.file = file
            track.pos = pos
            terminal = track.state in track.spec.terminal and not track.pending
        if terminal:
            settled_map = self.settled
            if settled:
                settled_map.move_to_end(ref)
            else:
                del live[ref]
                settled_map[ref] = track
            k.sweep(pos)
        elif settled:
            del self.settled[ref]
            live[ref] = track
        if k.max_open and len(live) > k.max_open:
            a._spill()

    def found(self, payment: str | None, line: Any, file: str, code: Code, message: str, at: str | None,
              amount: Any, currency: str | None) -> None:
        """A finding built with its text (LOG_MALFORMED, OUT_OF_ORDER, a lapse the log records): into the
        sink when there is one, else a `finding` on the list."""
        sink = self.sink
        if sink is None:
            self.findings.append(self.finding(payment, line, file, code, message, at, amount, currency))
        else:
            sink.add(payment, line, file, code, message, at, amount, currency)


def new_findings(cls: Any, codes: dict[str, Code], payments: list[Any], lines: list[Any], files: list[Any],
                 code_texts: list[Any], messages: list[Any], ats: list[Any], amounts: list[Any],
                 currencies: list[Any]) -> list[Any]:
    """The `cls` findings of a worker's packed columns (`audit_ranges.pack`, in its order), the code as its
    text (`codes` maps it back) and the message as its text or deferred state. One loop for them all:
    building them one call each (`_audit._finding`) was most of the parent's unpack of a worker's result."""
    out: list[Any] = []
    # The slot's own setter: the class's `message` is a property (`_values._settling`) that calls it.
    set_message = deferred_slot(cls, "message").__set__
    for i in range(len(payments)):
        f = new_finding(cls, payments[i], lines[i], files[i], codes[code_texts[i]], ats[i], amounts[i],
                        currencies[i])
        message = messages[i]
        if type(message) is not str:
            defer(f, message)
        else:
            set_message(f, message)
        out.append(f)
    return out
