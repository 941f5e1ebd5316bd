"""Invariants that hold on every spec, for any history and any command (DESIGN.md section 6).

- Money adds up after every event `apply` accepts: 0 <= captured <= authorized + allowance,
  captured + cancelled <= authorized + allowance, refunded <= captured, pending >= 0; an event `apply`
  refuses changes nothing; terminal states absorb.
- `decide` is total and pure: any command on any reachable payment gives a Decision (never an
  exception), the same one twice, and leaves the payment alone. A refusal has violations and no
  `after`; an allowance has `after` and no violations, and applying its event gives that `after`.
- An allowed decision keeps the money rules whatever the spec's transitions say: no capture beyond
  what is capturable, at or after expiry, while another is in flight, or without a key the provider
  requires; nothing is captured or released once the authorization has lapsed.
- `observe` records every fact (the audit's view) and agrees with `apply` on legal ones.

The shipped specs have no over-capture allowance, so for them the bounds are exactly authorized;
the overridden specs include one with 10 %.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from attrs import evolve
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    INT64_MAX,
    OVERRIDES,
    SOURCES,
    SPEC_NAMES,
    authorized_payments,
    commands,
    events,
    load_case,
    reachable_payments,
    specs_from,
)

import capstate
from capstate import (
    Authorize,
    Cancel,
    Capture,
    Code,
    CommandError,
    Decision,
    Event,
    EventType,
    InvalidTransition,
    Payment,
    Refund,
)

REF = "3b2f0c1e-6a4d-4f7b-9c2e-8d1a5e7f0b34"  # a reference every shipped spec accepts (Hellgate: a UUID)
T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)



def allowance_of(p: Payment) -> int:
    """The over-capture allowance, in integer arithmetic (not `Policy.allowance`, which is under test):
    exact at int64 scale, where a float product is off by whole units."""
    return p.authorized * p.spec.policy.over_capture_percent // 100


def money_problem(p: Payment) -> str | None:
    """Which money invariant `p` breaks, or None."""
    allowance = allowance_of(p)
    checks = {
        "0 <= captured <= authorized + allowance": 0 <= p.captured <= p.authorized + allowance,
        "captured + cancelled <= authorized + allowance": p.captured + p.cancelled <= p.authorized + allowance,
        "0 <= refunded <= captured": 0 <= p.refunded <= p.captured,
        "pending >= 0, cancelled >= 0": p.pending >= 0 and p.cancelled >= 0,
        "counts >= 0": p.capture_count >= 0 and p.refund_count >= 0,
    }
    broken = [rule for rule, holds in checks.items() if not holds]
    if not broken:
        return None
    return f"{p.spec.name} {p.state}: {p.summary()} pending {p.pending} breaks {'; '.join(broken)}"


def assert_money_adds_up(p: Payment) -> None:
    problem = money_problem(p)
    assert problem is None, problem


# --------------------------------------------------------------------------------------------- apply


@pytest.mark.parametrize("source", SOURCES)
@given(data=st.data())
def test_money_adds_up_along_any_history(source: str, data: st.DataObject) -> None:
    spec = data.draw(specs_from(source), label="spec")
    start = data.draw(st.sampled_from(["new", "authorized", "authorized"]), label="start")
    p = Payment.new(spec, REF) if start == "new" else data.draw(authorized_payments(spec), label="payment")
    clock = p.authorized_at
    for i in range(data.draw(st.integers(1, 15), label="events")):
        e = data.draw(events(p, not_before=clock, fresh_key=f"key-{i}"), label=f"event {i}")
        before = evolve(p)
        try:
            after = capstate.apply(p, e)
        except InvalidTransition as exc:
            assert exc.violations
            assert p == before and p.state == before.state, "a refused event changed the payment"
            continue
        assert p == before, "apply changed its input"
        assert_money_adds_up(after)
        if p.state in spec.terminal:
            assert after.state == p.state, f"{spec.name}: {e.type.value} left terminal state {p.state!r}"
        p = after
        clock = max(clock, e.at) if clock is not None else e.at


def test_an_expiry_never_releases_more_than_the_remainder() -> None:
    """Regression: an `expired` fact carrying an amount above the remainder must not be recorded as if
    more than the authorization had been released (captured + cancelled > authorized)."""
    for name in SPEC_NAMES:
        spec = capstate.load_spec(name)
        p = Payment.authorized_for(spec, REF, amount=1000, currency="EUR", at=T0)
        try:
            after = capstate.apply(p, Event(p.reference, EventType.EXPIRED, T0 + timedelta(hours=1), 5000))
        except InvalidTransition:
            continue
        assert_money_adds_up(after)


def test_a_cancel_before_authorization_releases_nothing() -> None:
    """Regression: a cancel of an open (never authorized) payment has no money to release."""
    for name in SPEC_NAMES:
        spec = capstate.load_spec(name)
        p = Payment.new(spec, REF)
        try:
            after = capstate.apply(p, Event(p.reference, EventType.CANCELLED, T0, 500))
        except InvalidTransition:
            continue
        assert_money_adds_up(after)


# -------------------------------------------------------------------------------------------- decide


def assert_decision_is_consistent(p: Payment, command: capstate.Command, d: Decision) -> None:
    assert isinstance(d, Decision)
    assert d.before == p
    if not d.allowed:
        assert d.after is None and d.event is None
        assert d.violations, "a refusal must say why"
        return
    assert d.after is not None and not d.violations
    if d.event is None:  # an idempotent replay moves nothing
        assert any(w.code is Code.IDEMPOTENT_REPLAY for w in d.warnings)
        assert d.after == p
        return
    applied = capstate.apply(p, d.event)
    if isinstance(command, Capture) and command.final and applied != d.after:
        # A final capture may also release the remainder, by a cancel the I/O layer sends after it.
        assert any(w.code is Code.REMAINDER_RELEASED for w in d.warnings)
        applied = capstate.apply(applied, Event(p.reference, EventType.CANCELLED, d.event.at))
    assert applied == d.after, f"apply(decision.event) gave {applied.summary()}, decide said {d.after.summary()}"
    # An audited payment may have broken the rules already; otherwise no allowed command may break them.
    if money_problem(p) is None:
        assert_money_adds_up(d.after)


@pytest.mark.parametrize("source", SOURCES)
@given(data=st.data())
def test_decide_is_total_pure_and_keeps_the_money_rules(source: str, data: st.DataObject) -> None:
    """Any command on any reachable payment, including payments replayed leniently as an audit holds
    them (policy breaches and all): a Decision, the same one twice, consistent with `apply`."""
    spec = data.draw(specs_from(source), label="spec")
    p = data.draw(reachable_payments(spec, lenient=data.draw(st.booleans(), label="lenient")), label="payment")
    command = data.draw(commands(p), label="command")
    before = evolve(p)
    d = capstate.decide(p, command)
    assert p == before, "decide changed its input"
    assert capstate.decide(p, command) == d, "decide gave two answers to one question"
    orjson.dumps(d.to_dict())
    assert_decision_is_consistent(p, command, d)
    if not d.allowed or d.event is None:
        return
    # An allowed decision keeps the money rules, whatever the spec's transitions say.
    policy = spec.policy
    if isinstance(command, Capture | Cancel):
        assert p.state not in spec.terminal, f"{spec.name}: {type(command).__name__} allowed in {p.state!r}"
    if policy.idempotency == "required" and isinstance(command, Capture | Cancel | Refund):
        assert command.key is not None, f"{spec.name} requires a key; {type(command).__name__} had none"
    if isinstance(command, Capture):
        amount = d.event.amount
        assert amount is not None
        assert 0 < amount <= p.capturable + allowance_of(p), (
            f"capture {amount} with capturable {p.capturable}")
        assert amount >= policy.min_amount(p.currency or "*")
        assert p.pending == 0, f"a capture allowed while {p.pending} is in flight"
        assert p.cancelled == 0, "a capture allowed after the remainder was released"
        assert p.expires_at is None or command.at < p.expires_at, "a capture allowed at or after expiry"
        assert policy.max_captures is None or p.capture_count < policy.max_captures
        if policy.partial_capture == "no":
            assert amount >= p.capturable
    if isinstance(command, Cancel):
        assert p.pending == 0 and (p.expires_at is None or command.at < p.expires_at)
    if isinstance(command, Refund):
        assert 0 < command.amount <= p.refundable
        assert policy.max_refunds is None or p.refund_count < policy.max_refunds
        if policy.refund_window is not None and p.authorized_at is not None:
            assert command.at < p.authorized_at + policy.refund_window, "a refund allowed at or after its window"
    if isinstance(command, Authorize):
        assert p.authorized_at is None, "a second authorization allowed"


def test_a_full_capture_pipwave_cannot_express_is_refused_by_decide_as_apply_refuses_its_event() -> None:
    """Found by Hypothesis in CI: a lenient Pipwave payment authorized for KWD 0.001 (1 minor unit).
    A full capture (no amount) was allowed by `decide`, yet `apply` refused the event it proposed,
    because the format check skipped captures without an amount. Pipwave's builder always sends
    `capture_amount` as decimal(11,2) (research 4.3), so a full capture is checked like any other."""
    spec = capstate.load_spec("pipwave")
    auth = Event(payment="order-1", type=EventType.AUTHORIZED, at=T0, amount=1, currency="KWD")
    p, broke = capstate.observe(Payment.new(spec, "order-1"), auth)
    assert Code.AMOUNT_INVALID in {v.code for v in broke}, "the authorization itself breaks the format"
    command = Capture(at=T0 + timedelta(hours=1))
    d = capstate.decide(p, command)
    assert not d.allowed and d.codes == (Code.AMOUNT_INVALID,), d.codes
    assert "0.001 KWD needs 3 decimals" in d.violations[0].message
    assert_decision_is_consistent(p, command, d)
    # The same capture of a representable authorization goes through.
    fine, _ = capstate.observe(Payment.new(spec, "order-1"), evolve(auth, amount=1230))
    assert capstate.decide(fine, command).allowed


@pytest.mark.parametrize("source", SOURCES)
@given(data=st.data())
def test_nothing_is_captured_or_released_at_or_after_expiry(source: str, data: st.DataObject) -> None:
    """AUTHORIZATION_EXPIRED: a capture or a cancel at or past the validity window moves no money."""
    spec = data.draw(specs_from(source), label="spec")
    p = data.draw(reachable_payments(spec, open_sometimes=False), label="payment")
    if p.expires_at is None:
        return
    at = p.expires_at + timedelta(seconds=data.draw(st.sampled_from([0, 1, 86400, 90 * 86400]), label="late"))
    amount = data.draw(st.sampled_from([None, 1, max(p.capturable // 2, 1), p.capturable]), label="amount")
    key = data.draw(st.sampled_from(["late-key", None]), label="key")
    command = data.draw(st.sampled_from([Capture(at=at, amount=amount, key=key, final=False),
                                         Capture(at=at, amount=amount, key=key, final=True),
                                         Cancel(at=at, key=key)]), label="command")
    d = capstate.decide(p, command)
    assert not d.allowed or d.event is None, f"{spec.name}: {command} allowed after expiry {p.expires_at}"
    if p.state == "authorized" and not d.allowed:
        assert Code.AUTHORIZATION_EXPIRED in d.codes, d.codes


@pytest.mark.parametrize("source", SOURCES)
@given(data=st.data())
def test_nothing_is_refunded_at_or_after_the_refund_window(source: str, data: st.DataObject) -> None:
    """REFUND_WINDOW_EXPIRED, to the second: a refund at the window's end (authorization + window) or
    later moves no money; one second before, the window is no reason to refuse."""
    spec = data.draw(specs_from(source), label="spec")
    window = spec.policy.refund_window
    if window is None:
        return
    p = data.draw(reachable_payments(spec, open_sometimes=False), label="payment")
    if p.authorized_at is None or p.refundable <= 0:
        return
    offset = data.draw(st.sampled_from([-1, 0, 1, 86400]), label="seconds from the window's end")
    at = p.authorized_at + window + timedelta(seconds=offset)
    amount = data.draw(st.sampled_from([1, max(p.refundable // 2, 1), p.refundable]), label="amount")
    d = capstate.decide(p, Refund(amount=amount, at=at, key=data.draw(st.sampled_from(["late-refund", None]))))
    if offset >= 0:
        assert not d.allowed or d.event is None, f"{spec.name}: refund at {at} allowed; the window closed {offset}s ago"
        if p.state in {t.source for t in spec.transitions if t.trigger is EventType.REFUNDED}:
            assert Code.REFUND_WINDOW_EXPIRED in d.codes, d.codes
    else:
        assert Code.REFUND_WINDOW_EXPIRED not in d.codes, f"refused a second before the window's end: {d.codes}"


OVER_CAPTURE_CASES = [case for case in OVERRIDES if int(case[1].get("over_capture_percent", 0)) > 0]


@pytest.mark.parametrize("case", OVER_CAPTURE_CASES, ids=lambda case: f"{case[0]}-{case[1]}")
@given(data=st.data())
def test_an_over_capture_stops_exactly_at_the_allowance(case: tuple[str, dict[str, object]],
                                                        data: st.DataObject) -> None:
    """With over_capture_percent > 0 a first capture may reach authorized + floor(authorized * % / 100),
    not one minor unit more, at any authorized amount the spec takes (int64 ones included), and never
    past int64, the largest amount any provider takes."""
    spec = load_case(case)
    p = evolve(data.draw(authorized_payments(spec), label="payment"), flow=None)  # a manual capture
    assert p.authorized_at is not None
    bound = p.authorized + allowance_of(p)
    offset = data.draw(st.sampled_from([-1, 0, 1]), label="minor units from the bound")
    amount = bound + offset
    d = capstate.decide(p, Capture(at=p.authorized_at, amount=amount, key="over-1"))
    policy = spec.policy
    valid = amount >= policy.min_amount(p.currency or "*") and amount <= INT64_MAX and (
        policy.amount_max is None or amount <= policy.amount_max)
    assert d.allowed == (offset <= 0 and valid), (
        f"{spec.name}: capture {amount} on {p.authorized} authorized (bound {bound}): {d.codes}")


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_an_unknown_currency_is_never_authorized(name: str) -> None:
    """An Authorize in a code that is not ISO 4217 is malformed (CommandError) or refused; decide
    neither raises on it nor allows it (no exponent, so no amount in it can be checked or shown)."""
    spec = capstate.load_spec(name)
    try:
        command = Authorize(amount=1000, currency="XYZ", at=T0, key="auth-1")
    except CommandError:
        return
    d = capstate.decide(Payment.new(spec, REF), command)
    assert not d.allowed, f"{name} allows an authorization in 'XYZ'"


def test_a_capture_command_waits_for_the_capture_in_flight() -> None:
    """Regression: on a sync spec a logged capture request puts the payment in `capturing`; a new
    capture command is not the provider's answer and must be refused with CAPTURE_IN_FLIGHT."""
    for name in SPEC_NAMES:
        spec = capstate.load_spec(name)
        p = Payment.authorized_for(spec, REF, amount=1000, currency="EUR", at=T0)
        p = capstate.apply(p, Event(p.reference, EventType.CAPTURE_REQUESTED, T0, 400, key="k1"))
        d = capstate.decide(p, Capture(at=T0 + timedelta(hours=1), amount=500, key="k2"))
        assert not d.allowed and Code.CAPTURE_IN_FLIGHT in d.codes, (name, d.codes)


