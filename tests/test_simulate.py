"""simulate(): the example plans on every shipped spec, the virtual clock, rehearsed failures, and a
Hypothesis property that simulate agrees with replaying the plan through decide and apply by hand."""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import OVERRIDES, SPEC_NAMES, load_case

import capstate
from capstate import (
    Authorize,
    Cancel,
    Capture,
    Command,
    Event,
    EventType,
    InvalidTransition,
    NoteCode,
    Payment,
    Plan,
    Refund,
    SimulationResult,
    Spec,
    simulate,
)
from capstate._plan import derive_key, derive_reference
from capstate._simulate import SimulationNote

PLANS = Path(__file__).resolve().parents[1] / "examples" / "plans"
T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)


def example(name: str) -> Plan:
    path = PLANS / name
    text = path.read_text(encoding="utf-8")
    return Plan.from_json(text) if path.suffix == ".json" else Plan.from_toml(text)


def plan_of(*steps: dict[str, Any], **payment: Any) -> Plan:
    pay = {"amount": 100000, "currency": "NOK", "authorized_at": "2026-01-05T10:00:00Z"} | payment
    return Plan.from_dict({"payment": pay, "step": list(steps)})


def codes(r: SimulationResult) -> list[tuple[str, ...]]:
    return [s.codes for s in r.steps]


def notes(r: SimulationResult, index: int) -> list[str]:
    return [w.code.value for w in r.steps[index - 1].warnings]


# ------------------------------------------------------------------------------------------- examples


def test_split_shipment_vipps_takes_all_three_captures_the_others_refuse_the_second() -> None:
    plan = example("split-shipment.toml")
    vipps = simulate(plan, "vipps")
    assert vipps.ok and codes(vipps) == [(), (), (), ()]
    assert [s.after.captured for s in vipps.steps] == [30000, 55000, 85000, 85000]
    assert (vipps.intended, vipps.captured, vipps.released, vipps.held) == (85000, 85000, 15000, 0)
    assert vipps.payment.state == "captured"
    for name in ("hellgate", "bambora", "pipwave"):
        r = simulate(plan, name)
        assert not r.ok, name
        assert r.steps[0].allowed, name
        assert codes(r)[1] == ("MULTIPLE_CAPTURES_UNSUPPORTED",), name
    # Validity unknown: the remainder stays held for as long as the issuer keeps it.
    for name in ("hellgate", "pipwave"):
        r = simulate(plan, name)
        assert (r.captured, r.released, r.held) == (30000, 0, 70000), name
    # Bambora cannot release the remainder after its one capture, but it lapses with the authorization
    # after 7 days; the plan runs to day 9, so by then nothing is held.
    bambora = simulate(plan, "bambora")
    assert (bambora.captured, bambora.released, bambora.lapsed, bambora.held) == (30000, 70000, 70000, 0)
    assert bambora.payment.state == "captured" and bambora.payment.cancelled == 0
    lapse = bambora.steps[2]
    assert lapse.lapsed_at == plan.authorized_at + timedelta(days=7)
    assert [w.code for w in lapse.warnings if isinstance(w, SimulationNote)] == [NoteCode.AUTHORIZATION_LAPSED]
    assert bambora.to_dict()["held"] == 0 and bambora.to_dict()["released"] == 70000


def test_a_remainder_lapses_once_and_only_after_expiry() -> None:
    plan = example("partial-then-cancel.toml")  # ends on day 4, before Bambora's 7 days
    r = simulate(plan, "bambora")
    assert (r.released, r.lapsed, r.held) == (0, 0, 30000)
    later = Plan.from_dict(plan.to_dict() | {"step": [*plan.to_dict()["step"], {"at": "+8d", "op": "wait"},
                                                         {"at": "+9d", "op": "wait"}]})
    r = simulate(later, "bambora")
    assert (r.released, r.lapsed, r.held) == (30000, 30000, 0)
    assert [s.lapsed_at is not None for s in r.steps] == [False, False, True, False]


