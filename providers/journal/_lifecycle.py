"""The journal's decisions, pure: what an operation may do, how an intent settles, what recovery does.

Theory of operation. An *intent* is one logical operation on one payment (a capture, a cancel, a
refund), written to the journal BEFORE any request leaves, and settled AFTER, from what the provider
proved. Everything in this module is a function of the journal's state and an input; the SQLite and
PostgreSQL adapters only load that state under a lock and store what these functions return.

Rule 1: an open intent (`pending` or `unknown`) reserves its amount. `begin` decides against the
        payment's events PLUS every open intent: an open capture is seen as a capture in flight
        (CAPTURE_IN_FLIGHT, less capturable), an open refund as money already refunded, and at most one
        intent per kind of operation is open at once (OPERATION_IN_FLIGHT), so a read-back can always
        tell whose operation it sees.
Rule 2: a caller's key names one intent for ever. Same key, other parameters: IDEMPOTENCY_KEY_CONFLICT,
        before any I/O. Same key, same parameters: the stored outcome (done), CAPTURE_IN_FLIGHT (open),
        or a new attempt of the same intent under the same key (failed: it surely did not happen).
Rule 3: a derived key comes from (payment, op, intent sequence), never from the amount: two parcels of
        the same price are two intents, two sequences, two keys.
Rule 4: an outcome is credited to an intent only on evidence: an event carrying the intent's key, or a
        read-back whose growth equals the intent's amount exactly. Anything else is recorded as an
        out-of-band event with a finding, and the intent stays `unknown`.
Rule 5: recovery never resends to a provider without idempotency. It reads back and settles; only a
        provider that deduplicates by key (Vipps) is sent the identical request again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum

from attrs import evolve, field, frozen

from ..._codes import Code
from ..._engine import decide, observe
from ..._values import Cancel, Capture, Decision, Event, EventType, Payment, Refund, Violation
from .._build import key_for

Operation = Capture | Cancel | Refund
OPS = ("capture", "cancel", "refund")
# Back-off of recovery attempts (Kill Bill's janitor reschedules the same way): 30 s, 1, 2, 4 ... 60 min.
RECOVERY_BASE = timedelta(seconds=30)
RECOVERY_CAP = timedelta(hours=1)


class Status(StrEnum):
    """An intent's status. `pending`: written, maybe sent. `unknown`: the provider's answer left the
    outcome open. Both are open and reserve their amount; `done` and `failed` are final."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    UNKNOWN = "unknown"


OPEN = frozenset({Status.PENDING, Status.UNKNOWN})


class Source(StrEnum):
    """Where a journal event came from (its provenance)."""

    OWN = "own"  # the answer to our own request
    READBACK = "readback"  # a GET / requery / Vipps replay under the intent's key
    WEBHOOK = "webhook"  # a verified Vipps webhook or Pipwave IPN
    IMPORT = "import"  # canonical JSONL or a provider's export given to `journal import` / `ingest`


def op_of(command: Operation) -> str:
    return "capture" if isinstance(command, Capture) else "cancel" if isinstance(command, Cancel) else "refund"


def _aware(instance: object, attribute: object, value: datetime | None) -> None:
    if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
        raise ValueError(f"{getattr(attribute, 'name', 'time')} must be timezone-aware, got {value!r}")


def _aware_required(instance: object, attribute: object, value: datetime) -> None:
    _aware(instance, attribute, value)


