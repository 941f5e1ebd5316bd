"""Vipps MobilePay ePayment: exact requests, parsers, errors and webhook signatures.

Rules and sources: research/providers.md §2 (spec vippsas/vipps-epayment-api@e7a5c6e:docs/epayment.v1.yml).
"""

from __future__ import annotations

import base64
from datetime import timedelta

import httpx
import orjson
import pytest
from provider_cases import (
    T0,
    VIPPS_CREDS,
    VIPPS_SUBKEY,
    VIPPS_TOKEN,
    as_httpx,
    authorized,
    capture,
    captured,
    response,
)

import capstate
from capstate import Cancel, EventType, ProviderError, Refund, SignatureError
from capstate.providers import RequestError, vipps

REF = "order-10001"


def amt(value: int) -> dict[str, object]:
    return {"currency": "NOK", "value": value}


def modification(*, authorized: int = 100000, captured: int = 0, cancelled: int = 0, refunded: int = 0,
                 state: str = "AUTHORIZED", reference: str = REF) -> dict[str, object]:
    """A ModificationResponse (epayment.v1.yml#/components/schemas/ModificationResponse)."""
    return {"amount": amt(authorized), "state": state, "pspReference": "psp-1", "reference": reference,
            "aggregate": {"authorizedAmount": amt(authorized), "capturedAmount": amt(captured),
                          "cancelledAmount": amt(cancelled), "refundedAmount": amt(refunded)}}


@pytest.fixture
def payment() -> capstate.Payment:
    return authorized("vipps", REF, 100000, "NOK")


# ------------------------------------------------------------------------------------------ requests


def test_capture_request_is_exactly_what_the_spec_documents(payment: capstate.Payment) -> None:
    decision = capstate.decide(payment, capstate.Capture(at=T0, amount=25000, key="ship-1"))
    req = vipps.build_capture(payment, decision.command, VIPPS_CREDS)
    # POST {base}/epayment/v1/payments/{reference}/capture (epayment.v1.yml paths)
    assert req.method == "POST"
    assert req.url == "https://apitest.vipps.no/epayment/v1/payments/order-10001/capture"
    assert req.headers == (
        ("Authorization", f"Bearer {VIPPS_TOKEN}"),
        ("Ocp-Apim-Subscription-Key", VIPPS_SUBKEY),
        ("Merchant-Serial-Number", "123456"),
        ("Idempotency-Key", "ship-1"),
        ("Content-Type", "application/json"),
    )
    # CaptureModificationRequest: {"modificationAmount": {"currency", "value"}}, value in minor units
    assert orjson.loads(req.body) == {"modificationAmount": {"currency": "NOK", "value": 25000}}


def test_system_headers_are_sent_when_configured(payment: capstate.Payment) -> None:
    # Vipps-System-Name etc.: optional, maxLength 30 (epayment.v1.yml#/components/parameters)
    creds = vipps.Credentials(access_token="t", subscription_key="s", merchant_serial_number="1234",
                              system_name="acme", system_version="2.1.0", plugin_name="capstate",
                              plugin_version="0.1.0")
    req = vipps.build_get(payment, creds)
    assert req.header("Vipps-System-Name") == "acme"
    assert req.header("vipps-system-plugin-version") == "0.1.0"
    with pytest.raises(RequestError, match="system_name"):
        vipps.Credentials(access_token="t", subscription_key="s", merchant_serial_number="1234",
                          system_name="x" * 31)


def test_cancel_always_sends_cancel_transaction_only_false(payment: capstate.Payment) -> None:
    # research §2.9 item 5: v1.4.1 declares no body, newer servers accept {cancelTransactionOnly}; send it
    req = vipps.build_cancel(payment, Cancel(at=T0, key="c-1"), VIPPS_CREDS)
    assert req.url.endswith("/epayment/v1/payments/order-10001/cancel")
    assert orjson.loads(req.body) == {"cancelTransactionOnly": False}
    assert req.header("Idempotency-Key") == "c-1"