def test_preorder_lapses_on_bambora_after_seven_days() -> None:
    plan = example("preorder.toml")
    bambora = simulate(plan, "bambora")
    wait, capture = bambora.steps
    expiry = plan.authorized_at + timedelta(days=7)
    assert wait.lapsed_at == expiry and wait.allowed
    assert [e.type for e in wait.events] == [EventType.EXPIRED]
    assert notes(bambora, 1) == [NoteCode.AUTHORIZATION_LAPSED]
    assert wait.after.state == "expired" and wait.after.cancelled == plan.amount
    assert capture.codes == ("AUTHORIZATION_EXPIRED",) and capture.lapsed_at is None
    assert (bambora.ok, bambora.captured, bambora.released, bambora.lapsed, bambora.held) == (
        False, 0, plan.amount, plan.amount, 0)
    vipps = simulate(plan, "vipps")  # NOK: 180 days
    assert vipps.ok and vipps.captured == plan.amount and vipps.lapsed == 0
    assert vipps.expires_at == plan.authorized_at + timedelta(days=180)
    hellgate = simulate(plan, "hellgate")  # validity unknown: nothing ever lapses
    assert hellgate.ok and hellgate.expires_at is None


def test_the_lapse_is_applied_before_a_step_without_a_wait() -> None:
    plan = plan_of({"at": "+10d", "op": "capture"})
    r = simulate(plan, capstate.load_spec("hellgate", overrides={"authorization_validity": "7d"}))
    (step,) = r.steps
    assert step.lapsed_at == T0 + timedelta(days=7)
    assert [e.type for e in step.events] == [EventType.EXPIRED]
    assert step.codes == ("AUTHORIZATION_EXPIRED",)
    assert notes(r, 1)[0] == NoteCode.AUTHORIZATION_LAPSED


def test_vipps_auto_cancels_the_remainder_after_a_partial_capture() -> None:
    plan = plan_of({"at": "+1d", "op": "capture", "amount": 40000}, {"at": "+20d", "op": "wait"}, currency="DKK")
    r = simulate(plan, "vipps")  # DKK: 14 days
    assert r.steps[1].lapsed_at == T0 + timedelta(days=14)
    assert r.payment.summary() == {"state": "captured", "authorized": 100000, "captured": 40000, "cancelled": 60000,
                                   "refunded": 0}
    assert (r.ok, r.released, r.lapsed, r.held) == (True, 60000, 60000, 0)


def test_failed_then_retried() -> None:
    plan = example("failed-then-retried.toml")
    for name in ("vipps", "bambora", "pipwave"):
        r = simulate(plan, name)
        failed, retry = r.steps
        assert failed.allowed and failed.after.state == "authorized" and failed.after.captured == 0, name
        assert [e.type for e in failed.events] == [EventType.CAPTURE_FAILED], name
        assert NoteCode.OUTCOME_FAILED in notes(r, 1) and not failed.surprise, name
        assert retry.allowed and r.captured == plan.amount and r.ok, name
    # Vipps deduplicates by key: a retry under the failed attempt's key is flagged, not refused. Bambora and
    # Pipwave keep no keys, so reusing one there means nothing to the provider.
    assert notes(simulate(plan, "vipps"), 2) == [NoteCode.KEY_REUSED_AFTER_FAILURE]
    assert NoteCode.KEY_REUSED_AFTER_FAILURE not in notes(simulate(plan, "bambora"), 2)
    first, second = (s.to_dict() for s in plan.steps)
    fresh = Plan.from_dict(plan.to_dict() | {"step": [first, second | {"key": "k-2"}]})
    assert notes(simulate(fresh, "vipps"), 2) == []
    hellgate = simulate(plan, "hellgate")
    failed, retry = hellgate.steps
    assert [e.type for e in failed.events] == [EventType.CAPTURE_REQUESTED, EventType.CAPTURE_FAILED]
    assert failed.after.state == "failed" and failed.surprise
    assert retry.codes == ("INVALID_STATE",)
    assert (hellgate.ok, hellgate.captured, hellgate.held) == (False, 0, plan.amount)


