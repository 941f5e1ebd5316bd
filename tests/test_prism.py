"""Contract tests against Prism: the Vipps ePayment OpenAPI document, served by a validator nobody here wrote.

Prism (`@stoplight/prism-cli` 5.14.2, pinned in package-lock.json; `.ci/run` installs it with `npm ci`)
mocks `shared/provider-specs/vipps-epayment-openapi.yaml` on 127.0.0.1. The executor runs real captures,
refunds, cancels and reads against it, and Prism must accept every request; deliberately broken variants
must be refused, and the `sl-violations` response header says why.

Two Prism processes run, one per module, started together (each is ready in about a second):
- `as_published`: the document as Vipps published it (v1.4.1), with only its one remote `$ref` (Receipt)
  pointed at the local copy of vipps-order-management 2.3.24, as provider-specs/README.md prescribes.
- `current`: the same plus the cancel request body that later API versions accept,
  `CancelModificationRequest {cancelTransactionOnly: boolean}` (research/providers.md §2.5 and §2.9 item 5;
  vippsas/deno-sdk src/generated_types/epayment/types.gen.ts). v1.4.1 declares no cancel body, yet capstate
  always sends `{"cancelTransactionOnly": false}` because servers answer type errors without one, so the
  as-published document refuses exactly that body and nothing else (asserted below).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from _requires import node_tool, provider_spec

import capstate
from capstate import Cancel, Capture, Payment, Refund
from capstate.providers.client import CaptureClient
from capstate.providers.retry import RetryPolicy
from capstate.providers.vipps import epayment as vipps

ROOT = Path(__file__).resolve().parents[1]
EPAYMENT = "vipps-epayment-openapi.yaml"
ORDER_MANAGEMENT = "vipps-order-management-2.3.24-swagger.yaml"
REMOTE_REF = "https://raw.githubusercontent.com/vippsas/vipps-order-management-api/2.3.24/docs/swagger.yaml"
CANCEL_BODY = """      operationId: cancelPayment
      requestBody:
        required: false
        content:
          application/json:
            schema:
              type: object
              properties:
                cancelTransactionOnly:
                  type: boolean
"""
STARTUP_SECONDS = 60

# Prism's examples describe payment "reference-string" for 49900 NOK, so the mock's answers are consistent
# with a payment of exactly that.
REFERENCE = "reference-string"
AMOUNT = 49900
AT = datetime(2026, 1, 5, 12, tzinfo=UTC)


@dataclass
class Prism:
    url: str
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _spec_copy(folder: Path, *, cancel_body: bool) -> Path:
    text = provider_spec(EPAYMENT).read_text(encoding="utf-8")
    assert text.count(REMOTE_REF) == 1, "the Vipps document's one remote $ref moved"
    text = text.replace(REMOTE_REF, str(provider_spec(ORDER_MANAGEMENT)))
    if cancel_body:
        anchor = "      operationId: cancelPayment\n"
        assert text.count(anchor) == 1
        text = text.replace(anchor, CANCEL_BODY)
    out = folder / ("epayment-current.yaml" if cancel_body else "epayment-as-published.yaml")
    out.write_text(text, encoding="utf-8")
    return out


def _start(prism: Path, spec: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "SCARF_ANALYTICS": "false", "NO_COLOR": "1"}
    with log.open("wb") as sink:
        # A new session makes Prism (a node process that may fork workers) its own process group, so the
        # finalizer can stop all of it by that one id.
        proc = subprocess.Popen([str(prism), "mock", "-h", "127.0.0.1", "-p", str(port), "--errors", str(spec)],
                                stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    return proc, f"http://127.0.0.1:{port}"


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    host, port = url.removeprefix("http://").split(":")
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prism exited with {proc.returncode}; its log:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection((host, int(port)), timeout=0.2):
                if "listening" in log.read_text(errors="replace").lower():
                    return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail(f"prism did not listen on {url} within {STARTUP_SECONDS} s; its log:\n"
                f"{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def prisms(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Prism]]:
    prism = node_tool("prism")  # a skip with its reason where npm ci or node is missing; a failure in CI
    provider_spec(EPAYMENT)
    folder = tmp_path_factory.mktemp("prism")
    started: dict[str, tuple[subprocess.Popen[bytes], str, Path]] = {}
    try:
        for name, cancel_body in (("current", True), ("as_published", False)):
            log = folder / f"prism-{name}.log"
            proc, url = _start(prism, _spec_copy(folder, cancel_body=cancel_body), log)
            started[name] = (proc, url, log)
        for proc, url, log in started.values():
            _wait_ready(proc, url, log)
        yield {name: Prism(url, log) for name, (_, url, log) in started.items()}
    finally:
        for proc, _, _ in started.values():
            _stop(proc)


class Recording(httpx.BaseTransport):
    """A real HTTP transport that keeps every (request, response) pair, so a test can read Prism's verdict."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        self.exchanges.append((request, response))
        return response

    def close(self) -> None:
        self.inner.close()


