"""The journal's rules, pure: begin, settle, attribution, recovery timing and dedup, with no database."""

from __future__ import annotations

from datetime import timedelta

import pytest
from attrs import evolve
from test_client import NOW, T0

import capstate
from capstate import Cancel, Capture, Event, EventType, Payment, Refund
from capstate.providers.journal._lifecycle import (
    Failed,
    Intent,
    Proven,
    Refuse,
    Replay,
    Source,
    Start,
    State,
    Status,
    Unknown,
    backoff,
    begin,
    claim,
    dedup_key,
    derive_key,
    due,
    judge_readback,
    reserved_view,
    settle,
)

LEASE = timedelta(minutes=5)


def base(provider: str = "vipps", captured: int = 0) -> Payment:
    p = Payment.authorized_for(capstate.load_spec(provider), "order-10001", amount=100000, currency="NOK", at=T0)
    if captured:
        p = capstate.apply(p, Event("order-10001", EventType.CAPTURED, T0, captured, "NOK", key="old"))
    return p


def intent(seq: int = 1, op: str = "capture", amount: int = 25000, *, status: Status = Status.PENDING,
           key: str | None = None, requested: int | None = 25000) -> Intent:
    return Intent("order-10001", seq, op, requested, amount, "NOK", key or derive_key("order-10001", op, seq),
                  key is not None, False, status, 1, NOW, NOW + LEASE, "w1")


def start(state: State, command: capstate.Command) -> Start | Replay | Refuse:
    return begin(state, command, now=NOW, lease=LEASE, owner="w2")  # type: ignore[arg-type]


def test_a_new_capture_starts_an_intent_with_a_key_from_its_identity() -> None:
    step = start(State(base(), (), 3), Capture(at=NOW, amount=25000))
    assert isinstance(step, Start) and not step.reopened
    i = step.intent
    assert (i.seq, i.amount, i.key, i.status, i.lease_until) == (3, 25000, derive_key("order-10001", "capture", 3),
                                                                 Status.PENDING, NOW + LEASE)
    # The key never depends on the amount.
    other = start(State(base(), (), 3), Capture(at=NOW, amount=40000))
    assert isinstance(other, Start) and other.intent.key == i.key


def test_an_open_capture_reserves_its_amount_and_blocks_a_second_one() -> None:
    state = State(base(), (intent(),), 2)
    view = reserved_view(state)
    assert (view.pending, view.capturable) == (25000, 75000)
    step = start(state, Capture(at=NOW, amount=10000))
    assert isinstance(step, Refuse) and step.decision.codes == (capstate.Code.CAPTURE_IN_FLIGHT,)
    cancel = start(state, Cancel(at=NOW))
    assert isinstance(cancel, Refuse) and cancel.decision.codes == (capstate.Code.CAPTURE_IN_FLIGHT,)
    # Settled, it reserves nothing.
    assert reserved_view(State(base(), (evolve(intent(), status=Status.FAILED),), 2)).capturable == 100000


def test_a_reservation_never_exceeds_the_room_the_proven_events_leave() -> None:
    # Our 40,000 is in flight (outcome unknown) when someone else's 65,000 is proven through the inbox:
    # the provider refuses to capture past the authorization, so ours can have taken at most 35,000.
    state = State(base(captured=65000), (intent(amount=40000, requested=40000),), 2)
    view = reserved_view(state)
    assert (view.pending, view.capturable) == (35000, 0)
    refused = start(state, Capture(at=NOW, amount=1000))
    assert isinstance(refused, Refuse) and capstate.Code.CAPTURE_IN_FLIGHT in refused.decision.codes


def test_open_refunds_and_cancels_exclude_each_other() -> None:
    paid = base(captured=50000)
    refund_open = State(paid, (intent(op="refund", amount=20000),), 2)
    assert reserved_view(refund_open).refundable == 30000
    step = start(refund_open, Refund(at=NOW, amount=1000))
    assert isinstance(step, Refuse) and step.decision.codes == (capstate.Code.OPERATION_IN_FLIGHT,)
    assert isinstance(start(refund_open, Capture(at=NOW, amount=1000)), Start)
    cancel_open = State(paid, (intent(op="cancel", amount=50000, requested=None),), 2)
    for command in (Capture(at=NOW, amount=1000), Refund(at=NOW, amount=1000)):
        refused = start(cancel_open, command)
        assert isinstance(refused, Refuse) and refused.decision.codes == (capstate.Code.OPERATION_IN_FLIGHT,)


