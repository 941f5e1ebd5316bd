"""The emulator's pure core: payments and their ledgers, the virtual clock, faults, and request handling.

Theory of operation. Every answer is a function of (state, request, now): `Emulator.route` matches a
request, authenticates it, parses it and takes the fault armed for it, all without committing anything;
`Emulator.run` then executes it at `now` and returns a `Reply` (the answer, and what the transport must do
with it: hold it for `hold` seconds, or drop the connection). The ASGI layer (`_asgi.py`) only reads
bodies, sleeps and writes; tests drive this module directly, without sockets.

Rules:
1. Money moves only through `commit`, which applies each event with `capstate.apply` on the provider's
   spec. An event the spec refuses raises and leaves the payment as it was.
2. Time is an argument. The virtual clock (`Clock`) turns a wall-clock reading into "now"; the core fires
   expiry exactly as `simulate` does (an `expired` event at `expires_at`, where the spec has the
   transition) whenever a payment is read at or past its expiry, and settles Hellgate's captures after
   `settle_after` the same way.
3. A fault is taken for the next matching request only after the request authenticated and parsed: a
   malformed request never uses up a fault.
4. Every request that reaches a known payment is recorded in its ledger, with whether it committed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from attrs import define, field, frozen

from ..._engine import apply, replay
from ..._errors import CapstateError, InvalidTransition
from ..._money import exponent
from ..._spec import Spec
from ..._time import format_instant, parse_instant
from ..._values import Event, EventType, Flow, Payment
from .._http import Headers
from ._base import Answer, Call, Context, ControlError, Problem, ProviderEmulator, Route, WireRequest

log = logging.getLogger("capstate.emulator")

MAX_BODY = 64 * 1024  # every documented request is a few hundred bytes
MAX_FAULT_COUNT = 1_000_000
MAX_FAULT_SECONDS = 3600.0


class FaultKind(StrEnum):
    BEFORE_500 = "500_before_commit"
    AFTER_500 = "500_after_commit"
    TIMEOUT = "timeout_after_commit"
    DROP = "drop_after_commit"
    IN_FLIGHT = "409_in_flight"
    RATE_LIMIT = "429"
    LATENCY = "latency"


# Faults that answer without executing the request: nothing is committed.
_WITHOUT_COMMIT = frozenset({FaultKind.BEFORE_500, FaultKind.IN_FLIGHT, FaultKind.RATE_LIMIT})
DEFAULT_TIMEOUT_SECONDS = 35.0  # past CaptureClient's 30 s read timeout
FAULT_OPS = ("capture", "cancel", "refund", "get", "*")


@define
class Fault:
    provider: str
    op: str
    kind: FaultKind
    count: int
    seconds: float | None = None
    retry_after: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"provider": self.provider, "op": self.op, "kind": self.kind.value, "count": self.count}
        if self.seconds is not None:
            out["seconds"] = self.seconds
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


@define
class Record:
    """One request a payment received, as the provider's side saw it."""

    seq: int
    op: str
    key: str | None
    amount: int | None
    at: datetime
    status: int
    committed: bool
    fault: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "op": self.op, "key": self.key, "amount": self.amount, "at": format_instant(self.at),
                "status": self.status, "committed": self.committed, "fault": self.fault}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Record:
        return cls(d["seq"], d["op"], d["key"], d["amount"], parse_instant(d["at"]), d["status"], d["committed"],
                   d["fault"])