def test_a_key_reused_where_the_provider_has_no_idempotency_is_not_a_second_success() -> None:
    """Regression: Pipwave has no idempotency mechanism, so a second refund under a used key would
    be a second refund; decide must not allow a fact that apply then refuses (key_unique)."""
    spec = capstate.load_spec("pipwave")
    p = Payment.authorized_for(spec, REF, amount=1000, currency="EUR", at=T0)
    capture = capstate.decide(p, Capture(at=T0))
    assert capture.event is not None
    p = capstate.apply(p, capture.event)
    first = capstate.decide(p, Refund(amount=100, at=T0, key="r1"))
    assert first.allowed and first.event is not None
    p = capstate.apply(p, first.event)
    second = capstate.decide(p, Refund(amount=100, at=T0, key="r1"))
    assert_decision_is_consistent(p, second.command, second)


def test_two_per_currency_overrides_of_one_rule_both_apply() -> None:
    """A merchant shortening both NOK and DKK validity on Vipps must get both. The second override was built
    from the spec's original table, so NOK went back to 180 d and a NOK capture on day 1 was allowed."""
    spec = capstate.load_spec("vipps", overrides={"authorization_validity.NOK": "1d",
                                                  "authorization_validity.DKK": "2d"})
    assert spec.policy.validity_for("NOK") == timedelta(days=1)
    assert spec.policy.validity_for("DKK") == timedelta(days=2)
    p = Payment.authorized_for(spec, REF, amount=10_000, currency="NOK", at=T0)
    d = capstate.decide(p, Capture(at=T0 + timedelta(days=1), key="late-1"))
    assert not d.allowed and Code.AUTHORIZATION_EXPIRED in d.codes