def test_refund_and_get(payment: capstate.Payment) -> None:
    paid = captured(payment, 30000)
    req = vipps.build_refund(paid, Refund(amount=500, at=T0, key="r-1"), VIPPS_CREDS)
    assert req.url.endswith("/order-10001/refund")
    assert orjson.loads(req.body) == {"modificationAmount": {"currency": "NOK", "value": 500}}
    get = vipps.build_get(payment, VIPPS_CREDS)
    assert (get.method, get.body, get.header("Idempotency-Key"), get.header("Content-Type")) == ("GET", b"", None,
                                                                                                  None)
    assert get.url == "https://apitest.vipps.no/epayment/v1/payments/order-10001"


@pytest.mark.parametrize(("cmd", "field"), [
    (capture(25000, "NOK"), "key"),                       # Idempotency-Key is required (epayment.v1.yml)
    (capture(0, "NOK", "k"), "amount"),                   # a zero moves nothing
    (capture(65_000_001, "NOK", "k"), "amount"),          # Amount.value maximum 65000000
    (capture(25000, "DKK", "k"), "currency"),             # must be the authorized currency
    (capture(25000, "NOK", "k" * 51), "key"),             # Idempotency-Key maxLength 50
    (capture(25000, "NOK", "k\r\nX-Evil: 1"), "key"),     # never a header injection
])
def test_unsendable_commands_are_refused_before_any_bytes_exist(payment: capstate.Payment,
                                                                 cmd: capstate.Capture, field: str) -> None:
    with pytest.raises(RequestError) as err:
        vipps.build_capture(payment, cmd, VIPPS_CREDS)
    assert err.value.field == field


def test_a_float_amount_never_reaches_a_body(payment: capstate.Payment) -> None:
    with pytest.raises(capstate.CommandError):
        capstate.Capture(at=T0, amount=250.0, key="k")  # type: ignore[arg-type]


@pytest.mark.parametrize("msn", ["123", "1234567", "12a4", "1234\n"])
def test_merchant_serial_number_format(msn: str) -> None:
    # MSN: ^[0-9]{4,6}$ (epayment.v1.yml#/components/schemas/MSN)
    with pytest.raises(RequestError, match="merchant_serial_number"):
        vipps.Credentials(access_token="t", subscription_key="s", merchant_serial_number=msn)


def test_an_access_token_with_a_newline_is_refused_without_echoing_it(payment: capstate.Payment) -> None:
    creds = vipps.Credentials(access_token="abc\r\nX-Evil: 1", subscription_key="s", merchant_serial_number="1234")
    with pytest.raises(RequestError) as err:
        vipps.build_get(payment, creds)
    assert "abc" not in str(err.value) and err.value.field == "access_token"


# ------------------------------------------------------------------------------------------- parsers


@pytest.mark.parametrize("content_type", ["application/json", "application/problem+json", ""])
def test_capture_success_parses_whatever_media_type_it_declares(payment: capstate.Payment,
                                                               content_type: str) -> None:
    # research §2.9 item 1: AdjustResponse is declared as application/problem+json
    cmd = capture(25000, "NOK", "ship-1")
    events = vipps.parse_capture(response(200, modification(captured=25000), content_type), payment, cmd)
    assert [(e.type, e.amount, e.currency, e.key, e.provider) for e in events] == [
        (EventType.CAPTURED, 25000, "NOK", "ship-1", "vipps")]
    after = capstate.apply(payment, events[0])
    assert (after.state, after.captured) == ("authorized", 25000)


def test_a_second_partial_capture_is_judged_against_the_aggregate(payment: capstate.Payment) -> None:
    # "This can be done multiple times" (operations/capture.md); the aggregate is cumulative
    paid = captured(payment, 25000)
    events = vipps.parse_capture(response(200, modification(captured=35000)), paid, capture(10000, "NOK", "s-2"))
    assert events[0].amount == 10000


