"""The journal against a model, on a real SQLite file and a real PostgreSQL schema (Hypothesis stateful).

The provider is a small in-memory ledger (`Ledger`) standing in for the network: it is not what is under
test. It captures for real (its total grows), deduplicates by key when it has idempotency, and can answer
ok, no, or nothing (the request committed or not, unseen). The journal is the real one. The rules drive
captures under caller keys and derived ones, external events, and recovery; the invariants are the
issue's: the provider never captures more than authorized, never captures a key twice, and once
recovery has run, the journal equals the provider's ledger with no intent open.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from journals import journal_url
from test_client import NOW, T0

from capstate import Capture, Event, EventType, Payment, ProviderError, apply
from capstate.providers import RemoteStatus
from capstate.providers.client import Outcome, Refused
from capstate.providers.journal import Journal, OperationFailed, OutcomeUnknown, Status
from capstate.providers.retry import ProviderRule, Recovery, RetryPolicy

REFS = ("order-10001", "order-10002")
AUTHORIZED = 100000


class Ledger:
    """The provider's side: what it committed, per payment and key. Duck-types the CaptureClient the
    journal calls (`provider`, `retry`, `capture`, `fetch`)."""

    provider = "vipps"

    def __init__(self, idempotent: bool):
        rules = {"vipps": ProviderRule(Recovery.RESEND if idempotent else Recovery.RECONCILE, "test")}
        self.retry = RetryPolicy(rules=rules)
        self.idempotent = idempotent
        self.captured = dict.fromkeys(REFS, 0)
        self.keys: dict[tuple[str, str], int] = {}
        self.sends = 0
        self.answer = "ok"  # ok | no | lost-committed | lost

    def capture(self, payment: Payment, command: Capture) -> Outcome:
        self.sends += 1
        ref, key, amount = payment.reference, command.key, command.amount
        assert key is not None and amount is not None
        answer = self.answer
        if self.idempotent and (ref, key) in self.keys:
            answer = "replay"
        elif answer in ("ok", "lost-committed"):
            if self.captured[ref] + amount > AUTHORIZED:
                raise ProviderError("Capture amount too high", provider="vipps", status=400)
            self.captured[ref] += amount
            assert (ref, key) not in self.keys, f"key {key} captured twice"
            self.keys[(ref, key)] = amount
        if answer == "no":
            raise ProviderError("declined", provider="vipps", status=400)
        if answer.startswith("lost"):
            raise ProviderError("timeout", provider="vipps", reconcile=True)
        event = Event(ref, EventType.CAPTURED, command.at, self.keys[(ref, key)], "NOK", provider="vipps", key=key)
        return Outcome(apply(payment, event), None, (event,), sends=1)

    def fetch(self, payment: Payment) -> RemoteStatus:
        return RemoteStatus("vipps", payment.reference, "AUTHORIZED", "NOK", AUTHORIZED,
                            self.captured[payment.reference], 0, 0)


class JournalMachine(RuleBasedStateMachine):
    backend = "sqlite"
    idempotent = True

    def __init__(self) -> None:
        super().__init__()
        self._url_cm: Any = None

    @initialize()
    def open(self) -> None:
        import tempfile

        self._tmp = tempfile.TemporaryDirectory()
        opening = journal_url(self.backend, Path(self._tmp.name))
        url = opening.__enter__()  # skips (or fails under CI) without a PostgreSQL server
        self._url_cm = opening  # only once it is open: teardown then closes what exists
        self.now = NOW
        self.journal = Journal(url, clock=lambda: self.now, lease=timedelta(minutes=1))
        self.ledger = Ledger(self.idempotent)
        self.journal.ingest([Event(r, EventType.AUTHORIZED, T0, AUTHORIZED, "NOK", provider="vipps") for r in REFS])
        self.done_keys: dict[tuple[str, str], int] = {}

    def teardown(self) -> None:
        if self._url_cm is not None:
            self.journal.close()
            self._url_cm.__exit__(None, None, None)
            self._tmp.cleanup()

    @rule(ref=st.sampled_from(REFS), amount=st.sampled_from([10000, 25000, 40000]),
          key=st.one_of(st.none(), st.sampled_from(["parcel-1", "parcel-2", "parcel-3"])),
          answer=st.sampled_from(["ok", "ok", "no", "lost-committed", "lost"]))
    def capture(self, ref: str, amount: int, key: str | None, answer: str) -> None:
        self.ledger.answer = answer
        before = self.ledger.sends
        try:
            out = self.journal.capture(ref, amount, key=key, client=self.ledger)  # type: ignore[arg-type]
        except Refused as exc:
            note(f"capture {ref} {amount} key={key}: refused {exc.codes}")
            assert self.ledger.sends == before, "a refusal sent a request"
            return
        except (OperationFailed, OutcomeUnknown) as exc:
            note(f"capture {ref} {amount} key={key} ({answer}): {type(exc).__name__}")
            return
        note(f"capture {ref} {amount} key={key}: {out.status} replayed={out.replayed}")
        if out.replayed:
            assert self.ledger.sends == before
        if key is not None and out.intent is not None and out.status is Status.DONE:
            self.done_keys[(ref, key)] = out.intent.amount

    @rule(ref=st.sampled_from(REFS), amount=st.sampled_from([5000, 10000]))
    def outside_capture(self, ref: str, amount: int) -> None:
        # Someone else's capture at the provider, and its webhook (any order, maybe twice).
        if self.ledger.captured[ref] + amount > AUTHORIZED:
            return
        self.ledger.captured[ref] += amount
        key = f"outside-{len(self.ledger.keys)}"
        self.ledger.keys[(ref, key)] = amount
        e = Event(ref, EventType.CAPTURED, self.now, amount, "NOK", provider="vipps", key=key)
        self.journal.ingest([e, e])
        note(f"outside capture {ref} {amount}")

    @rule()
    def time_passes(self) -> None:
        self.now += timedelta(minutes=3)

    @precondition(lambda self: bool(self.journal.pending()))
    @rule()
    def recover(self) -> None:
        self.ledger.answer = "ok"
        self.now += timedelta(hours=2)
        done = self.journal.recover({"vipps": self.ledger})  # type: ignore[dict-item]
        note(f"recover: {[(r.intent.payment, r.intent.seq, r.intent.status.value) for r in done]}")

    @invariant()
    def provider_never_over_captures(self) -> None:
        for ref in REFS:
            assert self.ledger.captured[ref] <= AUTHORIZED

    @invariant()
    def journal_never_claims_more_than_the_provider_has(self) -> None:
        for ref in REFS:
            state = self.journal.state(ref)
            assert state.base.captured <= self.ledger.captured[ref]
            view = self.journal.payment(ref)
            assert view.capturable >= 0
            # Open intents plus what is proven cover everything the provider captured: no capture unseen.
            open_amount = sum(i.amount for i in state.open_intents())
            assert self.ledger.captured[ref] <= state.base.captured + open_amount, (state, self.ledger.captured)

    @invariant()
    def a_caller_key_is_one_capture(self) -> None:
        for (ref, key), amount in self.done_keys.items():
            assert self.ledger.keys.get((ref, key)) == amount

    def check_settled(self) -> None:
        for _ in range(4):
            if not self.journal.pending():
                break
            self.ledger.answer = "ok"
            self.now += timedelta(hours=2)
            self.journal.recover({"vipps": self.ledger})  # type: ignore[dict-item]
        assert self.journal.pending() == []
        for ref in REFS:
            assert self.journal.state(ref).base.captured == self.ledger.captured[ref]


def _machine(backend: str, idempotent: bool) -> type[JournalMachine]:
    class Machine(JournalMachine):
        pass

    Machine.backend = backend
    Machine.idempotent = idempotent

    original = Machine.teardown

    def teardown(self: JournalMachine) -> None:
        try:
            if self._url_cm is not None:
                self.check_settled()
        finally:
            original(self)

    Machine.teardown = teardown  # type: ignore[method-assign]
    Machine.__name__ = f"Journal{backend.title()}{'Resend' if idempotent else 'ReadBack'}"
    return Machine


def _case(backend: str, idempotent: bool) -> Any:
    case = _machine(backend, idempotent).TestCase
    # Every example opens a journal (a PostgreSQL schema): fewer of them than the profile's default.
    case.settings = settings(max_examples=min(settings().max_examples, 30), stateful_step_count=15, deadline=None)
    return case


TestSqliteResend = _case("sqlite", True)
TestSqliteReadBack = _case("sqlite", False)
TestPostgresResend = _case("postgresql", True)
TestPostgresReadBack = _case("postgresql", False)