# ------------------------------------------------------------------------------------------- observe


@pytest.mark.parametrize("source", SOURCES)
@given(data=st.data())
def test_observe_records_every_fact_and_agrees_with_apply(source: str, data: st.DataObject) -> None:
    spec = data.draw(specs_from(source), label="spec")
    p = data.draw(authorized_payments(spec), label="payment")
    clock = p.authorized_at
    for i in range(data.draw(st.integers(1, 10), label="events")):
        e = data.draw(events(p, not_before=clock, fresh_key=f"key-{i}"), label=f"event {i}")
        observed, violations = capstate.observe(p, e)
        try:
            applied = capstate.apply(p, e)
        except InvalidTransition as exc:
            assert violations == exc.violations, "observe and apply name different breaches"
        else:
            assert (observed, violations) == (applied, ()), "observe and apply record a legal fact differently"
        p = observed
        clock = max(clock, e.at) if clock is not None else e.at


def test_observe_records_a_capture_request_after_an_over_capture() -> None:
    """Regression: an audit replays a history that over-captured, then logged a capture request
    without an amount; observe must record it (nothing is left to request) and report the breach."""
    spec = capstate.load_spec("bambora")
    p = Payment.authorized_for(spec, REF, amount=1000, currency="EUR", at=T0)
    p, violations = capstate.observe(p, Event(p.reference, EventType.CAPTURED, T0, 1001))
    assert Code.EXCEEDS_CAPTURABLE in [v.code for v in violations]
    after, violations = capstate.observe(p, Event(p.reference, EventType.CAPTURE_REQUESTED, T0))
    assert violations and after.pending >= 0