def test_an_aggregate_that_does_not_show_the_capture_asks_for_reconciliation(payment: capstate.Payment) -> None:
    with pytest.raises(ProviderError) as err:
        vipps.parse_capture(response(200, modification(captured=20000)), payment, capture(25000, "NOK", "k"))
    assert err.value.reconcile and not err.value.retryable


def test_an_identical_replay_already_recorded_yields_no_new_event(payment: capstate.Payment) -> None:
    # "A retry with the same key will not cause a duplicate" (knowledge-base/http-headers.md)
    cmd = capture(25000, "NOK", "ship-1")
    paid = capstate.apply(payment, vipps.parse_capture(response(200, modification(captured=25000)), payment, cmd)[0])
    assert vipps.parse_capture(response(200, modification(captured=25000)), paid, cmd) == ()


def test_only_200_is_success(payment: capstate.Payment) -> None:
    # "The capture is only successful when the response is HTTP 200 OK" (reserve-and-capture.md)
    with pytest.raises(ProviderError) as err:
        vipps.parse_capture(response(202, modification(captured=25000)), payment, capture(25000, "NOK", "k"))
    assert err.value.status == 202 and err.value.reconcile


def test_another_payments_answer_is_refused(payment: capstate.Payment) -> None:
    body = modification(captured=25000, reference="order-99999")
    with pytest.raises(ProviderError, match="order-99999"):
        vipps.parse_capture(response(200, body), payment, capture(25000, "NOK", "k"))


def test_cancel_after_authorization_releases_the_remainder(payment: capstate.Payment) -> None:
    # cancel.md: "will always cancel the entire remaining not-captured amount"; state stays AUTHORIZED
    paid = captured(payment, 30000)
    events = vipps.parse_cancel(response(200, modification(captured=30000, cancelled=70000)), paid,
                                Cancel(at=T0, key="c"))
    assert [(e.type, e.amount) for e in events] == [(EventType.CANCELLED, 70000)]
    assert capstate.apply(paid, events[0]).state == "captured"


@pytest.mark.parametrize("state", ["CREATED", "TERMINATED", "EXPIRED"])
def test_a_cancel_answer_in_an_undocumented_state_asks_to_reconcile(payment: capstate.Payment, state: str) -> None:
    with pytest.raises(ProviderError) as err:
        vipps.parse_cancel(response(200, modification(cancelled=100000, state=state)), payment,
                           Cancel(at=T0, key="c"))
    assert err.value.reconcile and state in str(err.value)


def test_cancel_before_authorization_terminates() -> None:
    fresh = capstate.Payment.new(capstate.load_spec("vipps"), REF)
    body = modification(authorized=0, state="TERMINATED")
    events = vipps.parse_cancel(response(200, body), fresh, Cancel(at=T0, key="c"))
    assert [(e.type, e.amount) for e in events] == [(EventType.CANCELLED, None)]
    assert capstate.apply(fresh, events[0]).state == "cancelled"


def test_refund_parses(payment: capstate.Payment) -> None:
    paid = captured(payment, 30000)
    events = vipps.parse_refund(response(200, modification(captured=30000, refunded=500)), paid,
                                Refund(amount=500, at=T0, key="r"))
    assert [(e.type, e.amount) for e in events] == [(EventType.REFUNDED, 500)]


def test_get_reports_the_aggregate(payment: capstate.Payment) -> None:
    body = {**modification(captured=25000, refunded=100), "paymentMethod": {"type": "WALLET"}}
    status = vipps.parse_get(response(200, body), payment)
    assert (status.state, status.currency, status.authorized, status.captured, status.cancelled,
            status.refunded) == ("AUTHORIZED", "NOK", 100000, 25000, 0, 100)


@pytest.mark.parametrize("bad", [
    b"not json", b"[]", orjson.dumps({"state": "AUTHORIZED"}),
    orjson.dumps({**modification(), "aggregate": {"capturedAmount": {"value": 1.5, "currency": "NOK"}}}),
])
def test_a_garbled_200_is_a_typed_error_that_asks_to_reconcile(payment: capstate.Payment, bad: bytes) -> None:
    with pytest.raises(ProviderError) as err:
        vipps.parse_capture(response(200, bad), payment, capture(25000, "NOK", "k"))
    assert err.value.reconcile


