"""The executor over real sockets: a scripted HTTP server on 127.0.0.1 answers as each provider documents,
and every test asserts on the exact requests the server received (count, idempotency keys, bodies).

Provider rules under test (research/providers.md):
- Vipps: 409 "Order processing", 423, 429, 5xx and timeouts are retried with the SAME Idempotency-Key,
  honouring Retry-After (https://developer.vippsmobilepay.com/docs/knowledge-base/errors).
- Bambora: no idempotency; 409 payment_operation_blocked "could be retried ... or queried", so GET first and
  resend only when the capture did not happen (dev.bambora.com _errors.md; research 1.7).
- Pipwave: no idempotency; requery before any retry (research 4.7).
- Hellgate: capture answers `capturing`, which is not a capture; poll with GET until captured or failed
  (https://developer.hellgate.io/payments/management/capture).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from httpserver import Reply, ScriptedServer, scripted_server

import capstate
from capstate import Cancel, Capture, EventType, Payment, ProviderError, Refund
from capstate.providers import bambora, hellgate, pipwave
from capstate.providers.client import AsyncCaptureClient, CaptureClient, Refused, derive_key
from capstate.providers.retry import RetryPolicy
from capstate.providers.vipps import epayment as vipps

T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
SECRETS = ("vipps-TOKEN-s3cr3t", "vipps-SUBKEY-s3cr3t", "bambora-ACCESS-s3cr3t", "bambora-SECRET-s3cr3t",
           "hellgate-APIKEY-s3cr3t", "pipwave-KEY-s3cr3t", "pipwave-SECRET-s3cr3t")
HG_ID = "3f1c2a8e-6b1d-4c9e-9a55-0f7e2d8c1b2a"
VIPPS_CAPTURE = "/epayment/v1/payments/order-10001/capture"


class Sleeps(list[float]):
    """The injected sleep: records every wait, never waits."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def policy(sleeps: Sleeps, **kw: Any) -> RetryPolicy:
    # random() == 0 makes equal jitter deterministic: each wait is half its ceiling.
    return RetryPolicy(sleep=sleeps, random=lambda: 0.0, base=0.5, cap=8.0, **kw)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as srv:
        yield srv


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def authorized(provider: str, reference: str, amount: int = 100000, currency: str = "NOK") -> Payment:
    return Payment.authorized_for(capstate.load_spec(provider), reference, amount=amount, currency=currency, at=T0)


# ------------------------------------------------------------------------------------------------ Vipps


def vipps_creds(server: ScriptedServer) -> vipps.Credentials:
    return vipps.Credentials(access_token=SECRETS[0], subscription_key=SECRETS[1], merchant_serial_number="123456",
                             base_url=server.url)


def vipps_body(captured: int = 0, cancelled: int = 0, refunded: int = 0, authorized_: int = 100000,
               reference: str = "order-10001") -> dict[str, Any]:
    def amount(v: int) -> dict[str, Any]:
        return {"currency": "NOK", "value": v}
    return {"amount": amount(authorized_), "state": "AUTHORIZED", "pspReference": "psp-1", "reference": reference,
            "aggregate": {"authorizedAmount": amount(authorized_), "capturedAmount": amount(captured),
                          "cancelledAmount": amount(cancelled), "refundedAmount": amount(refunded)}}


def problem(status: int, title: str) -> dict[str, Any]:
    return {"type": "about:blank", "title": title, "status": status, "traceId": "trace-1"}


def vipps_client(server: ScriptedServer, sleeps: Sleeps, **kw: Any) -> CaptureClient:
    return CaptureClient("vipps", vipps_creds(server), retry=policy(sleeps), clock=lambda: NOW, **kw)


def test_vipps_capture_sends_exactly_one_documented_request(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=25000), content_type="application/problem+json"))
    p = authorized("vipps", "order-10001")
    with vipps_client(server, sleeps) as client:
        out = client.capture(p, Capture(at=NOW, amount=25000, key="ship-1"))
    (req,) = server.requests
    assert (req.method, req.path) == ("POST", VIPPS_CAPTURE)
    assert req.json() == {"modificationAmount": {"currency": "NOK", "value": 25000}}
    assert req.headers["authorization"] == f"Bearer {SECRETS[0]}"
    assert req.headers["ocp-apim-subscription-key"] == SECRETS[1]
    assert req.headers["merchant-serial-number"] == "123456"
    assert req.headers["idempotency-key"] == "ship-1"
    assert req.headers["content-type"] == "application/json"
    assert out.payment.captured == 25000 and out.payment.state == "authorized" == p.state
    assert out.response is not None and out.response.status == 200
    assert [e.type for e in out.events] == [EventType.CAPTURED] and out.events[0].key == "ship-1"
    assert out.sends == 1 and not out.reconciled and sleeps == []


