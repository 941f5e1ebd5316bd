"""Issue 12, the engine and spec side: each item's defect, reproduced as it was reported.

Each test failed on main before its fix. Sections follow the issue's item numbers.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from capstate import (
    Authorize,
    Capture,
    CommandError,
    Event,
    EventError,
    EventType,
    Payment,
    apply,
    audit,
    decide,
    load_spec,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "capstate", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False, env=env)


def jsonl(path: Path, *events: dict[str, Any]) -> str:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return str(path)


# ------------------------------------------------------------------------------- 14. far instants

FAR = ["0001-01-01T00:00:00+14:00", "9999-12-30T00:00:00Z", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z"]


def far_authorization(at: str) -> dict[str, Any]:
    return {"payment": "order-10001", "type": "authorized", "at": at, "amount": 1000, "currency": "NOK"}


@pytest.mark.parametrize("at", FAR)
def test_a_far_instant_is_an_event_error_naming_at(at: str) -> None:
    with pytest.raises(EventError) as err:
        Event.from_dict(far_authorization(at))
    assert err.value.field == "at"
    assert "outside the instants capstate accepts" in str(err.value)


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-30T00:00:00Z"])
@pytest.mark.parametrize("command", ["validate", "capture"])
def test_validate_and_capture_refuse_a_far_history_on_one_line(tmp_path: Path, at: str, command: str) -> None:
    history = jsonl(tmp_path / "far.jsonl", far_authorization(at))
    extra = ["--dry-run"] if command == "capture" else []
    done = cli(tmp_path, command, "--provider", "bambora", "--history", history, *extra)
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and "internal error" not in done.stderr, done.stderr
    assert "history line 1: at:" in done.stderr and "outside the instants capstate accepts" in done.stderr


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-30T00:00:00Z"])
def test_the_audit_calls_the_same_line_malformed_with_the_same_reason(at: str) -> None:
    line = orjson.dumps(far_authorization(at))
    with pytest.raises(EventError) as err:
        Event.from_json(line)
    for fast in (True, False):
        report = audit([line], "bambora", fast=fast)
        assert [f.code.value for f in report.violations] == ["LOG_MALFORMED"]
        assert report.violations[0].message == f"not a valid event: {err.value}"


@pytest.mark.parametrize("at", FAR)
def test_a_hand_built_event_at_a_far_instant_is_refused_by_apply_and_audited_malformed(at: str) -> None:
    when = datetime.fromisoformat(at)
    event = Event("order-10001", EventType.AUTHORIZED, when, 1000, "NOK")
    with pytest.raises(EventError) as err:
        apply(Payment.new(load_spec("bambora"), "order-10001"), event)
    assert err.value.field == "at"
    report = audit([event], "bambora")
    assert [f.code.value for f in report.violations] == ["LOG_MALFORMED"]
    assert "at: " in report.violations[0].message


@pytest.mark.parametrize("at", FAR)
def test_a_command_at_a_far_instant_is_a_command_error(at: str) -> None:
    with pytest.raises(CommandError, match="outside the instants capstate accepts"):
        Capture(at=datetime.fromisoformat(at), amount=100)


def test_a_payment_built_by_hand_with_a_far_authorization_is_refused() -> None:
    with pytest.raises(ValueError, match="authorized_at"):
        Payment(load_spec("bambora"), "order-10001", "authorized", "NOK", 1000,
                authorized_at=datetime(9999, 12, 30, tzinfo=UTC), validity=timedelta(days=7))


_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_instants = st.builds(lambda d, tz: d.replace(tzinfo=tz), st.datetimes(), _offsets)


@given(authorized=_instants, at=_instants, spec=st.sampled_from(["bambora", "hellgate", "pipwave", "vipps"]),
       validity=st.sampled_from([None, "1s", "7d", "36500d"]))
@example(authorized=datetime(9999, 12, 30, tzinfo=UTC), at=datetime(9999, 12, 31, tzinfo=UTC), spec="bambora",
         validity=None)  # the report: decide raised OverflowError adding the 7 days
def test_decide_never_raises_whatever_the_instants(authorized: datetime, at: datetime, spec: str,
                                                   validity: str | None) -> None:
    s = load_spec(spec, {"authorization_validity": validity} if validity else None)
    try:
        p = Payment.authorized_for(s, "3b2f0c1e-6a4d-4f7b-9c2e-8d1a5e7f0b34", amount=100000, currency="EUR",
                                   at=authorized)
    except EventError as exc:
        assert exc.field == "at"
        return
    try:
        command = Capture(at=at, amount=500, key="k-1")
    except CommandError:
        return
    d = decide(p, command)
    d.to_dict()
    for v in d.violations:
        assert v.message
    if d.after is not None:
        d.after.summary()


# ----------------------------------------------------- 1. Vipps: a failed attempt's key reused otherwise

REF = "order-10001"


def vipps_after_failed_attempt(amount: int | None = 25000) -> Payment:
    """Authorized 100000 NOK; a capture of 25000 under key K refused by the provider (capture_failed)."""
    p = Payment.authorized_for(load_spec("vipps"), REF, amount=100000, currency="NOK", at=T0)
    return apply(p, Event(REF, EventType.CAPTURE_FAILED, T0 + timedelta(hours=1), amount, "NOK", key="K",
                          reason="declined"))


def test_decide_refuses_a_failed_attempts_key_for_another_amount() -> None:
    d = decide(vipps_after_failed_attempt(), Capture(at=T0 + timedelta(hours=2), amount=20000, key="K"))
    assert not d.allowed and [v.code.value for v in d.violations] == ["IDEMPOTENCY_KEY_CONFLICT"]
    assert "attempted capture 25000" in d.violations[0].message


def test_only_an_identical_retry_may_reuse_a_failed_attempts_key() -> None:
    p = vipps_after_failed_attempt()
    d = decide(p, Capture(at=T0 + timedelta(hours=2), amount=25000, key="K"))
    assert d.allowed and not d.warnings  # a first success, not a replay: money moves
    assert d.after is not None and d.after.captured == 25000
    # Another currency is another request too.
    other = decide(p, Capture(at=T0 + timedelta(hours=2), amount=25000, currency="EUR", key="K"))
    assert "IDEMPOTENCY_KEY_CONFLICT" in [v.code.value for v in other.violations]


def test_a_failure_that_does_not_show_its_amount_binds_no_amount() -> None:
    d = decide(vipps_after_failed_attempt(None), Capture(at=T0 + timedelta(hours=2), amount=20000, key="K"))
    assert d.allowed


def test_simulate_refuses_the_reuse_after_a_rehearsed_failure() -> None:
    from capstate import Plan, simulate

    plan = Plan.from_dict({"payment": {"amount": 100000, "currency": "NOK", "authorized_at": "2026-03-02T09:00:00Z"},
                           "step": [{"at": "+1h", "op": "capture", "amount": 25000, "key": "K", "outcome": "failed"},
                                    {"at": "+2h", "op": "capture", "amount": 20000, "key": "K"}]})
    result = simulate(plan, "vipps")
    assert [s.allowed for s in result.steps] == [True, False]
    assert result.steps[1].codes == ("IDEMPOTENCY_KEY_CONFLICT",)


@pytest.mark.parametrize("fast", [True, False])
def test_the_audit_reports_the_reuse(fast: bool) -> None:
    lines = [Event(REF, EventType.AUTHORIZED, T0, 100000, "NOK").to_json(),
             Event(REF, EventType.CAPTURE_FAILED, T0 + timedelta(hours=1), 25000, "NOK", key="K").to_json(),
             Event(REF, EventType.CAPTURED, T0 + timedelta(hours=2), 20000, "NOK", key="K").to_json()]
    report = audit(lines, "vipps", fast=fast)
    assert [(f.line, f.code.value) for f in report.violations] == [(3, "IDEMPOTENCY_KEY_CONFLICT")]
    # An identical retry that succeeded is clean, whichever path judged it.
    lines[2] = Event(REF, EventType.CAPTURED, T0 + timedelta(hours=2), 25000, "NOK", key="K").to_json()
    assert audit(lines, "vipps", fast=fast).clean


@pytest.mark.parametrize("fast", [True, False])
def test_an_async_attempts_outcome_under_its_key_is_clean_and_a_second_success_is_not(fast: bool) -> None:
    ref = "3b2f0c1e-6a4d-4f7b-9c2e-8d1a5e7f0b34"
    lines = [Event(ref, EventType.AUTHORIZED, T0, 5000, "EUR").to_json(),
             Event(ref, EventType.CAPTURE_REQUESTED, T0 + timedelta(hours=1), 5000, "EUR", key="K").to_json(),
             Event(ref, EventType.CAPTURED, T0 + timedelta(hours=2), 5000, "EUR", key="K").to_json()]
    assert audit(lines, "hellgate", fast=fast).clean
    again = [*lines, Event(ref, EventType.REFUNDED, T0 + timedelta(hours=3), 100, "EUR", key="K").to_json()]
    assert [f.code.value for f in audit(again, "hellgate", fast=fast).violations] == ["IDEMPOTENCY_KEY_CONFLICT"]


def test_the_provider_layer_does_not_take_a_retry_after_a_failure_for_a_replay() -> None:
    from capstate.providers._build import is_replay

    command = Capture(at=T0 + timedelta(hours=2), amount=25000, key="K")
    assert not is_replay(vipps_after_failed_attempt(), command, "capture", 25000)


# ------------------------------------------------------- 2. Hellgate: a failed capture straight from authorized

HG = "3b2f0c1e-6a4d-4f7b-9c2e-8d1a5e7f0b34"


@pytest.mark.parametrize("flow", ["automatic", "manual"])
@pytest.mark.parametrize("fast", [True, False])
def test_a_hellgate_capture_failed_from_authorized_is_a_clean_provider_fact(flow: str, fast: bool) -> None:
    # Automatic flow: "remaining in the state processing while it is already authorized and waiting that the
    # capture completes", and it ends "captured or failed"; manual: a webhook-only history shows the outcome only.
    from capstate import Flow

    lines = [Event(HG, EventType.AUTHORIZED, T0, 5000, "EUR", flow=Flow(flow)).to_json(),
             Event(HG, EventType.CAPTURE_FAILED, T0 + timedelta(hours=1), reason="declined").to_json()]
    report = audit(lines, "hellgate", fast=fast)
    assert report.clean, report.violations
    p = apply(apply(Payment.new(load_spec("hellgate"), HG), Event.from_json(lines[0])), Event.from_json(lines[1]))
    assert p.state == "failed" and p.captured == 0 and p.pending == 0
    # Like a failure out of `capturing`: terminal, nothing more to capture.
    d = decide(p, Capture(at=T0 + timedelta(hours=2), amount=100))
    assert not d.allowed


# ---------------------------------------------------------------- 3. Pipwave: partial may become full


def test_pipwave_partial_capture_is_a_marked_default_quoting_the_doc() -> None:
    source = load_spec("pipwave").policy.sources["partial_capture"]
    assert source.default and source.note is not None
    assert "If PG not supporting partial capture, full capture will be done" in source.note


def test_every_allowed_partial_pipwave_capture_warns_that_it_may_become_full() -> None:
    from capstate import Code, Plan, simulate

    p = Payment.authorized_for(load_spec("pipwave"), REF, amount=10000, currency="MYR", at=T0)
    d = decide(p, Capture(at=T0, amount=4000))
    assert d.allowed and Code.PARTIAL_MAY_BECOME_FULL in [w.code for w in d.warnings]
    (warning,) = [w for w in d.warnings if w.code is Code.PARTIAL_MAY_BECOME_FULL]
    assert "may capture the full 10000" in warning.message and "if the gateway cannot capture part" in warning.message
    # A full capture, or one the merchant's override settles, draws none.
    assert Code.PARTIAL_MAY_BECOME_FULL not in [w.code for w in decide(p, Capture(at=T0)).warnings]
    assert Code.PARTIAL_MAY_BECOME_FULL not in [w.code for w in decide(p, Capture(at=T0, amount=10000)).warnings]
    mine = Payment.authorized_for(load_spec("pipwave", {"partial_capture": "yes"}), REF, amount=10000,
                                  currency="MYR", at=T0)
    assert Code.PARTIAL_MAY_BECOME_FULL not in [w.code for w in decide(mine, Capture(at=T0, amount=4000)).warnings]
    # Documented partial capture (Bambora) draws none.
    bambora = Payment.authorized_for(load_spec("bambora"), REF, amount=10000, currency="NOK", at=T0)
    assert Code.PARTIAL_MAY_BECOME_FULL not in [w.code for w in decide(bambora, Capture(at=T0, amount=4000)).warnings]
    # simulate carries it on the step.
    plan = Plan.from_dict({"payment": {"amount": 10000, "currency": "MYR", "authorized_at": "2026-03-02T09:00:00Z"},
                           "step": [{"at": "+1d", "op": "capture", "amount": 4000}]})
    step = simulate(plan, "pipwave").steps[0]
    assert "PARTIAL_MAY_BECOME_FULL" in [w.code.value for w in step.warnings]


def test_the_new_warning_is_a_warning_code() -> None:
    from capstate._codes import VIOLATION_CODES, WARNING_CODES, Code

    assert Code.PARTIAL_MAY_BECOME_FULL in WARNING_CODES and Code.PARTIAL_MAY_BECOME_FULL not in VIOLATION_CODES
    # Documented with every other code (docs/codes.md, shipped for `capstate explain`), with the doc's words.
    codes = (Path(__file__).resolve().parents[1] / "docs" / "codes.md").read_text(encoding="utf-8")
    section = codes[codes.index("### PARTIAL_MAY_BECOME_FULL"):]
    assert "If PG not" in section[:section.index("\n### ", 3)]


# ------------------------------------------------------------------------------ 4. Bambora validity


def test_bambora_validity_is_a_marked_default_quoting_the_doc() -> None:
    source = load_spec("bambora").policy.sources["authorization_validity"]
    assert source.default and source.note is not None
    for words in ("usually", "about 1 week", "depends on the card issuer and the acquiring bank"):
        assert words in source.note


# ------------------------------------------------------------------ 7. zero-amount authorizations

ZERO_REFS = {"bambora": "order-10001", "hellgate": HG, "pipwave": "order-10001", "vipps": "order-10001"}
ZERO_CURRENCY = {"bambora": "NOK", "hellgate": "EUR", "pipwave": "MYR", "vipps": "NOK"}


@pytest.mark.parametrize("provider", sorted(ZERO_REFS))
@pytest.mark.parametrize("fast", [True, False])
def test_a_zero_amount_authorization_is_a_legal_fact_and_only_capturing_from_it_is_refused(provider: str,
                                                                                          fast: bool) -> None:
    ref, currency = ZERO_REFS[provider], ZERO_CURRENCY[provider]
    card_check = Event(ref, EventType.AUTHORIZED, T0, 0, currency)
    assert audit([card_check.to_json()], provider, fast=fast).clean
    p = apply(Payment.new(load_spec(provider), ref), card_check)
    assert p.state == "authorized" and p.authorized == 0
    for amount in (None, 100):
        d = decide(p, Capture(at=T0 + timedelta(hours=1), amount=amount, key="k-1"))
        assert not d.allowed
        assert {v.code.value for v in d.violations} <= {"AMOUNT_INVALID", "EXCEEDS_CAPTURABLE"}
    captured = Event(ref, EventType.CAPTURED, T0 + timedelta(hours=1), 100, currency)
    report = audit([card_check.to_json(), captured.to_json()], provider, fast=fast)
    assert report.violations and all(f.line == 2 for f in report.violations)


# ------------------------------------------------------ 5 and 6. references: one rule, where it belongs

SECRETS = {"CAPSTATE_BAMBORA_ACCESS_TOKEN": "tok", "CAPSTATE_BAMBORA_SECRET_TOKEN": "sec",
           "CAPSTATE_BAMBORA_MERCHANT_NUMBER": "T0001", "CAPSTATE_HELLGATE_API_KEY": "key"}


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("CAPSTATE_")} | SECRETS


@pytest.mark.parametrize(("provider", "reference", "currency"), [
    ("bambora", "order/10001", "NOK"), ("bambora", "order?10001", "NOK"), ("bambora", "order#1", "NOK"),
    ("bambora", "..", "NOK"), ("bambora", "order%2F1", "NOK"), ("bambora", "order\uff0f1", "NOK"),
    ("hellgate", "x" * 80, "EUR"), ("hellgate", "order-10001", "EUR"),
])
def test_validate_refuses_the_reference_capture_refuses_for_the_same_reason(tmp_path: Path, provider: str,
                                                                           reference: str, currency: str) -> None:
    history = jsonl(tmp_path / "h.jsonl", {"payment": reference, "type": "authorized", "at": "2026-03-02T09:00:00Z",
                                           "amount": 1000, "currency": currency})
    validate = cli(tmp_path, "validate", "--provider", provider, "--history", history, env=_env())
    capture = cli(tmp_path, "capture", "--provider", provider, "--history", history, "--dry-run", env=_env())
    assert validate.returncode == capture.returncode == 2, (validate, capture)
    assert "REFERENCE_INVALID" in validate.stderr and "REFERENCE_INVALID" in capture.stderr
    # One rule: decide refuses the authorization, and the audit reports it.
    d = decide(Payment.new(load_spec(provider), reference),
               Authorize(amount=1000, currency=currency, at=T0))
    assert [v.code.value for v in d.violations] == ["REFERENCE_INVALID"]


@pytest.mark.parametrize("provider", ["bambora", "hellgate", "vipps"])
@given(reference=st.one_of(st.text(max_size=60), st.uuids().map(str),
                           st.text(st.sampled_from("ab-./?#%\\\uff0f\uff0e\x00"), max_size=5)))
def test_the_spec_rule_and_the_url_path_accept_exactly_the_same_references(provider: str, reference: str) -> None:
    from capstate._errors import RequestError
    from capstate.providers._http import path_segment

    rule = load_spec(provider).policy.reference
    assert rule.in_path
    try:
        path_segment(reference, what="reference", rule=rule)
        sent = True
    except RequestError as exc:
        sent = False
        assert exc.reason == rule.problem(reference), (exc.reason, rule.problem(reference))
    assert sent is (rule.problem(reference) is None)
    assert rule.acceptor()(reference) is sent


def test_hellgate_payment_id_is_a_uuid_and_the_80_characters_are_the_capture_bodys() -> None:
    from capstate._errors import RequestError
    from capstate.providers import hellgate

    rule = load_spec("hellgate").policy.reference
    assert rule.problem(HG) is None and rule.problem(HG.upper()) is None
    assert rule.problem("x" * 80) is not None  # the old rule took any 80 characters as a payment id
    p = Payment.authorized_for(load_spec("hellgate"), HG, amount=5000, currency="EUR", at=T0)
    creds = hellgate.Credentials("key", base_url="https://api.example")
    body = orjson.loads(hellgate.build_capture(p, Capture(at=T0, amount=5000), creds, description="d" * 80).body)
    assert body["reference"] == "d" * 80
    with pytest.raises(RequestError) as err:
        hellgate.build_capture(p, Capture(at=T0, amount=5000), creds, description="d" * 81)
    assert err.value.field == "description"


# ----------------------------------------------------------- 10 (engine side). lone surrogates

AUTH = {"payment": "order-10001", "type": "authorized", "at": "2026-03-02T09:00:00Z", "amount": 1000,
        "currency": "NOK"}


@pytest.mark.parametrize("field", ["payment", "key", "provider", "reason"])
def test_an_event_with_a_lone_surrogate_is_an_event_error_naming_the_field(field: str) -> None:
    obj = AUTH | {field: "x\ud800"}
    with pytest.raises(EventError) as err:
        Event.from_dict(obj)
    assert err.value.field == field
    for fast in (True, False):
        report = audit([obj], "vipps", fast=fast)
        assert [f.code.value for f in report.violations] == ["LOG_MALFORMED"]
        orjson.dumps(report.to_dict())  # the report is still JSON (no raw surrogate in it)
    built = Event(**({"payment": "order-10001", "type": EventType.AUTHORIZED, "at": T0, "amount": 1000,
                      "currency": "NOK"} | {field: "x\ud800"}))
    report = audit([built], "vipps")
    assert [f.code.value for f in report.violations] == ["LOG_MALFORMED"]
    orjson.dumps(report.to_dict())


@pytest.mark.parametrize(("change", "where"), [
    (lambda p: p | {"description": "\ud800"}, "field 'description'"),
    (lambda p: p | {"payment": p["payment"] | {"reference": "r\udcff"}}, "field 'payment.reference'"),
    (lambda p: p | {"step": [{"at": "+1d", "op": "capture", "key": "k\ud800"}]}, "plan step 1: field 'key'"),
    (lambda p: p | {"step": [{"at": "+1d", "op": "wait", "note": "\udfff"}]}, "plan step 1: field 'note'"),
])
def test_a_plan_with_a_lone_surrogate_is_a_plan_error_naming_the_field(change: Any, where: str) -> None:
    from capstate import Plan, PlanError

    plan = {"payment": {"amount": 1000, "currency": "NOK", "authorized_at": "2026-03-02T09:00:00Z"}}
    with pytest.raises(PlanError, match="lone surrogate") as err:
        Plan.from_dict(change(plan))
    assert where in str(err.value)


def test_a_command_key_with_a_lone_surrogate_is_a_command_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="lone surrogate"):
        Capture(at=T0, key="k\udcff")
    # What argv bytes that are not UTF-8 become: one line, exit 2, not an internal error.
    history = jsonl(tmp_path / "h.jsonl", AUTH)
    done = subprocess.run([sys.executable, "-m", "capstate", "validate", "--provider", "vipps", "--history", history,
                           "--json", b"--key", b"\xff"], cwd=tmp_path, capture_output=True, timeout=60, check=False)
    assert done.returncode == 2 and b"lone surrogate" in done.stderr and b"internal error" not in done.stderr