@frozen
class Intent:
    """One logical operation on one payment, as the journal holds it.

    `requested` is the amount the caller asked for (None: the full amount), `amount` the amount the
    engine resolved and reserved; `key` is sent on every request of the intent, `caller_key` says the
    caller chose it. `lease_until` is how long the worker that wrote (or last claimed) the intent owns
    it; `next_attempt_at` when recovery may try an `unknown` intent again.
    """

    payment: str
    seq: int
    op: str
    requested: int | None
    amount: int
    currency: str | None
    key: str
    caller_key: bool
    final: bool
    status: Status
    attempts: int
    created_at: datetime = field(validator=_aware_required)
    lease_until: datetime = field(validator=_aware_required)
    owner: str = ""
    next_attempt_at: datetime | None = field(default=None, validator=_aware)
    error: str | None = None
    settled_at: datetime | None = field(default=None, validator=_aware)

    @property
    def open(self) -> bool:
        return self.status in OPEN

    def command(self) -> Operation:
        """The command every attempt of this intent sends: the resolved amount and the intent's key, so
        each resend is byte-for-byte the same request (Vipps replays it, never captures it twice)."""
        at = self.created_at
        if self.op == "capture":
            return Capture(at=at, amount=self.amount, currency=self.currency, key=self.key, final=self.final)
        if self.op == "cancel":
            return Cancel(at=at, key=self.key)
        return Refund(at=at, amount=self.amount, currency=self.currency, key=self.key)

    def to_dict(self) -> dict[str, object]:
        def t(v: datetime | None) -> str | None:
            return v.isoformat() if v is not None else None

        return {"payment": self.payment, "seq": self.seq, "op": self.op, "requested": self.requested,
                "amount": self.amount, "currency": self.currency, "key": self.key, "caller_key": self.caller_key,
                "final": self.final, "status": self.status.value, "attempts": self.attempts,
                "created_at": t(self.created_at), "lease_until": t(self.lease_until), "owner": self.owner,
                "next_attempt_at": t(self.next_attempt_at), "error": self.error, "settled_at": t(self.settled_at)}


@frozen
class Recorded:
    """One event as the journal holds it: the fact, where it came from, the intent it is credited to
    (None: out of band) and the finding it raised (late, contradictory, unattributed), if any."""

    event: Event
    source: Source
    intent: int | None = None
    finding: Code | None = None
    note: str | None = None


@frozen
class State:
    """One payment as loaded under its lock: its replayed aggregate (`base`, events only) and intents."""

    base: Payment
    intents: tuple[Intent, ...]
    next_seq: int

    def open_intents(self) -> tuple[Intent, ...]:
        return tuple(i for i in self.intents if i.open)


def derive_key(reference: str, op: str, seq: int) -> str:
    """The key of intent `seq` of `reference`: the intent's identity, never its amount (Rule 3)."""
    return key_for(reference, op, seq)


def replay_events(base: Payment, events: Iterable[Event]) -> tuple[Payment, list[tuple[Violation, ...]]]:
    """Fold events through `observe` (a recorded fact is never refused, Rule 4's out-of-band events
    included), returning the payment and each event's violations."""
    out = []
    for e in events:
        base, violations = observe(base, e)
        out.append(violations)
    return base, out


def reserved_view(state: State) -> Payment:
    """The payment the engine decides against: events plus every open intent's reservation (Rule 1)."""
    p = state.base
    capture = sum(i.amount for i in state.intents if i.open and i.op == "capture")
    # Never more than the room the proven events leave, so `capturable` is never negative once a capture
    # seen since (someone else's, through the inbox) fills the room. It permits nothing more: capturable
    # is 0 either way. (Where the provider refuses over-capture, Vipps "Capture amount too high" and
    # Hellgate, research/providers.md 2.4 and 3.4, it is also what the open intent can still have taken;
    # Bambora and Pipwave leave it [UNK], and reconcile's read-back settles it there.)
    capture = min(capture, max(p.capturable, 0))
    refund = sum(i.amount for i in state.intents if i.open and i.op == "refund")
    if capture or refund:
        p = p.moved(p.state, pending=p.pending + capture, refunded=p.refunded + refund)
    return p


# --------------------------------------------------------------------------------------------- begin


@frozen
class Start:
    """Write this intent (new, or a failed one tried again) and send its command."""

    intent: Intent
    decision: Decision
    reopened: bool = False


