"""The Vipps wire formats from the server side (capstate.providers.vipps.inbound, .answers, .webhooks
signed_headers): what capstate's builders and the SDK send parses; what breaks the documented rules is a
Vipps problem naming the field; the answers carry every field the OpenAPI document requires.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from provider_cases import T0, VIPPS_CREDS, authorized, capture

from capstate import Cancel, Refund, SignatureError
from capstate.providers import vipps
from capstate.providers.vipps import answers, inbound
from capstate.providers.vipps.webhooks import signed_headers, verify_webhook

CREATE = {"amount": {"currency": "NOK", "value": 1000}, "paymentMethod": {"type": "WALLET"},
          "reference": "order-0001", "userFlow": "WEB_REDIRECT", "returnUrl": "https://example.com/r"}


def body(obj: object) -> bytes:
    return orjson.dumps(obj)


def problem_of(call: object) -> inbound.Problem:
    assert callable(call)
    with pytest.raises(inbound.Problem) as err:
        call()
    return err.value


# ------------------------------------------------------------------------------- capstate's own requests


def test_capstates_own_requests_parse() -> None:
    p = authorized("vipps", "acme-shop-123-order123abc", 49900, "NOK")
    cap = vipps.build_capture(p, capture(10000, "NOK", "key-1"), VIPPS_CREDS)
    who = inbound.caller(cap.headers)
    assert (who.token, who.subscription_key, who.msn) == (VIPPS_CREDS.access_token.reveal(),
                                                          VIPPS_CREDS.subscription_key.reveal(), "123456")
    assert "eyJ" not in repr(who)
    assert inbound.idempotency_key(cap.headers) == "key-1"
    assert inbound.modification(cap.body) == inbound.Money("NOK", 10000)
    ref = vipps.build_refund(p, Refund(amount=500, at=T0, key="r-1"), VIPPS_CREDS)
    assert inbound.modification(ref.body) == inbound.Money("NOK", 500)
    can = vipps.build_cancel(p, Cancel(at=T0, key="c-1"), VIPPS_CREDS)
    assert inbound.cancel(can.body) is False
    get = vipps.build_get(p, VIPPS_CREDS)
    assert inbound.caller(get.headers).msn == "123456"


def test_the_sdks_requests_parse() -> None:
    # The SDK sends no cancel body, empty Vipps-System-* headers, and its token request with client headers.
    sdk = {"Authorization": "Bearer t0k", "Ocp-Apim-Subscription-Key": "sub", "Merchant-Serial-Number": "123456",
           "Vipps-System-Name": "", "Idempotency-Key": "0f6b7d3e-2b1c-4a8e-9d1f-1a2b3c4d5e6f"}
    assert inbound.caller(sdk).token == "t0k"
    assert inbound.cancel(b"") is False
    assert inbound.force_approve(body({"customer": {"phoneNumber": "4791234567"}})).customer == inbound.Customer(
        "4791234567")
    assert inbound.force_approve(b"") == inbound.ForceApprove()
    tok = inbound.token_request({"client_id": "id", "client_secret": "s3cret", "Ocp-Apim-Subscription-Key": "sub",
                                 "Merchant-Serial-Number": "123456", "Authorization": "Bearer "})
    assert (tok.client_id, tok.client_secret, tok.msn) == ("id", "s3cret", "123456")
    assert "s3cret" not in repr(tok)
    made = inbound.create_payment(body(CREATE), now=T0)
    assert (made.reference, made.amount, made.user_flow, made.payment_method) == (
        "order-0001", inbound.Money("NOK", 1000), "WEB_REDIRECT", "WALLET")


# ------------------------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("headers", "status", "field"), [
    ({"Ocp-Apim-Subscription-Key": "s", "Merchant-Serial-Number": "123456"}, 401, None),
    ({"Authorization": "Basic abc", "Ocp-Apim-Subscription-Key": "s", "Merchant-Serial-Number": "123456"}, 401, None),
    ({"Authorization": "Bearer t", "Merchant-Serial-Number": "123456"}, 401, None),
    ({"Authorization": "Bearer t", "Ocp-Apim-Subscription-Key": "s"}, 400, "Merchant-Serial-Number"),
    ({"Authorization": "Bearer t", "Ocp-Apim-Subscription-Key": "s", "Merchant-Serial-Number": "12"}, 400,
     "Merchant-Serial-Number"),
])
def test_bad_credentials_headers(headers: dict[str, str], status: int, field: str | None) -> None:
    p = problem_of(lambda: inbound.caller(headers))
    assert p.status == status
    assert [name for name, _ in p.extra] == ([field] if field else [])


@pytest.mark.parametrize(("raw", "field", "title"), [
    (b"{", "body", "Bad Request"),
    (b"[1, 2]", "body", "Bad Request"),
    (b"", "body", "Bad Request"),
    (body({"modificationAmount": {"currency": "NOK", "value": "100"}}), "modificationAmount.value", "Bad Request"),
    (body({"modificationAmount": {"currency": "NOK", "value": True}}), "modificationAmount.value", "Bad Request"),
    (body({"modificationAmount": {"currency": "NOK", "value": 100.5}}), "modificationAmount.value", "Amount invalid"),
    (body({"modificationAmount": {"currency": "SEK", "value": 100}}), "modificationAmount.currency", "Bad Request"),
    (body({"modificationAmount": {"currency": "NOK", "value": 65_000_001}}), "modificationAmount.value",
     "Bad Request"),
    (body({"modificationAmount": {"value": 100}}), "modificationAmount.currency", "Bad Request"),
    (body({"amount": 100}), "modificationAmount", "Bad Request"),
])
def test_malformed_modifications_name_the_field(raw: bytes, field: str, title: str) -> None:
    p = problem_of(lambda: inbound.modification(raw))
    assert (p.status, p.title, [name for name, _ in p.extra]) == (400, title, [field])


def test_a_huge_body_is_413_without_parsing_it() -> None:
    p = problem_of(lambda: inbound.modification(b" " * (inbound.MAX_BODY + 1)))
    assert p.status == 413


@pytest.mark.parametrize(("change", "field"), [
    ({"reference": "short"}, "reference"),
    ({"reference": "bad_reference"}, "reference"),
    ({"userFlow": "TELEPATHY"}, "userFlow"),
    ({"userFlow": "PUSH_MESSAGE"}, "customer"),
    ({"returnUrl": None}, "returnUrl"),
    ({"paymentMethod": {"type": "CARD"}, "userFlow": "QR"}, "paymentMethod.type"),
    ({"paymentMethod": "WALLET"}, "paymentMethod"),
    ({"customer": {"phoneNumber": "4791234567", "personalQr": "https://qr"}}, "customer"),
    ({"customer": {"phoneNumber": "+47 912"}}, "customer.phoneNumber"),
    ({"expiresAt": "2026-01-05T12:30:00Z"}, "expiresAt"),  # only with PUSH_MESSAGE or QR
    ({"userFlow": "QR", "expiresAt": "2026-01-05T12:05:00Z"}, "expiresAt"),  # less than 10 minutes ahead
    ({"userFlow": "QR", "expiresAt": "2026-03-05T12:00:00Z"}, "expiresAt"),  # more than 28 days ahead
    ({"metadata": {str(i): "v" for i in range(6)}}, "metadata"),
    ({"paymentDescription": "ab"}, "paymentDescription"),
    ({"amount": {"currency": "NOK", "value": -1}}, "amount.value"),
])
def test_malformed_creates_name_the_field(change: dict[str, object], field: str) -> None:
    req = {k: v for k, v in {**CREATE, **change}.items() if v is not None}
    p = problem_of(lambda: inbound.create_payment(body(req), now=T0))
    assert p.status == 400
    assert [name for name, _ in p.extra] == [field]


def test_an_expiry_inside_the_window_is_kept() -> None:
    made = inbound.create_payment(body({**CREATE, "userFlow": "QR", "expiresAt": "2026-01-06T12:00:00Z"}), now=T0)
    assert made.expires_at == T0 + timedelta(days=1)


def test_idempotency_key_rules() -> None:
    assert inbound.idempotency_key({"Idempotency-Key": "k" * 50}) == "k" * 50
    for bad in ({}, {"Idempotency-Key": "k" * 51}, {"Idempotency-Key": "naïve"}):
        assert problem_of(lambda bad=bad: inbound.idempotency_key(bad)).status == 400


# -------------------------------------------------------------------------------------------- answers


def test_answers_carry_every_required_field() -> None:
    view = answers.PaymentView("order-0001", "psp-1", "AUTHORIZED", "NOK", 1000, 1000, 300, 0, 100,
                               metadata=(("k", "v"),))
    got = answers.get_payment(view)
    assert set(got) >= {"aggregate", "amount", "state", "paymentMethod", "profile", "pspReference", "reference"}
    assert got["aggregate"]["capturedAmount"] == {"currency": "NOK", "value": 300}
    assert got["metadata"] == {"k": "v"}
    mod = answers.modification(view)
    assert set(mod) == {"amount", "state", "aggregate", "pspReference", "reference"}
    entry = answers.LogEntry("order-0001", "psp-1", "CAPTURED", "NOK", 300, T0, "k-1", True)
    assert answers.payment_event(entry)["timestamp"] == "2026-01-05T12:00:00Z"
    assert answers.webhook_event("123456", entry)["msn"] == "123456"
    assert answers.created("order-0001", None) == {"reference": "order-0001"}
    tok = answers.access_token("tok", T0, timedelta(hours=1))
    assert all(isinstance(v, str) for v in tok.values())
    assert int(tok["expires_on"]) - int(tok["not_before"]) == 3600
    prob = answers.problem(inbound.bad_request("reference", "too short"), "trace-1")
    assert prob["type"].startswith(answers.PROBLEM_TYPE) and prob["status"] == 400
    assert prob["extraDetails"] == [{"name": "reference", "reason": "too short"}]


# ------------------------------------------------------------------------------------------- webhooks


def test_signed_webhooks_verify_with_the_receiving_side() -> None:
    now = datetime(2026, 1, 5, 12, 0, 7, tzinfo=UTC)
    raw = b'{"name":"CAPTURED"}'
    headers = signed_headers("s3cret", method="POST", path_and_query="/hook?x=1", host="127.0.0.1:9000",
                             body=raw, now=now)
    verify_webhook(secret="s3cret", method="POST", path_and_query="/hook?x=1", headers=headers, body=raw, now=now)
    with pytest.raises(SignatureError, match="signature"):
        verify_webhook(secret="other", method="POST", path_and_query="/hook?x=1", headers=headers, body=raw, now=now)
    with pytest.raises(SignatureError, match="content"):
        verify_webhook(secret="s3cret", method="POST", path_and_query="/hook?x=1", headers=headers,
                       body=raw + b" ", now=now)
