"""`Journal`: exactly-once captures, cancels and refunds through a durable journal.

    with Journal("sqlite:///var/lib/shop/capstate.db") as journal, CaptureClient("vipps", creds) as client:
        journal.ingest([authorized_event])                      # or `capstate journal import`
        done = journal.capture("order-10001", 25000, key="parcel-1", client=client)

Each operation follows the three steps of DESIGN.md section 7, and this module only sequences them:
(1) a short transaction locks the payment, `_lifecycle.begin` decides against events and open intents,
and the intent is written; (2) the request goes out through `CaptureClient` with no transaction open;
(3) a short transaction records what the provider proved (`_lifecycle.settle`) and settles the intent.
A crash between (1) and (3) leaves a `pending` intent that reserves its amount until `recover` (or
`capstate reconcile`) reads the provider back and settles it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from attrs import evolve, frozen

from ..._codes import Code
from ..._errors import CommandError, EventError, ProviderError, RequestError
from ..._spec import Spec, load_spec
from ..._values import Cancel, Capture, Event, EventType, Payment, Refund
from ..client import CaptureClient, Outcome, Refused, Unattributed, Unsettled
from ..pipwave import NAME as PIPWAVE
from ..pipwave import Ipn
from ._inbox import cancelled_dedup, map_ipn
from ._lifecycle import (
    Failed,
    Intent,
    Operation,
    Proven,
    Recorded,
    Refuse,
    Replay,
    Result,
    Source,
    Start,
    State,
    Status,
    Unknown,
    begin,
    claim,
    dedup_key,
    due,
    evidence,
    finding_for,
    judge_readback,
    judged,
    replay_events,
    reserved_view,
    settle,
)
from ._store import JournalError, Store, Tx, open_store

ENV = "CAPSTATE_JOURNAL"
# (how many events, the highest id) of a payment when it was read: `Tx.event_mark`.
Mark = tuple[int, int]
# How long the worker that wrote an intent owns it. It must outlast the client's worst case (4 attempts
# of 30 s reads with capped back-off), or recovery would read back while the worker is still sending.
DEFAULT_LEASE = timedelta(minutes=5)


@frozen
class JournalOutcome:
    """What one journal operation did.

    `intent` is the intent as settled (or as found: `replayed`); `payment` the journal's aggregate after
    it; `events` the facts credited to the intent; `sent` whether a request left in this call;
    `release_error` a final Vipps capture's failed release of its remainder; `before` the payment the
    request was decided on (events only) and `answer` the client's Outcome (HTTP status, requests sent,
    whether it was read back, how much more than asked the provider moved), None when nothing was sent.
    """

    intent: Intent | None
    payment: Payment
    events: tuple[Event, ...] = ()
    sent: bool = False
    replayed: bool = False
    release_error: str | None = None
    before: Payment | None = None
    answer: Outcome | None = None

    @property
    def status(self) -> Status:
        return self.intent.status if self.intent is not None else Status.DONE


class OutcomeUnknown(ProviderError):
    """The operation's outcome is unknown: its intent stays open and reserves its amount. Run `recover`
    (`capstate reconcile`); never send it again by hand. `intent` is the open intent."""

    def __init__(self, message: str, *, provider: str, intent: Intent):
        super().__init__(message, provider=provider, reconcile=True)
        self.intent = intent


class OperationFailed(ProviderError):
    """The provider refused or declined: nothing happened, the intent is `failed` and released nothing."""

    def __init__(self, message: str, *, provider: str, intent: Intent, status: int | None = None):
        super().__init__(message, provider=provider, status=status)
        self.intent = intent


@frozen
class IngestReport:
    """`recorded` new events, `duplicates` already in the journal, `findings` (payment, code, note) for
    late or contradictory events (recorded all the same), `rejected` (where, why) for input that is no event."""

    recorded: int = 0
    duplicates: int = 0
    findings: tuple[tuple[str, str, str], ...] = ()
    rejected: tuple[tuple[str, str], ...] = ()


@frozen
class Recovery:
    """What `recover` did to one intent: its status after, and why."""

    intent: Intent
    action: str
    message: str


def _missing(reference: str) -> JournalError:
    return JournalError(f"payment {reference!r} is not in the journal (import its authorization first)")


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Journal:
    """A journal at `url` (default: the CAPSTATE_JOURNAL environment variable).

    `lease` is how long a worker owns the intent it wrote; `clock` gives "now" (timezone-aware);
    `specs` maps a provider name to the Spec its payments are judged by (default: the shipped spec).
    `readonly` opens it for reading only (`validate --journal`): never created, migrated or written.
    `durable_settle` makes the settle step's commit wait for the disk too; by default only the intent's
    does, since a lost settle leaves the intent open for `recover` (docs/journal.md, "Durability").
    Raises JournalError for a URL it cannot open.
    """

    def __init__(self, url: str | None = None, *, lease: timedelta = DEFAULT_LEASE,
                 clock: Callable[[], datetime] | None = None, specs: Mapping[str, Spec] | None = None,
                 owner: str | None = None, readonly: bool = False, durable_settle: bool = False):
        url = url if url is not None else os.environ.get(ENV)
        if not url:
            raise JournalError(f"no journal: give a URL (sqlite:///path.db or postgresql://...) or set {ENV}")
        if not isinstance(lease, timedelta) or lease <= timedelta(0):
            raise JournalError(f"lease must be a positive timedelta, got {lease!r}")
        self._store: Store = open_store(url, readonly=readonly)
        self.lease = lease
        self._clock = clock if clock is not None else (lambda: datetime.now(UTC))
        self._specs = dict(specs or {})
        self.owner = owner or _owner()
        self.durable_settle = durable_settle

    @property
    def url(self) -> str:
        return self._store.url

    def now(self) -> datetime:
        now = self._clock()
        if not isinstance(now, datetime) or now.utcoffset() is None:
            raise CommandError(f"the clock must return a timezone-aware datetime, got {now!r}")
        return now

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------- reading

    def spec(self, provider: str) -> Spec:
        if provider not in self._specs:
            self._specs[provider] = load_spec(provider)
        return self._specs[provider]

    def _load(self, tx: Tx, reference: str) -> tuple[State, list[Recorded]]:
        state, records, _ = self._load_marked(tx, reference)
        return state, records

    @staticmethod
    def _row(tx: Tx, reference: str) -> tuple[str, int]:
        row = tx.payment(reference)
        if row is None:
            raise _missing(reference)
        return row

    def _load_marked(self, tx: Tx, reference: str) -> tuple[State, list[Recorded], Mark]:
        """`_load`, and the events' mark, for `_reload` in a later transaction."""
        provider, next_seq = self._row(tx, reference)
        rows = tx.events(reference)
        records = [rec for _, rec, _ in rows]
        base, _ = replay_events(Payment.new(self.spec(provider), reference), (r.event for r in records))
        mark = (len(rows), max((i for i, _, _ in rows), default=0))
        return State(base, tuple(tx.intents(reference)), next_seq), records, mark

    def _reload(self, tx: Tx, reference: str, before: State, mark: Mark) -> tuple[State, bool]:
        """The payment's State as `_load` reads it now, and its in-flight flag. Its events are replayed again
        only when some were added since `before` was read with `mark`; else `before.base` is that same
        replay (kept exact by the mark), and only the intents and the sequence are read."""
        row = tx.marked(reference)
        if row is None:
            raise _missing(reference)
        next_seq, in_flight, now_mark = row
        if now_mark != mark:
            return self._load(tx, reference)[0], in_flight
        return State(before.base, tuple(tx.intents(reference)), next_seq), in_flight

    def state(self, reference: str) -> State:
        """The payment's aggregate (events only) and its intents."""
        with self._store.reading() as tx:
            return self._load(tx, reference)[0]

    def snapshot(self, reference: str) -> tuple[State, tuple[Recorded, ...]]:
        """The payment's aggregate and intents, and its recorded events, read in one consistent snapshot."""
        with self._store.reading() as tx:
            state, records = self._load(tx, reference)
        return state, tuple(records)

    def payment(self, reference: str) -> Payment:
        """The payment as the engine decides against it: events plus open intents' reservations."""
        return reserved_view(self.state(reference))

    def show(self, reference: str) -> dict[str, Any]:
        """Everything the journal holds about one payment, JSON-ready."""
        with self._store.reading() as tx:
            state, _ = self._load(tx, reference)
            rows = tx.events(reference)
        return {"payment": reference, "provider": state.base.spec.name, "summary": state.base.summary(),
                "pending": state.base.pending, "reserved": reserved_view(state).summary(),
                "events": [{"id": i, "source": r.source.value, "intent": r.intent,
                            "finding": r.finding.value if r.finding is not None else None, "note": r.note,
                            "recorded_at": at.isoformat(), "event": r.event.to_dict()} for i, r, at in rows],
                "intents": [i.to_dict() for i in state.intents], "inbox": self.inbox(reference)}

    def pending(self) -> list[Intent]:
        """Every open intent (pending or unknown), oldest first."""
        with self._store.reading() as tx:
            return tx.open_intents()

    def references(self) -> Iterator[tuple[str, str]]:
        """(reference, provider) of every payment, in reference order, read in pages."""
        after = ""
        while True:
            with self._store.reading() as tx:
                page = tx.references(after)
            if not page:
                return
            yield from page
            after = page[-1][0]

    def export(self) -> Iterator[Event]:
        """Every payment's canonical events, payment by payment, in the order they happened."""
        for reference, _ in self.references():
            with self._store.reading() as tx:
                rows = tx.events(reference)
            for _, rec, _ in rows:
                yield rec.event

    # ----------------------------------------------------------------------------------------- inbox

    def ingest(self, events: Iterable[Event | Mapping[str, Any] | Ipn], *, source: Source = Source.IMPORT,
               provider: str | None = None) -> IngestReport:
        """Record facts from outside (an import, a webhook, a provider's export), each once, in any order.

        An event already in the journal (same key, or same content) counts as a duplicate. A late or
        contradictory event is recorded with its finding, never dropped. A payment enters the journal
        with its first event (its provider comes from the event, or `provider`). An item that is no
        valid event is rejected and reported; the others are recorded.

        A verified Pipwave IPN (`pipwave.verify_ipn`'s `Ipn`) goes into the inbox once, and becomes a canonical
        event only where its signed fields prove one with its amount (a cancellation); otherwise it is kept
        with what it says and, when the journal does not account for it, a finding (`_inbox` has the rules).
        """
        recorded = duplicates = 0
        findings: list[tuple[str, str, str]] = []
        rejected: list[tuple[str, str]] = []
        for n, item in enumerate(events, start=1):
            if isinstance(item, Ipn):
                fresh, found = self._ingest_ipn(item)
                recorded, duplicates = recorded + fresh, duplicates + (not fresh)
                findings.extend(found)
                continue
            try:
                event = item if isinstance(item, Event) else Event.from_dict(dict(item))
                name = event.provider or provider
                if name is None:
                    raise EventError("no provider: give the event a `provider` or pass provider=")
                self.spec(name)
            except (EventError, CommandError, ValueError, TypeError) as exc:
                rejected.append((f"item {n}", str(exc)))
                continue
            with self._store.locked(event.payment) as tx:
                known = tx.payment(event.payment)
                if known is None:
                    tx.add_payment(event.payment, name, self.now())
                    tx.lock(event.payment)
                elif known[0] != name:
                    rejected.append((f"item {n}", f"payment {event.payment!r} is a {known[0]} payment, the "
                                                  f"event says {name}"))
                    continue
                code, note = self._judge_incoming(tx, event)
                if tx.add_event(Recorded(event, source, self._credit(tx, event), code, note), dedup_key(event),
                                self.now()):
                    recorded += 1
                    if event.type is EventType.CAPTURE_REQUESTED:
                        # Flagged for reconcile's poll; a flag left after the capture settled is cleared there.
                        tx.set_in_flight(event.payment, True)
                    if code is not None:
                        findings.append((event.payment, code.value, note or ""))
                else:
                    duplicates += 1
        return IngestReport(recorded, duplicates, tuple(findings), tuple(rejected))

    def _ingest_ipn(self, ipn: Ipn) -> tuple[bool, list[tuple[str, str, str]]]:
        """Keep one IPN (False: a duplicate delivery) and record the event it proves; its findings."""
        reference = ipn.txn_id
        now = self.now()
        with self._store.locked(reference or "") as tx:
            known = tx.payment(reference) if reference is not None else None
            state = (self._load(tx, reference)[0] if reference is not None and known is not None
                     and known[0] == PIPWAVE else None)
            delivery = map_ipn(ipn, state, tx.last_sent(PIPWAVE, reference) if reference is not None else None)
            if known is not None and known[0] != PIPWAVE:
                delivery = evolve(delivery, event=None, finding=Code.OUT_OF_BAND,
                                  note=f"IPN for {reference!r}, a {known[0]} payment")
            event, dedup = delivery.event, cancelled_dedup(reference or "")
            if not tx.add_inbox(delivery, dedup if event is not None else None, now):
                return False, []
            found = [(reference or "", delivery.finding.value, delivery.note or "")] if delivery.finding else []
            if event is not None:
                code, note = self._judge_incoming(tx, event)  # a contradiction (captured first) is its finding
                if tx.add_event(Recorded(event, Source.WEBHOOK, None, code, note), dedup, now) and code is not None:
                    found.append((event.payment, code.value, note or ""))
        return True, found

    def inbox(self, reference: str | None = None) -> list[dict[str, Any]]:
        """The notifications kept (all, or one payment's), as delivered, with what each proved or said."""
        with self._store.reading() as tx:
            return tx.inbox(reference)

    def ingest_vipps_webhook(self, body: bytes, *, headers: Mapping[str, str], secret: str, path_and_query: str,
                             method: str = "POST", now: datetime | None = None) -> IngestReport:
        """Record one Vipps ePayment webhook, after checking its signature, content hash and date
        (`vipps.webhooks.verify_webhook`; raises SignatureError). Its body is a PaymentEvent: a failed
        operation or a pre-reservation state records no fact (an empty report)."""
        from ..vipps.events import to_canonical
        from ..vipps.webhooks import verify_webhook

        verify_webhook(secret=secret, method=method, path_and_query=path_and_query, headers=headers, body=body,
                       now=now if now is not None else self.now())
        try:
            obj = orjson.loads(body)
            canonical = to_canonical(obj)
        except (orjson.JSONDecodeError, EventError) as exc:
            return IngestReport(rejected=(("webhook", f"not a PaymentEvent: {exc}"),))
        if canonical is None:
            return IngestReport()
        return self.ingest([canonical], source=Source.WEBHOOK)

    def _judge_incoming(self, tx: Tx, event: Event) -> tuple[Code | None, str | None]:
        state, records = self._load(tx, event.payment)
        latest = max((r.event.at for r in records), default=None)
        try:
            return finding_for(state.base, event, latest)
        except EventError as exc:
            return Code.LOG_MALFORMED, str(exc)

    @staticmethod
    def _credit(tx: Tx, event: Event) -> int | None:
        """The intent an incoming event carries the key of (a webhook of our own capture), if any."""
        if event.key is None:
            return None
        return next((i.seq for i in tx.intents(event.payment) if i.key == event.key), None)

    # ------------------------------------------------------------------------------------ operations

    def capture(self, reference: str, amount: int | None = None, *, client: CaptureClient,
                currency: str | None = None, key: str | None = None, final: bool = False) -> JournalOutcome:
        """Capture `amount` (None: all that is capturable) exactly once. Raises Refused (nothing written or
        sent), OperationFailed (sent; nothing happened), OutcomeUnknown (run recover), JournalError."""
        return self._execute(reference, Capture(at=self.now(), amount=amount, currency=currency, key=key,
                                                final=final), client)

    def cancel(self, reference: str, *, client: CaptureClient, key: str | None = None) -> JournalOutcome:
        """Release the uncaptured remainder exactly once (raises as `capture`)."""
        return self._execute(reference, Cancel(at=self.now(), key=key), client)

    def refund(self, reference: str, amount: int, *, client: CaptureClient, currency: str | None = None,
               key: str | None = None) -> JournalOutcome:
        """Refund `amount` exactly once (raises as `capture`)."""
        return self._execute(reference, Refund(at=self.now(), amount=amount, currency=currency, key=key), client)

    def decide(self, reference: str, command: Operation) -> Start | Replay | Refuse:
        """What `capture`/`cancel`/`refund` would do now, without writing or sending anything."""
        with self._store.reading() as tx:
            state, _ = self._load(tx, reference)
        return begin(state, command, now=self.now(), lease=self.lease, owner=self.owner)

    def _execute(self, reference: str, command: Operation, client: CaptureClient) -> JournalOutcome:
        # (1) lock, decide against events + open intents, write the intent.
        with self._store.locked(reference) as tx:
            state, records, mark = self._load_marked(tx, reference)
            if client.provider != state.base.spec.name:
                raise CommandError(f"payment {reference!r} is a {state.base.spec.name} payment; the client sends "
                                   f"to {client.provider}")
            step = begin(state, command, now=self.now(), lease=self.lease, owner=self.owner)
            if isinstance(step, Start):
                tx.put_intent(step.intent)
                if not step.reopened:
                    tx.set_next_seq(reference, step.intent.seq + 1)
        if isinstance(step, Refuse):
            raise Refused(step.decision)
        if isinstance(step, Replay):
            events = evidence(step.intent, (r.event for r in records)) if step.intent is not None else ()
            return JournalOutcome(step.intent, reserved_view(state), events, sent=False, replayed=True)
        # (2) send, no transaction open.
        intent = step.intent
        result, release_error, answer = self._send(client, state.base, intent)
        # (3) record what the provider proved; settle the intent.
        settled, after, credited = self._settle(intent, result, state, mark)
        if isinstance(result, Unknown):
            raise OutcomeUnknown(f"{intent.op} of {reference}: outcome unknown ({result.reason}); intent "
                                 f"#{intent.seq} stays open: run `capstate reconcile`", provider=client.provider,
                                 intent=settled)
        if isinstance(result, Failed):
            raise OperationFailed(f"{intent.op} of {reference} failed: {result.reason}", provider=client.provider,
                                  intent=settled)
        return JournalOutcome(settled, after, credited, sent=True, release_error=release_error, before=state.base,
                              answer=answer)

    def _send(self, client: CaptureClient, base: Payment,
              intent: Intent) -> tuple[Result, str | None, Outcome | None]:
        """Step (2): one call of the executor, its answer as a lifecycle Result. Never raises for the
        provider's answer: every way it can end is a Result."""
        command = intent.command()
        try:
            if isinstance(command, Capture):
                out = client.capture(base, command)
            elif isinstance(command, Cancel):
                out = client.cancel(base, command)
            else:
                out = client.refund(base, command)
        except Refused as exc:
            # The events moved since step (1)? No: step (1) decided on the same base. A refusal here is the
            # executor's own stricter check; nothing was sent.
            return Failed(f"refused before sending: {exc}"), None, None
        except RequestError as exc:
            return Failed(f"the request could not be built, nothing was sent: {exc}"), None, None
        except Unattributed as exc:
            return Unknown(str(exc), exc.observed), None, None
        except Unsettled as exc:
            return Unknown(str(exc)), None, None
        except ProviderError as exc:
            return (Unknown(str(exc)) if exc.reconcile else Failed(str(exc))), None, None
        if not out.events:
            return Unknown("the provider answered, but no fact could be read from it"), None, out
        release = str(out.release_error) if out.release_error is not None else None
        return Proven(out.events, readback=out.reconciled), release, out

    def _settle(self, intent: Intent, result: Result, before: State,
                mark: Mark) -> tuple[Intent, Payment, tuple[Event, ...]]:
        """Step (3), on the payment as `before` (read with `mark` in this worker's step (1) or claim)
        left it or as it is now. Not durable by default: see `durable_settle`."""
        now = self.now()
        with self._store.locked(intent.payment, durable=self.durable_settle) as tx:
            state, in_flight = self._reload(tx, intent.payment, before, mark)
            current = next((i for i in state.intents if i.seq == intent.seq), None)
            settled, records = settle(intent, result, now=now)
            if current is None or (current.open and current.attempts == intent.attempts):
                tx.put_intent(settled)
            else:
                # Recovery claimed it (our lease ran out) or settled it meanwhile: its word stands. Our facts
                # are still recorded below, deduplicated by the intent's key.
                settled = current
            payment = state.base
            for rec in records:
                after, code, note = judged(payment, rec.event, None)
                if rec.finding is not None:
                    code, note = rec.finding, rec.note
                # Otherwise our own proven facts are judged for the record (a contradiction is a finding); that
                # they come after a later webhook is no finding: they are stamped with the intent's time.
                if tx.add_event(evolve(rec, finding=code, note=note), dedup_key(rec.event), now):
                    payment = after
            if in_flight != (payment.pending > 0):
                tx.set_in_flight(intent.payment, payment.pending > 0)
        credited = tuple(r.event for r in records if r.intent == intent.seq)
        intents = tuple(settled if i.seq == settled.seq else i for i in state.intents)
        return settled, reserved_view(State(payment, intents, state.next_seq)), credited

    # -------------------------------------------------------------------------------------- recovery

    def recover(self, client: CaptureClient | Mapping[str, CaptureClient], *,
                older_than: timedelta = timedelta(0)) -> list[Recovery]:
        """Settle every intent past its lease (and, for an `unknown` one, its back-off): read the provider
        back and record what it proves; a provider that deduplicates by key (Vipps) is sent the identical
        request again instead. Also polls payments with a capture in flight (Hellgate `capturing`).
        `client` is one client, or one per provider name. Returns what was done to each intent; an intent
        whose provider has no client here is left alone."""
        clients = {client.provider: client} if isinstance(client, CaptureClient) else dict(client)
        now = self.now()
        out: list[Recovery] = []
        for intent, provider in self.due(older_than, now=now):
            if provider not in clients:
                continue
            out.append(self._recover_one(intent, clients[provider]))
        out.extend(self._refresh_in_flight(clients))
        return out

    def due(self, older_than: timedelta = timedelta(0), *,
            now: datetime | None = None) -> list[tuple[Intent, str]]:
        """(intent, provider) of every intent recovery would take now: open, its lease run out `older_than` ago,
        its back-off passed. Read through the indexes of open intents: O(open intents), not O(payments)."""
        now = now if now is not None else self.now()
        with self._store.reading() as tx:
            found = due(tx.due_intents(now - older_than), now, older_than)
            return [(i, tx.provider_of(i.payment) or "") for i in found]

    def in_flight(self) -> list[tuple[str, str]]:
        """(reference, provider) of every payment with an operation in flight at the provider (Hellgate
        `capturing`), through its partial index."""
        with self._store.reading() as tx:
            return tx.in_flight()

    def _recover_one(self, intent: Intent, client: CaptureClient) -> Recovery:
        # Claim it under the lock (a new lease, one more attempt) unless someone else settled or claimed it.
        with self._store.locked(intent.payment) as tx:
            state, records, mark = self._load_marked(tx, intent.payment)
            current = next(i for i in state.intents if i.seq == intent.seq)
            now = self.now()
            if not current.open or due([current], now) == []:
                return Recovery(current, "skipped", "settled or claimed by another worker")
            claimed = claim(current, now=now, lease=self.lease, owner=self.owner)
            tx.put_intent(claimed)
        found = evidence(claimed, (r.event for r in records))
        if found:
            # A webhook or an import already proved it: settle without asking the provider.
            settled, _, _ = self._settle(claimed, Proven(found, readback=True), state, mark)
            return Recovery(settled, "evidence", "the journal already holds a fact under the intent's key")
        rule = client.retry.rule(client.provider)
        if rule.recovery.value == "resend":
            # The provider deduplicates by key: the identical request replays the first outcome or performs
            # the operation once (Vipps: "a retry with the same key will not cause a duplicate").
            result, _, _ = self._send(client, state.base, claimed)
            if isinstance(result, Failed) and "refused before sending" in result.reason:
                result = self._read_back(client, state.base, claimed)
            action = "resent under the same key"
        else:
            result = self._read_back(client, state.base, claimed)
            action = "read back"
        settled, _, _ = self._settle(claimed, result, state, mark)
        message = {Status.DONE: "done", Status.FAILED: "failed: it did not happen; its reservation is released",
                   Status.UNKNOWN: f"still unknown; next attempt after {settled.next_attempt_at}"}.get(
            settled.status, settled.status.value)
        why = f" ({settled.error})" if settled.error else ""
        return Recovery(settled, action, message + why)

    def _read_back(self, client: CaptureClient, base: Payment, intent: Intent) -> Result:
        try:
            remote = client.fetch(base)
        except ProviderError as exc:
            return Unknown(f"reading the payment back failed: {exc}")
        return judge_readback(intent, base, captured=remote.captured, cancelled=remote.cancelled,
                              refunded=remote.refunded, in_flight=remote.in_flight, state=remote.state,
                              asynchronous=client.retry.rule(client.provider).asynchronous,
                              provider=client.provider, at=self.now())

    def _refresh_in_flight(self, clients: Mapping[str, CaptureClient]) -> list[Recovery]:
        """Poll each payment whose capture the provider accepted but has not finished (Hellgate)."""
        out = []
        for reference, provider in self.in_flight():
            client = clients.get(provider)
            if client is None:
                continue
            state = self.state(reference)
            if state.base.pending == 0:
                with self._store.locked(reference) as tx:  # flagged by the migration's backfill: clear it
                    tx.set_in_flight(reference, False)
                continue
            owner = self._owner_of_flight(state)
            try:
                refreshed = self.refresh(reference, client)
            except ProviderError as exc:
                if owner is not None:
                    out.append(Recovery(owner, "refresh", f"capture still in flight; reading it failed: {exc}"))
                continue
            if owner is not None:
                events = refreshed.events if refreshed is not None else ()
                said = ("the capture in flight settled: " + ", ".join(e.type.value for e in events) if events
                        else "capture still in flight at the provider")
                out.append(Recovery(owner, "refresh", said))
        return out

    @staticmethod
    def _owner_of_flight(state: State) -> Intent | None:
        # One capture per payment is in flight at an asynchronous provider: the last capture intent done.
        return next((i for i in reversed(state.intents) if i.op == "capture" and i.status is Status.DONE), None)

    def refresh(self, reference: str, client: CaptureClient) -> Outcome | None:
        """Poll the capture in flight of one payment (Hellgate `capturing`; `capture --wait`) and record what
        the provider proved, credited to the capture intent that requested it. Returns the client's Outcome
        (no events: still in flight), or None when nothing is in flight. Raises ProviderError when reading
        fails."""
        state = self.state(reference)
        if state.base.pending == 0:
            return None
        owner = self._owner_of_flight(state)
        refreshed = client.refresh(state.base)
        keyed = tuple(evolve(e, key=owner.key) if owner is not None and e.key is None else e for e in refreshed.events)
        now = self.now()
        with self._store.locked(reference) as tx:
            added = [e for e in keyed if tx.add_event(Recorded(e, Source.READBACK, owner.seq if owner is not None
                                                                else None), dedup_key(e), now)]
            after, _ = replay_events(state.base, added)
            tx.set_in_flight(reference, after.pending > 0)
            if owner is not None and keyed and keyed[-1].type is EventType.CAPTURE_FAILED:
                # The capture it requested failed after all: the intent did not capture (as settle() says).
                tx.put_intent(evolve(owner, status=Status.FAILED, error=keyed[-1].reason or "the capture failed",
                                     settled_at=now))
        return evolve(refreshed, events=keyed)

    def unsettled(self, now: datetime | None = None) -> list[Intent]:
        """Open intents past their lease: what `capstate audit --journal` reports as INTENT_UNSETTLED."""
        when = now if now is not None else self.now()
        return [i for i in self.pending() if i.lease_until <= when]


__all__ = ["DEFAULT_LEASE", "ENV", "IngestReport", "Journal", "JournalError", "JournalOutcome",
           "OperationFailed", "OutcomeUnknown", "Recovery", "Source", "Status"]