def test_partial_then_cancel_releases_the_rest_on_vipps_only() -> None:
    plan = example("partial-then-cancel.toml")
    vipps = simulate(plan, "vipps")
    assert vipps.ok and (vipps.captured, vipps.released, vipps.held) == (50000, 30000, 0)
    bambora = simulate(plan, "bambora")
    assert "REMAINDER_HELD" in notes(bambora, 1)
    assert codes(bambora)[1] == ("INVALID_STATE",)
    assert bambora.held == 30000 and bambora.held_until == plan.authorized_at + timedelta(days=7)


def test_async_capture_settles_within_the_step() -> None:
    r = simulate(plan_of({"at": "+1d", "op": "capture", "amount": 100000, "key": "k-1"}, currency="EUR"), "hellgate")
    (step,) = r.steps
    assert [(e.type, e.amount, e.key) for e in step.events] == [
        (EventType.CAPTURE_REQUESTED, 100000, "k-1"), (EventType.CAPTURED, 100000, "k-1")]
    assert step.after.state == "captured" and step.after.pending == 0 and r.ok


def test_a_final_capture_records_the_release_of_the_rest() -> None:
    r = simulate(plan_of({"at": "+1d", "op": "capture", "amount": 30000, "final": True}), "vipps")
    (step,) = r.steps
    assert [(e.type, e.amount) for e in step.events] == [(EventType.CAPTURED, 30000), (EventType.CANCELLED, 70000)]
    assert "REMAINDER_RELEASED" in notes(r, 1)
    assert (r.captured, r.released, r.held, r.payment.state) == (30000, 70000, 0, "captured")


def test_a_failure_the_spec_does_not_model_leaves_the_payment_and_is_a_surprise() -> None:
    # Hellgate made synchronous, without its capture_failed from `authorized` (a failure seen only as its
    # outcome), has capture_failed only from `capturing`: a failed sync capture has no transition.
    from importlib import resources

    text = (resources.files("capstate.specs") / "hellgate.toml").read_text(encoding="utf-8")
    start = text.index('[[transitions]]\ntrigger = "capture_failed"\nsource = "authorized"')
    end = text.index("[[transitions]]", start + 1)
    spec = capstate.Spec.from_toml(text[:start] + text[end:], file="hellgate-no-unseen-failure.toml",
                                   overrides={"capture": "sync"})
    r = simulate(plan_of({"at": "+1d", "op": "capture", "outcome": "failed"}, currency="EUR"), spec)
    (step,) = r.steps
    assert step.allowed and step.events == () and step.surprise
    assert notes(r, 1) == [NoteCode.FAILURE_NOT_MODELLED]
    assert step.after.summary() == r.authorization.after.summary()
    assert not r.ok


def test_a_hold_in_a_terminal_state_without_a_lapse_leaves_the_card_at_expiry() -> None:
    # Hellgate's failed capture ends in `failed`, which has no `expired` transition; its authorization still
    # lapses at the issuer. Past the validity nothing is held any more, and the verdict says it was released.
    spec = capstate.load_spec("hellgate", overrides={"authorization_validity": "7d"})
    plan = plan_of({"at": "+1d", "op": "capture", "outcome": "failed"}, {"at": "+8d", "op": "wait"}, currency="EUR")
    r = simulate(plan, spec)
    assert r.payment.state == "failed"
    assert (r.captured, r.released, r.lapsed, r.held) == (0, 100000, 100000, 0)
    assert notes(r, 2) == [NoteCode.AUTHORIZATION_LAPSED] and r.steps[1].lapsed_at == T0 + timedelta(days=7)
    assert r.to_dict()["held_until"] is None
    # Before the expiry the hold stands, until the expiry.
    early = simulate(plan_of({"at": "+1d", "op": "capture", "outcome": "failed"}, currency="EUR"), spec)
    assert (early.held, early.held_until) == (100000, T0 + timedelta(days=7))


