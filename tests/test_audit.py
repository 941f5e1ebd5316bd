"""The audit core: the bundled example logs report exactly the pinned (payment, code) pairs, and each
audit-only rule (malformed lines, order, dangling authorizations, the settled-payment bound) holds."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

import capstate
from capstate import AuditError, AuditReport, Code, Event, EventType, Finding, audit
from capstate._audit import Auditor, merge
from capstate._cli.audit_run import run_audit

LOGS = Path(__file__).resolve().parents[1] / "examples" / "logs"
EXPECTED: dict[str, Any] = orjson.loads((LOGS / "expected.json").read_bytes())


def line(payment: str, type_: str, at: str, provider: str | None = "vipps", **extra: Any) -> bytes:
    obj: dict[str, Any] = {"payment": payment, "type": type_, "at": at, **extra}
    if provider is not None:
        obj["provider"] = provider
    return orjson.dumps(obj)


def codes(report: AuditReport) -> list[tuple[str | None, str, int]]:
    return [(f.payment, f.code.value, f.line) for f in report.violations]


# ---------------------------------------------------------------------------------------- examples


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_logs_report_exactly_the_pinned_violations(name: str) -> None:
    expected = EXPECTED[name]
    report = run_audit([str(LOGS / name)], spec=None, fmt=expected["format"])
    want = [(v["payment"], v["code"], v["line"]) for v in expected["violations"]]
    assert codes(report) == want  # same pairs, same lines, no false positive, in report order
    assert all(f.file == str(LOGS / name) for f in report.violations)


def test_every_example_log_is_pinned() -> None:
    on_disk = {p.name for p in LOGS.iterdir() if p.name != "expected.json"}
    assert on_disk == set(EXPECTED)


def test_the_canonical_example_covers_the_breaches_the_issue_lists() -> None:
    pinned = {v["code"] for v in EXPECTED["shop-2026-01.jsonl"]["violations"]}
    assert pinned >= {"EXCEEDS_CAPTURABLE", "AUTHORIZATION_EXPIRED", "REMAINDER_CANCELLED",
                      "MULTIPLE_CAPTURES_UNSUPPORTED", "REFUND_EXCEEDS_CAPTURED", "DUPLICATE_CAPTURE",
                      "DANGLING_AUTHORIZATION", "LOG_MALFORMED", "OUT_OF_ORDER"}


def test_python_api_equals_the_cli_path_on_the_canonical_example() -> None:
    path = LOGS / "shop-2026-01.jsonl"
    with path.open("rb") as f:
        via_api = audit(f, source=str(path))
    via_run = run_audit([str(path)], spec=None)
    assert via_api.to_dict() == via_run.to_dict()
    assert via_api.events == 37 and via_api.payments == 14


def test_lines_dicts_and_events_audit_alike() -> None:
    raw = (LOGS / "shop-2026-01.jsonl").read_bytes().splitlines()
    good = [r for r in raw if r.startswith(b"{") and r.endswith(b"}")]
    as_bytes = audit(good)
    as_str = audit([r.decode() for r in good])
    as_dicts = audit([orjson.loads(r) for r in good])
    as_events = audit([Event.from_json(r) for r in good if b'"150.00"' not in r])
    assert as_bytes.to_dict() == as_str.to_dict() == as_dicts.to_dict()
    # Without the malformed line the later line numbers shift by one; the verdicts do not.
    assert [(f.payment, f.code, f.at) for f in as_events.violations] == \
           [(f.payment, f.code, f.at) for f in as_bytes.violations if f.code is not Code.LOG_MALFORMED]


# ------------------------------------------------------------------------------------------- shape


def test_report_shape_is_the_json_contract() -> None:
    report = audit([line("order-0000001", "authorized", "2026-01-05T10:00:00Z", amount=1000, currency="NOK"),
                    b"{not json",
                    line("order-0000001", "captured", "2026-01-05T11:00:00Z", amount=2000, key="k")],
                   source="x.jsonl")
    d = report.to_dict()
    assert list(d) == ["provider", "events", "payments", "violations", "counts"]
    assert d["provider"] == "vipps" and d["events"] == 2 and d["payments"] == 1
    assert [list(v) for v in d["violations"]] == [["payment", "line", "file", "code", "message", "at", "amount",
                                                   "currency"]] * 2
    # The money at stake: the excess over the capturable 1000, in the authorization's currency; none for a
    # line that is not an event.
    assert [(v["amount"], v["currency"]) for v in d["violations"]] == [(None, None), (1000, "NOK")]
    assert [(v["line"], v["code"]) for v in d["violations"]] == [(2, "LOG_MALFORMED"), (3, "EXCEEDS_CAPTURABLE")]
    assert d["violations"][1]["at"] == "2026-01-05T11:00:00Z" and d["violations"][1]["file"] == "x.jsonl"
    assert "capture 2000 > capturable 1000" in d["violations"][1]["message"]
    assert d["counts"] == {"EXCEEDS_CAPTURABLE": 1, "LOG_MALFORMED": 1}
    assert d["violations"][0]["at"] is None and d["violations"][0]["payment"] is None


def test_a_malformed_event_keeps_the_evidence_it_has() -> None:
    report = audit([b'{"payment":"order-0000009","type":"captured","at":"2026-01-05T12:00:00+01:00","amount":"9"}'])
    (f,) = report.violations
    assert (f.code, f.payment, f.at, f.line) == (Code.LOG_MALFORMED, "order-0000009", "2026-01-05T11:00:00Z", 1)
    assert "amount" in f.message and report.events == 0
    assert isinstance(report.violations[0], Finding)
    assert "audit" in capstate.__all__ and "AuditReport" in capstate.__all__


def test_violations_sort_by_file_order_then_line_then_code() -> None:
    a = Auditor()
    a.feed(line("order-0000002", "captured", "2026-01-05T11:00:00Z", amount=5), 7, "b.jsonl")
    a.feed(b"garbage", 3, "b.jsonl")
    a.feed(b"garbage", 9, "a.jsonl")
    report = merge([a.partial()], files=("b.jsonl", "a.jsonl"))
    assert [(f.file, f.line) for f in report.violations] == [("b.jsonl", 3), ("b.jsonl", 7), ("a.jsonl", 9)]


# ----------------------------------------------------------------------------------- engine rules


def test_the_same_key_twice_is_a_duplicate_capture_and_another_amount_a_key_conflict() -> None:
    head = [line("order-0000003", "authorized", "2026-01-05T10:00:00Z", amount=10000, currency="NOK"),
            line("order-0000003", "captured", "2026-01-05T11:00:00Z", amount=2000, key="ship-1")]
    same = audit([*head, line("order-0000003", "captured", "2026-01-05T12:00:00Z", amount=2000, key="ship-1")])
    other = audit([*head, line("order-0000003", "captured", "2026-01-05T12:00:00Z", amount=3000, key="ship-1")])
    assert [f.code for f in same.violations] == [Code.DUPLICATE_CAPTURE]
    assert [f.code for f in other.violations] == [Code.IDEMPOTENCY_KEY_CONFLICT]


def test_audit_and_observe_agree_event_by_event() -> None:
    raw = [r for r in (LOGS / "shop-2026-01.jsonl").read_bytes().splitlines()]
    report = audit(raw)
    payments: dict[str, capstate.Payment] = {}
    expected: list[tuple[int, str]] = []
    for number, r in enumerate(raw, start=1):
        try:
            event = Event.from_json(r)
        except capstate.EventError:
            continue
        p = payments.get(event.payment) or capstate.Payment.new(capstate.load_spec(event.provider or ""),
                                                               event.payment)
        payments[event.payment], violations = capstate.observe(p, event)
        expected += [(number, v.code.value) for v in violations]
    audit_only = {"LOG_MALFORMED", "OUT_OF_ORDER", "DANGLING_AUTHORIZATION"}
    assert [(f.line, f.code.value) for f in report.violations if f.code.value not in audit_only] == expected


# ----------------------------------------------------------------------------------- audit rules


def test_out_of_order_compares_with_the_previous_event_and_the_audit_goes_on() -> None:
    report = audit([line("order-0000004", "authorized", "2026-01-05T10:00:00Z", amount=10000, currency="NOK"),
                    line("order-0000004", "captured", "2026-01-09T10:00:00Z", amount=1000, key="a"),
                    line("order-0000004", "captured", "2026-01-06T10:00:00Z", amount=1000, key="b"),
                    line("order-0000004", "captured", "2026-01-07T10:00:00Z", amount=20000, key="c")])
    assert [(f.line, f.code) for f in report.violations] == [(3, Code.OUT_OF_ORDER), (4, Code.EXCEEDS_CAPTURABLE)]
    assert "previous event at 2026-01-09T10:00:00Z (line 2)" in report.violations[0].message


def test_dangling_is_judged_at_as_of_and_only_where_a_cancel_could_release() -> None:
    lines = [line("order-0000005", "authorized", "2026-01-01T10:00:00Z", amount=10000, currency="DKK"),
             line("order-0000005", "captured", "2026-01-02T10:00:00Z", amount=4000, key="a"),
             # hellgate's validity is unknown: never judged
             line("b2c1f9a0-0000-4000-8000-000000000001", "authorized", "2026-01-01T10:00:00Z", "hellgate",
                  amount=10000, currency="EUR"),
             # bambora captured once: the remainder lapses and no cancel exists after a capture
             line("T1", "authorized", "2026-01-01T10:00:00Z", "bambora", amount=10000, currency="DKK"),
             line("T1", "captured", "2026-01-02T10:00:00Z", "bambora", amount=4000),
             # bambora never captured: a cancel would have released it
             line("T2", "authorized", "2026-01-01T10:00:00Z", "bambora", amount=10000, currency="DKK")]
    before = audit(lines, as_of="2026-01-07T23:00:00Z")
    assert before.violations == ()
    bambora_lapsed = audit(lines, as_of=datetime(2026, 1, 8, 10, tzinfo=UTC))
    assert [(f.payment, f.line, f.at) for f in bambora_lapsed.violations] == [("T2", 6, "2026-01-08T10:00:00Z")]
    both = audit(lines, as_of="2026-01-15T10:00:00Z")
    assert [(f.payment, f.line) for f in both.violations] == [("order-0000005", 2), ("T2", 6)]
    assert "remainder 6000 (DKK 60.00) of 10000" in both.violations[0].message
    assert both.as_of == "2026-01-15T10:00:00Z"
    # default as_of: the latest event (here 2026-01-02), before any lapse
    assert audit(lines).violations == ()


def test_a_logged_lapse_of_a_held_remainder_is_dangling_at_its_line() -> None:
    report = audit([line("order-0000006", "authorized", "2026-01-01T10:00:00Z", amount=10000, currency="DKK"),
                    line("order-0000006", "captured", "2026-01-02T10:00:00Z", amount=4000, key="a"),
                    line("order-0000006", "expired", "2026-01-15T10:00:00Z")])
    assert [(f.code, f.line) for f in report.violations] == [(Code.DANGLING_AUTHORIZATION, 3)]
    assert "remainder 6000" in report.violations[0].message


def test_a_cancel_at_or_after_the_lapse_is_the_lapse_not_a_late_cancel() -> None:
    # Vipps refuses a merchant's cancel past the deadline ("Cancel period expired") and cancels the
    # remainder itself (payment-rules): a successful cancel logged then records the lapse. The breach
    # is the remainder held until it, not a cancel "after expiry".
    held = [line("order-0000031", "authorized", "2026-01-01T10:00:00Z", amount=10000, currency="DKK"),
            line("order-0000031", "captured", "2026-01-02T10:00:00Z", amount=4000, key="a"),
            line("order-0000031", "cancelled", "2026-01-16T10:00:00Z")]
    in_time = [*held[:2], line("order-0000031", "cancelled", "2026-01-14T10:00:00Z", key="x")]
    for fast in (True, False):
        report = audit(held, fast=fast)
        assert [(f.code.value, f.line) for f in report.violations] == [("DANGLING_AUTHORIZATION", 3)]
        assert "remainder 6000 (DKK 60.00)" in report.violations[0].message
        assert "lapsed at 2026-01-15T10:00:00Z (released at 2026-01-16T10:00:00Z)" in report.violations[0].message
        assert audit(in_time, fast=fast).violations == ()


def test_an_automatic_capture_flow_never_dangles() -> None:
    # Hellgate captures an automatic flow by itself ("processing" until the capture completes, research
    # 3.2): the merchant has no remainder to release, so a lapse there is not theirs, logged or judged.
    hg = "b2c1f9a0-0000-4000-8000-000000000003"
    manual = "b2c1f9a0-0000-4000-8000-000000000004"
    lines = [line(hg, "authorized", "2026-01-01T10:00:00Z", "hellgate", amount=1000, currency="EUR", flow="automatic"),
             line(manual, "authorized", "2026-01-01T10:00:00Z", "hellgate", amount=1000, currency="EUR", flow="manual")]
    seven = {"hellgate.authorization_validity": "7d"}
    for fast in (True, False):
        judged = audit(lines, as_of="2026-02-01T00:00:00Z", overrides=seven, fast=fast)
        assert [(f.payment, f.code.value) for f in judged.violations] == [(manual, "DANGLING_AUTHORIZATION")]
        logged = audit([*lines, line(hg, "expired", "2026-01-09T10:00:00Z", "hellgate")], overrides=seven, fast=fast)
        assert [(f.payment, f.code.value) for f in logged.violations] == [(manual, "DANGLING_AUTHORIZATION")]


@pytest.mark.parametrize(("refused", "spec"), [
    (line("ch-0000001", "captured", "2031-01-02T00:00:00Z", "stripe", amount=5000), None),
    (line("order-0000008", "captured", "2031-01-02T00:00:00Z", None, amount=5000), None),
    (line("order-0000007", "captured", "2031-01-02T00:00:00Z", "bambora", amount=5000), None),
    (line("order-0000009", "captured", "2031-01-02T00:00:00Z", "bambora", amount=5000), "vipps"),
])
def test_a_line_the_audit_refuses_does_not_move_the_default_as_of(refused: bytes, spec: str | None) -> None:
    # A partial capture of NOK (180 days): nothing lapsed by the latest audited event. A LOG_MALFORMED line
    # (unknown provider, none, another provider's) stamped years later used to become the default as_of,
    # and every open payment in the log was then reported DANGLING_AUTHORIZATION.
    history = [line("order-0000007", "authorized", "2026-01-01T10:00:00Z", amount=10000, currency="NOK"),
               line("order-0000007", "captured", "2026-01-02T10:00:00Z", amount=5000, key="k")]
    for fast in (True, False):
        report = audit([*history, refused], spec=spec, fast=fast)
        assert [(f.code, f.line) for f in report.violations] == [(Code.LOG_MALFORMED, 3)]
        assert report.as_of == "2026-01-02T10:00:00Z"


def test_provider_comes_from_the_spec_or_each_payments_first_event() -> None:
    no_provider = line("order-0000007", "authorized", "2026-01-01T10:00:00Z", None, amount=10000, currency="NOK")
    blind = audit([no_provider])
    assert [(f.code, f.payment) for f in blind.violations] == [(Code.LOG_MALFORMED, "order-0000007")]
    assert "no provider" in blind.violations[0].message and blind.events == 1 and blind.payments == 0
    assert audit([no_provider], spec="vipps").violations == ()
    mismatch = audit([line("order-0000007", "authorized", "2026-01-01T10:00:00Z", "bambora", amount=1,
                           currency="NOK")], spec="vipps")
    assert [f.code for f in mismatch.violations] == [Code.LOG_MALFORMED]
    unknown = audit([line("order-0000007", "authorized", "2026-01-01T10:00:00Z", "stripe", amount=1,
                          currency="NOK")])
    assert "not a shipped spec" in unknown.violations[0].message


def test_overrides_apply_by_provider_prefix() -> None:
    lines = [line("T3", "authorized", "2026-01-01T10:00:00Z", "bambora", amount=10000, currency="DKK"),
             line("T3", "captured", "2026-01-02T10:00:00Z", "bambora", amount=4000),
             line("T3", "captured", "2026-01-03T10:00:00Z", "bambora", amount=4000)]
    assert [f.code for f in audit(lines).violations] == [Code.MULTIPLE_CAPTURES_UNSUPPORTED]
    assert [f.code for f in audit(lines, overrides={"vipps.max_captures": 2}).violations] == \
           [Code.MULTIPLE_CAPTURES_UNSUPPORTED]
    # The second capture is now allowed; bambora's machine still ends in `captured` after the first.
    relaxed = audit(lines, overrides={"bambora.max_captures": 2})
    assert Code.MULTIPLE_CAPTURES_UNSUPPORTED not in [f.code for f in relaxed.violations]


def test_bad_as_of_and_bad_spec_are_errors_not_findings() -> None:
    with pytest.raises(AuditError):
        audit([], as_of=datetime(2026, 1, 1))  # naive
    with pytest.raises(AuditError):
        audit([], as_of="yesterday")
    with pytest.raises(capstate.SpecError):
        audit([], spec="no-such-provider")
    with pytest.raises(capstate.SpecError):
        audit([line("o-1", "authorized", "2026-01-01T10:00:00Z", amount=1, currency="NOK")],
              overrides={"max_captures": "lots"})


def test_settled_payments_are_exact_inside_the_window_then_forgotten() -> None:
    history = [line("order-0000008", "authorized", "2026-01-01T10:00:00Z", amount=10000, currency="NOK"),
               line("order-0000008", "captured", "2026-01-01T11:00:00Z", amount=10000, key="a")]
    late = line("order-0000008", "refunded", "2026-01-02T10:00:00Z", amount=20000, key="r")

    def run(window: int, gap: int) -> list[Code]:
        a = Auditor(settled_window=window)
        a.feed(history[0], 1, "-")
        a.feed(history[1], 2, "-")
        for filler in range(gap):  # other payments' lines in between
            a.feed(line(f"order-{filler:07d}x", "authorized", "2026-01-01T12:00:00Z", amount=100,
                        currency="NOK"), 3 + filler, "-")
        a.feed(late, 3 + gap, "-")
        return [f.code for f in merge([a.partial()]).violations]

    # Remembered: the late refund is judged against the captured payment.
    assert run(window=10, gap=9) == [Code.REFUND_EXCEEDS_CAPTURED]
    # One line past the window it is forgotten, exactly as a log that starts mid-history.
    assert run(window=10, gap=10) == [Code.NOT_AUTHORIZED]
    assert run(window=0, gap=0) == [Code.NOT_AUTHORIZED]


def test_forgotten_payments_free_their_memory() -> None:
    a = Auditor(settled_window=100)
    for i in range(5000):
        ref = f"order-{i:07d}"
        a.feed(line(ref, "authorized", "2026-01-01T10:00:00Z", amount=1000, currency="NOK"), 2 * i + 1, "-")
        a.feed(line(ref, "captured", "2026-01-01T11:00:00Z", amount=1000, key="k"), 2 * i + 2, "-")
    # Every payment settled; only those within the last 100 lines (plus the 1/16 the auditor may reclaim
    # late, 6 lines) are still held: two lines a payment.
    # Young ones as Records, older ones packed: both count.
    assert len(a._settled) + len(a._k.packed) <= (100 + 100 // 16) // 2 + 1 and not a._live
    assert a._k.packed  # packing happened (young: 100 // 16 lines)
    assert a.payments == 5000 and merge([a.partial()]).violations == ()


def test_event_types_the_issue_lists_are_all_judged() -> None:
    # A capture in flight on hellgate, then its outcome: no finding for the legal path.
    ref = "3b2f0c1e-6a4d-4f7b-9c2e-8d1a5e7f0b34"
    report = audit([line(ref, "authorized", "2026-01-01T10:00:00Z", "hellgate", amount=5000, currency="EUR"),
                    line(ref, "capture_requested", "2026-01-01T10:01:00Z", "hellgate", amount=5000),
                    line(ref, "capture_failed", "2026-01-01T10:02:00Z", "hellgate", reason="declined")])
    assert report.violations == () and report.events == 3
    assert {t.value for t in EventType} >= {"capture_requested", "capture_failed", "expired"}


def _h(*events: tuple[str, str, str, dict[str, Any]], provider: str = "vipps") -> list[bytes]:
    return [line(ref, t, at, provider, **extra) for ref, t, at, extra in events]


_AUTH = {"amount": 10000, "currency": "NOK"}
HG03, HG11 = "b2c1f9a0-0000-4000-8000-000000000303", "b2c1f9a0-0000-4000-8000-000000000311"  # Hellgate: payment ids
_EVERY_CODE: dict[str, tuple[list[bytes], dict[str, Any]]] = {
    "NOT_AUTHORIZED": (_h(("order-01", "captured", "2026-01-01T10:00:00Z", {"amount": 100})), {}),
    "INVALID_STATE": (_h(("order-02", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                         ("order-02", "authorized", "2026-01-01T11:00:00Z", _AUTH)), {}),
    "CAPTURE_IN_FLIGHT": (_h((HG03, "authorized", "2026-01-01T10:00:00Z", {"amount": 100, "currency": "EUR"}),
                             (HG03, "capture_requested", "2026-01-01T10:01:00Z", {"amount": 50}),
                             (HG03, "capture_requested", "2026-01-01T10:02:00Z", {"amount": 50}),
                             provider="hellgate"), {}),
    "AMOUNT_INVALID": (_h(("order-04", "authorized", "2026-01-01T10:00:00Z", {"amount": 50, "currency": "NOK"})), {}),
    "CURRENCY_MISMATCH": (_h(("order-05", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                             ("order-05", "captured", "2026-01-01T11:00:00Z", {"amount": 100, "currency": "DKK"})),
                          {}),
    "EXCEEDS_CAPTURABLE": (_h(("order-06", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                              ("order-06", "captured", "2026-01-01T11:00:00Z", {"amount": 10001})), {}),
    "PARTIAL_CAPTURE_UNSUPPORTED": (_h(("T07", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                                       ("T07", "captured", "2026-01-01T11:00:00Z", {"amount": 100}),
                                       provider="bambora"), {"bambora.partial_capture": "no"}),
    "MULTIPLE_CAPTURES_UNSUPPORTED": (_h(("T08", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                                         ("T08", "captured", "2026-01-01T11:00:00Z", {"amount": 100}),
                                         ("T08", "captured", "2026-01-01T12:00:00Z", {"amount": 100}),
                                         provider="bambora"), {}),
    "REMAINDER_CANCELLED": (_h(("order-09", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                               ("order-09", "cancelled", "2026-01-01T11:00:00Z", {}),
                               ("order-09", "captured", "2026-01-01T12:00:00Z", {"amount": 100})), {}),
    "AUTHORIZATION_EXPIRED": (_h(("T10", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                                 ("T10", "captured", "2026-01-09T10:00:00Z", {"amount": 10000}),
                                 provider="bambora"), {}),
    "AUTOMATIC_CAPTURE_FLOW": (_h((HG11, "authorized", "2026-01-01T10:00:00Z",
                                   {"amount": 100, "currency": "EUR", "flow": "automatic"}),
                                  (HG11, "capture_requested", "2026-01-01T10:01:00Z", {"amount": 100}),
                                  provider="hellgate"), {}),
    "IDEMPOTENCY_KEY_CONFLICT": (_h(("order-12", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                                    ("order-12", "captured", "2026-01-01T11:00:00Z", {"amount": 100, "key": "k"}),
                                    ("order-12", "refunded", "2026-01-01T12:00:00Z", {"amount": 100, "key": "k"})),
                                 {}),
    "REFERENCE_INVALID": (_h(("o-13", "authorized", "2026-01-01T10:00:00Z", _AUTH)), {}),
    "REFUND_EXCEEDS_CAPTURED": (_h(("order-14", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                                   ("order-14", "captured", "2026-01-01T11:00:00Z", {"amount": 100}),
                                   ("order-14", "refunded", "2026-01-01T12:00:00Z", {"amount": 101})), {}),
    "DUPLICATE_CAPTURE": (_h(("order-15", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                             ("order-15", "captured", "2026-01-01T11:00:00Z", {"amount": 100, "key": "k"}),
                             ("order-15", "captured", "2026-01-01T11:00:01Z", {"amount": 100, "key": "k"})), {}),
    "DANGLING_AUTHORIZATION": (_h(("order-16", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                                  ("order-16", "captured", "2026-08-01T10:00:00Z", {"amount": 100}),
                                  ("order-17", "authorized", "2026-08-02T10:00:00Z", _AUTH)), {}),
    "LOG_MALFORMED": ([b'{"payment":"order-18","type":"captured"}'], {}),
    "OUT_OF_ORDER": (_h(("order-19", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                        ("order-19", "captured", "2026-01-01T09:00:00Z", {"amount": 100})), {}),
    "CURRENCY_UNSUPPORTED": (_h(("order-20", "authorized", "2026-01-01T10:00:00Z",
                                 {"amount": 10000, "currency": "SEK"})), {}),
    "MULTIPLE_REFUNDS_UNSUPPORTED": (_h(("T21", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                                        ("T21", "captured", "2026-01-01T11:00:00Z", {"amount": 10000}),
                                        ("T21", "refunded", "2026-01-02T11:00:00Z", {"amount": 100}),
                                        ("T21", "refunded", "2026-01-03T11:00:00Z", {"amount": 100}),
                                        provider="bambora"), {}),
    "REFUND_WINDOW_EXPIRED": (_h(("order-22", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                                 ("order-22", "captured", "2026-01-01T11:00:00Z", {"amount": 10000}),
                                 ("order-22", "refunded", "2027-01-02T11:00:00Z", {"amount": 100})), {}),
    "CANCEL_AMOUNT_INVALID": (_h(("order-23", "authorized", "2026-01-01T10:00:00Z", _AUTH),
                                 ("order-23", "cancelled", "2026-01-01T11:00:00Z", {"amount": 100})), {}),
}


def test_every_violation_code_a_history_can_show_is_covered() -> None:
    from capstate._codes import VIOLATION_CODES

    # Only a request carries the duty to send a key; a logged fact without one breaks nothing.
    # The journal's codes judge intents and provider read-backs, never a line of a history.
    command_only = {Code.IDEMPOTENCY_KEY_REQUIRED, Code.OPERATION_IN_FLIGHT, Code.OUT_OF_BAND,
                    Code.INTENT_UNSETTLED}
    assert set(_EVERY_CODE) == {c.value for c in VIOLATION_CODES - command_only}


@pytest.mark.parametrize("code", sorted(_EVERY_CODE))
def test_each_code_is_reported_by_the_audit(code: str) -> None:
    lines, overrides = _EVERY_CODE[code]
    report = audit(lines, overrides=overrides)
    found = [f.code.value for f in report.violations]
    assert code in found, (code, [(f.code.value, f.message) for f in report.violations])
    # The history shows its breach and nothing unrelated; the last-line evidence names the payment.
    assert all(f.payment is not None or f.code is Code.LOG_MALFORMED for f in report.violations)


def test_the_python_api_ignores_a_utf8_bom_on_the_first_line_as_the_cli_does() -> None:
    first = line("order-0000031", "authorized", "2026-01-01T10:00:00Z", amount=10000, currency="NOK")
    second = line("order-0000031", "captured", "2026-01-02T10:00:00Z", amount=10000, key="k")
    for lines in ([b"\xef\xbb\xbf" + first, second], ["\ufeff" + first.decode(), second.decode()]):
        report = audit(lines)
        assert report.violations == () and report.events == 2, report.violations


@pytest.mark.parametrize(("bad", "field"), [
    ({"at": datetime(2026, 1, 2, 9)}, "at"),              # naive: would meet aware instants in the bookkeeping
    ({"payment": ["order-10001"]}, "payment"),                # unhashable: would break the payment index
    ({"payment": ""}, "payment"),
    ({"amount": -5}, "amount"),
    ({"type": "captured"}, "type"),
])
def test_a_hand_built_event_that_is_no_fact_is_malformed_and_the_audit_goes_on(bad: dict[str, Any],
                                                                                field: str) -> None:
    """capstate.audit takes Events too; one without validators is LOG_MALFORMED at its line, never a crash."""
    t0 = datetime(2026, 1, 2, 9, tzinfo=UTC)
    auth = Event("order-10001", EventType.AUTHORIZED, t0, 100_000, "NOK", provider="vipps")
    fields: dict[str, Any] = {"payment": "order-10001", "type": EventType.CAPTURED, "at": t0, "amount": 1000,
                              "currency": "NOK", "provider": "vipps"} | bad
    broken = Event(fields["payment"], fields["type"], fields["at"], fields["amount"], fields["currency"],
                   provider=fields["provider"])
    good = Event("order-10001", EventType.CAPTURED, t0, 2000, "NOK", provider="vipps", key="k-2")
    report = audit([auth, broken, good])
    malformed = [f for f in report.violations if f.code is Code.LOG_MALFORMED]
    assert [(f.line, f.message.startswith(f"not a valid event: {field}:")) for f in malformed] == [(2, True)]
    assert report.events == 2 and report.payments == 1
    assert [f.code for f in report.violations] == [Code.LOG_MALFORMED]