def test_a_caller_key_is_replayed_conflicts_or_is_retried_by_status() -> None:
    done = intent(key="parcel-1", status=Status.DONE)
    assert isinstance(start(State(base(), (done,), 2), Capture(at=NOW, amount=25000, key="parcel-1")), Replay)
    for other in (Capture(at=NOW, amount=30000, key="parcel-1"), Capture(at=NOW, amount=25000, key="parcel-1",
                                                                          final=True),
                  Refund(at=NOW, amount=25000, key="parcel-1")):
        step = start(State(base(captured=25000), (done,), 2), other)
        assert isinstance(step, Refuse) and step.decision.codes == (capstate.Code.IDEMPOTENCY_KEY_CONFLICT,)
    failed = evolve(done, status=Status.FAILED)
    again = start(State(base(), (failed,), 2), Capture(at=NOW, amount=25000, key="parcel-1"))
    assert isinstance(again, Start) and again.reopened and (again.intent.seq, again.intent.attempts) == (1, 2)


def test_settle_records_provenance_and_releases_or_reschedules() -> None:
    i = intent()
    captured = Event("order-10001", EventType.CAPTURED, NOW, 25000, "NOK", key=i.key)
    done, records = settle(i, Proven((captured,), readback=True), now=NOW)
    assert done.status is Status.DONE and [(r.source, r.intent) for r in records] == [(Source.READBACK, 1)]
    failed, none = settle(i, Failed("declined"), now=NOW)
    assert failed.status is Status.FAILED and none == () and not failed.open
    outside = Event("order-10001", EventType.CAPTURED, NOW, 40000, "NOK")
    unknown, oob = settle(i, Unknown("timeout", (outside,)), now=NOW)
    assert unknown.status is Status.UNKNOWN and unknown.next_attempt_at == NOW + backoff(1)
    assert [(r.intent, r.finding) for r in oob] == [(None, capstate.Code.OUT_OF_BAND)]


@pytest.mark.parametrize(("remote", "in_flight", "expected"), [
    (25000, False, Proven), (0, False, Failed), (0, True, Unknown), (40000, False, Unknown), (-1, False, Unknown)])
def test_a_read_back_credits_only_an_exact_growth(remote: int, in_flight: bool, expected: type) -> None:
    result = judge_readback(intent(), base(), captured=remote, cancelled=0, refunded=0, in_flight=in_flight,
                            state="x", asynchronous=False, provider="bambora", at=NOW)
    assert isinstance(result, expected)
    if isinstance(result, Proven):
        assert result.events[0].key == intent().key
    if remote == 40000:
        assert isinstance(result, Unknown) and result.observed[0].key is None


def test_recovery_takes_intents_past_their_lease_and_back_off() -> None:
    pending = intent()
    assert due([pending], NOW) == [] and due([pending], NOW + LEASE) == [pending]
    assert due([pending], NOW + LEASE, older_than=timedelta(minutes=1)) == []
    unknown = evolve(pending, status=Status.UNKNOWN, next_attempt_at=NOW + LEASE + timedelta(minutes=1))
    assert due([unknown], NOW + LEASE) == [] and due([unknown], NOW + LEASE + timedelta(minutes=1)) == [unknown]
    claimed = claim(pending, now=NOW + LEASE, lease=LEASE, owner="r")
    assert (claimed.attempts, claimed.owner) == (2, "r") and due([claimed], NOW + LEASE) == []
    assert [backoff(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120] and backoff(99) == timedelta(hours=1)


def test_dedup_is_by_key_else_by_content() -> None:
    a = Event("order-10001", EventType.CAPTURED, NOW, 25000, "NOK", key="k", provider="vipps")
    assert dedup_key(a) == dedup_key(evolve(a, at=T0, reason="webhook"))
    b = evolve(a, key=None)
    assert dedup_key(b) != dedup_key(evolve(b, amount=25001)) and dedup_key(b) == dedup_key(evolve(b, reason="x"))