def test_a_failed_cancel_or_refund_moves_nothing() -> None:
    plan = plan_of({"at": "+1d", "op": "capture", "amount": 1000}, {"at": "+2d", "op": "cancel", "outcome": "failed"},
                   {"at": "+3d", "op": "refund", "amount": 500, "outcome": "failed"})
    r = simulate(plan, "vipps")
    assert [s.after.summary() for s in r.steps[1:]] == [r.steps[0].after.summary()] * 2
    assert all(s.allowed and not s.surprise and s.events == () for s in r.steps[1:])
    assert r.ok and r.held == 99000


def test_a_refused_authorization_refuses_every_step() -> None:
    r = simulate(plan_of({"at": "+1d", "op": "capture"}, {"at": "+2d", "op": "wait"}, currency="USD"), "vipps")
    assert r.authorization.codes == ("CURRENCY_UNSUPPORTED",)
    assert codes(r) == [("NOT_AUTHORIZED",), ()]
    assert (r.ok, r.captured, r.released, r.held) == (False, 0, 0, 0)


def test_keys_derived_where_the_provider_takes_them_and_kept_where_given() -> None:
    plan = plan_of({"at": "+1d", "op": "capture", "amount": 1000}, {"at": "+2d", "op": "capture", "key": "mine"})
    vipps = simulate(plan, "vipps")
    assert vipps.ok
    rule = capstate.load_spec("vipps").policy.idempotency_key
    assert vipps.authorization.key == derive_key(plan, 0, "authorize", rule)
    assert vipps.steps[0].key == derive_key(plan, 1, "capture", rule)
    assert vipps.steps[1].key == "mine"
    bambora = simulate(plan, "bambora")  # no idempotency: nothing is invented
    assert bambora.authorization.key is None and bambora.steps[0].key is None


def test_a_retry_under_a_used_key_is_an_idempotent_replay() -> None:
    plan = plan_of({"at": "+1d", "op": "capture", "amount": 1000, "key": "k"},
                   {"at": "+1d", "op": "capture", "amount": 1000, "key": "k"})
    r = simulate(plan, "vipps")
    assert r.ok and r.captured == 1000
    assert "IDEMPOTENT_REPLAY" in notes(r, 2) and r.steps[1].events == ()


def test_same_plan_same_answer_and_name_or_spec() -> None:
    plan = example("split-shipment.toml")
    for name in SPEC_NAMES:
        assert simulate(plan, name).to_dict() == simulate(plan, capstate.load_spec(name)).to_dict()
    json_plan = Plan.from_json(orjson.dumps(example("preorder.toml").to_dict()))
    assert simulate(json_plan, "bambora").to_dict() == simulate(example("preorder.toml"), "bambora").to_dict()


def test_json_entry_has_the_contract_fields() -> None:
    doc = simulate(example("split-shipment.toml"), "hellgate").to_dict()
    assert {"ok", "captured", "released", "held", "steps"} <= set(doc)
    step = doc["steps"][1]
    assert {"index", "op", "allowed", "violations", "warnings", "after"} <= set(step)
    assert step["index"] == 2 and step["op"] == "capture" and step["allowed"] is False
    assert step["violations"][0]["code"] == "MULTIPLE_CAPTURES_UNSUPPORTED"
    assert set(step["violations"][0]) == {"code", "message"}
    assert set(step["after"]) == {"state", "authorized", "captured", "cancelled", "refunded"}


