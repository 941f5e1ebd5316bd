"""Hellgate Commerce: a table of the documented rules, one row each, with the docs sentence beside it.

Hellgate publishes no machine-readable document available offline (shared/provider-specs/README.md), so
the contract is these rows. Sources: research/providers.md §3.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import orjson
import pytest
from provider_cases import HELLGATE_CREDS, HELLGATE_ID, HELLGATE_KEY, T0, authorized, capture, captured, response

import capstate
from capstate import Cancel, EventType, ProviderError, Refund
from capstate.providers import RequestError, hellgate

CAPTURE_DOC = "https://developer.hellgate.io/payments/management/capture"
V2_CAPTURE_DOC = "https://developer.hellgate.io/products/commerce/v2/api-reference/payments_modifications/capture.md"
V1_START_DOC = "https://developer.hellgate.io/products/commerce/v1/getting-started"
REFUND_DOC = "https://developer.hellgate.io/payments/management/refund"
# Where research/providers.md gives no full URL, the row cites the research section and its source label.
VOID_DOC = "research/providers.md §3.5 (commerce v2 api-reference payments_modifications .../void)"
MI_DOC = "research/providers.md §3.3 ([DOC v2 payments_mi])"


def eur(amount: int = 1000) -> capstate.Payment:
    return authorized("hellgate", HELLGATE_ID, amount, "EUR")


def payment_body(status: str, **amount: int) -> dict[str, object]:
    return {"id": HELLGATE_ID, "status": status, "currency_code": "EUR", "reference": "order 12345",
            "amount": {"requested": 1000, "authorized": 1000, **amount}, "created_at": "2026-01-05T12:00:00Z"}


# --------------------------------------------------------------------------------------------- rows


def full_capture_sends_only_a_reference() -> None:
    req = hellgate.build_capture(eur(), capture(1000, "EUR"), HELLGATE_CREDS, description="Order #12345")
    assert orjson.loads(req.body) == {"reference": "Order #12345"}


def partial_capture_sends_amount_and_currency() -> None:
    req = hellgate.build_capture(eur(), capture(800, "EUR"), HELLGATE_CREDS,
                                 description="Partial capture order #12345")
    assert orjson.loads(req.body) == {"amount": 800, "currency_code": "EUR",
                                      "reference": "Partial capture order #12345"}


def capture_endpoint_and_api_key() -> None:
    req = hellgate.build_capture(eur(), capture(1000, "EUR"), HELLGATE_CREDS)
    assert (req.method, req.url) == ("POST", f"https://sandbox.hellgate.io/payments/{HELLGATE_ID}/capture")
    assert req.header("X-API-Key") == HELLGATE_KEY and req.header("Content-Type") == "application/json"


def payment_id_is_a_uuid() -> None:
    for bad in ("order-1", HELLGATE_ID + "0", HELLGATE_ID.replace("-", ""), "../" + HELLGATE_ID[3:]):
        with pytest.raises(RequestError, match="reference"):
            hellgate.build_get(capstate.Payment.new(capstate.load_spec("hellgate"), bad), HELLGATE_CREDS)


def reference_at_most_80_characters() -> None:
    hellgate.build_capture(eur(), capture(1000, "EUR"), HELLGATE_CREDS, description="r" * 80)
    with pytest.raises(RequestError, match="description"):
        hellgate.build_capture(eur(), capture(1000, "EUR"), HELLGATE_CREDS, description="r" * 81)


def no_empty_strings() -> None:
    with pytest.raises(RequestError, match="description"):
        hellgate.build_capture(eur(), capture(1000, "EUR"), HELLGATE_CREDS, description="")


def amounts_in_minor_units_zero_decimal_in_full_units() -> None:
    jpy = authorized("hellgate", HELLGATE_ID, 100, "JPY")
    req = hellgate.build_capture(jpy, capture(40, "JPY"), HELLGATE_CREDS)
    assert orjson.loads(req.body)["amount"] == 40  # "100 for 100 JPY": exponent 0
    req = hellgate.build_capture(eur(), capture(700, "EUR"), HELLGATE_CREDS)
    assert orjson.loads(req.body)["amount"] == 700  # "use 700 for 7€"


def partial_currency_must_match() -> None:
    with pytest.raises(RequestError, match="currency"):
        hellgate.build_capture(eur(), capture(800, "USD"), HELLGATE_CREDS)


def capturing_is_not_a_capture() -> None:
    p = eur()
    events = hellgate.parse_capture(response(200, payment_body("capturing")), p, capture(1000, "EUR"))
    assert [(e.type, e.amount) for e in events] == [(EventType.CAPTURE_REQUESTED, 1000)]
    after = capstate.apply(p, events[0])
    assert (after.state, after.captured, after.pending) == ("capturing", 0, 1000)


def final_status_by_get() -> None:
    p = capstate.apply(eur(), hellgate.parse_capture(response(200, payment_body("capturing")), eur(),
                                                     capture(1000, "EUR"))[0])
    assert hellgate.parse_refresh(response(200, payment_body("capturing")), p, at=T0) == ()
    done = hellgate.parse_refresh(response(200, payment_body("captured", captured=1000)), p, at=T0)
    assert [(e.type, e.amount) for e in done] == [(EventType.CAPTURED, 1000)]
    assert capstate.apply(p, done[0]).state == "captured"
    body = {**payment_body("failed"), "failure_reasons": [{"classifier": "DECLINED", "message": "Do not honor"}]}
    failed = hellgate.parse_refresh(response(200, body), p, at=T0)
    assert [(e.type, e.reason) for e in failed] == [(EventType.CAPTURE_FAILED, "DECLINED: Do not honor")]
    assert capstate.apply(p, failed[0]).state == "failed"


def failed_capture_answer() -> None:
    body = {**payment_body("failed"), "failure_reasons": [{"classifier": "PROCESSOR", "message": "timeout"}]}
    events = hellgate.parse_capture(response(200, body), eur(), capture(1000, "EUR"))
    assert [e.type for e in events] == [EventType.CAPTURE_REQUESTED, EventType.CAPTURE_FAILED]


def no_multiple_captures() -> None:
    p = captured(eur(), 600)
    decision = capstate.decide(p, capstate.Capture(at=T0, amount=100))
    assert not decision.allowed


def idempotency_header() -> None:
    req = hellgate.build_capture(eur(), capture(1000, "EUR", "cap-1"), HELLGATE_CREDS)
    assert req.header("X-Idempotency-Key") == "cap-1"
    assert hellgate.build_capture(eur(), capture(1000, "EUR"), HELLGATE_CREDS).header("X-Idempotency-Key") is None


def version_header() -> None:
    creds = hellgate.Credentials(api_key="k", version="2025-01-01")
    assert hellgate.build_get(eur(), creds).header("x-hellgate-version") == "2025-01-01"


def errors_4xx_422_5xx() -> None:
    e422 = hellgate.parse_error(response(422, {"code": "AMOUNT_TOO_HIGH", "message": "exceeds authorized"}))
    assert (e422.status, e422.error_id, e422.retryable, e422.reconcile) == (422, "AMOUNT_TOO_HIGH", False, False)
    e400 = hellgate.parse_error(response(400, b""))
    assert (e400.retryable, e400.reconcile) == (False, False)
    e503 = hellgate.parse_error(response(503, b"<html/>", "text/html"))
    assert (e503.retryable, e503.reconcile) == (True, True)
    with pytest.raises(ProviderError) as err:
        hellgate.parse_capture(response(422, {"code": "NOT_CAPTURABLE"}), eur(), capture(1000, "EUR"))
    assert err.value.error_id == "NOT_CAPTURABLE"


def refund_request_and_async_outcome() -> None:
    p = captured(eur(), 1000)
    req = hellgate.build_refund(p, Refund(amount=500, at=T0), HELLGATE_CREDS, description="Refund order #12345")
    assert req.url.endswith(f"/payments/{HELLGATE_ID}/refund")
    assert orjson.loads(req.body) == {"amount": 500, "currency_code": "EUR", "reference": "Refund order #12345"}
    cmd = Refund(amount=500, at=T0)
    assert hellgate.parse_refund(response(200, {"id": "rf-1", "status": "processing"}), p, cmd) == ()
    done = hellgate.parse_refund(response(200, {"id": "rf-1", "status": "completed"}), p, cmd)
    assert [(e.type, e.amount) for e in done] == [(EventType.REFUNDED, 500)]
    with pytest.raises(ProviderError, match="DECLINED"):
        hellgate.parse_refund(response(200, {"status": "failed", "failure_details": [{"classifier": "DECLINED"}]}),
                              p, cmd)


def void_is_asynchronous() -> None:
    req = hellgate.build_cancel(eur(), Cancel(at=T0), HELLGATE_CREDS)
    assert (req.method, req.body) == ("POST", b"") and req.url.endswith("/void")
    assert hellgate.parse_cancel(response(200, payment_body("voiding")), eur(), Cancel(at=T0)) == ()
    events = hellgate.parse_cancel(response(200, payment_body("voided")), eur(), Cancel(at=T0))
    assert [(e.type, e.amount) for e in events] == [(EventType.CANCELLED, 1000)]


def get_reports_amounts() -> None:
    status = hellgate.parse_get(response(200, payment_body("captured", captured=800, refunded=100)), eur())
    assert (status.state, status.authorized, status.captured, status.refunded, status.in_flight) == (
        "captured", 1000, 800, 100, False)
    assert hellgate.parse_get(response(200, payment_body("capturing")), eur()).in_flight
    # One capture only ("does not support multiple captures"): a failed one captured nothing, so a read-back
    # after a timed-out capture can record the failure instead of ending as "unknown".
    failed = hellgate.parse_get(response(200, payment_body("failed")), eur())
    assert (failed.state, failed.captured, failed.in_flight) == ("failed", 0, False)


class Rule(NamedTuple):
    doc: str
    sentence: str
    check: Callable[[], None]


RULES = [
    Rule(CAPTURE_DOC, "POST /payments/{payment_id}/capture ... X-API-Key", capture_endpoint_and_api_key),
    Rule(CAPTURE_DOC, "It actually only requires a reference in case a full capture is intended.",
         full_capture_sends_only_a_reference),
    Rule(CAPTURE_DOC, "In case a partial capture is requested, the corresponding amount and currency_code has to "
         "be given.", partial_capture_sends_amount_and_currency),
    Rule(CAPTURE_DOC, "payment_id (UUIDv4)", payment_id_is_a_uuid),
    Rule(V2_CAPTURE_DOC, "A description of the payment for later reference, Maximum string length: 80",
         reference_at_most_80_characters),
    Rule(CAPTURE_DOC, "Hellgate rejects empty strings (use an explicit null value instead)", no_empty_strings),
    Rule(MI_DOC, "use 700 for 7€ ... 100 for 100 JPY", amounts_in_minor_units_zero_decimal_in_full_units),
    Rule(V2_CAPTURE_DOC, "the currency must match the authorized amount", partial_currency_must_match),
    Rule(CAPTURE_DOC, "the payment is now in status capturing; the final result comes later",
         capturing_is_not_a_capture),
    Rule(CAPTURE_DOC, "authorized -> capturing -> captured | failed (by notification or GET)", final_status_by_get),
    Rule(CAPTURE_DOC, "authorized -> capturing -> ... failed", failed_capture_answer),
    Rule(CAPTURE_DOC, "Hellgate® does not support multiple captures", no_multiple_captures),
    Rule(V1_START_DOC, "Commerce supports idempotency ... controlled via the header field X-Idempotency-Key",
         idempotency_header),
    Rule("https://api-reference.hellgate.io", "x-hellgate-version: if absent the latest version is used",
         version_header),
    Rule(V1_START_DOC, "Invalid Requests - HTTP 4xx; Unprocessable Content - HTTP 422", errors_4xx_422_5xx),
    Rule(REFUND_DOC, "Hellgate® supports multiple refunds ... processing -> completed | failed",
         refund_request_and_async_outcome),
    Rule(VOID_DOC, "POST /payments/{id}/void ... Cancel accepted, status voiding", void_is_asynchronous),
    Rule("https://developer.hellgate.io/products/commerce/v1/api-reference/payments/get-a-payment",
         "GET /payments/{id}: amount {requested, authorized, captured, refunded}", get_reports_amounts),
]


@pytest.mark.parametrize("rule", RULES, ids=[r.check.__name__ for r in RULES])
def test_documented_rule(rule: Rule) -> None:
    assert rule.doc.startswith(("https://", "research/providers.md")) and rule.sentence
    rule.check()