@frozen
class Replay:
    """The caller's key already succeeded: nothing to send; `intent` (None for an imported event)."""

    intent: Intent | None
    decision: Decision | None = None


@frozen
class Refuse:
    """Nothing is written, nothing is sent: `decision` holds the violations."""

    decision: Decision


Begin = Start | Replay | Refuse


def _refusal(command: Operation, before: Payment, code: Code, message: str) -> Refuse:
    return Refuse(Decision(False, command, before, (Violation(code, message),)))


def _same(intent: Intent, op: str, command: Operation) -> str | None:
    """Which parameter differs between a stored intent and a new command under its key, or None."""
    if intent.op != op:
        return f"op {intent.op} != {op}"
    requested = getattr(command, "amount", None)
    if requested != intent.requested:
        return f"amount {intent.requested} != {requested}"
    currency = getattr(command, "currency", None)
    if currency is not None and currency != intent.currency:
        return f"currency {intent.currency} != {currency}"
    if isinstance(command, Capture) and command.final != intent.final:
        return f"final {intent.final} != {command.final}"
    return None


def begin(state: State, command: Operation, *, now: datetime, lease: timedelta, owner: str) -> Begin:
    """Step (1) of the protocol: may `command` start, and as which intent? Pure; the caller holds the lock."""
    op = op_of(command)
    view = reserved_view(state)
    if command.key is not None:
        mine = next((i for i in state.intents if i.key == command.key), None)
        if mine is not None:
            differs = _same(mine, op, command)
            if differs is not None:
                return _refusal(command, view, Code.IDEMPOTENCY_KEY_CONFLICT,
                                f"key {command.key!r} belongs to intent #{mine.seq} ({differs})")
            if mine.status is Status.DONE:
                return Replay(mine)
            if mine.open:
                code = Code.CAPTURE_IN_FLIGHT if op == "capture" else Code.OPERATION_IN_FLIGHT
                return _refusal(command, view, code, f"intent #{mine.seq} under key {command.key!r} is still "
                                                     f"{mine.status.value}; wait for it or run reconcile")
    for other in state.open_intents():
        if other.op == "capture" and op in ("capture", "cancel"):
            continue  # the reserved view makes the engine say it: CAPTURE_IN_FLIGHT
        if other.op in ("cancel", op) or op == "cancel":
            return _refusal(command, view, Code.OPERATION_IN_FLIGHT,
                            f"a {other.op} (intent #{other.seq}, {other.status.value}) of this payment is in "
                            f"flight; wait for it or run reconcile")
    seq = state.next_seq
    key = command.key if command.key is not None else derive_key(state.base.reference, op, seq)
    decision = decide(view, evolve(command, key=key))
    if not decision.allowed:
        return Refuse(decision)
    if decision.event is None:
        # The key is on an event already (an imported history): the provider would replay, not move money.
        return Replay(None, decision)
    resolved = decision.command
    amount = decision.event.amount if decision.event.amount is not None else 0
    if op == "cancel" and amount == 0:
        amount = max(view.capturable, 0)
    intent = Intent(state.base.reference, seq, op, getattr(command, "amount", None), amount,
                    getattr(resolved, "currency", None) or state.base.currency, key, command.key is not None,
                    bool(getattr(resolved, "final", False)), Status.PENDING, 1, now, now + lease, owner)
    mine = next((i for i in state.intents if command.key is not None and i.key == command.key), None)
    if mine is not None:  # a failed intent, tried again under its own key and sequence
        intent = evolve(intent, seq=mine.seq, created_at=now, attempts=mine.attempts + 1)
        return Start(intent, decision, reopened=True)
    return Start(intent, decision)


# -------------------------------------------------------------------------------------------- settle


@frozen
class Proven:
    """The provider proved `events` (our answer, or a read-back that credits them to the intent)."""

    events: tuple[Event, ...]
    readback: bool = False


