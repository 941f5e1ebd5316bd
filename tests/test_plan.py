"""Plans: parsing from TOML, JSON and dicts, errors that name the step and the field, derived names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

import capstate
from capstate import Flow, Op, Outcome, Plan, PlanError
from capstate._plan import derive_key, derive_reference
from capstate._policy import IdentifierRule

PLANS = Path(__file__).resolve().parents[1] / "examples" / "plans"
T0 = datetime(2026, 1, 5, 10, tzinfo=UTC)


def base(**payment: Any) -> dict[str, Any]:
    pay = {"amount": 100000, "currency": "NOK", "authorized_at": "2026-01-05T10:00:00Z"} | payment
    return {"payment": pay, "step": []}


def with_steps(*steps: dict[str, Any], **payment: Any) -> dict[str, Any]:
    plan = base(**payment)
    plan["step"] = list(steps)
    return plan


# -------------------------------------------------------------------------------------------- parsing


def test_split_shipment_example_parses() -> None:
    plan = Plan.from_toml((PLANS / "split-shipment.toml").read_text(encoding="utf-8"))
    assert (plan.amount, plan.currency, plan.reference, plan.reference_derived) == (
        100000, "NOK", "5d0c9f3e-2b1a-4c7d-8e6f-10001a2b3c4d", False)
    assert plan.authorized_at == T0
    assert [(s.index, s.op, s.amount) for s in plan.steps] == [
        (1, Op.CAPTURE, 30000), (2, Op.CAPTURE, 25000), (3, Op.CAPTURE, 30000), (4, Op.CANCEL, None)]
    assert [s.at - T0 for s in plan.steps] == [timedelta(days=2), timedelta(days=5), timedelta(days=9),
                                               timedelta(days=9)]
    assert plan.steps[0].note == "parcel 1 ships"
    assert plan.description is not None and "three parcels" in plan.description


def test_every_example_plan_parses() -> None:
    files = sorted(PLANS.iterdir())
    assert {f.suffix for f in files} == {".toml", ".json"}
    assert len(files) >= 5
    for f in files:
        text = f.read_text(encoding="utf-8")
        plan = Plan.from_json(text) if f.suffix == ".json" else Plan.from_toml(text)
        assert plan.steps, f


def test_offsets_and_instants() -> None:
    plan = Plan.from_dict(with_steps(
        {"at": "+90m", "op": "wait"},
        {"at": "+36h", "op": "capture", "amount": 100},
        {"at": "+2d", "op": "cancel"},
        {"at": "2026-01-07T12:00:00+02:00", "op": "refund", "amount": 50, "key": "r-1", "outcome": "failed"},
    ))
    assert [s.at for s in plan.steps] == [T0 + timedelta(minutes=90), T0 + timedelta(hours=36),
                                          T0 + timedelta(days=2), datetime(2026, 1, 7, 10, tzinfo=UTC)]
    assert plan.steps[3].outcome is Outcome.FAILED and plan.steps[3].key == "r-1"
    assert plan.offset(plan.steps[1].at) == "+36h"
    assert plan.offset(T0) == "+0m"


def test_rfc3339_lowercase_t_and_z_are_instants() -> None:
    # RFC 3339 section 5.6: "T" and "Z" may alternatively be lower case.
    plan = Plan.from_dict(with_steps({"at": "2026-01-06t10:00:00z", "op": "wait"},
                                     authorized_at="2026-01-05t10:00:00z"))
    assert (plan.authorized_at, plan.steps[0].at) == (T0, T0 + timedelta(days=1))


def test_toml_native_datetimes_and_strings_agree() -> None:
    native = Plan.from_toml('[payment]\namount = 1000\ncurrency = "EUR"\nauthorized_at = 2026-01-05T11:00:00+01:00\n'
                            '[[step]]\nat = 2026-01-06T10:00:00Z\nop = "capture"\n')
    text = Plan.from_toml('[payment]\namount = 1000\ncurrency = "EUR"\nauthorized_at = "2026-01-05T10:00:00Z"\n'
                          '[[step]]\nat = "+1d"\nop = "capture"\n')
    assert native.authorized_at == text.authorized_at == T0
    assert native.steps == text.steps
    assert native.reference == text.reference


def test_toml_and_json_of_one_plan_are_one_plan() -> None:
    toml_plan = Plan.from_toml((PLANS / "preorder.toml").read_text(encoding="utf-8"))
    json_plan = Plan.from_json(orjson.dumps(toml_plan.to_dict()))
    assert json_plan == toml_plan
    assert json_plan.reference_derived and json_plan.reference == toml_plan.reference
    assert Plan.from_dict(toml_plan.to_dict()) == toml_plan


def test_flow_description_and_final() -> None:
    plan = Plan.from_dict(with_steps({"at": "+1d", "op": "capture", "amount": 10, "final": True}, flow="automatic")
                          | {"description": "x"})
    assert plan.flow is Flow.AUTOMATIC and plan.description == "x" and plan.steps[0].final is True


# -------------------------------------------------------------------------------------------- errors


BAD: list[tuple[str, Any, str]] = [
    ("amount is a float", with_steps({"at": "+1d", "op": "wait"}, {"at": "+1d", "op": "wait"},
                                     {"at": "+2d", "op": "capture", "amount": 12.5}),
     "plan step 3: field 'amount': must be an integer >= 0 of minor units, got 12.5"),
    ("amount is a bool", with_steps({"at": "+1d", "op": "capture", "amount": True}),
     "plan step 1: field 'amount': must be an integer >= 0 of minor units, got True"),
    ("negative amount", with_steps({"at": "+1d", "op": "cancel", "amount": -1}),
     "plan step 1: field 'amount': must be an integer >= 0"),
    ("refund without amount", with_steps({"at": "+1d", "op": "refund"}),
     "plan step 1: field 'amount': required"),
    ("unknown step field", with_steps({"at": "+1d", "op": "capture", "amonut": 5}),
     "plan step 1: field 'amonut': unknown field (expected one of"),
    ("field the op does not take", with_steps({"at": "+1d", "op": "wait", "amount": 5}),
     "plan step 1: field 'amount': not allowed on a wait step"),
    ("final on a cancel", with_steps({"at": "+1d", "op": "cancel", "final": True}),
     "plan step 1: field 'final': not allowed on a cancel step"),
    ("unknown op", with_steps({"at": "+1d", "op": "void"}),
     "plan step 1: field 'op': got 'void'; one of capture, cancel, refund, wait"),
    ("missing op", with_steps({"at": "+1d"}), "plan step 1: field 'op': required"),
    ("missing at", with_steps({"op": "wait"}), "plan step 1: field 'at': required"),
    ("bad offset", with_steps({"at": "+2 days", "op": "wait"}),
     "plan step 1: field 'at': '+2 days' is not an offset like +2d"),
    ("naive instant", with_steps({"at": "2026-01-06T10:00:00", "op": "wait"}),
     "plan step 1: field 'at': '2026-01-06T10:00:00' is not an RFC 3339 timestamp with an offset"),
    ("out of order", with_steps({"at": "+2d", "op": "wait"}, {"at": "+1d", "op": "capture"}),
     "plan step 2: field 'at': 2026-01-06T10:00:00Z is before step 1's 2026-01-07T10:00:00Z"),
    ("before the authorization", with_steps({"at": "2026-01-01T00:00:00Z", "op": "capture"}),
     "plan step 1: field 'at': 2026-01-01T00:00:00Z is before the authorization"),
    ("bad outcome", with_steps({"at": "+1d", "op": "capture", "outcome": "timeout"}),
     "plan step 1: field 'outcome': must be 'succeeded' or 'failed', got 'timeout'"),
    ("key not a string", with_steps({"at": "+1d", "op": "capture", "key": 7}),
     "plan step 1: field 'key': must be a string, got int 7"),
    ("final not a bool", with_steps({"at": "+1d", "op": "capture", "final": "yes"}),
     "plan step 1: field 'final': must be true or false"),
    ("step not a table", with_steps("capture"), "plan step 1: a step is a table, got str"),
    ("payment missing", {"step": []}, "plan: field 'payment': missing"),
    ("unknown top-level key", base() | {"steps": []}, "plan: field 'steps': unknown field"),
    ("unknown payment key", base(amout=5), "plan: field 'payment.amout': unknown field"),
    ("payment amount missing", {"payment": {"currency": "NOK", "authorized_at": "2026-01-05T10:00:00Z"}},
     "plan: field 'payment.amount': required"),
    ("payment amount beyond int64", base(amount=2**63),
     "plan: field 'payment.amount': 9223372036854775808 is beyond the largest amount any provider takes"),
    ("step amount beyond int64", with_steps({"at": "+1d", "op": "capture", "amount": 10**30}),
     "plan step 1: field 'amount': 1000000000000000000000000000000 is beyond the largest amount"),
    ("payment amount is a decimal string", base(amount="10.50"),
     "plan: field 'payment.amount': must be an integer >= 0 of minor units, got '10.50'"),
    ("currency a list", base(currency=["NOK"]),
     "plan: field 'payment.currency': must be a string, an ISO 4217 code such as NOK, got list"),
    ("currency", base(currency="KRONER"), "plan: field 'payment.currency': 'KRONER' is not an ISO 4217"),
    ("flow", base(flow="auto"), "plan: field 'payment.flow': must be 'manual' or 'automatic', got 'auto'"),
    ("reference", base(reference=""), "plan: field 'payment.reference': must be a non-empty string"),
    ("authorized_at offset", base(authorized_at="+1d"), "plan: field 'payment.authorized_at': '+1d' is not an RFC"),
    ("offset overflows", with_steps({"at": "+99999999d", "op": "wait"}),
     "plan step 1: field 'at': '+99999999d' is too far after the authorization"),
    ("far past", base(authorized_at="0001-01-01T00:00:00+01:00"),
     "plan: field 'payment.authorized_at': 0001-01-01T00:00:00+01:00 is outside the instants capstate accepts"),
    ("far past step", with_steps({"at": "1969-12-31T23:59:59Z", "op": "wait"}) | {
        "payment": {"amount": 1, "currency": "NOK", "authorized_at": "1969-12-31T23:00:00Z"}},
     "plan: field 'payment.authorized_at': 1969-12-31T23:00:00+00:00 is earlier than 1970-01-01T00:00:00Z"),
    ("far future", base(authorized_at="9500-12-31T10:00:00Z"),
     "plan: field 'payment.authorized_at': 9500-12-31T10:00:00Z is later than 9000-01-01T00:00:00Z"),
    ("far future beyond the calendar in UTC", base(authorized_at="9999-12-31T23:59:59-01:00"),
     "plan: field 'payment.authorized_at': 9999-12-31T23:59:59-01:00 is outside the instants capstate accepts"),
    ("far future step beyond the calendar in UTC", with_steps({"at": "9999-12-31T23:30:00-05:00", "op": "wait"}),
     "plan step 1: field 'at': 9999-12-31T23:30:00-05:00 is outside the instants capstate accepts"),
    ("steps not a list", base() | {"step": {"at": "+1d"}}, "plan: field 'step': must be an array of tables"),
    ("not a table", [1, 2], "plan: a plan is a table (a JSON object), got list"),
]


@pytest.mark.parametrize(("obj", "message"), [(obj, msg) for _, obj, msg in BAD], ids=[name for name, _, _ in BAD])
def test_bad_plans_name_the_step_and_field(obj: Any, message: str) -> None:
    with pytest.raises(PlanError) as info:
        Plan.from_dict(obj)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_plan_error_carries_step_field_and_file() -> None:
    with pytest.raises(PlanError) as info:
        Plan.from_dict(with_steps({"at": "+1d", "op": "capture", "amount": 1.5}), file="my.toml")
    err = info.value
    assert (err.step, err.field, err.file) == (1, "amount", "my.toml")
    assert str(err).startswith("my.toml: plan step 1: field 'amount': ")
    assert isinstance(err, ValueError) and isinstance(err, capstate.CapstateError)


def test_toml_with_a_native_local_datetime_is_refused() -> None:
    with pytest.raises(PlanError, match=r"field 'payment.authorized_at': 2026-01-05T10:00:00 has no UTC offset"):
        Plan.from_toml('[payment]\namount = 1\ncurrency = "NOK"\nauthorized_at = 2026-01-05T10:00:00\n')
    with pytest.raises(PlanError, match=r"plan step 1: field 'at': 2026-01-06 is not a date and time"):
        Plan.from_toml('[payment]\namount = 1\ncurrency = "NOK"\nauthorized_at = 2026-01-05T10:00:00Z\n'
                       '[[step]]\nat = 2026-01-06\nop = "wait"\n')


def test_a_json_integer_beyond_int64_is_beyond_the_largest_amount_not_a_decimal() -> None:
    # orjson reads an integer past 64 bits as a float; the user wrote an integer, as in the TOML case.
    text = '{"payment": {"amount": 99999999999999999999, "currency": "NOK", "authorized_at": "2026-01-05T10:00:00Z"}}'
    with pytest.raises(PlanError, match=r"^plan: field 'payment.amount': .*beyond the largest amount") as info:
        Plan.from_json(text)
    assert "1050 for 10.50" not in str(info.value)


def test_syntax_errors() -> None:
    with pytest.raises(PlanError, match=r"^x.toml: plan: not valid TOML: .*line 2"):
        Plan.from_toml("[payment]\namount = = 1\n", file="x.toml")
    with pytest.raises(PlanError, match=r"^plan: not valid JSON"):
        Plan.from_json("{'payment': 1}")


# ------------------------------------------------------------------------------------- derived names


def test_derived_reference_is_stable_and_follows_the_content() -> None:
    one = Plan.from_dict(with_steps({"at": "+1d", "op": "capture"}))
    again = Plan.from_dict(with_steps({"at": "+1d", "op": "capture"}))
    other = Plan.from_dict(with_steps({"at": "+2d", "op": "capture"}))
    assert one.reference_derived and one.reference == again.reference != other.reference
    assert one.reference.startswith("plan-") and len(one.reference) == 17
    for name in capstate.shipped_specs():
        # Each spec's simulation takes the derivation that fits its reference rule: the readable one, or
        # (Hellgate, whose references are payment ids) the same digest as a UUID.
        rule = capstate.load_spec(name).policy.reference
        fitting = derive_reference(one, rule)
        assert rule.problem(fitting) is None, name
        assert fitting == one.reference if name != "hellgate" else fitting[:8] == one.reference[5:13]
    given = Plan.from_dict(with_steps({"at": "+1d", "op": "capture"}, reference="order-1"))
    assert (given.reference, given.reference_derived) == ("order-1", False)


def test_derived_keys_are_stable_distinct_and_fit_the_providers_rules() -> None:
    plan = Plan.from_dict(with_steps({"at": "+1d", "op": "capture"}))
    vipps = capstate.load_spec("vipps").policy.idempotency_key
    keys = {derive_key(plan, i, op, vipps) for i in range(5) for op in ("capture", "cancel", "refund")}
    assert len(keys) == 15
    assert derive_key(plan, 1, "capture", vipps) == derive_key(plan, 1, "capture", vipps)
    assert derive_key(plan, 1, "capture", vipps).startswith("capture-1-")
    assert all(vipps.problem(k) is None for k in keys)


@pytest.mark.parametrize("rule", [IdentifierRule(8, 10, "[0-9a-f]+"), IdentifierRule(40, 64, "[0-9a-f]+"),
                                  IdentifierRule(1, 20, None)])
def test_derived_keys_fall_back_to_what_a_strict_rule_accepts(rule: IdentifierRule) -> None:
    plan = Plan.from_dict(with_steps({"at": "+1d", "op": "capture"}))
    assert rule.problem(derive_key(plan, 3, "capture", rule)) is None
    # The fallback (bare hex, no readable index) still tells the steps apart: one key for two captures
    # would make the second an idempotent replay of the first.
    keys = [derive_key(plan, i, "capture", rule) for i in range(6)]
    assert len(set(keys)) == len(keys), keys


def test_plan_steps_keep_the_given_offset_zone() -> None:
    plan = Plan.from_dict(with_steps({"at": "+1d", "op": "wait"}, authorized_at="2026-01-05T12:00:00+02:00"))
    assert plan.authorized_at.utcoffset() == timezone(timedelta(hours=2)).utcoffset(None)
    assert plan.steps[0].at == T0 + timedelta(days=1)