# -------------------------------------------------------------------------------------------- errors

PROBLEM = "application/problem+json"


def problem(status: int, title: str, ptype: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"title": title, "status": status, "traceId": "trace-77",
                               "detail": f"{title} for order-10001"}
    if ptype:
        body["type"] = ptype
    return body


@pytest.mark.parametrize(("status", "title", "retryable", "reconcile"), [
    # knowledge-base/errors + FAQ: "Order processing: Too many concurrent requests" -> retry, same key
    (409, "Order processing", True, False),
    # FAQ: "Capture idempotency conflict" is a bug (same key, another body): never retry
    (409, "Capture idempotency conflict", False, False),
    (423, "Locked", True, False),          # "the solution is to retry, using the Idempotency-Key header"
    (429, "Too Many Requests", True, False),
    (500, "Internal error", True, True),   # retry with the same key, then reconcile
    (400, "Capture amount too high", False, False),
    (400, "Capture period expired", False, False),
    (404, "Reference not found", False, False),
    (401, "Unauthorized", False, False),
])
def test_problem_errors_keep_vipps_type_and_title(status: int, title: str, retryable: bool, reconcile: bool,
                                                  payment: capstate.Payment) -> None:
    ptype = "https://developer.vippsmobilepay.com/docs/APIs/epayment-api/errors#" + title.lower().replace(" ", "-")
    with pytest.raises(ProviderError) as err:
        vipps.parse_capture(response(status, problem(status, title, ptype), PROBLEM), payment,
                            capture(25000, "NOK", "k"))
    e = err.value
    assert (e.provider, e.status, e.error_id, e.title) == ("vipps", status, ptype, title)
    assert (e.retryable, e.reconcile) == (retryable, reconcile)
    assert "trace-77" in str(e)


def test_without_a_type_the_title_is_the_error_id() -> None:
    err = vipps.parse_error(response(400, problem(400, "Amount too small"), PROBLEM))
    assert err.error_id == "Amount too small"


def test_a_gateway_html_page_is_still_a_typed_retryable_error() -> None:
    err = vipps.parse_error(response(502, b"<html>Bad Gateway</html>", "text/html"))
    assert (err.status, err.retryable, err.reconcile, err.error_id) == (502, True, True, None)


# ------------------------------------------------------------------------------------------ webhooks

# research/providers.md §2.8: the documented test vector (webhooks-api request-authentication.md)
SECRET = "A0+AeKBRG2KRGvnNwJpQlb6IJFk48CKXCIcrLoHncVJKDILsQSxS6NWCccwWm6r6FhGKhiHTBsG2wo/xU6FY/A=="
PATH = "/e2cee29b-012e-4f1d-8ef4-e95fd74a7a63"
DATE = "Thu, 30 Mar 2023 08:38:32 GMT"
BODY = b'{"some-unique-content":"ee6e441b-cc4a-46f8-895d-a5af79bcc233/hello-world"}'
HASH = "lNlsp1XA03N34HrQsVzPgJKtC+r7l/RBF4V3JQUWMj4="
SIG = "agAiSyogQbDHpeucoNwYz+yAr5nJ+v+zasdkSbqzv+U="
NOW = capstate.Event.from_dict({"payment": "x", "type": "expired", "at": "2023-03-30T08:39:00Z"}).at


def vector_headers(**changes: str) -> dict[str, str]:
    headers = {"x-ms-date": DATE, "x-ms-content-sha256": HASH, "Host": "webhook.site",
               "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={SIG}"}
    headers.update(changes)
    return headers


def verify(body: bytes = BODY, path: str = PATH, secret: str = SECRET, now: object = NOW,
           **headers: str) -> None:
    vipps.verify_webhook(secret=secret, method="POST", path_and_query=path, headers=vector_headers(**headers),
                         body=body, now=now, tolerance=timedelta(minutes=5))  # type: ignore[arg-type]