@frozen
class Failed:
    """The operation surely did not happen (a refusal, a decline, a read-back showing no change)."""

    reason: str


@frozen
class Unknown:
    """The outcome is open. `observed` are facts a read-back showed that cannot be credited to the intent."""

    reason: str
    observed: tuple[Event, ...] = ()


Result = Proven | Failed | Unknown


def backoff(attempts: int) -> timedelta:
    """The pause before recovery attempt `attempts + 1`: 30 s doubling, capped at an hour."""
    if attempts < 1:
        return RECOVERY_BASE
    wait: timedelta = RECOVERY_BASE * 2 ** min(attempts - 1, 20)
    return min(RECOVERY_CAP, wait)


def credited(intent: Intent, event: Event) -> bool:
    """Whether `event` is evidence of `intent` by its key (Rule 4)."""
    return event.key == intent.key and event.type in _TYPES_OF[intent.op]


_TYPES_OF = {
    "capture": frozenset({EventType.CAPTURED, EventType.CAPTURE_REQUESTED, EventType.CAPTURE_FAILED,
                          EventType.CANCELLED}),  # a final Vipps capture releases its remainder by cancel
    "cancel": frozenset({EventType.CANCELLED}),
    "refund": frozenset({EventType.REFUNDED}),
}


def settle(intent: Intent, result: Result, *, now: datetime) -> tuple[Intent, tuple[Recorded, ...]]:
    """Step (3): the intent's new status and the events to record, with their provenance."""
    if isinstance(result, Proven):
        source = Source.READBACK if result.readback else Source.OWN
        records = tuple(Recorded(e, source, intent.seq) for e in result.events)
        last = result.events[-1] if result.events else None
        if intent.op == "capture" and last is not None and last.type is EventType.CAPTURE_FAILED:
            # The provider declined the capture it had accepted (Hellgate `failed`): the facts are recorded,
            # and the intent is `failed`, so the same key may try again instead of replaying a success.
            return evolve(intent, status=Status.FAILED, error=last.reason or "the provider reports the capture "
                          "failed", settled_at=now, next_attempt_at=None), records
        return evolve(intent, status=Status.DONE, error=None, settled_at=now, next_attempt_at=None), records
    if isinstance(result, Failed):
        return evolve(intent, status=Status.FAILED, error=result.reason, settled_at=now,
                      next_attempt_at=None), ()
    records = tuple(Recorded(e, Source.READBACK, None, Code.OUT_OF_BAND,
                             f"observed while intent #{intent.seq} ({intent.op} {intent.amount}) was unknown: "
                             f"not credited to it") for e in result.observed)
    return evolve(intent, status=Status.UNKNOWN, error=result.reason,
                  next_attempt_at=now + backoff(intent.attempts)), records


# ------------------------------------------------------------------------------------------ recovery


def due(intents: Sequence[Intent], now: datetime, older_than: timedelta = timedelta(0)) -> list[Intent]:
    """The intents recovery should take now: open, their lease run out (by `older_than` more), and for
    an `unknown` one, its back-off passed."""
    cutoff = now - older_than
    out = []
    for i in intents:
        if not i.open or i.lease_until > cutoff:
            continue
        if i.status is Status.UNKNOWN and i.next_attempt_at is not None and i.next_attempt_at > now:
            continue
        out.append(i)
    return out


def claim(intent: Intent, *, now: datetime, lease: timedelta, owner: str) -> Intent:
    """Recovery takes an intent: a new lease, one more attempt, so no two recoverers work it at once."""
    return evolve(intent, lease_until=now + lease, owner=owner, attempts=intent.attempts + 1)


def evidence(intent: Intent, events: Iterable[Event]) -> tuple[Event, ...]:
    """Events already in the journal (a webhook, an import) that carry this intent's key."""
    return tuple(e for e in events if credited(intent, e))