def test_intended_counts_what_a_cancel_with_an_amount_releases() -> None:
    # Release 300.00 of 1 000.00, then capture what is left: the plan means to capture 700.00, whether
    # or not a provider takes a partial cancel (none of the shipped ones does: CANCEL_AMOUNT_INVALID).
    plan = plan_of({"at": "+1d", "op": "cancel", "amount": 30000}, {"at": "+2d", "op": "capture"})
    assert {simulate(plan, name).intended for name in SPEC_NAMES} == {70000}
    capped = plan_of({"at": "+1d", "op": "cancel", "amount": 30000}, {"at": "+2d", "op": "capture", "amount": 90000})
    assert simulate(capped, "vipps").intended == 70000


@pytest.mark.parametrize("name", sorted(p.name for p in PLANS.iterdir()))
def test_money_is_conserved_in_every_example(name: str) -> None:
    plan = example(name)
    for spec in SPEC_NAMES:
        r = simulate(plan, spec)
        if r.authorization.allowed:
            assert r.captured + r.released + r.held == plan.amount, (name, spec)
            assert r.intended <= plan.amount


# ------------------------------------------------------------------------------- the property test


def by_hand(plan: Plan, spec: Spec) -> list[tuple[bool, tuple[str, ...], dict[str, Any]]]:
    """The plan replayed with decide and apply, written from the rules in the issue, not from simulate."""
    policy = spec.policy
    # A reference the plan leaves out is derived to fit the spec (a Hellgate payment id is a UUID).
    ref = derive_reference(plan, policy.reference) if plan.reference_derived else plan.reference

    def key(given: str | None, index: int, op: str) -> str | None:
        if given is not None or policy.idempotency == "none":
            return given
        return derive_key(plan, index, op, policy.idempotency_key)

    p = Payment.new(spec, ref)
    d = capstate.decide(p, Authorize(amount=plan.amount, currency=plan.currency, at=plan.authorized_at,
                                     flow=plan.flow, key=key(None, 0, "authorize")))
    if d.allowed:
        assert d.event is not None
        p = capstate.apply(p, d.event)
    rows = [(d.allowed, tuple(v.code.value for v in d.violations), p.summary())]
    for step in plan.steps:
        # The provider's lapse fires at the expiry instant, once the clock reaches it.
        if p.expires_at is not None and step.at >= p.expires_at:
            with suppress(InvalidTransition):
                p = capstate.apply(p, Event(ref, EventType.EXPIRED, p.expires_at))
        if step.op.value == "wait":
            rows.append((True, (), p.summary()))
            continue
        k = key(step.key, step.index, step.op.value)
        command: Command
        if step.op.value == "capture":
            command = Capture(at=step.at, amount=step.amount, key=k, final=step.final)
        elif step.op.value == "cancel":
            command = Cancel(at=step.at, amount=step.amount, key=k)
        else:
            assert step.amount is not None
            command = Refund(amount=step.amount, at=step.at, key=k)
        d = capstate.decide(p, command)
        if d.allowed and d.event is not None:
            e = d.event
            asynchronous = e.type is EventType.CAPTURE_REQUESTED
            if step.outcome.value == "failed":
                if step.op.value == "capture":
                    try:
                        q = capstate.apply(p, e) if asynchronous else p
                        # The provider's answer to this request: its key stays bound to it (issue 12 item 1).
                        p = capstate.apply(q, Event(ref, EventType.CAPTURE_FAILED, step.at, e.amount, key=e.key))
                    except InvalidTransition:
                        pass  # the spec has no such failure: the payment stays as it was
            else:
                p = capstate.apply(p, e)
                if asynchronous:
                    p = capstate.apply(p, Event(ref, EventType.CAPTURED, step.at, e.amount, key=e.key))
                assert d.after is not None
                if d.after.cancelled > p.cancelled:
                    p = capstate.apply(p, Event(ref, EventType.CANCELLED, step.at, d.after.cancelled - p.cancelled))
                if not asynchronous:
                    assert p.summary() == d.after.summary()
        rows.append((d.allowed, tuple(v.code.value for v in d.violations), p.summary()))
    return rows


