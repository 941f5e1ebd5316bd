"""Values: money in integer minor units, decimal strings at the edge, events, commands and payments.

Money is never a float; exponents come from ISO 4217; decimal strings convert exactly or not at all.
Canonical events parse strictly and name the bad field; commands refuse floats and naive datetimes;
payments refuse impossible amounts, and their repr never dumps the spec.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import orjson
import pytest

import capstate
from capstate import (
    Authorize,
    Cancel,
    Capture,
    CommandError,
    CurrencyError,
    Event,
    EventError,
    EventType,
    Flow,
    IdentifierRule,
    Money,
    Payment,
    Refund,
    exponent,
    from_major_string,
    to_major_string,
)
from capstate._audit import Finding
from capstate._values import Decision, Violation, _Deferrable, deferred_slot, set_pending

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

# ------------------------------------------------------------------------------------------- exponents


@pytest.mark.parametrize(("code", "digits"), [("NOK", 2), ("EUR", 2), ("JPY", 0), ("KWD", 3), ("BHD", 3),
                                              ("ISK", 0), ("USD", 2)])
def test_exponent(code: str, digits: int) -> None:
    assert exponent(code) == digits


@pytest.mark.parametrize("code", ["XAU", "XDR", "XXX", "ZZZ", "nok", "Nok", "", "NO", "NOKK", " NOK", 5, None])
def test_exponent_refuses(code: Any) -> None:
    with pytest.raises(CurrencyError) as info:
        exponent(code)
    assert isinstance(info.value, ValueError)
    assert repr(code) in str(info.value)


# ------------------------------------------------------------------------------------ decimal strings

ROUND_TRIPS = [
    (1050, "NOK", "10.50"),
    (-1050, "NOK", "-10.50"),
    (5, "NOK", "0.05"),
    (-5, "NOK", "-0.05"),
    (0, "NOK", "0.00"),
    (100000, "NOK", "1000.00"),
    (1234, "KWD", "1.234"),
    (-1234, "KWD", "-1.234"),
    (1, "KWD", "0.001"),
    (-1, "KWD", "-0.001"),
    (100, "JPY", "100"),
    (-7, "JPY", "-7"),
    (0, "JPY", "0"),
    (99_999_999_999, "MYR", "999999999.99"),
    (10**30 + 1, "NOK", "10000000000000000000000000000.01"),
]


@pytest.mark.parametrize(("minor", "currency", "text"), ROUND_TRIPS, ids=[f"{c}:{t}" for _, c, t in ROUND_TRIPS])
def test_major_string_round_trip(minor: int, currency: str, text: str) -> None:
    assert to_major_string(minor, currency) == text
    assert from_major_string(text, currency) == minor


@pytest.mark.parametrize("currency", ["NOK", "JPY", "KWD"])
def test_major_string_round_trip_over_a_range(currency: str) -> None:
    for minor in range(-2003, 2004, 7):
        assert from_major_string(to_major_string(minor, currency), currency) == minor


@pytest.mark.parametrize(("text", "currency", "minor"), [
    ("10.5", "NOK", 1050),
    ("1.230", "NOK", 123),
    ("1.0", "JPY", 1),
    ("1.00", "JPY", 1),
    ("0.1", "KWD", 100),
    ("-0", "NOK", 0),
    ("007", "NOK", 700),
])
def test_from_major_string_exact_spellings(text: str, currency: str, minor: int) -> None:
    assert from_major_string(text, currency) == minor


@pytest.mark.parametrize(("text", "currency"), [
    ("1.234", "NOK"),
    ("1.5", "JPY"),
    ("0.0001", "KWD"),
    ("-0.001", "NOK"),
    ("1e3", "NOK"),
    ("1,50", "NOK"),
    (" 1", "NOK"),
    ("1 ", "NOK"),
    ("10.50\n", "NOK"),  # a regex "$" matches before a final newline; an amount must end where it ends
    ("\n10.50", "NOK"),
    ("1.", "NOK"),
    (".5", "NOK"),
    ("+1", "NOK"),
    ("", "NOK"),
    ("--1", "NOK"),
    ("1.5.0", "NOK"),
    ("NaN", "NOK"),
    ("Infinity", "NOK"),
    ("١٢", "NOK"),  # Arabic-Indic digits: \d would match them, an amount must not
])
def test_from_major_string_refuses_inexact_or_malformed(text: str, currency: str) -> None:
    with pytest.raises(ValueError, match=r"decimal|decimals"):
        from_major_string(text, currency)


def test_from_major_string_refuses_an_unknown_currency() -> None:
    with pytest.raises(CurrencyError):
        from_major_string("1.00", "ZZZ")


@pytest.mark.parametrize(("minor", "currency", "places", "text"), [
    (1050, "NOK", 3, "10.500"),
    (1050, "NOK", 1, "10.5"),
    (1230, "KWD", 2, "1.23"),
    (1000, "KWD", 0, "1"),
    (5, "JPY", 2, "5.00"),
])
def test_to_major_string_with_places(minor: int, currency: str, places: int, text: str) -> None:
    assert to_major_string(minor, currency, places) == text


@pytest.mark.parametrize(("minor", "currency", "places"), [(1055, "NOK", 1), (1234, "KWD", 2), (1, "NOK", 0)])
def test_to_major_string_never_rounds(minor: int, currency: str, places: int) -> None:
    with pytest.raises(ValueError, match=str(minor)):
        to_major_string(minor, currency, places)


def test_to_major_string_refuses_a_float() -> None:
    """Money is never a float: 10.5 is not 1050 minor units, and 1050.0 is not an int either."""
    for minor in (10.5, 1050.0):
        with pytest.raises((TypeError, ValueError)):
            to_major_string(minor, "NOK")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- money


@pytest.mark.parametrize("minor", [10.5, 10.0, True, "1050", None])
def test_money_refuses_anything_but_an_int(minor: Any) -> None:
    with pytest.raises(TypeError, match="integer minor units"):
        Money(minor, "NOK")


@pytest.mark.parametrize("currency", ["nok", "XAU", "ZZZ"])
def test_money_refuses_a_bad_currency(currency: str) -> None:
    with pytest.raises(CurrencyError):
        Money(100, currency)


def test_money_prints_major_units_and_is_frozen() -> None:
    assert str(Money(1050, "NOK")) == "NOK 10.50"
    assert str(Money(-5, "KWD")) == "KWD -0.005"
    assert str(Money(500, "JPY")) == "JPY 500"
    assert Money(1050, "NOK") == Money(1050, "NOK") != Money(1050, "DKK")
    money = Money(1, "EUR")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        money.minor = 2  # type: ignore[misc]


# --------------------------------------------------------------------------------------------- events

VALID = {"payment": "order-10001", "type": "captured", "at": "2026-01-05T12:00:00Z", "amount": 25000}


def line(**changes: Any) -> bytes:
    obj = {**VALID, **changes}
    return orjson.dumps({k: v for k, v in obj.items() if v is not DROP})


DROP = object()


@pytest.mark.parametrize(("raw", "expected"), [
    (line(), Event("order-10001", EventType.CAPTURED, T0, 25000)),
    (line(type="authorized", amount=100000, currency="NOK", flow="manual", provider="vipps"),
     Event("order-10001", EventType.AUTHORIZED, T0, 100000, "NOK", provider="vipps", flow=Flow.MANUAL)),
    (line(type="capture_requested", amount=DROP, key="ship-1"),
     Event("order-10001", EventType.CAPTURE_REQUESTED, T0, key="ship-1")),
    (line(type="capture_failed", amount=DROP, reason="issuer declined"),
     Event("order-10001", EventType.CAPTURE_FAILED, T0, reason="issuer declined")),
    (line(type="cancelled", amount=DROP), Event("order-10001", EventType.CANCELLED, T0)),
    (line(type="refunded", amount=0, currency="KWD"), Event("order-10001", EventType.REFUNDED, T0, 0, "KWD")),
    (line(type="expired", amount=DROP, at="2026-01-05T13:00:00+01:00"), Event("order-10001", EventType.EXPIRED, T0)),
    (line(at="2026-01-05T12:00:00.250Z"),
     Event("order-10001", EventType.CAPTURED, T0 + timedelta(milliseconds=250), 25000)),
])
def test_event_from_json_valid(raw: bytes, expected: Event) -> None:
    event = Event.from_json(raw)
    assert event == expected
    assert event.at.utcoffset() is not None
    assert Event.from_json(raw.decode()) == expected


INVALID = [
    (line(payment=DROP), "payment"),
    (line(payment=""), "payment"),
    (line(payment=42), "payment"),
    (line(type="capture"), "type"),
    (line(type=DROP), "type"),
    (line(type="CAPTURED"), "type"),
    (line(at="2026-01-01T00:00:00"), "at"),
    (line(at=DROP), "at"),
    (line(at="2026-13-01T00:00:00Z"), "at"),
    (line(at="yesterday"), "at"),
    (line(at=1767614400), "at"),
    (line(amount=-1), "amount"),
    (line(amount=1.5), "amount"),
    (line(amount=25000.0), "amount"),
    (line(amount=True), "amount"),
    (line(amount="25000"), "amount"),
    (line(amount=DROP), "amount"),
    (line(type="refunded", amount=DROP), "amount"),
    (line(type="authorized", amount=DROP, currency="NOK"), "amount"),
    (line(type="authorized", amount=100000), "currency"),
    (line(currency="XYZ"), "currency"),
    (line(currency="nok"), "currency"),
    (line(currency=578), "currency"),
    (line(flow="sometimes"), "flow"),
    (line(key=5), "key"),
    (line(provider=["vipps"]), "provider"),
    (line(reason={"code": 1}), "reason"),
]


@pytest.mark.parametrize(("raw", "field"), INVALID, ids=[f"{f}:{r.decode()}" for r, f in INVALID])
def test_event_from_json_names_the_bad_field(raw: bytes, field: str) -> None:
    with pytest.raises(EventError) as info:
        Event.from_json(raw)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize(("raw", "words"), [
    (b"{not json", "JSON"),
    (b"", "JSON"),
    (b'{"payment": "order-10001",', "JSON"),
    (b"[1, 2]", "object"),
    (b'"captured"', "object"),
    (b"null", "object"),
])
def test_event_from_json_refuses_what_is_not_an_object(raw: bytes, words: str) -> None:
    with pytest.raises(EventError, match=words) as info:
        Event.from_json(raw)
    assert info.value.field is None
    assert isinstance(info.value, ValueError) and isinstance(info.value, capstate.CapstateError)


def test_event_ignores_unknown_fields() -> None:
    raw = line(colour="red", nested={"a": [1, 2]}, amount_major="250.00")
    assert Event.from_json(raw) == Event.from_json(line())


EVENTS = [
    Event("order-10001", EventType.AUTHORIZED, T0, 100000, "NOK", "vipps", "auth-1", Flow.AUTOMATIC),
    Event("order-10001", EventType.CAPTURE_FAILED, T0, reason="issuer declined"),
    Event("order-10001", EventType.CANCELLED, datetime(2026, 1, 5, 13, 30, tzinfo=timezone(timedelta(hours=1)))),
    Event("order-10001", EventType.REFUNDED, T0 + timedelta(microseconds=1), 0, "KWD"),
]


@pytest.mark.parametrize("event", EVENTS, ids=[e.type.value for e in EVENTS])
def test_event_round_trips(event: Event) -> None:
    obj = event.to_dict()
    assert obj["at"].endswith("Z")
    present = {name for name in ("amount", "currency", "provider", "key", "flow", "reason")
               if getattr(event, name) is not None}
    assert set(obj) == {"payment", "type", "at"} | present
    assert all(type(v) in {str, int} for v in obj.values())
    assert Event.from_dict(obj) == event
    assert Event.from_json(event.to_json()) == event
    assert orjson.loads(event.to_json()) == obj


def test_event_to_dict_spells_the_canonical_format() -> None:
    event = Event("order-10001", EventType.AUTHORIZED, T0, 100000, "NOK", flow=Flow.MANUAL)
    assert event.to_dict() == {"payment": "order-10001", "type": "authorized", "at": "2026-01-05T12:00:00Z",
                               "amount": 100000, "currency": "NOK", "flow": "manual"}


# ------------------------------------------------------------------------------------------- commands

NAIVE = datetime(2026, 1, 5, 12, 0)


@pytest.mark.parametrize("build", [
    lambda: Capture(at=T0, amount=250.0),
    lambda: Capture(at=T0, amount=True),
    lambda: Capture(at=T0, amount="250"),
    lambda: Authorize(amount=1000.5, currency="NOK", at=T0),
    lambda: Cancel(at=T0, amount=0.0),
    lambda: Refund(amount=1.5, at=T0),
    lambda: Capture(at=NAIVE, amount=250),
    lambda: Authorize(amount=1000, currency="NOK", at=NAIVE),
    lambda: Cancel(at=NAIVE),
    lambda: Refund(amount=100, at=NAIVE),
    lambda: Capture(at="2026-01-05T12:00:00Z"),
    lambda: Capture(at=T0, currency=578),
    lambda: Capture(at=T0, key=5),
], ids=["capture-float", "capture-bool", "capture-str", "authorize-float", "cancel-float", "refund-float",
        "capture-naive", "authorize-naive", "cancel-naive", "refund-naive", "capture-at-str", "capture-currency-int",
        "capture-key-int"])
def test_commands_refuse_floats_and_naive_datetimes(build: Any) -> None:
    with pytest.raises(CommandError):
        build()


def test_commands_accept_any_timezone() -> None:
    oslo = timezone(timedelta(hours=1))
    capture = Capture(at=datetime(2026, 1, 5, 13, 0, tzinfo=oslo), amount=100)
    assert capture.at == T0


def test_decide_refuses_what_is_not_a_command() -> None:
    p = Payment.authorized_for(capstate.load_spec("bambora"), "order-1", amount=1000, currency="DKK", at=T0)
    with pytest.raises(CommandError):
        capstate.decide(p, Event("order-1", EventType.CAPTURED, T0, 1000))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- payments

AMOUNTS = ("authorized", "captured", "cancelled", "refunded", "pending", "capture_count", "refund_count")


@pytest.mark.parametrize("name", AMOUNTS)
def test_payment_refuses_negative_amounts(name: str) -> None:
    with pytest.raises((TypeError, ValueError), match=name):
        Payment(capstate.load_spec("vipps"), "order-10001", "authorized", "NOK", **{name: -1})


@pytest.mark.parametrize("name", AMOUNTS)
def test_payment_refuses_float_amounts(name: str) -> None:
    with pytest.raises((TypeError, ValueError)):
        Payment(capstate.load_spec("vipps"), "order-10001", "authorized", "NOK", **{name: 1.5})


def test_payment_refuses_bool_amounts() -> None:
    """bool is an int subclass, but True is never an amount (the engine's own _check_amount says so)."""
    spec = capstate.load_spec("vipps")
    accepted = []
    for name in AMOUNTS:
        try:
            Payment(spec, "order-10001", "authorized", "NOK", **{name: True})
        except (TypeError, ValueError):
            continue
        accepted.append(name)
    assert accepted == []


def test_payment_repr_does_not_dump_the_spec() -> None:
    p = Payment.authorized_for(capstate.load_spec("vipps"), "order-10001", amount=100000, currency="NOK", at=T0)
    text = repr(p)
    assert "<spec vipps>" in text
    assert "order-10001" in text and "100000" in text
    for leak in ("Transition(", "Policy(", "transitions", "developer.vippsmobilepay.com", "RuleSource"):
        assert leak not in text
    assert len(text) < 600
    assert repr(p.spec) == "<Spec vipps from specs/vipps.toml>"


def test_payment_derived_amounts() -> None:
    spec = capstate.load_spec("hellgate")
    p = Payment(spec, "r", "capturing", "EUR", authorized=10000, captured=0, cancelled=0, pending=4000)
    assert (p.remainder, p.capturable, p.refundable) == (10000, 6000, 0)
    assert p.expires_at is None
    q = Payment.authorized_for(capstate.load_spec("vipps"), "order-10001", amount=100, currency="DKK", at=T0)
    assert q.expires_at == T0 + timedelta(days=14)


# ------------------------------------------------------------------------------------- identifier rules

LONG = 2001


@pytest.mark.parametrize(("rule", "value"), [
    (capstate.load_spec("bambora").policy.reference, "x" * LONG),
    (capstate.load_spec("vipps").policy.reference, "_" * LONG),
    (capstate.load_spec("vipps").policy.idempotency_key, "k" * LONG),
    (IdentifierRule(pattern="[a-z]+"), "_" * LONG),
    (IdentifierRule(), "\n" + "y" * LONG),
    (IdentifierRule(min_length=LONG + 1), "z" * LONG),
], ids=["bambora-too-long", "vipps-too-long", "vipps-key", "pattern", "control", "too-short"])
def test_identifier_problem_never_echoes_a_huge_value(rule: IdentifierRule, value: str) -> None:
    problem = rule.problem(value)
    assert problem is not None
    assert value[1:] not in problem
    assert value[1] * 61 not in problem
    assert len(problem) < 200


def test_refused_reference_is_not_echoed_in_the_decision() -> None:
    reference = "p" * LONG
    d = capstate.decide(Payment.new(capstate.load_spec("bambora"), reference),
                        Authorize(amount=1000, currency="DKK", at=T0))
    assert d.codes == (capstate.Code.REFERENCE_INVALID,)
    assert reference not in d.violations[0].message and len(d.violations[0].message) < 200
    assert "2001" in d.violations[0].message and "2000" in d.violations[0].message


@pytest.mark.parametrize("value", ["order-1", "a", "x" * 2000, "ordre-ø&=..x", 'quote"d', "a..b"])
def test_bambora_reference_takes_any_text_up_to_2000(value: str) -> None:
    assert capstate.load_spec("bambora").policy.reference.problem(value) is None


@pytest.mark.parametrize("value", ["ordre/1", "ordre?1", "ordre#1", "..", ".", "ordre%2F1", "ordre\\1",
                                   "ordre\uff0f1", "\uff0e\uff0e"])
def test_bambora_reference_refuses_what_would_change_the_url_path(value: str) -> None:
    # It is the path segment of every call (POST /payments/{payment}/capture/): issue 12 item 6.
    problem = capstate.load_spec("bambora").policy.reference.problem(value)
    assert problem is not None and ("request target" in problem or "dot segment" in problem)


@pytest.mark.parametrize("value", ["order-1234\r\nX-Injected: 1", "order-1234\x00", "order-1234\u2028x",
                                   "order-1234\x7f", "order-1234\x85"])
@pytest.mark.parametrize("name", ["bambora", "hellgate", "pipwave"])
def test_identifier_rules_refuse_control_characters(name: str, value: str) -> None:
    """Bambora and Pipwave document no charset; a reference still never carries CR, LF or NUL. Hellgate's is
    a payment id, a UUID, whose pattern refuses them with the rest."""
    problem = capstate.load_spec(name).policy.reference.problem(value)
    assert problem is not None and (name == "hellgate" or "control character" in problem)


def test_identifier_rule_refuses_what_is_not_a_string() -> None:
    assert IdentifierRule().problem(5) == "must be a string, got int"
    assert IdentifierRule().problem(None) is not None


@pytest.mark.parametrize("text", ["2026-13-01T00:00:00Z", "2026-01-08T25:00:00Z", "2026-01-08T09:00:00+25:00",
                                  "2026-02-30T00:00:00Z"])
def test_instant_with_a_field_out_of_range_is_named_plainly(text: str) -> None:
    from capstate._time import parse_instant

    with pytest.raises(ValueError, match="field is out of range") as info:
        parse_instant(text)
    assert "timedelta" not in str(info.value)


@pytest.mark.parametrize("text", ["2026-01-08T09:00:00Z\n", "\n2026-01-08T09:00:00Z",
                                  "\uff12\uff10\uff12\uff16-01-08T09:00:00Z", "2026-01-08T0\u0669:00:00Z"])
def test_instant_is_the_whole_text_in_ascii_digits(text: str) -> None:
    """A regex "$" matches before a final newline and \\d matches any Unicode digit: neither is RFC 3339."""
    from capstate._time import parse_instant

    with pytest.raises(ValueError, match="not an RFC 3339 timestamp"):
        parse_instant(text)


@pytest.mark.parametrize("text", ["\u0661\u0664d", "\uff11\uff14d"])
def test_duration_digits_are_ascii(text: str) -> None:
    from capstate._time import parse_duration

    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_instant_takes_rfc3339_lower_case_t_and_z() -> None:
    """RFC 3339 §5.6: "T" and "Z" may be lower case. They were refused as 'a field is out of range'."""
    from capstate._time import parse_instant

    assert parse_instant("2026-01-08t09:00:00z") == datetime(2026, 1, 8, 9, tzinfo=UTC)
    assert parse_instant("2026-01-08t10:00:00+01:00") == datetime(2026, 1, 8, 9, tzinfo=UTC)


# ------------------------------------------------------------------------- hand-built events into apply

# An Event built directly has no validators (Event.from_dict is the parser). apply and observe must
# still never count a fact that is not one: found by probing apply with hand-built events, where a
# str type "captured" fell through effect() to the authorization branch and re-authorized NOK 1000.00
# as 5.00, a negative `captured` un-captured money, True was counted as 1 minor unit, and a naive `at`
# became the payment's authorized_at (a TypeError on the next aware comparison).


def _vipps_capturing() -> Payment:
    """NOK 1000.00 on Vipps, 500.00 captured, a further capture of 10.00 in flight."""
    p = Payment.authorized_for(capstate.load_spec("vipps"), "order-10001", amount=100_000, currency="NOK", at=T0)
    p = capstate.apply(p, Event(p.reference, EventType.CAPTURED, T0, 50_000, key="c-1"))
    return capstate.apply(p, Event(p.reference, EventType.CAPTURE_REQUESTED, T0, 1_000))


MALFORMED_EVENTS = [
    ("type", lambda ref: Event(ref, "captured", T0, 500)),  # type: ignore[arg-type]
    ("amount", lambda ref: Event(ref, EventType.CAPTURED, T0, -5)),
    ("amount", lambda ref: Event(ref, EventType.CAPTURED, T0, True)),
    ("amount", lambda ref: Event(ref, EventType.CAPTURED, T0, 2.5)),  # type: ignore[arg-type]
    ("at", lambda ref: Event(ref, EventType.CAPTURED, NAIVE, 500)),
    ("at", lambda ref: Event(ref, EventType.CAPTURED, "2026-01-05T12:00:00Z", 500)),  # type: ignore[arg-type]
    ("flow", lambda ref: Event(ref, EventType.CAPTURED, T0, 500, flow="automatic")),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("field", "build"), MALFORMED_EVENTS,
                         ids=["type-str", "amount-negative", "amount-bool", "amount-float", "at-naive", "at-str",
                              "flow-str"])
@pytest.mark.parametrize("record", [capstate.apply, lambda p, e: capstate.observe(p, e)[0]], ids=["apply", "observe"])
def test_apply_and_observe_refuse_a_malformed_hand_built_event(field: str, build: Any, record: Any) -> None:
    p = _vipps_capturing()
    with pytest.raises(EventError) as info:
        record(p, build(p.reference))
    assert info.value.field == field
    assert (p.authorized, p.captured, p.pending, p.state) == (100_000, 50_000, 1_000, "capturing")


@pytest.mark.parametrize("build", [
    lambda: Event("order-1", EventType.AUTHORIZED, NAIVE, 1000, "EUR"),
    lambda: Event("order-1", EventType.AUTHORIZED, T0, 1000, "eur"),
    lambda: Event("order-1", EventType.AUTHORIZED, T0, 1000, "XAU"),
], ids=["naive", "currency-lower-case", "currency-without-minor-unit"])
def test_apply_refuses_an_authorization_it_could_not_judge_later(build: Any) -> None:
    """An authorization fixes the payment's currency and clock: Hellgate's validity is unknown, so a
    naive `at` used to be taken, and every later aware `at` then raised TypeError."""
    p = Payment.new(capstate.load_spec("hellgate"), "order-1")
    with pytest.raises(EventError):
        capstate.apply(p, build())
    with pytest.raises(EventError):
        capstate.replay([build()], capstate.load_spec("hellgate"))


# --------------------------------------------------------------------- command fields that steer a rule


def test_authorize_takes_a_flow_spelled_as_text_as_that_flow() -> None:
    """Authorize.flow had no validator: "automatic" was kept as a str, `p.flow is Flow.AUTOMATIC` never
    held, and decide allowed a manual capture on Hellgate's automatic-capture flow (found by probing
    decide with Authorize(flow="automatic"))."""
    assert Authorize(amount=1000, currency="EUR", at=T0, flow="automatic").flow is Flow.AUTOMATIC  # type: ignore[arg-type]
    p0 = Payment.new(capstate.load_spec("hellgate"), "3b2f0c1e-6a4d-4f7b-9c2e-8d1a5e7f0b34")
    d = capstate.decide(p0, Authorize(amount=1000, currency="EUR", at=T0, flow="automatic"))  # type: ignore[arg-type]
    assert d.allowed and d.after is not None and d.after.flow is Flow.AUTOMATIC
    assert capstate.decide(d.after, Capture(at=T0, amount=1000)).codes == (capstate.Code.AUTOMATIC_CAPTURE_FLOW,)


@pytest.mark.parametrize("build", [
    lambda: Authorize(amount=1000, currency="EUR", at=T0, flow="bogus"),
    lambda: Authorize(amount=1000, currency="EUR", at=T0, flow=1),
    lambda: Capture(at=T0, final="no"),
    lambda: Capture(at=T0, final=1),
    lambda: Capture(at=T0, final=None),
], ids=["flow-bogus", "flow-int", "final-str", "final-int", "final-none"])
def test_commands_refuse_a_flow_or_final_that_is_not_one(build: Any) -> None:
    """`final="no"` was truthy, so Vipps' decide released the remainder by a cancel the merchant never
    meant (REMAINDER_RELEASED)."""
    with pytest.raises(CommandError):
        build()


def test_replay_of_mixed_payments_raises_the_value_error_it_documents() -> None:
    """replay's docstring promises ValueError for mixed payments; apply's InvalidTransition (not a
    ValueError) escaped instead, past a caller's `except ValueError` (found reading replay)."""
    spec = capstate.load_spec("bambora")
    events = [Event("order-1", EventType.AUTHORIZED, T0, 1000, "DKK"), Event("order-2", EventType.CAPTURED, T0, 500)]
    with pytest.raises(ValueError, match="order-2"):
        capstate.replay(events, spec)
    with pytest.raises(ValueError, match="at least one event"):
        capstate.replay([], spec)


# ------------------------------------------------------------------ deferred fields (_values._Deferrable)

SETTLED: list[tuple[Any, ...]] = []


def _settle_two(a: int, b: int) -> tuple[str, str]:
    SETTLED.append((a, b))
    return f"first {a}", f"second {b}"


@attrs.frozen
class _TwoLater(_Deferrable):
    _deferred = ("first", "second")

    code: int
    first: str
    second: str


def _two_later(code: int, a: int, b: int) -> _TwoLater:
    v: _TwoLater = object.__new__(_TwoLater)
    object.__setattr__(v, "code", code)
    set_pending(v, (_settle_two, a, b))
    return v


def test_a_deferred_value_settles_all_its_fields_once_on_the_first_read_of_one() -> None:
    SETTLED.clear()
    v = _two_later(1, 2, 3)
    assert v.code == 1
    assert not SETTLED  # a field that was set reads without settling
    assert v.second == "second 3"
    assert (v.first, v.second) == ("first 2", "second 3")
    assert SETTLED == [(2, 3)]
    assert v == _TwoLater(1, "first 2", "second 3")
    assert hash(_two_later(1, 2, 3)) == hash(_TwoLater(1, "first 2", "second 3"))
    assert repr(_two_later(1, 2, 3)) == repr(_TwoLater(1, "first 2", "second 3"))
    assert attrs.asdict(_two_later(1, 2, 3)) == {"code": 1, "first": "first 2", "second": "second 3"}
    assert attrs.evolve(_two_later(1, 2, 3), code=4) == _TwoLater(4, "first 2", "second 3")


def test_a_deferred_field_neither_set_nor_deferred_raises_as_a_missing_attribute() -> None:
    v: _TwoLater = object.__new__(_TwoLater)
    with pytest.raises(AttributeError, match=r"^'_TwoLater' object has no attribute 'first'$"):
        _ = v.first
    with pytest.raises(AttributeError, match=r"^'_TwoLater' object has no attribute 'nothing'$"):
        _ = v.nothing  # type: ignore[attr-defined]
    assert not hasattr(v, "second")
    # The slot itself reads without settling, and is what a builder sets.
    slot = deferred_slot(_TwoLater, "first")
    slot.__set__(v, "set")
    assert slot.__get__(v) == v.first == "set"


def test_deferred_classes_read_their_other_fields_as_plain_slots() -> None:
    # No __getattr__ anywhere: a class with one has every attribute read go through the slow hook.
    for cls in (_TwoLater, Violation, Decision, Finding):
        assert not any("__getattr__" in vars(k) for k in cls.__mro__), cls
        assert all(type(vars(cls)[name]) is property for name in cls._deferred)