def creds(url: str) -> vipps.Credentials:
    return vipps.Credentials(access_token="eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.test", subscription_key="sub-key-123",
                             merchant_serial_number="123456", base_url=url, system_name="capstate",
                             system_version="0.1.0")


def authorized() -> Payment:
    return Payment.authorized_for(capstate.load_spec("vipps"), REFERENCE, amount=AMOUNT, currency="NOK", at=AT)


def violations(response: httpx.Response) -> list[dict[str, Any]]:
    raw = response.headers.get("sl-violations")
    return json.loads(raw) if raw else []


def assert_all_accepted(transport: Recording) -> None:
    assert transport.exchanges
    for request, response in transport.exchanges:
        assert violations(response) == [], (request.method, request.url.path, violations(response))
        assert response.status_code == 200, (request.method, request.url.path, response.status_code)


def client(url: str, transport: Recording) -> CaptureClient:
    # One attempt: Prism must accept the first request; a retry would hide a refusal.
    return CaptureClient("vipps", creds(url), transport=transport, retry=RetryPolicy(attempts=1),
                         clock=lambda: AT)


# ------------------------------------------------------------------------------------- accepted requests


def test_capture_then_refund_are_accepted(prisms: dict[str, Prism]) -> None:
    transport = Recording()
    with client(prisms["current"].url, transport) as c:
        captured = c.capture(authorized(), Capture(at=AT, amount=AMOUNT, key="capture-1"))
        refunded = c.refund(captured.payment, Refund(at=AT, amount=AMOUNT, key="refund-1"))
    assert_all_accepted(transport)
    assert [(r.method, r.url.path) for r, _ in transport.exchanges] == [
        ("POST", f"/epayment/v1/payments/{REFERENCE}/capture"), ("POST", f"/epayment/v1/payments/{REFERENCE}/refund")]
    assert captured.payment.captured == AMOUNT and refunded.payment.refunded == AMOUNT
    (capture_request, _), _ = transport.exchanges
    assert capture_request.headers["idempotency-key"] == "capture-1"


def test_derived_keys_and_partial_captures_are_accepted(prisms: dict[str, Prism]) -> None:
    transport = Recording()
    with client(prisms["current"].url, transport) as c:
        decision, request = c.prepare(authorized(), Capture(at=AT, amount=100))
        response = transport.handle_request(httpx.Request(request.method, request.url, headers=list(request.headers),
                                                          content=request.body))
    assert decision.allowed and decision.command.key is not None
    assert request.header("Idempotency-Key") == decision.command.key
    assert response.status_code == 200 and violations(response) == []


def test_get_is_accepted_and_parsed(prisms: dict[str, Prism]) -> None:
    transport = Recording()
    with client(prisms["current"].url, transport) as c:
        remote = c.fetch(authorized())
    assert_all_accepted(transport)
    assert (remote.currency, remote.authorized) == ("NOK", AMOUNT)


def test_cancel_is_accepted_by_the_current_api(prisms: dict[str, Prism]) -> None:
    transport = Recording()
    with client(prisms["current"].url, transport) as c:
        out = c.cancel(authorized(), Cancel(at=AT, key="cancel-1"))
    # The mock's example answers state CREATED, which no real cancel after authorization returns, so the
    # executor does what it must with an answer it cannot explain: it reads the payment back (GET), and
    # applies the cancelled amount the read shows. Both requests must pass Prism's validation.
    assert_all_accepted(transport)
    assert [r.method for r, _ in transport.exchanges] == ["POST", "GET"]
    cancel_request = transport.exchanges[0][0]
    assert json.loads(cancel_request.content) == {"cancelTransactionOnly": False}
    assert out.reconciled and out.payment.cancelled == AMOUNT


def test_as_published_document_refuses_only_the_cancel_body(prisms: dict[str, Prism]) -> None:
    transport = Recording()
    request = vipps.build_cancel(authorized(), Cancel(at=AT, key="cancel-1"), creds(prisms["as_published"].url))
    with_body = transport.handle_request(httpx.Request("POST", request.url, headers=list(request.headers),
                                                       content=request.body))
    headers = [(k, v) for k, v in request.headers if k.lower() != "content-type"]
    without_body = transport.handle_request(httpx.Request("POST", request.url, headers=headers))
    assert with_body.status_code == 400
    assert [(v["location"], v["code"]) for v in violations(with_body)] == [(["request"], 415)]
    assert "non-empty body" in violations(with_body)[0]["message"]
    # Everything else about the request (path, every header) is what v1.4.1 wants.
    assert without_body.status_code == 200 and violations(without_body) == []


# --------------------------------------------------------------------------------------- refused variants