def test_the_documented_vector_verifies() -> None:
    assert vipps.content_hash(BODY) == HASH
    assert vipps.signature(SECRET, method="POST", path_and_query=PATH, date=DATE, host="webhook.site",
                           body_hash=HASH) == SIG
    verify()


def _flip(text: str, at: int) -> str:
    return text[:at] + ("A" if text[at] != "A" else "B") + text[at + 1:]


@pytest.mark.parametrize("case", ["body", "path", "secret", "date", "host", "hash", "signature"])
def test_a_one_byte_change_fails(case: str) -> None:
    kwargs: dict[str, object] = {}
    if case == "body":
        kwargs["body"] = BODY[:10] + b"X" + BODY[11:]
    elif case == "path":
        kwargs["path"] = _flip(PATH, 5)
    elif case == "secret":
        kwargs["secret"] = _flip(SECRET, 3)
    elif case == "date":
        kwargs["x-ms-date"] = DATE.replace("32 GMT", "33 GMT")
    elif case == "host":
        kwargs["Host"] = "webhook.sitf"
    elif case == "hash":
        kwargs["x-ms-content-sha256"] = _flip(HASH, 0)
    else:
        kwargs["Authorization"] = vector_headers()["Authorization"].replace(SIG, _flip(SIG, 0))
    with pytest.raises(SignatureError) as err:
        verify(**kwargs)  # type: ignore[arg-type]
    assert SECRET not in str(err.value)


@pytest.mark.parametrize("where", ["method", "path", "host", "x-ms-date"])
def test_a_lone_surrogate_in_what_is_signed_is_a_signature_error(where: str) -> None:
    # Before: UnicodeEncodeError from hashing an unauthenticated request (a decoder may hand one over).
    method, path, headers = "POST", PATH, vector_headers()
    if where == "method":
        method = "PO\ud800ST"
    elif where == "path":
        path = PATH + "\ud800"
    else:
        headers["Host" if where == "host" else where] = "webhook.site\ud800"
    with pytest.raises(SignatureError, match="surrogate"):
        vipps.verify_webhook(secret=SECRET, method=method, path_and_query=path, headers=headers, body=BODY,
                             now=NOW)


def test_a_stale_or_future_date_fails_even_with_a_valid_signature() -> None:
    verify(now=NOW + timedelta(minutes=4))
    for now in (NOW + timedelta(minutes=6), NOW - timedelta(minutes=6)):
        with pytest.raises(SignatureError, match="tolerance"):
            verify(now=now)


@pytest.mark.parametrize("headers", [
    {"x-ms-date": ""},
    {"Authorization": f"HMAC-SHA1 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={SIG}"},
    {"Authorization": f"HMAC-SHA256 SignedHeaders=host;x-ms-date;x-ms-content-sha256&Signature={SIG}"},
    {"Authorization": "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256"},
    {"Authorization": "HMAC-SHA256 garbage"},
])
def test_malformed_signature_headers_fail(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError):
        verify(**headers)


def test_the_secret_is_used_as_given_not_base64_decoded() -> None:
    # request-authentication.md: key = the UTF-8 bytes of the secret string; decoding it would not verify
    decoded = base64.b64decode(SECRET)
    assert vipps.signature(decoded.decode("latin-1"), method="POST", path_and_query=PATH, date=DATE,
                           host="webhook.site", body_hash=HASH) != SIG


def test_requests_survive_httpx_unchanged(payment: capstate.Payment) -> None:
    req = vipps.build_capture(payment, capture(25000, "NOK", "ship-1"), VIPPS_CREDS)
    wire = as_httpx(req)
    assert wire.url == httpx.URL(req.url) and wire.content == req.body
    assert [(k.lower(), v) for k, v in req.headers] == [(k, v) for k, v in wire.headers.items()
                                                        if k not in {"content-length", "host"}]