@pytest.mark.parametrize("first", [
    Reply(500, problem(500, "Internal error")),
    Reply(503, b"<html>gateway</html>", content_type="text/html"),
    Reply(409, problem(409, "Order processing")),
    Reply(423, problem(423, "Locked")),
    Reply(429, problem(429, "Too Many Requests")),
], ids=["500", "503-html", "409-order-processing", "423", "429"])
def test_vipps_retries_transient_answers_with_the_same_key_and_body(server: ScriptedServer, sleeps: Sleeps,
                                                                    first: Reply) -> None:
    server.on("POST", VIPPS_CAPTURE, first, first, Reply(200, vipps_body(captured=25000)))
    with vipps_client(server, sleeps) as client:
        out = client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=25000))
    sent = server.received("POST", VIPPS_CAPTURE)
    assert len(sent) == 3 and server.received("GET") == []
    keys = {r.headers["idempotency-key"] for r in sent}
    assert len(keys) == 1 and keys.pop().startswith("cs-")  # one derived key for the whole logical capture
    assert len({r.body for r in sent}) == 1
    assert sleeps == [0.25, 0.5]  # base 0.5 then 1.0, halved by the (zero) equal jitter
    assert out.payment.captured == 25000 and out.sends == 3


def test_vipps_honours_retry_after(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(429, problem(429, "Too Many Requests"), headers={"Retry-After": "7"}),
              Reply(200, vipps_body(captured=100000)))
    with vipps_client(server, sleeps) as client:
        client.capture(authorized("vipps", "order-10001"), Capture(at=NOW))
    assert sleeps == [7.0]


def test_vipps_gives_up_when_retry_after_is_too_long(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(429, problem(429, "Too Many Requests"), headers={"Retry-After": "3600"}))
    p = authorized("vipps", "order-10001")
    with vipps_client(server, sleeps) as client, pytest.raises(ProviderError) as info:
        client.capture(p, Capture(at=NOW))
    assert len(server.requests) == 1 and sleeps == []
    assert info.value.status == 429 and "longer than 30 s" in str(info.value)


def test_vipps_timeout_is_resent_with_the_same_key(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=25000), delay=2.0),
              Reply(200, vipps_body(captured=25000)))
    with vipps_client(server, sleeps, timeout=0.3) as client:
        out = client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=25000, key="ship-1"))
    sent = server.received("POST", VIPPS_CAPTURE)
    assert [r.headers["idempotency-key"] for r in sent] == ["ship-1", "ship-1"]
    assert out.payment.captured == 25000 and len(out.events) == 1


def test_vipps_exhausted_unknown_outcome_reads_back_and_applies_what_happened(server: ScriptedServer,
                                                                             sleeps: Sleeps) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(500, problem(500, "Internal error")))
    server.on("GET", "/epayment/v1/payments/order-10001", Reply(200, vipps_body(captured=25000)))
    with vipps_client(server, sleeps) as client:
        out = client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=25000, key="ship-1"))
    assert len(server.received("POST")) == 4 and len(server.received("GET")) == 1
    assert out.reconciled and out.payment.captured == 25000
    (event,) = out.events
    assert event.key == "ship-1" and event.reason is not None and "reading the payment back" in event.reason


def test_vipps_exhausted_and_not_captured_raises_a_known_outcome(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(502, b"bad gateway", content_type="text/plain"))
    server.on("GET", "/epayment/v1/payments/order-10001", Reply(200, vipps_body(captured=0)))
    p = authorized("vipps", "order-10001")
    with vipps_client(server, sleeps) as client, pytest.raises(ProviderError) as info:
        client.capture(p, Capture(at=NOW, amount=25000))
    assert len(server.received("POST")) == 4 and len(server.received("GET")) == 1
    assert info.value.status == 502 and not info.value.reconcile  # the read-back proved nothing happened
    assert "gave up after 4 attempts" in str(info.value)