def test_per_currency_overrides_keep_each_other_and_the_rest_of_the_table() -> None:
    spec = capstate.load_spec("vipps", overrides={"amount_min.NOK": 500, "amount_min.DKK": 7})
    assert spec.policy.min_amount("NOK") == 500 and spec.policy.min_amount("DKK") == 7
    assert spec.policy.min_amount("EUR") == capstate.load_spec("vipps").policy.min_amount("EUR")


@pytest.mark.parametrize("name", ["bambora", "hellgate"])
def test_no_amount_beyond_int64_is_allowed_where_the_spec_sets_no_maximum(name: str) -> None:
    """Bambora and Hellgate document no maximum, but their amount fields are int64 (the builders and the
    audit refuse more). decide allowed Authorize(amount=2**63) and captures past it; now AMOUNT_INVALID,
    on the capture fast path as on the general one."""
    spec = capstate.load_spec(name)
    fresh = Payment.new(spec, REF)
    for amount in (INT64_MAX + 1, 2**64):
        d = capstate.decide(fresh, Authorize(amount=amount, currency="EUR", at=T0))
        assert d.codes == (Code.AMOUNT_INVALID,) and "int64" in d.violations[0].message
    assert capstate.decide(fresh, Authorize(amount=INT64_MAX, currency="EUR", at=T0)).allowed
    # A history that holds more (recorded leniently, as an audit would) still never lets it out.
    big = capstate.observe(fresh, Event(REF, EventType.AUTHORIZED, T0, 2**64, "EUR"))[0]
    assert big.authorized == 2**64
    refused = capstate.decide(big, Capture(at=T0, amount=INT64_MAX + 1))
    assert refused.codes == (Code.AMOUNT_INVALID,)
    assert capstate.decide(big, Capture(at=T0, amount=INT64_MAX)).allowed
