"""Bambora api-beta: exact requests, both documented `captures` shapes, and the error slugs.

Rules and sources: research/providers.md §1 (bambora/dev.bambora.com@94ce786: source/includes/api/*.md and
native-payments/swagger.json).
"""

from __future__ import annotations

import base64

import orjson
import pytest
from provider_cases import BAMBORA_CREDS, BAMBORA_SECRET, BAMBORA_TOKEN, T0, authorized, capture, captured, response

import capstate
from capstate import Cancel, EventType, ProviderError, Refund
from capstate.providers import RequestError, bambora

REF = "order-1"


@pytest.fixture
def payment() -> capstate.Payment:
    return authorized("bambora", REF, 5000, "EUR")


def payment_response(state: str, *, captures: object = None, refunds: object = None, amount: int = 5000,
                     reference: str = REF, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {"region": "emea_0", "merchant": "T123456789", "payment": reference, "state": state,
                               "currency": "EUR", "amount": amount, **extra}
    if captures is not None:
        body["captures"] = captures
    if refunds is not None:
        body["refunds"] = refunds
    return body


# ------------------------------------------------------------------------------------------ requests


def test_capture_request_is_exact(payment: capstate.Payment) -> None:
    decision = capstate.decide(payment, capstate.Capture(at=T0, amount=1000))
    req = bambora.build_capture(payment, decision.command, BAMBORA_CREDS)
    # POST https://api-beta.bambora.com/payments/{payment}/capture/ - trailing slash (commit e507590)
    assert (req.method, req.url) == ("POST", "https://api-beta.bambora.com/payments/order-1/capture/")
    expected_auth = "Basic " + base64.b64encode(f"{BAMBORA_TOKEN}@T123456789:{BAMBORA_SECRET}".encode()).decode()
    assert req.headers == (("Authorization", expected_auth), ("API-Version", "1"),
                           ("Content-Type", "application/json"))
    # swagger Capture: required ["amount"]; the 400 example is "'amount' is a required property"
    assert orjson.loads(req.body) == {"amount": 1000}


def test_full_capture_still_sends_the_amount(payment: capstate.Payment) -> None:
    decision = capstate.decide(payment, capstate.Capture(at=T0))
    req = bambora.build_capture(payment, decision.command, BAMBORA_CREDS)
    assert orjson.loads(req.body) == {"amount": 5000}


def test_basic_credentials_are_never_line_wrapped() -> None:
    # base64.encodebytes would insert "\n" every 76 characters; the header would split
    long_secret = "s" * 200
    creds = bambora.Credentials(access_token=BAMBORA_TOKEN, merchant_number="T1", secret_token=long_secret)
    value = creds.authorization()
    assert "\n" not in value and len(value) > 76
    assert base64.b64decode(value.removeprefix("Basic ")) == f"{BAMBORA_TOKEN}@T1:{long_secret}".encode()


@pytest.mark.parametrize(("token", "merchant"), [("tok:en", "T1"), ("tok@en", "T1"), ("tok", "T:1"), ("tok", "T@1")])
def test_credentials_that_would_make_basic_auth_ambiguous_are_refused(token: str, merchant: str,
                                                                       payment: capstate.Payment) -> None:
    with pytest.raises(RequestError):
        creds = bambora.Credentials(access_token=token, merchant_number=merchant, secret_token="s")
        bambora.build_get(payment, creds)


def test_cancel_refund_get(payment: capstate.Payment) -> None:
    cancel = bambora.build_cancel(payment, Cancel(at=T0), BAMBORA_CREDS)
    assert (cancel.method, cancel.url, cancel.body) == (
        "POST", "https://api-beta.bambora.com/payments/order-1/cancel/", b"")
    assert cancel.header("Content-Type") is None and cancel.header("API-Version") == "1"
    paid = captured(payment, 5000)
    refund = bambora.build_refund(paid, Refund(amount=700, at=T0), BAMBORA_CREDS)
    assert refund.url.endswith("/payments/order-1/refund/") and orjson.loads(refund.body) == {"amount": 700}
    get = bambora.build_get(payment, BAMBORA_CREDS)
    assert (get.method, get.url) == ("GET", "https://api-beta.bambora.com/payments/order-1/")


def test_comment_is_bounded(payment: capstate.Payment) -> None:
    # swagger Capture.comment maxLength 256
    req = bambora.build_capture(payment, capture(1000, "EUR"), BAMBORA_CREDS, comment="parcel 1")
    assert orjson.loads(req.body) == {"amount": 1000, "comment": "parcel 1"}
    with pytest.raises(RequestError, match="comment"):
        bambora.build_capture(payment, capture(1000, "EUR"), BAMBORA_CREDS, comment="c" * 257)


def test_reference_of_2000_characters_is_accepted_and_2001_refused() -> None:
    # swagger: path parameter payment maxLength 2000
    ok = authorized("bambora", "r" * 2000, 5000, "EUR")
    assert bambora.build_get(ok, BAMBORA_CREDS).url.endswith("/" + "r" * 2000 + "/")
    long = capstate.Payment.new(capstate.load_spec("bambora"), "r" * 2001)
    with pytest.raises(RequestError, match="2001 characters"):
        bambora.build_get(long, BAMBORA_CREDS)


# ------------------------------------------------------------------------------------------- parsers


@pytest.mark.parametrize("captures", [
    [{"amount": 1000}],                                        # swagger: captures: [Capture]
    [{"capture": {"amount": 1000, "comment": "10 EUR"}}],      # _capture.md example: nested "capture"
])
def test_both_documented_captures_shapes_parse(payment: capstate.Payment, captures: object) -> None:
    events = bambora.parse_capture(response(201, payment_response("Captured", captures=captures)), payment,
                                   capture(1000, "EUR"))
    assert [(e.type, e.amount, e.currency, e.provider) for e in events] == [(EventType.CAPTURED, 1000, "EUR",
                                                                             "bambora")]
    assert capstate.apply(payment, events[0]).state == "captured"


@pytest.mark.parametrize(("status", "body", "why"), [
    (201, payment_response("Authorized", captures=[]), "state"),
    (201, payment_response("Captured"), "no captures"),
    (201, payment_response("Captured", captures=[{"amount": 999}]), "captures total 999"),
    (201, payment_response("Captured", captures=[{"amount": "1000"}]), "captures\\[0\\].amount"),
    (201, payment_response("Captured", captures=[{"amount": 1000}], reference="order-2"), "order-2"),
    (201, payment_response("Captured", captures=[{"amount": 1000}], currency="SEK"), "SEK"),
    (200, payment_response("Captured", captures=[{"amount": 1000}]), "not the documented success"),
])
def test_a_success_that_does_not_prove_the_capture_asks_to_reconcile(payment: capstate.Payment, status: int,
                                                                     body: object, why: str) -> None:
    with pytest.raises(ProviderError, match=why) as err:
        bambora.parse_capture(response(status, body), payment, capture(1000, "EUR"))
    assert err.value.reconcile


def test_cancel_parses_canceled(payment: capstate.Payment) -> None:
    # _cancel.md: api-beta cancel answers 200, example state "Canceled"
    events = bambora.parse_cancel(response(200, payment_response("Canceled", operations=[])), payment,
                                  Cancel(at=T0))
    assert [(e.type, e.amount) for e in events] == [(EventType.CANCELLED, 5000)]
    assert capstate.apply(payment, events[0]).state == "cancelled"


def test_refund_parses_both_shapes(payment: capstate.Payment) -> None:
    paid = captured(payment, 5000)
    for refunds in ([{"amount": 700}], [{"refund": {"amount": 700}}]):
        body = payment_response("Refunded", captures=[{"amount": 5000}], refunds=refunds)
        events = bambora.parse_refund(response(201, body), paid, Refund(amount=700, at=T0))
        assert [(e.type, e.amount) for e in events] == [(EventType.REFUNDED, 700)]


def test_get_reports_operations_in_progress(payment: capstate.Payment) -> None:
    # _get_payment.md: operations (allowed now) and operationInProgress
    body = payment_response("Authorized", operations=["Cancel", "Capture"], operationInProgress=True)
    status = bambora.parse_get(response(200, body), payment)
    assert (status.state, status.authorized, status.captured, status.cancelled, status.in_flight) == (
        "Authorized", 5000, None, 0, True)
    done = bambora.parse_get(response(200, payment_response("Captured", captures=[{"capture": {"amount": 4000}}])),
                             payment)
    assert (done.captured, done.in_flight) == (4000, False)
    # At rest in Authorized (one capture, from Authorized only): nothing captured, even with no list.
    idle = bambora.parse_get(response(200, payment_response("Authorized", operations=["Cancel", "Capture"])), payment)
    assert (idle.captured, idle.in_flight) == (0, False)


# -------------------------------------------------------------------------------------------- errors

BASE = "http://api.bambora.com/definitions/payments/"


@pytest.mark.parametrize("case", [
    # swagger responses of /{payment}/capture/ and _errors.md
    (402, BASE + "cannot_capture", "cannot_capture", False, False),
    # "could be retried again, or the payment could be queried": GET first, then retry
    (409, BASE + "payment_operation_blocked", "payment_operation_blocked", True, True),
    (422, BASE + "invalid_payment_state_transition", "invalid_payment_state_transition", False, False),
    (404, "https://api.bambora.com/definitions/payments/payment_not_found", "payment_not_found", False, False),
    (400, "about:blank", "about:blank", False, False),
    (401, "about:blank", "about:blank", False, False),
    (500, "about:blank", "about:blank", True, True),
    (503, None, None, True, True),
])
def test_error_slugs(payment: capstate.Payment, case: tuple[int, str | None, str | None, bool, bool]) -> None:
    status, ptype, slug, retryable, reconcile = case
    body = {"type": ptype, "title": "T", "detail": "D", "status": status} if ptype else b"<html>oops</html>"
    with pytest.raises(ProviderError) as err:
        bambora.parse_capture(response(status, body, "application/problem+json"), payment, capture(1000, "EUR"))
    e = err.value
    assert (e.provider, e.status, e.error_id, e.retryable, e.reconcile) == ("bambora", status, slug, retryable,
                                                                            reconcile)