def _capture_request(url: str) -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
    request = vipps.build_capture(authorized(), Capture(at=AT, amount=AMOUNT, currency="NOK", key="capture-1"),
                                  creds(url))
    return request.url, list(request.headers), json.loads(request.body)


def _without(headers: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers if k.lower() != name.lower()]


def _replace(headers: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [*_without(headers, name), (name, value)]


BROKEN: dict[str, tuple[Any, int, str]] = {
    # name: (how to break (url, headers, body) -> (url, headers, body bytes), status, expected violation text)
    "missing Idempotency-Key": (lambda u, h, b: (u, _without(h, "Idempotency-Key"), b), 400,
                                "must have required property 'idempotency-key'"),
    "Idempotency-Key over 50 characters": (lambda u, h, b: (u, _replace(h, "Idempotency-Key", "k" * 51), b), 400,
                                           "idempotency-key must NOT have more than 50 characters"),
    "missing Merchant-Serial-Number": (lambda u, h, b: (u, _without(h, "Merchant-Serial-Number"), b), 400,
                                       "must have required property 'merchant-serial-number'"),
    "malformed Merchant-Serial-Number": (lambda u, h, b: (u, _replace(h, "Merchant-Serial-Number", "12"), b), 400,
                                         "merchant-serial-number must match pattern"),
    "missing subscription key": (lambda u, h, b: (u, _without(h, "Ocp-Apim-Subscription-Key"), b), 400,
                                 "must have required property 'ocp-apim-subscription-key'"),
    # 499.0 would pass: JavaScript reads it as the integer 499. Only capstate's own types stop an integral float.
    "float amount": (lambda u, h, b: (u, h, _set_value(b, AMOUNT + 0.5)), 400,
                     "modificationAmount.value must be integer"),
    "amount as a string": (lambda u, h, b: (u, h, _set_value(b, str(AMOUNT))), 400,
                           "modificationAmount.value must be integer"),
    "amount over the maximum": (lambda u, h, b: (u, h, _set_value(b, 65_000_001)), 400,
                                "modificationAmount.value must be <= 65000000"),
    "unsupported currency": (lambda u, h, b: (u, h, {"modificationAmount": {**b["modificationAmount"],
                                                                              "currency": "SEK"}}), 400,
                             "modificationAmount.currency must be equal to one of the allowed values"),
    "missing modificationAmount": (lambda u, h, b: (u, h, {"amount": AMOUNT}), 400,
                                   "must have required property 'modificationAmount'"),
    "wrong content type": (lambda u, h, b: (u, _replace(h, "Content-Type", "text/plain"), b), 400,
                           "Supported content types: application/json"),
    "form-encoded body": (lambda u, h, b: (u, _replace(h, "Content-Type", "application/x-www-form-urlencoded"), b),
                          400, "Supported content types: application/json"),
    "reference too short": (lambda u, h, b: (u.replace(REFERENCE, "short"), h, b), 400,
                            "reference must match pattern"),
    "reference with an encoded slash": (lambda u, h, b: (u.replace(REFERENCE, "reference%2Fstring"), h, b), 400,
                                        "reference must match pattern"),
}


def _set_value(body: dict[str, Any], value: Any) -> dict[str, Any]:
    return {"modificationAmount": {**body["modificationAmount"], "value": value}}


@pytest.mark.parametrize("variant", list(BROKEN))
def test_broken_variants_are_refused_and_say_why(prisms: dict[str, Prism], variant: str) -> None:
    url, headers, body = _capture_request(prisms["current"].url)
    # The unbroken request passes, so the refusal below is caused by the break alone.
    ok = httpx.post(url, headers=headers, content=json.dumps(body))
    assert ok.status_code == 200 and violations(ok) == []
    breaker, status, expected = BROKEN[variant]
    url2, headers2, body2 = breaker(url, headers, body)
    content = body2 if isinstance(body2, bytes) else json.dumps(body2).encode()
    response = httpx.post(url2, headers=headers2, content=content)
    found = violations(response)
    assert response.status_code == status, (variant, found)
    assert any(expected in v["message"] for v in found), (variant, found)
    assert all(v["severity"] == "Error" for v in found)


def test_missing_bearer_token_is_unauthorized(prisms: dict[str, Prism]) -> None:
    url, headers, body = _capture_request(prisms["current"].url)
    response = httpx.post(url, headers=_without(headers, "Authorization"), content=json.dumps(body))
    assert response.status_code == 401


def test_prism_logs_every_request_it_validated(prisms: dict[str, Prism]) -> None:
    url, headers, body = _capture_request(prisms["current"].url)
    httpx.post(url, headers=_without(headers, "Idempotency-Key"), content=json.dumps(body))
    deadline = time.monotonic() + 5
    text = ""
    while time.monotonic() < deadline:
        text = prisms["current"].log.read_text(errors="replace")
        if "idempotency-key" in text:
            break
        time.sleep(0.05)
    assert "Request did not pass the validation rules" in text and "idempotency-key" in text
