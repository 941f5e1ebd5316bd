"""Pipwave: a table of the documented rules, one row each, with the docs sentence beside it; the worked
signature example; IPN verification.

Pipwave has no machine-readable spec (research/providers.md §"Not available"); the contract is these rows.
Sources: chechintang/pipwave-Documentation-2@b59e2e5 (= https://docs.pipwave.com), research/providers.md §4.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NamedTuple

import attrs
import orjson
import pytest
from provider_cases import PIPWAVE_CREDS, PIPWAVE_KEY, PIPWAVE_SECRET, T0, TS, authorized, capture, captured, response

import capstate
from capstate import Cancel, EventType, ProviderError, Refund, SignatureError
from capstate.providers import RequestError, pipwave

DOCS = "https://docs.pipwave.com"
CAPTURE_DOC = f"{DOCS}/api_list/capture_payment.html"


def myr(amount: int = 5000, reference: str = "ORDER-1") -> capstate.Payment:
    return authorized("pipwave", reference, amount, "MYR")


def body_of(req: Any) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(req.body)
    return out


# ------------------------------------------------------------------------------------------ worked example


def test_the_worked_signature_example() -> None:
    # research/providers.md §4.4: made-up values, sha1 computed PHP-equivalently
    creds = pipwave.Credentials(api_key="KEY123", api_secret="SECRET456")
    req = pipwave.build_capture(myr(2000), capture(1050, "MYR"), creds, timestamp=1456790400, pw_id="PW123",
                                txn_id="ORDER-1")
    body = body_of(req)
    assert body["signature"] == "639d5f5ca99d70e984261ab5b3f0f434e8430264"
    assert body == {"action": "capture-payment", "timestamp": 1456790400, "api_key": "KEY123", "pw_id": "PW123",
                    "txn_id": "ORDER-1", "capture_amount": "10.50",
                    "signature": "639d5f5ca99d70e984261ab5b3f0f434e8430264"}
    string = ("action:capture-paymentapi_key:KEY123api_secret:SECRET456capture_amount:10.50pw_id:PW123"
              "timestamp:1456790400txn_id:ORDER-1")
    assert hashlib.sha1(string.encode()).hexdigest() == body["signature"]


# --------------------------------------------------------------------------------------------- rows


def one_url_and_action() -> None:
    req = pipwave.build_capture(myr(), capture(1050, "MYR"), PIPWAVE_CREDS, timestamp=TS)
    assert (req.method, req.url) == ("POST", "https://staging-api.pipwave.com/payment")
    assert body_of(req)["action"] == "capture-payment"
    assert pipwave.Credentials(api_key="k", api_secret="s").url == "https://api.pipwave.com/payment"


def api_key_header_and_json_body() -> None:
    req = pipwave.build_capture(myr(), capture(1050, "MYR"), PIPWAVE_CREDS, timestamp=TS)
    assert req.header("x-api-key") == PIPWAVE_KEY and req.header("Content-Type") == "application/json"
    assert body_of(req)["api_key"] == PIPWAVE_KEY


def api_secret_is_hashed_never_sent() -> None:
    for _, req in _all(myr()):
        assert PIPWAVE_SECRET.encode() not in req.body
        assert all(PIPWAVE_SECRET not in v for _, v in req.headers)
        body = body_of(req)
        assert body["signature"] == pipwave.signature({k: v for k, v in body.items()}, PIPWAVE_SECRET)


def signature_sorts_by_key() -> None:
    fields = {"timestamp": 1, "action": "a", "api_key": "k"}
    expected = hashlib.sha1(b"action:aapi_key:kapi_secret:stimestamp:1").hexdigest()
    assert pipwave.signature(fields, "s") == expected
    assert pipwave.signature(dict(reversed(fields.items())), "s") == expected


def timestamp_is_passed_in() -> None:
    req = pipwave.build_capture(myr(), capture(1050, "MYR"), PIPWAVE_CREDS, timestamp=1456790400)
    assert body_of(req)["timestamp"] == 1456790400
    for bad in (0, -1, 1456790400.0, "1456790400", True):
        with pytest.raises(RequestError, match="timestamp"):
            pipwave.build_capture(myr(), capture(1050, "MYR"), PIPWAVE_CREDS, timestamp=bad)  # type: ignore[arg-type]


def pw_id_or_txn_id() -> None:
    by_txn = body_of(pipwave.build_capture(myr(), capture(1050, "MYR"), PIPWAVE_CREDS, timestamp=TS))
    assert (by_txn.get("pw_id"), by_txn["txn_id"]) == (None, "ORDER-1")
    by_pw = body_of(pipwave.build_capture(myr(), capture(1050, "MYR"), PIPWAVE_CREDS, timestamp=TS, pw_id="PW9"))
    assert (by_pw["pw_id"], by_pw.get("txn_id")) == ("PW9", None)
    with pytest.raises(RequestError, match="pw_id"):
        pipwave.build_capture(myr(), capture(1050, "MYR"), PIPWAVE_CREDS, timestamp=TS, pw_id="p" * 33)
    with pytest.raises(RequestError, match="txn_id"):
        pipwave.build_capture(myr(), capture(1050, "MYR"), PIPWAVE_CREDS, timestamp=TS, txn_id="t" * 256)


@pytest.mark.parametrize(("currency", "minor", "major"), [
    ("MYR", 1050, "10.50"), ("MYR", 1, "0.01"), ("MYR", 100, "1.00"),
    ("JPY", 1000, "1000.00"),            # exponent 0: whole yen, written with the format's 2 decimals
    ("KWD", 1230, "1.23"),               # exponent 3: exact only when the third decimal is 0
    ("MYR", 99_999_999_999, "999999999.99"),  # decimal(11,2): 9 integer digits at most
])
def test_capture_amount_is_an_exact_major_unit_string(currency: str, minor: int, major: str) -> None:
    p = authorized("pipwave", "ORDER-1", minor, currency)
    req = pipwave.build_capture(p, capture(minor, currency), PIPWAVE_CREDS, timestamp=TS)
    assert body_of(req)["capture_amount"] == major


@pytest.mark.parametrize(("currency", "minor"), [("KWD", 1234), ("MYR", 100_000_000_000)])
def test_amounts_decimal_11_2_cannot_hold_are_refused(currency: str, minor: int) -> None:
    p = capstate.Payment(capstate.load_spec("pipwave"), "ORDER-1", "authorized", currency, authorized=minor)
    with pytest.raises(RequestError, match="amount"):
        pipwave.build_capture(p, capture(minor, currency), PIPWAVE_CREDS, timestamp=TS)


def decimal_amount() -> None:
    # the parametrized test above covers the table; this row keeps the rule in the table
    req = pipwave.build_capture(myr(), capture(5000, "MYR"), PIPWAVE_CREDS, timestamp=TS)
    assert body_of(req)["capture_amount"] == "50.00" and isinstance(body_of(req)["capture_amount"], str)


def partial_becomes_full_is_decided_before_building() -> None:
    spec = capstate.load_spec("pipwave", overrides={"partial_capture": "becomes_full"})
    p = capstate.Payment.authorized_for(spec, "ORDER-1", amount=5000, currency="MYR", at=T0)
    decision = capstate.decide(p, capstate.Capture(at=T0, amount=1000))
    assert [w.code for w in decision.warnings][:1] == [capstate.Code.PARTIAL_BECOMES_FULL]
    req = pipwave.build_capture(p, decision.command, PIPWAVE_CREDS, timestamp=TS)  # type: ignore[arg-type]
    assert body_of(req)["capture_amount"] == "50.00"


def status_200_is_success() -> None:
    events = pipwave.parse_capture(response(200, {"status": "200", "message": ""}), myr(), capture(1050, "MYR"))
    assert [(e.type, e.amount, e.provider) for e in events] == [(EventType.CAPTURED, 1050, "pipwave")]
    assert pipwave.parse_capture(response(200, {"status": 200}), myr(), capture(1050, "MYR"))


def status_codes_map_to_errors() -> None:
    for code, retryable in (("400", False), ("401", False), ("403", False), ("404", False), ("9001", False),
                            ("500", True), ("4006", True)):
        with pytest.raises(ProviderError) as err:
            pipwave.parse_capture(response(200, {"status": code, "message": "see message"}), myr(),
                                  capture(1050, "MYR"))
        e = err.value
        assert (e.error_id, e.retryable, e.reconcile, e.title) == (code, retryable, retryable,
                                                                  pipwave.STATUS_CODES[code])


def undocumented_status_needs_requery() -> None:
    with pytest.raises(ProviderError) as err:
        pipwave.parse_capture(response(200, {"status": "0", "message": ""}), myr(), capture(1050, "MYR"))
    assert (err.value.error_id, err.value.reconcile, err.value.retryable) == ("0", True, False)


def http_failure_needs_requery() -> None:
    with pytest.raises(ProviderError) as err:
        pipwave.parse_capture(response(502, b"Bad Gateway", "text/plain"), myr(), capture(1050, "MYR"))
    assert (err.value.status, err.value.reconcile, err.value.retryable) == (502, True, True)


def requery_request_and_status() -> None:
    req = pipwave.build_requery(myr(), PIPWAVE_CREDS, timestamp=TS, pw_id="PW9", txn_id="ORDER-1")
    body = body_of(req)
    assert body["action"] == "requery" and "pw_id" in body and "txn_id" not in body
    answer = {"status": "200", "pw_id": "PW9", "txn_id": "ORDER-1", "amount": "50.00", "final_amount": "50.00",
              "currency_code": "MYR", "transaction_status": "5", "require_capture": True}
    status = pipwave.parse_requery(response(200, answer), myr())
    assert (status.state, status.currency, status.authorized, status.captured) == ("Processing", "MYR", 5000, 0)
    paid = pipwave.parse_requery(response(200, {**answer, "transaction_status": 10, "require_capture": False,
                                                "final_amount": 50.0}), myr())
    assert (paid.state, paid.captured) == ("Paid", 5000)
    refunded = pipwave.parse_requery(response(200, {**answer, "transaction_status": "25", "final_amount": "30.5"}),
                                     myr())
    # final_amount is "after potential chargeback / refund / adjustments" (and includes fees): the refunded
    # amount cannot be read off it, so it is unknown, never amount - final_amount.
    assert (refunded.state, refunded.refunded) == ("Partial refund", None)


def cancel_and_refund_requests() -> None:
    c = body_of(pipwave.build_cancel(myr(), Cancel(at=T0), PIPWAVE_CREDS, timestamp=TS, reason="oos"))
    assert (c["action"], c["reason"]) == ("cancel-payment", "oos")
    with pytest.raises(RequestError, match="reason"):
        pipwave.build_cancel(myr(), Cancel(at=T0), PIPWAVE_CREDS, timestamp=TS, reason="r" * 33)
    r = body_of(pipwave.build_refund(captured(myr(), 5000), Refund(amount=250, at=T0), PIPWAVE_CREDS,
                                     timestamp=TS))
    assert (r["action"], r["op"], r["refund_amount"]) == ("refund", "submit", "2.50")


def _all(p: capstate.Payment) -> list[tuple[str, Any]]:
    return [
        ("capture", pipwave.build_capture(p, capture(1050, "MYR"), PIPWAVE_CREDS, timestamp=TS)),
        ("cancel", pipwave.build_cancel(p, Cancel(at=T0), PIPWAVE_CREDS, timestamp=TS)),
        ("refund", pipwave.build_refund(captured(p, 5000), Refund(amount=100, at=T0), PIPWAVE_CREDS, timestamp=TS)),
        ("requery", pipwave.build_requery(p, PIPWAVE_CREDS, timestamp=TS)),
    ]


class Rule(NamedTuple):
    doc: str
    sentence: str
    check: Callable[[], None]


RULES = [
    Rule(f"{DOCS}/url.html", "Every action shares this one URL; the action field selects the operation",
         one_url_and_action),
    Rule(f"{DOCS}/security/api_key.html", "x-api-key: <api_key>, required on every call in addition to the body "
         "api_key (sample-codes.md sends json_encode($data))", api_key_header_and_json_body),
    Rule(f"{DOCS}/security/signature.html", "api_secret goes into the hash but is never sent",
         api_secret_is_hashed_never_sent),
    Rule(f"{DOCS}/sample-codes.html", "ksort($signatureParam); $signature .= $key . ':' . $value; sha1",
         signature_sorts_by_key),
    Rule(f"{DOCS}/security/timestamping.html", "timestamp: UNIX integer seconds, GMT+0", timestamp_is_passed_in),
    Rule(CAPTURE_DOC, "Pipwave's transaction reference ID, either this or txn_id must be sent", pw_id_or_txn_id),
    Rule(CAPTURE_DOC, "capture_amount: decimal (11, 2)", decimal_amount),
    Rule(CAPTURE_DOC, "If PG not supporting partial capture, full capture will be done.",
         partial_becomes_full_is_decided_before_building),
    Rule(f"{DOCS}/appendix/api_status_code.html", "200 OK", status_200_is_success),
    Rule(f"{DOCS}/appendix/api_status_code.html", "400 Failed to fulfill request ... 500 Generic server error ... "
         "4006 ... You must wait for the process to complete first.", status_codes_map_to_errors),
    Rule(CAPTURE_DOC, "status: Status of the request. Refer to appendix ... Sample: 0",
         undocumented_status_needs_requery),
    Rule("research/providers.md §4.7", "The PG may have captured even without a clear response: requery first",
         http_failure_needs_requery),
    Rule(f"{DOCS}/api_list/requery.html", "Used to get the latest status of the payment. ... pw_id OR txn_id",
         requery_request_and_status),
    Rule(f"{DOCS}/api_list/cancel-payment.html", "reason string (32), ref_tag string (32); refund op initiate | "
         "submit, refund_amount decimal(11,2)", cancel_and_refund_requests),
]


@pytest.mark.parametrize("rule", RULES, ids=[r.check.__name__ for r in RULES])
def test_documented_rule(rule: Rule) -> None:
    assert rule.sentence
    rule.check()


# ----------------------------------------------------------------------------------------------- IPN


def ipn(**changes: Any) -> dict[str, Any]:
    """An IPN as instant_payment_notification.md lists it, signed over its documented fields."""
    body: dict[str, Any] = {"status": 200, "api_key": PIPWAVE_KEY, "notification_id": "n-1", "type": "payment",
                            "timestamp": TS, "pw_id": "PW9", "txn_id": "ORDER-1", "amount": "50.00",
                            "final_amount": "50.00", "currency_code": "MYR", "transaction_status": 10,
                            "require_capture": False}
    fields = {k: body[k] for k in pipwave.IPN_FIELDS}
    body["signature"] = pipwave.signature(fields, PIPWAVE_SECRET)
    body.update(changes)
    return body


def test_a_signed_ipn_verifies() -> None:
    # Written out by hand, not through pipwave.signature: the seven documented IPN fields and the secret,
    # sorted by key (instant_payment_notification.md#signature; research/providers.md §4.4).
    text = (f"amount:50.00api_key:{PIPWAVE_KEY}api_secret:{PIPWAVE_SECRET}currency_code:MYRpw_id:PW9"
            f"timestamp:{TS}transaction_status:10txn_id:ORDER-1")
    assert ipn()["signature"] == hashlib.sha1(text.encode()).hexdigest()
    got = pipwave.verify_ipn(ipn(), PIPWAVE_CREDS, now=T0)
    assert got == pipwave.Ipn(TS, "PW9", "ORDER-1", 5000, "MYR", "10")
    assert got.sent_at == T0 and got.status_name == "Paid"
    assert pipwave.verify_ipn(ipn(), PIPWAVE_CREDS, now=T0 + timedelta(minutes=3),
                              tolerance=timedelta(minutes=5)) == got


def test_a_verified_ipn_carries_only_what_the_signature_covers() -> None:
    # Before: verify_ipn returned None and the caller read the payload dict, whose final_amount and
    # require_capture no signature covers: anyone reaching the IPN URL could change them on a genuine IPN.
    forged = ipn(final_amount="0.01", require_capture=True, status=3001, type="refund")
    got = pipwave.verify_ipn(forged, PIPWAVE_CREDS, now=T0)
    shown = {a.name for a in attrs.fields(pipwave.Ipn)}
    assert shown == {"timestamp", "pw_id", "txn_id", "amount", "currency", "transaction_status"}
    assert got.amount == 5000 and not hasattr(got, "final_amount") and not hasattr(got, "require_capture")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        got.amount = 1  # type: ignore[misc]


def test_an_old_ipn_is_refused_by_default() -> None:
    # Before: without an explicit tolerance, a year-old IPN (a replay of a captured one) verified.
    with pytest.raises(SignatureError, match="timestamp"):
        pipwave.verify_ipn(ipn(), PIPWAVE_CREDS, now=T0 + timedelta(days=365))
    limit = pipwave.DEFAULT_IPN_TOLERANCE
    pipwave.verify_ipn(ipn(), PIPWAVE_CREDS, now=T0 + limit)
    with pytest.raises(SignatureError, match="timestamp"):
        pipwave.verify_ipn(ipn(), PIPWAVE_CREDS, now=T0 + limit + timedelta(seconds=1))
    # Re-verifying a stored IPN is an explicit choice.
    assert pipwave.verify_ipn(ipn(), PIPWAVE_CREDS, now=T0 + timedelta(days=365), tolerance=None).timestamp == TS


@pytest.mark.parametrize("field", [*pipwave.IPN_FIELDS, "signature"])
def test_a_lone_surrogate_in_an_ipn_is_a_signature_error(field: str) -> None:
    # Before: UnicodeEncodeError from hashing an unauthenticated IPN (a JSON "\ud800" escape decodes to one).
    with pytest.raises(SignatureError):
        pipwave.verify_ipn(ipn(**{field: "\ud800"}), PIPWAVE_CREDS, now=T0)


@pytest.mark.parametrize(("change", "message"), [
    ({"amount": "50.001"}, "amount"), ({"amount": "-1.00"}, "negative"), ({"amount": "abc"}, "amount"),
    ({"currency_code": "ZZZ"}, "currency_code"), ({"transaction_status": ""}, "transaction_status"),
])
def test_a_signed_ipn_that_is_not_as_documented_is_a_provider_error(change: dict[str, Any], message: str) -> None:
    body = ipn(**change)
    body["signature"] = pipwave.signature({k: body.get(k) for k in pipwave.IPN_FIELDS}, PIPWAVE_SECRET)
    with pytest.raises(ProviderError, match=message) as err:
        pipwave.verify_ipn(body, PIPWAVE_CREDS, now=T0)
    assert not isinstance(err.value, SignatureError) and err.value.reconcile


@pytest.mark.parametrize("timestamp", ["1e9", "-5", "9" * 400, " 1767614400", "17676.5"])
def test_an_ipn_timestamp_that_is_not_unix_seconds_is_a_signature_error(timestamp: str) -> None:
    body = ipn(timestamp=timestamp)
    body["signature"] = pipwave.signature({k: body.get(k) for k in pipwave.IPN_FIELDS}, PIPWAVE_SECRET)
    with pytest.raises(SignatureError, match="UNIX seconds"):
        pipwave.verify_ipn(body, PIPWAVE_CREDS, now=T0)


@pytest.mark.parametrize("change", [
    {"amount": "50.01"}, {"transaction_status": 20}, {"txn_id": "ORDER-2"}, {"currency_code": "USD"},
    {"timestamp": TS + 1}, {"signature": "0" * 40}, {"signature": ""}, {"api_key": "other"},
])
def test_a_changed_ipn_fails(change: dict[str, Any]) -> None:
    with pytest.raises(SignatureError) as err:
        pipwave.verify_ipn(ipn(**change), PIPWAVE_CREDS, now=T0)
    assert PIPWAVE_SECRET not in str(err.value)


def test_an_ipn_outside_the_tolerance_fails() -> None:
    with pytest.raises(SignatureError, match="timestamp"):
        pipwave.verify_ipn(ipn(), PIPWAVE_CREDS, now=T0 + timedelta(hours=1), tolerance=timedelta(minutes=5))


def test_verify_ipn_needs_an_aware_now_and_a_sane_tolerance() -> None:
    with pytest.raises(capstate.CommandError):
        pipwave.verify_ipn(ipn(), PIPWAVE_CREDS, now=T0.replace(tzinfo=None))
    with pytest.raises(capstate.CommandError):
        pipwave.verify_ipn(ipn(), PIPWAVE_CREDS, now=T0, tolerance=timedelta(seconds=-1))


def test_an_ipn_signed_with_another_secret_fails() -> None:
    other = pipwave.Credentials(api_key=PIPWAVE_KEY, api_secret=PIPWAVE_SECRET + "x")
    with pytest.raises(SignatureError):
        pipwave.verify_ipn(ipn(), other, now=T0)


@pytest.mark.parametrize("status", [200, 201, 204])
def test_parse_error_returns_for_a_2xx_body_that_is_not_json(status: int) -> None:
    # Before: it raised ProviderError from decode_json, where its siblings return the error.
    err = pipwave.parse_error(response(status, b"<html>OK</html>", "text/html"))
    assert isinstance(err, ProviderError) and err.status == status and err.reconcile