_GAPS = st.sampled_from([0, 0, 30, 36 * 60, 2 * 1440, 5 * 1440, 7 * 1440, 14 * 1440])
_KEYS = st.one_of(st.none(), st.none(), st.sampled_from(["k-1", "k-2", "shipment-key-3"]))


@st.composite
def plan_dicts(draw: st.DrawFn) -> dict[str, Any]:
    amount = draw(st.one_of(st.sampled_from([100, 1000, 100000]), st.integers(0, 200000)))
    payment: dict[str, Any] = {"amount": amount, "currency": draw(st.sampled_from(["NOK", "DKK", "EUR"])),
                               "authorized_at": "2026-01-05T10:00:00Z"}
    if draw(st.booleans()):
        payment["reference"] = "order-77001"
    if draw(st.integers(0, 5)) == 0:
        payment["flow"] = draw(st.sampled_from(["manual", "automatic"]))
    minutes = 0
    steps = []
    for _ in range(draw(st.integers(0, 7))):
        minutes += draw(_GAPS)
        op = draw(st.sampled_from(["capture", "capture", "capture", "cancel", "refund", "wait"]))
        step: dict[str, Any] = {"at": f"+{minutes}m", "op": op}
        if op != "wait":
            some = draw(st.one_of(st.none(), st.integers(0, amount + 10), st.just(amount // 3)))
            if some is not None or op == "refund":
                step["amount"] = some if some is not None else amount // 4
            if (key := draw(_KEYS)) is not None:
                step["key"] = key
            if draw(st.integers(0, 3)) == 0:
                step["outcome"] = "failed"
        if op == "capture" and draw(st.integers(0, 3)) == 0:
            step["final"] = True
        steps.append(step)
    return {"payment": payment, "step": steps}


_SPEC_CASES = st.one_of(st.sampled_from(SPEC_NAMES).map(lambda n: (n, {})), st.sampled_from(OVERRIDES))


@given(obj=plan_dicts(), case=_SPEC_CASES)
def test_simulate_agrees_with_decide_and_apply_by_hand(obj: dict[str, Any], case: tuple[str, Any]) -> None:
    spec = load_case(case)
    plan = Plan.from_dict(obj)
    r = simulate(plan, spec)
    got = [(s.allowed, s.codes, s.after.summary()) for s in (r.authorization, *r.steps)]
    assert got == by_hand(plan, spec)
    # The facts each step reports are a history: replayed, they give the same payment.
    events = [e for s in (r.authorization, *r.steps) for e in s.events]
    if events:
        assert capstate.replay(events, spec).summary() == r.payment.summary()
    if r.payment.captured + r.payment.cancelled <= r.payment.authorized:
        assert r.captured + r.released + r.held == r.payment.authorized
    else:  # within an over-capture allowance nothing is left to hold
        assert r.held == 0
    assert r.ok == (all(s.allowed for s in (r.authorization, *r.steps)) and not any(s.surprise for s in r.steps))
    # Same plan, same answer.
    assert simulate(plan, spec).to_dict() == r.to_dict()


def test_an_automatic_flow_is_held_until_the_providers_own_capture() -> None:
    # Hellgate refuses a manual capture on an automatic-capture flow; the money is not left on the card for
    # the issuer to drop, the provider captures it itself.
    obj = {"payment": {"amount": 10000, "currency": "EUR", "flow": "automatic",
                       "authorized_at": "2026-01-05T10:00:00Z"},
           "step": [{"at": "+1d", "op": "capture"}]}
    hellgate = simulate(Plan.from_dict(obj), "hellgate")
    assert hellgate.steps[0].codes == ("AUTOMATIC_CAPTURE_FLOW",)
    assert (hellgate.held, hellgate.held_until_text) == (10000, "until the provider's automatic capture")
    assert hellgate.to_dict()["held_until"] == "until the provider's automatic capture"
    manual = simulate(Plan.from_dict(obj | {"payment": obj["payment"] | {"flow": "manual"}, "step": []}), "hellgate")
    assert manual.held_until_text == "unknown"
    # A spec that does not tell flows apart keeps its own answer.
    assert simulate(Plan.from_dict(obj | {"step": []}), "bambora").held_until_text != (
        "until the provider's automatic capture")


def test_intended_leaves_out_a_failed_attempt() -> None:
    # The failed capture and its retry are one logical capture: the plan means to capture 599.00 once,
    # whether or not the provider can take the retry (Hellgate's `failed` is terminal).
    plan = example("failed-then-retried.toml")
    for name in SPEC_NAMES:
        assert simulate(plan, name).intended == plan.amount == 59900, name
    hellgate = simulate(plan, "hellgate")
    assert (hellgate.intended, hellgate.captured) == (59900, 0)
    # With amounts: 300.00 fails, 300.00 is retried; the plan means 300.00, not 600.00.
    retried = plan_of({"at": "+1d", "op": "capture", "amount": 30000, "outcome": "failed"},
                      {"at": "+2d", "op": "capture", "amount": 30000})
    vipps = simulate(retried, "vipps")
    assert (vipps.intended, vipps.captured, vipps.held) == (30000, 30000, 70000)
    assert vipps.to_dict()["intended"] == 30000


def test_steps_without_keys_get_a_distinct_derived_key_each() -> None:
    # Two parcels, no keys given: each capture is its own logical operation, so Vipps must see two keys
    # (one key for both would make the second an idempotent replay and capture nothing).
    plan = plan_of({"at": "+1d", "op": "capture", "amount": 30000}, {"at": "+2d", "op": "capture", "amount": 30000})
    r = simulate(plan, "vipps")
    first, second = r.steps
    assert first.key is not None and second.key is not None and first.key != second.key
    assert r.authorization.key not in (first.key, second.key)
    assert [e.type for e in second.events] == [EventType.CAPTURED]
    assert "IDEMPOTENT_REPLAY" not in notes(r, 2)
    assert (r.ok, r.captured, r.held) == (True, 60000, 40000)


def test_derived_keys_are_the_same_whenever_the_plan_is_read() -> None:
    # "The same plan always gives the same answer": keys derive from the plan's content, so reading the
    # file again (another Plan object) must give the keys a first run sent to the provider.
    text = (PLANS / "partial-then-cancel.toml").read_text(encoding="utf-8")
    runs = [simulate(Plan.from_toml(text), "vipps").to_dict() for _ in range(2)]
    keys = [[runs[i]["authorization"]["key"], *(s["key"] for s in runs[i]["steps"])] for i in range(2)]
    assert all(k is not None for k in keys[0])
    assert keys[0] == keys[1]
    assert runs[0] == runs[1]
    json_plan = Plan.from_json(orjson.dumps(Plan.from_toml(text).to_dict()))
    assert simulate(json_plan, "vipps").to_dict() == runs[0]


def test_a_remainder_reserved_until_cancel_does_not_lapse_in_a_terminal_state() -> None:
    # Only a remainder policy of "lapses" lets the uncaptured rest leave the card with no transition for it.
    # Bambora's remainder lapses; under a contract where it stays reserved until a cancel, the simulation
    # must not count it released when the clock passes the expiry.
    plan = plan_of({"at": "+1d", "op": "capture", "amount": 40000}, {"at": "+10d", "op": "wait"})
    lapses = simulate(plan, "bambora")
    assert (lapses.released, lapses.lapsed, lapses.held) == (60000, 60000, 0)
    assert notes(lapses, 2) == [NoteCode.AUTHORIZATION_LAPSED]
    reserved = simulate(plan, capstate.load_spec("bambora", overrides={"remainder": "reserved_until_cancel"}))
    assert reserved.payment.state == "captured"
    assert (reserved.released, reserved.lapsed, reserved.held) == (0, 0, 60000)
    assert notes(reserved, 2) == [] and reserved.steps[1].lapsed_at is None