@define
class Entry:
    """One payment on the provider's side: the engine's aggregate, its events, the requests it got, and a
    JSON-able `extra` dict the plug-in owns (Pipwave's pw_id, Vipps's idempotency records, ...)."""

    provider: str
    reference: str
    payment: Payment
    events: list[Event] = field(factory=list)
    requests: list[Record] = field(factory=list)
    extra: dict[str, Any] = field(factory=dict)
    settle_due: datetime | None = None

    def ledger(self, plugin: ProviderEmulator | None = None) -> dict[str, Any]:
        p = self.payment
        out: dict[str, Any] = {"provider": self.provider, "reference": self.reference, "state": p.state,
                               "currency": p.currency, "authorized": p.authorized, "captured": p.captured,
                               "cancelled": p.cancelled, "refunded": p.refunded, "pending": p.pending,
                               "expires_at": format_instant(p.expires_at) if p.expires_at else None,
                               "requests": [r.to_dict() for r in self.requests],
                               "events": [e.to_dict() for e in self.events]}
        if plugin is not None:
            out.update(plugin.view(self))
        return out


@define
class Clock:
    """The virtual clock: `anchor` at wall time `wall` (UNIX seconds), running at real speed unless frozen."""

    anchor: datetime
    wall: float
    frozen: bool = False

    def now(self, wall: float) -> datetime:
        if self.frozen:
            return self.anchor
        return self.anchor + timedelta(seconds=max(wall - self.wall, 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {"anchor": format_instant(self.anchor), "wall": self.wall, "frozen": self.frozen}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Clock:
        return cls(parse_instant(d["anchor"]), float(d["wall"]), bool(d["frozen"]))


class Store(Protocol):
    """Where the state is kept between restarts (`_store.SqliteStore`); None keeps it in memory only."""

    def save_entry(self, entry: Entry) -> None: ...
    def save_meta(self, meta: Mapping[str, Any]) -> None: ...
    def load(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None]: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...


@frozen
class Dispatch:
    """A matched, authenticated, parsed request, with the fault it took; or a ready `answer`."""

    provider: str
    op: str
    answer: Answer | None = None
    route: Route | None = None
    call: Call | None = None
    fault: Fault | None = None


@frozen
class Reply:
    """What to send: `answer`, after holding it `hold` seconds; `drop`: close the connection instead."""

    answer: Answer
    hold: float = 0.0
    drop: bool = False
    deferred: tuple[Callable[[], Any], ...] = ()


class Emulator:
    """All emulated payments, the clock and the faults. Not thread-safe: the ASGI app runs it on one loop."""

    def __init__(self, plugins: Mapping[str, ProviderEmulator], specs: Mapping[str, Spec], *, clock: Clock,
                 credentials: Mapping[str, Mapping[str, str]] | None = None,
                 settings: Mapping[str, Mapping[str, Any]] | None = None, store: Store | None = None,
                 max_body: int = MAX_BODY):
        self.plugins = dict(plugins)
        self.specs = dict(specs)
        self.credentials = {name: dict(plugin.credentials) for name, plugin in self.plugins.items()}
        for name, creds in (credentials or {}).items():
            if name in self.credentials:
                self.credentials[name].update(creds)
        self.settings = {name: dict(values) for name, values in (settings or {}).items()}
        self.max_body = max_body
        self.store = store
        self.clock = clock
        self.entries: dict[tuple[str, str], Entry] = {}
        self.faults: list[Fault] = []
        self.provider_data: dict[str, dict[str, Any]] = {}
        self.seq = 0
        # Deferred jobs (webhooks) of commits made outside a request's Context (the clock's expiry, a
        # settlement, a lapse found on read): sent with the next answer, or after the control request.
        self.outbox: list[Callable[[], Any]] = []
        if store is not None:
            self._load(store)

    # -- persistence

    def _load(self, store: Store) -> None:
        rows, meta = store.load()
        if meta is not None:
            self.clock = Clock.from_dict(meta["clock"])
            self.seq = int(meta["seq"])
            self.provider_data = dict(meta.get("provider_data", {}))
        for row in rows:
            provider = row["provider"]
            if provider not in self.specs:
                continue  # a provider not enabled this run: its payments stay in the file, untouched
            events = [Event.from_dict(e) for e in row["events"]]
            spec = self.specs[provider]
            payment = replay(events, spec) if events else Payment.new(spec, row["reference"])
            due = row.get("settle_due")
            self.entries[(provider, row["reference"])] = Entry(
                provider, row["reference"], payment, events, [Record.from_dict(r) for r in row["requests"]],
                dict(row.get("extra", {})), parse_instant(due) if due else None)

    def _save(self, entry: Entry) -> None:
        if self.store is not None:
            self.store.save_entry(entry)

    def save_meta(self) -> None:
        if self.store is not None:
            self.store.save_meta({"clock": self.clock.to_dict(), "seq": self.seq,
                                  "provider_data": self.provider_data})

    # -- the clock

    def now(self, wall: float) -> datetime:
        return self.clock.now(wall)

    def set_clock(self, at: datetime, wall: float, *, frozen: bool | None = None) -> datetime:
        """Move the virtual clock to `at` (never backwards: a ledger's history cannot be undone), then fire
        every expiry and settlement due."""
        current = self.now(wall)
        if at < current:
            raise ControlError(f"the clock is at {format_instant(current)}; it cannot go back to "
                               f"{format_instant(at)}", 409)
        self.clock = Clock(at, wall, self.clock.frozen if frozen is None else frozen)
        self.tick(at)
        self.save_meta()
        return at

    def tick(self, now: datetime) -> None:
        """Fire expiry and settlements due at `now` on every payment."""
        for entry in list(self.entries.values()):
            self._due(entry, now)

    def _due(self, entry: Entry, now: datetime) -> None:
        events: list[Event] = []
        if entry.settle_due is not None and now >= entry.settle_due and entry.payment.pending:
            events.append(Event(entry.reference, EventType.CAPTURED, entry.settle_due, entry.payment.pending,
                                entry.payment.currency, provider=entry.provider))
        if events:
            self._commit(entry, events, now, None)
        expires = entry.payment.expires_at
        if expires is not None and now >= expires:
            # As simulate's lapse: an `expired` event at the expiry instant, where the spec has the transition
            # from the payment's state; elsewhere (captured, cancelled, already expired) nothing lapses.
            lapse = Event(entry.reference, EventType.EXPIRED, expires, provider=entry.provider)
            with contextlib.suppress(InvalidTransition):
                self._commit(entry, [lapse], now, None)
        ctx = Context(self, entry.provider, now)
        self.plugins[entry.provider].due(ctx, entry, now)
        self.outbox.extend(ctx.deferred)

    # -- payments

    def entry(self, provider: str, reference: str, now: datetime) -> Entry | None:
        entry = self.entries.get((provider, reference))
        if entry is not None:
            self._due(entry, now)
        return entry

    def new_entry(self, provider: str, reference: str, now: datetime) -> Entry:
        if (provider, reference) in self.entries:
            raise ControlError(f"{provider} payment {reference!r} exists", 409)
        entry = Entry(provider, reference, Payment.new(self.specs[provider], reference))
        self.entries[(provider, reference)] = entry
        self._save(entry)
        return entry

    def seed(self, provider: str, reference: str, amount: int, currency: str, *, at: datetime,
             flow: Flow | None = None) -> Entry:
        """An authorized payment (the control API's POST /_emulator/payments). Raises ControlError."""
        if provider not in self.plugins:
            raise ControlError(f"provider {provider!r} is not emulated here (enabled: {', '.join(self.plugins)})")
        if (provider, reference) in self.entries:
            raise ControlError(f"{provider} payment {reference!r} exists", 409)
        try:
            exponent(currency)
        except (CapstateError, ValueError) as exc:
            raise ControlError(f"currency: {exc}") from None
        spec = self.specs[provider]
        event = Event(reference, EventType.AUTHORIZED, at, amount, currency, provider=provider, flow=flow)
        try:
            payment = apply(Payment.new(spec, reference), event)
        except (InvalidTransition, CapstateError) as exc:
            raise ControlError(f"the {provider} spec refuses this authorization: {exc}") from None
        entry = Entry(provider, reference, payment, [event])
        self.entries[(provider, reference)] = entry
        self._save(entry)
        self.save_meta()
        self._due(entry, at)
        return entry

    def commit(self, entry: Entry, events: Sequence[Event], now: datetime, *,
               context: Context | None = None) -> Payment:
        return self._commit(entry, events, now, context)

    def _commit(self, entry: Entry, events: Sequence[Event], now: datetime, context: Context | None) -> Payment:
        payment = entry.payment
        for event in events:
            payment = apply(payment, event)  # raises InvalidTransition: nothing is recorded
        entry.payment = payment
        entry.events.extend(events)
        if payment.pending and entry.settle_due is None:
            delay = self.settings.get(entry.provider, {}).get("settle_after")
            if isinstance(delay, timedelta):
                entry.settle_due = now + delay
        if not payment.pending:
            entry.settle_due = None
        self._save(entry)
        plugin = self.plugins[entry.provider]
        ctx = context if context is not None else Context(self, entry.provider, now)
        plugin.observe(ctx, entry, events)
        if context is None:
            self.outbox.extend(ctx.deferred)
        return payment

    def settle(self, provider: str, reference: str | None, outcome: str, now: datetime,
               reason: str = "settled by the emulator's control API") -> list[Entry]:
        """Settle the pending (asynchronous) captures of `provider`: one payment, or all of them."""
        if outcome not in ("captured", "failed"):
            raise ControlError(f"outcome must be 'captured' or 'failed', got {outcome!r}")
        if reference is not None:
            entry = self.entry(provider, reference, now)
            if entry is None:
                raise ControlError(f"no {provider} payment {reference!r}", 404)
            if not entry.payment.pending:
                raise ControlError(f"{provider} payment {reference!r} has no capture in flight "
                                   f"(state {entry.payment.state!r})", 409)
            targets = [entry]
        else:
            targets = [e for (p, _), e in self.entries.items() if p == provider and e.payment.pending]
        for entry in targets:
            p = entry.payment
            if outcome == "captured":
                event = Event(entry.reference, EventType.CAPTURED, now, p.pending, p.currency, provider=provider)
            else:
                event = Event(entry.reference, EventType.CAPTURE_FAILED, now, provider=provider, reason=reason)
            self._commit(entry, [event], now, None)
        return targets

    def reset(self) -> None:
        self.entries.clear()
        self.faults.clear()
        self.provider_data.clear()
        self.seq = 0
        if self.store is not None:
            self.store.clear()
        self.save_meta()

    # -- faults

    def add_fault(self, fault: Fault) -> None:
        if fault.provider not in self.plugins:
            raise ControlError(f"provider {fault.provider!r} is not emulated here")
        self.faults.append(fault)

    def take_fault(self, provider: str, op: str) -> Fault | None:
        for i, fault in enumerate(self.faults):
            if fault.provider == provider and fault.op in (op, "*"):
                fault.count -= 1
                if fault.count <= 0:
                    del self.faults[i]
                return Fault(fault.provider, fault.op, fault.kind, 1, fault.seconds, fault.retry_after)
        return None

    # -- requests

    def route(self, provider: str, method: str, raw_path: str, *, headers: Headers | None = None, body: bytes = b"",
              query: Mapping[str, str] | None = None, now: datetime) -> Dispatch:
        """Match, authenticate and parse a request under `/<provider>`; take its fault. Commits nothing."""
        plugin = self.plugins[provider]
        ctx = Context(self, provider, now)
        allowed: list[str] = []
        for route in plugin.routes:
            try:
                params = route.match(raw_path)
            except UnicodeDecodeError:
                return Dispatch(provider, "?", plugin.problem(Problem.MALFORMED, "a path segment is not UTF-8"))
            if params is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            request = WireRequest(method, raw_path, params, dict(query or {}), headers or Headers(), body)
            denied = plugin.authenticate(ctx, request, route)
            if denied is not None:
                return Dispatch(provider, route.op, denied, route)
            if len(body) > self.max_body:
                return Dispatch(provider, route.op, plugin.problem(
                    Problem.TOO_LARGE, f"the body is {len(body)} bytes; the limit is {self.max_body}"), route)
            parsed = route.parse(ctx, request)
            if isinstance(parsed, Answer):
                return Dispatch(provider, route.op, parsed, route)
            op = parsed.op or route.op
            return Dispatch(provider, op, None, route, parsed, self.take_fault(provider, op))
        if allowed:
            return Dispatch(provider, "?", plugin.problem(Problem.METHOD, f"{method} is not allowed here; "
                                                                          f"use {', '.join(sorted(set(allowed)))}"))
        return Dispatch(provider, "?", plugin.problem(Problem.NO_ROUTE, f"no {provider} route {method} {raw_path}"))

    def run(self, dispatch: Dispatch, now: datetime) -> Reply:
        """Execute a dispatched request at `now`, apply its fault, and record it in the payment's ledger."""
        if dispatch.answer is not None:
            return Reply(dispatch.answer, deferred=self.drain())
        assert dispatch.route is not None and dispatch.call is not None
        plugin = self.plugins[dispatch.provider]
        ctx = Context(self, dispatch.provider, now)
        call, fault = dispatch.call, dispatch.fault
        kind = fault.kind if fault is not None else None
        before = self._events_of(dispatch.provider, call.reference)
        if kind in _WITHOUT_COMMIT:
            assert fault is not None
            answer = self._fault_answer(plugin, fault)
        else:
            answer = dispatch.route.execute(ctx, call)
        committed = self._events_of(dispatch.provider, call.reference) > before
        hold, drop = 0.0, False
        if kind is FaultKind.AFTER_500:
            assert fault is not None
            answer = self._fault_answer(plugin, fault)
        elif kind is FaultKind.TIMEOUT:
            assert fault is not None
            hold = fault.seconds if fault.seconds is not None else DEFAULT_TIMEOUT_SECONDS
        elif kind is FaultKind.DROP:
            drop = True
        self._record(dispatch, call, now, status=answer.status, committed=committed, kind=kind)
        return Reply(answer, hold, drop, tuple(ctx.deferred) + self.drain())

    def drain(self) -> tuple[Callable[[], Any], ...]:
        """The deferred jobs of commits made outside a request, once."""
        jobs = tuple(self.outbox)
        self.outbox.clear()
        return jobs

    def _events_of(self, provider: str, reference: str | None) -> int:
        entry = self.entries.get((provider, reference)) if reference is not None else None
        return len(entry.events) if entry is not None else 0

    @staticmethod
    def _fault_answer(plugin: ProviderEmulator, fault: Fault) -> Answer:
        if fault.kind is FaultKind.IN_FLIGHT:
            return plugin.problem(Problem.IN_FLIGHT, "another operation is modifying the payment (injected fault)")
        if fault.kind is FaultKind.RATE_LIMIT:
            return plugin.problem(Problem.RATE_LIMITED, "too many requests (injected fault)",
                                  retry_after=fault.retry_after if fault.retry_after is not None else 1)
        return plugin.problem(Problem.SERVER_ERROR, f"internal server error (injected fault {fault.kind.value})")

    def _record(self, dispatch: Dispatch, call: Call, now: datetime, *, status: int, committed: bool,
                kind: FaultKind | None) -> None:
        if call.reference is None:
            return
        entry = self.entries.get((dispatch.provider, call.reference))
        if entry is None:
            return
        self.seq += 1
        entry.requests.append(Record(self.seq, dispatch.op, call.key, call.amount, now, status, committed,
                                     kind.value if kind is not None else None))
        self._save(entry)
        self.save_meta()

    def ledgers(self, provider: str | None = None) -> Iterable[Entry]:
        return (e for (p, _), e in self.entries.items() if provider is None or p == provider)