def test_vipps_client_error_is_not_retried(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(400, problem(400, "Capture amount too high")))
    p = authorized("vipps", "order-10001")
    with vipps_client(server, sleeps) as client, pytest.raises(ProviderError) as info:
        client.capture(p, Capture(at=NOW, amount=25000))
    assert len(server.requests) == 1 and sleeps == []
    assert (info.value.status, info.value.error_id, info.value.retryable) == (400, "Capture amount too high", False)


def test_derived_keys_are_stable_per_logical_operation_and_fresh_per_capture(server: ScriptedServer,
                                                                             sleeps: Sleeps) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=25000)), Reply(200, vipps_body(captured=50000)))
    p = authorized("vipps", "order-10001")
    assert derive_key(p, "capture") == derive_key(p, "capture")
    with vipps_client(server, sleeps) as client:
        first = client.capture(p, Capture(at=NOW, amount=25000))
        second = client.capture(first.payment, Capture(at=NOW, amount=25000))
    k1, k2 = (r.headers["idempotency-key"] for r in server.requests)
    assert k1 == derive_key(p, "capture") and k2 == derive_key(first.payment, "capture")
    assert k1 != k2 and len(k1) <= 50
    assert second.payment.captured == 50000


def test_an_already_recorded_key_is_not_sent_again(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=25000)))
    with vipps_client(server, sleeps) as client:
        first = client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=25000, key="ship-1"))
        again = client.capture(first.payment, Capture(at=NOW, amount=25000, key="ship-1"))
    assert len(server.requests) == 1
    assert again.payment == first.payment and again.response is None and again.events == ()
    assert again.decision is not None and "IDEMPOTENT_REPLAY" in [w.code for w in again.decision.warnings]


def test_final_vipps_capture_releases_the_remainder_with_a_cancel(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=60000)))
    server.on("POST", "/epayment/v1/payments/order-10001/cancel", Reply(200, vipps_body(captured=60000,
                                                                                         cancelled=40000)))
    with vipps_client(server, sleeps) as client:
        out = client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=60000, final=True))
    capture, cancel = server.requests
    assert cancel.path.endswith("/cancel") and cancel.json() == {"cancelTransactionOnly": False}
    assert capture.headers["idempotency-key"] != cancel.headers["idempotency-key"]
    assert [e.type for e in out.events] == [EventType.CAPTURED, EventType.CANCELLED]
    assert (out.payment.captured, out.payment.cancelled, out.payment.capturable) == (60000, 40000, 0)
    assert out.release_error is None


def test_failed_release_keeps_the_capture_and_says_why(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=60000)))
    server.on("POST", "/epayment/v1/payments/order-10001/cancel", Reply(400, problem(400, "Cancel period expired")))
    with vipps_client(server, sleeps) as client:
        out = client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=60000, final=True))
    assert out.payment.captured == 60000 and out.payment.cancelled == 0
    assert out.release_error is not None and out.release_error.error_id == "Cancel period expired"


def test_vipps_refund_cancel_and_fetch(server: ScriptedServer, sleeps: Sleeps) -> None:
    base = "/epayment/v1/payments/order-10001"
    server.on("POST", base + "/capture", Reply(200, vipps_body(captured=60000)))
    server.on("POST", base + "/refund", Reply(200, vipps_body(captured=60000, refunded=10000)))
    server.on("POST", base + "/cancel", Reply(200, vipps_body(captured=60000, cancelled=40000, refunded=10000)))
    server.on("GET", base, Reply(200, vipps_body(captured=60000, cancelled=40000, refunded=10000)))
    with vipps_client(server, sleeps) as client:
        p = client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=60000)).payment
        p = client.refund(p, Refund(at=NOW, amount=10000)).payment
        p = client.cancel(p, Cancel(at=NOW)).payment
        remote = client.fetch(p)
    assert (p.captured, p.refunded, p.cancelled) == (60000, 10000, 40000)
    assert (remote.captured, remote.refunded, remote.cancelled, remote.state) == (60000, 10000, 40000, "AUTHORIZED")
    assert [r.method + " " + r.path.rsplit("/", 1)[-1] for r in server.requests] == [
        "POST capture", "POST refund", "POST cancel", "GET order-10001"]