def judge_readback(intent: Intent, base: Payment, *, captured: int | None, cancelled: int | None,
                   refunded: int | None, in_flight: bool, state: str, asynchronous: bool, provider: str,
                   at: datetime) -> Result:
    """What a read-back proves about `intent`, against the journal's own aggregate `base` (Rule 4).

    Growth equal to the intent's amount is the intent's. No growth and nothing in flight: it did not
    happen, and the reservation is released. Any other growth is someone else's (or ambiguous): it is
    recorded out of band and the intent stays unknown, to be judged again on the new aggregate.
    """
    remote, before, etype = {
        "capture": (captured, base.captured, EventType.CAPTURED),
        "cancel": (cancelled, base.cancelled, EventType.CANCELLED),
        "refund": (refunded, base.refunded, EventType.REFUNDED),
    }[intent.op]
    lowered = state.lower()
    if intent.op == "capture" and asynchronous and lowered == "capturing" and base.pending == 0:
        # Hellgate accepted a capture and is working on it: one capture per payment, so it is this one.
        return Proven((Event(intent.payment, EventType.CAPTURE_REQUESTED, at, intent.amount, intent.currency,
                             provider=provider, key=intent.key, reason="read back: capturing"),), readback=True)
    if remote is None:
        return Unknown(f"the {provider} read-back ({state}) does not report the {intent.op}d amount")
    grown = remote - before
    if intent.op == "cancel" and grown > 0:
        return Proven((Event(intent.payment, etype, at, grown, intent.currency, provider=provider, key=intent.key,
                             reason=f"read back: {state}"),), readback=True)
    if grown == intent.amount and grown > 0:
        return Proven((Event(intent.payment, etype, at, grown, intent.currency, provider=provider, key=intent.key,
                             reason=f"read back: {state}"),), readback=True)
    if grown == 0:
        if in_flight or (asynchronous and intent.op in ("refund", "cancel")):
            return Unknown(f"{provider} reports an operation still in progress ({state})")
        return Failed(f"the {provider} read-back shows no {intent.op} ({state}): it did not happen")
    if grown < 0:
        return Unknown(f"{provider} reports {intent.op}d {remote}, less than the journal's {before}")
    return Unknown(f"{provider} reports {intent.op}d grown by {grown}, not by this intent's {intent.amount}",
                   observed=(Event(intent.payment, etype, at, grown, base.currency, provider=provider,
                                   reason=f"read back: {state}; not credited to intent #{intent.seq}"),))


# --------------------------------------------------------------------------------------------- inbox


def dedup_key(event: Event) -> str:
    """An event's identity in the journal: by its key when it has one (a provider's operation id),
    else by its content. A webhook and our own answer for one keyed capture are one fact."""
    if event.key is not None and event.type is not EventType.AUTHORIZED:
        return f"{event.type.value}|key|{event.key}"
    body = f"{event.type.value}|{event.at.isoformat()}|{event.amount}|{event.currency}|{event.flow}"
    return "content|" + hashlib.sha256(body.encode()).hexdigest()[:40]


def finding_for(before: Payment, event: Event, latest: datetime | None) -> tuple[Code | None, str | None]:
    """The finding an incoming event raises against the journal's aggregate: contradictory (the spec says
    it cannot happen: the first violation's code) or late (older than the latest recorded fact:
    OUT_OF_ORDER). Such an event is recorded with its finding, never dropped."""
    _, code, note = judged(before, event, latest)
    return code, note


def judged(before: Payment, event: Event, latest: datetime | None) -> tuple[Payment, Code | None, str | None]:
    """The payment after `event` (as `replay_events` folds it) and `finding_for`'s finding, observed once."""
    after, violations = observe(before, event)
    if violations:
        return after, violations[0].code, "; ".join(f"{v.code.value}: {v.message}" for v in violations)
    if latest is not None and event.at < latest:
        return after, Code.OUT_OF_ORDER, f"arrived after a later fact ({latest.isoformat()})"
    return after, None, None