# ------------------------------------------------------------------------------- nothing is ever sent


def _forbidden(request: httpx.Request) -> httpx.Response:
    pytest.fail(f"the network was touched: {request.method} {request.url}")


@pytest.mark.parametrize(("provider", "reference", "command", "code"), [
    ("vipps", "order-10001", Capture(at=NOW, amount=150000), "EXCEEDS_CAPTURABLE"),
    ("vipps", "order-10001", Capture(at=NOW, amount=25000, currency="DKK"), "CURRENCY_MISMATCH"),
    ("vipps", "order-10001", Refund(at=NOW, amount=100), "REFUND_EXCEEDS_CAPTURED"),
    ("bambora", "order-20001", Capture(at=NOW, amount=0), "AMOUNT_INVALID"),
    ("vipps", "order-10001", Capture(at=T0 + timedelta(days=400), amount=100), "AUTHORIZATION_EXPIRED"),
])
def test_a_refused_decision_never_reaches_the_network(provider: str, reference: str, command: Any,
                                                      code: str) -> None:
    creds = {"vipps": vipps.Credentials(access_token=SECRETS[0], subscription_key=SECRETS[1],
                                        merchant_serial_number="123456"),
             "bambora": bambora.Credentials(access_token=SECRETS[2], merchant_number="T0001",
                                            secret_token=SECRETS[3])}[provider]
    client = CaptureClient(provider, creds, transport=httpx.MockTransport(_forbidden))
    p = authorized(provider, reference)
    op = {Capture: client.capture, Refund: client.refund}[type(command)]
    with pytest.raises(Refused) as info:
        op(p, command)
    assert code in info.value.codes
    assert code in str(info.value)


def test_a_request_that_cannot_be_built_never_reaches_the_network() -> None:
    creds = bambora.Credentials(access_token=SECRETS[2], merchant_number="T0001", secret_token=SECRETS[3])
    client = CaptureClient("bambora", creds, transport=httpx.MockTransport(_forbidden))
    with pytest.raises(capstate.CapstateError) as info:
        client.capture(authorized("bambora", "order/../admin"), Capture(at=NOW, amount=100))
    assert "reference" in str(info.value)


def test_a_payment_of_another_provider_is_refused() -> None:
    creds = vipps.Credentials(access_token=SECRETS[0], subscription_key=SECRETS[1], merchant_serial_number="123456")
    client = CaptureClient("vipps", creds, transport=httpx.MockTransport(_forbidden))
    with pytest.raises(capstate.CommandError):
        client.capture(authorized("bambora", "order-20001"), Capture(at=NOW, amount=100))


# ----------------------------------------------------------------------------------------------- Bambora

BAMBORA_CAPTURE = "/payments/order-20001/capture/"
BAMBORA_GET = "/payments/order-20001/"


def bambora_body(state: str, captured: list[int] | None = None, *, in_progress: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"region": "emea_0", "merchant": "T0001", "payment": "order-20001", "state": state,
                            "currency": "NOK", "amount": 100000, "operationInProgress": in_progress}
    if captured is not None:
        body["captures"] = [{"capture": {"amount": a, "comment": ""}} for a in captured]
    return body


def bambora_problem(status: int, slug: str, title: str) -> dict[str, Any]:
    return {"type": f"https://api.bambora.com/definitions/payments/{slug}", "title": title,
            "detail": title, "status": status}


def bambora_client(server: ScriptedServer, sleeps: Sleeps, **kw: Any) -> CaptureClient:
    creds = bambora.Credentials(access_token=SECRETS[2], merchant_number="T0001", secret_token=SECRETS[3],
                                base_url=server.url)
    return CaptureClient("bambora", creds, retry=policy(sleeps), clock=lambda: NOW, **kw)


BLOCKED = Reply(409, bambora_problem(409, "payment_operation_blocked", "Payment operation blocked"),
                content_type="application/problem+json")


def test_bambora_blocked_then_get_shows_captured_applies_it_and_never_resends(server: ScriptedServer,
                                                                              sleeps: Sleeps) -> None:
    server.on("POST", BAMBORA_CAPTURE, BLOCKED)
    server.on("GET", BAMBORA_GET, Reply(200, bambora_body("Captured", [25000])))
    with bambora_client(server, sleeps) as client:
        out = client.capture(authorized("bambora", "order-20001"), Capture(at=NOW, amount=25000))
    assert [(r.method, r.path) for r in server.requests] == [("POST", BAMBORA_CAPTURE), ("GET", BAMBORA_GET)]
    assert out.reconciled and out.payment.captured == 25000 and out.payment.state == "captured"
    assert sleeps == []


def test_bambora_blocked_then_get_shows_nothing_resends_once(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", BAMBORA_CAPTURE, BLOCKED, Reply(201, bambora_body("Captured", [25000])))
    server.on("GET", BAMBORA_GET, Reply(200, bambora_body("Authorized", [])))
    with bambora_client(server, sleeps) as client:
        out = client.capture(authorized("bambora", "order-20001"), Capture(at=NOW, amount=25000))
    assert [r.method for r in server.requests] == ["POST", "GET", "POST"]
    posts = server.received("POST")
    assert posts[0].body == posts[1].body == b'{"amount":25000}'
    assert posts[0].headers["api-version"] == "1" and posts[0].headers["authorization"].startswith("Basic ")
    assert not out.reconciled and out.payment.captured == 25000 and sleeps == [0.25]


def test_bambora_timeout_reads_back_before_anything_else(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", BAMBORA_CAPTURE, Reply(201, bambora_body("Captured", [25000]), delay=2.0))
    server.on("GET", BAMBORA_GET, Reply(200, bambora_body("Captured", [25000])))
    with bambora_client(server, sleeps, timeout=0.3) as client:
        out = client.capture(authorized("bambora", "order-20001"), Capture(at=NOW, amount=25000))
    assert [r.method for r in server.requests] == ["POST", "GET"]
    assert out.reconciled and out.payment.captured == 25000


def test_bambora_timeout_with_an_unreadable_payment_is_never_resent(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", BAMBORA_CAPTURE, Reply(201, bambora_body("Captured", [25000]), delay=2.0))
    server.on("GET", BAMBORA_GET, Reply(503, b"down", content_type="text/plain"))
    p = authorized("bambora", "order-20001")
    with bambora_client(server, sleeps, timeout=0.3) as client, pytest.raises(ProviderError) as info:
        client.capture(p, Capture(at=NOW, amount=25000))
    assert len(server.received("POST")) == 1  # the one that may have captured; never a second
    assert len(server.received("GET")) == 4  # a read is safe to repeat
    assert info.value.reconcile and "outcome unknown" in str(info.value)


def test_bambora_operation_in_progress_is_waited_for_not_resent(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", BAMBORA_CAPTURE, Reply(500, b"", content_type="text/plain"))
    server.on("GET", BAMBORA_GET, Reply(200, bambora_body("Authorized", [], in_progress=True)),
              Reply(200, bambora_body("Captured", [25000])))
    with bambora_client(server, sleeps) as client:
        out = client.capture(authorized("bambora", "order-20001"), Capture(at=NOW, amount=25000))
    assert [r.method for r in server.requests] == ["POST", "GET", "GET"]
    assert out.reconciled and out.payment.captured == 25000


def test_bambora_declined_capture_is_final(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", BAMBORA_CAPTURE, Reply(402, bambora_problem(402, "cannot_capture", "Cannot capture")))
    p = authorized("bambora", "order-20001")
    with bambora_client(server, sleeps) as client, pytest.raises(ProviderError) as info:
        client.capture(p, Capture(at=NOW, amount=25000))
    assert len(server.requests) == 1 and info.value.error_id == "cannot_capture" and not info.value.reconcile


# ----------------------------------------------------------------------------------------------- Pipwave


def pipwave_client(server: ScriptedServer, sleeps: Sleeps) -> CaptureClient:
    creds = pipwave.Credentials(api_key=SECRETS[5], api_secret=SECRETS[6], url=server.url + "/payment")
    return CaptureClient("pipwave", creds, retry=policy(sleeps), clock=lambda: NOW)


def requery(status: int, captured: str | None) -> Reply:
    body: dict[str, Any] = {"status": 200, "transaction_status": status, "amount": "1000.00",
                            "currency_code": "NOK", "require_capture": captured is None}
    if captured is not None:
        body["final_amount"] = captured
    return Reply(200, body)


def test_pipwave_requeries_before_resending(server: ScriptedServer, sleeps: Sleeps) -> None:
    # Both actions share one URL (url.md); the server tells them apart by the body's `action`.
    answers = {"capture-payment": [Reply(500, b"oops", content_type="text/plain"),
                                   Reply(200, {"status": 200, "message": "OK"})],
               "requery": [requery(5, None)]}
    script_by_action(server, "/payment", answers)
    with pipwave_client(server, sleeps) as client:
        out = client.capture(authorized("pipwave", "ORDER-1"), Capture(at=NOW, amount=50000))
    actions = [r.json()["action"] for r in server.requests]
    # The last requery confirms the success; it still shows the capture pending, so the answer stands.
    assert actions == ["capture-payment", "requery", "capture-payment", "requery"]
    first, _, second, _ = (r.json() for r in server.requests)
    assert first["capture_amount"] == second["capture_amount"] == "500.00"
    assert int(first["timestamp"]) == int(NOW.timestamp())
    assert "api_secret" not in first and SECRETS[6] not in server.requests[0].body.decode()
    assert out.payment.captured == 50000


def test_pipwave_requery_showing_paid_is_applied_not_resent(server: ScriptedServer, sleeps: Sleeps) -> None:
    script_by_action(server, "/payment", {"capture-payment": [Reply(500, b"", content_type="text/plain")],
                                          "requery": [requery(10, "500.00")]})
    with pipwave_client(server, sleeps) as client:
        out = client.capture(authorized("pipwave", "ORDER-1"), Capture(at=NOW, amount=50000))
    assert [r.json()["action"] for r in server.requests] == ["capture-payment", "requery"]
    assert out.reconciled and out.payment.captured == 50000


@pytest.mark.parametrize(("final", "captured"), [("500.00", 50000), ("1000.00", 100000), (None, 50000)],
                         ids=["as-asked", "gateway-captured-in-full", "not-yet-visible"])
def test_pipwave_success_is_confirmed_by_requery(server: ScriptedServer, sleeps: Sleeps, final: str | None,
                                                 captured: int) -> None:
    # "If PG not supporting partial capture, full capture will be done" (capture_payment.md): the answer
    # {"status": 200} cannot tell, the requery can.
    script_by_action(server, "/payment", {"capture-payment": [Reply(200, {"status": 200, "message": "OK"})],
                                          "requery": [requery(10, final) if final else requery(5, None)]})
    with pipwave_client(server, sleeps) as client:
        out = client.capture(authorized("pipwave", "ORDER-1", amount=100000),
                             Capture(at=NOW, amount=50000))
    assert [r.json()["action"] for r in server.requests] == ["capture-payment", "requery"]
    assert out.payment.captured == captured and out.sends == 2
    (event,) = out.events
    assert event.amount == captured
    assert (event.reason is not None) == (captured != 50000)


def script_by_action(server: ScriptedServer, path: str, answers: dict[str, list[Reply]]) -> None:
    """Pipwave's one URL: answer by the JSON body's `action`, each action from its own queue."""
    original = server._take

    def take(recorded: Any) -> Reply:
        reply = original(recorded)
        if recorded.path != path:
            return reply
        queue = answers[recorded.json()["action"]]
        return queue.pop(0) if len(queue) > 1 else queue[0]

    server.on("POST", path, Reply(599))
    server._take = take  # type: ignore[method-assign]


# ---------------------------------------------------------------------------------------------- Hellgate


def hellgate_body(status: str, captured: int | None = None, **extra: Any) -> dict[str, Any]:
    amount: dict[str, Any] = {"requested": 100000, "authorized": 100000}
    if captured is not None:
        amount["captured"] = captured
    return {"id": HG_ID, "status": status, "currency_code": "EUR", "amount": amount, **extra}


def hellgate_client(server: ScriptedServer, sleeps: Sleeps, **kw: Any) -> CaptureClient:
    creds = hellgate.Credentials(api_key=SECRETS[4], base_url=server.url)
    return CaptureClient("hellgate", creds, retry=policy(sleeps, **kw), clock=lambda: NOW)


def test_hellgate_capture_returns_capturing_and_refresh_polls_until_captured(server: ScriptedServer,
                                                                             sleeps: Sleeps) -> None:
    server.on("POST", f"/payments/{HG_ID}/capture", Reply(200, hellgate_body("capturing")))
    capturing = Reply(200, hellgate_body("capturing"))
    server.on("GET", f"/payments/{HG_ID}", capturing, capturing, Reply(200, hellgate_body("captured", 100000)))
    with hellgate_client(server, sleeps, poll_interval=1.5) as client:
        started = client.capture(authorized("hellgate", HG_ID, currency="EUR"), Capture(at=NOW))
        assert started.payment.state == "capturing" and not started.settled
        assert [e.type for e in started.events] == [EventType.CAPTURE_REQUESTED]
        done = client.refresh(started.payment)
    assert done.settled and done.payment.state == "captured" and done.payment.captured == 100000
    assert len(server.received("GET")) == 3 and sleeps == [1.5, 1.5]
    capture = server.received("POST")[0]
    assert capture.headers["x-api-key"] == SECRETS[4] and capture.json() == {"reference": HG_ID}


def test_hellgate_refresh_reports_failure(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", f"/payments/{HG_ID}/capture", Reply(200, hellgate_body("capturing")))
    server.on("GET", f"/payments/{HG_ID}", Reply(200, hellgate_body(
        "failed", failure_reasons=[{"classifier": "processor_declined", "message": "Do not honour"}])))
    with hellgate_client(server, sleeps) as client:
        started = client.capture(authorized("hellgate", HG_ID, currency="EUR"), Capture(at=NOW, amount=40000))
        done = client.refresh(started.payment)
    assert done.payment.state == "failed" and done.payment.pending == 0 and done.payment.captured == 0
    (event,) = done.events
    assert event.type is EventType.CAPTURE_FAILED and "Do not honour" in (event.reason or "")
    assert server.received("POST")[0].json() == {"amount": 40000, "currency_code": "EUR", "reference": HG_ID}


def test_hellgate_refresh_is_bounded(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", f"/payments/{HG_ID}/capture", Reply(200, hellgate_body("capturing")))
    server.on("GET", f"/payments/{HG_ID}", Reply(200, hellgate_body("capturing")))
    with hellgate_client(server, sleeps, polls=3) as client:
        started = client.capture(authorized("hellgate", HG_ID, currency="EUR"), Capture(at=NOW))
        still = client.refresh(started.payment)
    assert not still.settled and still.payment.state == "capturing"
    assert len(server.received("GET")) == 3 and len(sleeps) == 2


def test_hellgate_timeout_then_get_shows_capturing_is_not_resent(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", f"/payments/{HG_ID}/capture", Reply(200, hellgate_body("capturing"), delay=2.0))
    server.on("GET", f"/payments/{HG_ID}", Reply(200, hellgate_body("capturing")))
    creds = hellgate.Credentials(api_key=SECRETS[4], base_url=server.url)
    with CaptureClient("hellgate", creds, retry=policy(sleeps), clock=lambda: NOW, timeout=0.3) as client:
        out = client.capture(authorized("hellgate", HG_ID, currency="EUR"), Capture(at=NOW))
    assert [r.method for r in server.requests] == ["POST", "GET"]
    assert out.payment.state == "capturing" and out.reconciled


def test_hellgate_timeout_then_get_shows_failed_records_the_failure(server: ScriptedServer,
                                                                    sleeps: Sleeps) -> None:
    server.on("POST", f"/payments/{HG_ID}/capture", Reply(200, hellgate_body("capturing"), delay=2.0))
    server.on("GET", f"/payments/{HG_ID}", Reply(200, hellgate_body("failed")))
    creds = hellgate.Credentials(api_key=SECRETS[4], base_url=server.url)
    with CaptureClient("hellgate", creds, retry=policy(sleeps), clock=lambda: NOW, timeout=0.3) as client:
        out = client.capture(authorized("hellgate", HG_ID, currency="EUR"), Capture(at=NOW))
    assert [r.method for r in server.requests] == ["POST", "GET"]
    assert [e.type for e in out.events] == [EventType.CAPTURE_REQUESTED, EventType.CAPTURE_FAILED]
    assert out.payment.state == "failed" and out.payment.captured == 0 and out.reconciled


def test_refresh_needs_a_capture_in_flight(server: ScriptedServer, sleeps: Sleeps) -> None:
    with hellgate_client(server, sleeps) as client, pytest.raises(capstate.CommandError):
        client.refresh(authorized("hellgate", HG_ID, currency="EUR"))
    assert server.requests == []


# ------------------------------------------------------------------------------------ async and secrets


def test_async_client_follows_the_same_rules(server: ScriptedServer) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(423, problem(423, "Locked")), Reply(200, vipps_body(captured=25000)))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def run() -> Any:
        async with AsyncCaptureClient("vipps", vipps_creds(server), retry=RetryPolicy(random=lambda: 0.0),
                                      sleep=sleep, clock=lambda: NOW) as client:
            return await client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=25000))

    out = asyncio.run(run())
    assert out.payment.captured == 25000 and waits == [0.25]
    assert len({r.headers["idempotency-key"] for r in server.requests}) == 1 and len(server.requests) == 2


def test_secrets_never_reach_logs_or_errors(server: ScriptedServer, sleeps: Sleeps,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    server.on("POST", VIPPS_CAPTURE, Reply(500, problem(500, "Internal error")))
    server.on("GET", "/epayment/v1/payments/order-10001", Reply(401, problem(401, "Unauthorized")))
    server.on("POST", BAMBORA_CAPTURE, BLOCKED)
    server.on("GET", BAMBORA_GET, Reply(500, b""))
    errors: list[BaseException] = []
    for client, p in ((vipps_client(server, sleeps), authorized("vipps", "order-10001")),
                      (bambora_client(server, sleeps), authorized("bambora", "order-20001")),
                      (pipwave_client(server, sleeps), authorized("pipwave", "ORDER-1"))):
        with client, pytest.raises(ProviderError) as info:
            client.capture(p, Capture(at=NOW, amount=25000))
        errors.append(info.value)
        assert SECRETS[0] not in repr(client.__dict__)
    assert len(server.requests) > 8 and caplog.records
    texts = [r.getMessage() for r in caplog.records] + [str(e) for e in errors] + [repr(e) for e in errors]
    texts += [repr(vars(e)) for e in errors]
    for secret in SECRETS:
        assert not [t for t in texts if secret in t], secret
    # The wire did carry them: the scan above would have found a leak.
    assert any(SECRETS[0] in r.headers.get("authorization", "") for r in server.requests)


def test_retry_policy_backoff_is_capped_jittered_and_validated() -> None:
    p = RetryPolicy(base=1.0, cap=5.0, random=lambda: 1.0)
    assert [p.backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert RetryPolicy(base=1.0, cap=5.0, random=lambda: 0.0).backoff(3) == 2.0
    assert RetryPolicy(base=1.0, jitter=False).backoff(2) == 2.0
    assert p.backoff(10_000) == 5.0
    assert p.delay(1, retry_after=3.0) == 3.0 and p.delay(1, retry_after=31.0) is None
    for bad in ({"attempts": 0}, {"base": 0}, {"cap": -1.0}, {"polls": 0}):
        with pytest.raises(ValueError):
            RetryPolicy(**bad)


def test_retry_after_parsing() -> None:
    from capstate.providers.retry import parse_retry_after

    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after("Mon, 05 Jan 2026 13:00:30 GMT", NOW) == 30.0
    assert parse_retry_after("Mon, 05 Jan 2026 12:00:00 GMT", NOW) == 0.0  # in the past: no wait
    assert parse_retry_after("soon", NOW) is None and parse_retry_after(None, NOW) is None
    assert parse_retry_after("-5", NOW) is None
    # Huge: a finite number that RetryPolicy.delay turns into "stop" (above max_retry_after), never a sleep.
    assert parse_retry_after("9" * 40, NOW) == float("9" * 40)
    assert RetryPolicy().delay(1, parse_retry_after("9" * 40, NOW)) is None
    for bad in ("Sun, 06 Nov 99999 08:49:37 GMT", "Mon, 32 Nov 2026 00:00:00 GMT", "1e3", "\u0663", "12.5"):
        assert parse_retry_after(bad, NOW) is None, bad
