"""Shared cases for the provider-module tests: payments, credentials with recognizable secrets, and a
way to push a built request through httpx exactly as the executor would.

Secrets are long, unique strings so a scan for them cannot match by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

import capstate
from capstate import Capture, Event, EventType, Payment
from capstate.providers import HttpRequest, HttpResponse, bambora, hellgate, pipwave, vipps

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
TS = 1_767_614_400  # T0 as UNIX seconds: Pipwave's timestamp is passed in, never read from a clock

VIPPS_TOKEN = "eyJ-VIPPS-ACCESS-TOKEN-7f3a9c"
VIPPS_SUBKEY = "vipps-subscription-key-51d0e2"
BAMBORA_TOKEN = "bamboraTOKEN8e41"
BAMBORA_SECRET = "bambora-SECRET-TOKEN-c0ffee-0123456789abcdef0123456789abcdef"
HELLGATE_KEY = "hellgate-API-KEY-4b9d22"
PIPWAVE_KEY = "pipwaveKEY93ac"
PIPWAVE_SECRET = "pipwave-API-SECRET-d1e5f0"
SECRETS = (VIPPS_TOKEN, VIPPS_SUBKEY, BAMBORA_TOKEN, BAMBORA_SECRET, HELLGATE_KEY, PIPWAVE_KEY, PIPWAVE_SECRET)

VIPPS_CREDS = vipps.Credentials(access_token=VIPPS_TOKEN, subscription_key=VIPPS_SUBKEY,
                                merchant_serial_number="123456", base_url=vipps.TEST)
BAMBORA_CREDS = bambora.Credentials(access_token=BAMBORA_TOKEN, merchant_number="T123456789",
                                    secret_token=BAMBORA_SECRET)
HELLGATE_CREDS = hellgate.Credentials(api_key=HELLGATE_KEY, base_url=hellgate.SANDBOX)
PIPWAVE_CREDS = pipwave.Credentials(api_key=PIPWAVE_KEY, api_secret=PIPWAVE_SECRET, url=pipwave.STAGING)

HELLGATE_ID = "3f1c1f0e-8b1e-4c6a-9d2b-1a2b3c4d5e6f"


def authorized(provider: str, reference: str, amount: int, currency: str) -> Payment:
    return Payment.authorized_for(capstate.load_spec(provider), reference, amount=amount, currency=currency, at=T0)


def captured(payment: Payment, amount: int) -> Payment:
    """`payment` after a successful capture of `amount` (through the provider's own transitions)."""
    if payment.spec.policy.capture == "async":
        payment = capstate.apply(payment, Event(payment.reference, EventType.CAPTURE_REQUESTED, T0, amount))
    return capstate.apply(payment, Event(payment.reference, EventType.CAPTURED, T0, amount))


def capture(amount: int, currency: str, key: str | None = None) -> Capture:
    return Capture(at=T0, amount=amount, currency=currency, key=key)


def response(status: int, body: Any = b"", content_type: str = "application/json",
             headers: dict[str, str] | None = None) -> HttpResponse:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return HttpResponse(status, {"Content-Type": content_type, **(headers or {})}, raw)


def as_httpx(request: HttpRequest) -> httpx.Request:
    """The request httpx would put on the wire (the executor builds it the same way)."""
    return httpx.Request(request.method, request.url, headers=list(request.headers), content=request.body)


def sent_through_httpx(request: HttpRequest) -> httpx.Request:
    """Send `request` through a real httpx.Client over a MockTransport and return what arrived."""
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return httpx.Response(200, json={})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        client.send(as_httpx(request))
    return seen[0]


Builder = Callable[[Payment], HttpRequest]


def all_requests() -> Iterator[tuple[str, HttpRequest]]:
    """Every request every provider module builds, with the recognizable credentials above."""
    vp = authorized("vipps", "order-10001", 100000, "NOK")
    yield "vipps capture", vipps.build_capture(vp, capture(25000, "NOK", "k-1"), VIPPS_CREDS)
    yield "vipps cancel", vipps.build_cancel(vp, capstate.Cancel(at=T0, key="k-2"), VIPPS_CREDS)
    yield "vipps refund", vipps.build_refund(captured(vp, 25000), capstate.Refund(amount=100, at=T0, key="k-3"),
                                             VIPPS_CREDS)
    yield "vipps get", vipps.build_get(vp, VIPPS_CREDS)
    bp = authorized("bambora", "order-1", 5000, "EUR")
    yield "bambora capture", bambora.build_capture(bp, capture(5000, "EUR"), BAMBORA_CREDS)
    yield "bambora cancel", bambora.build_cancel(bp, capstate.Cancel(at=T0), BAMBORA_CREDS)
    yield "bambora refund", bambora.build_refund(captured(bp, 5000), capstate.Refund(amount=100, at=T0),
                                                 BAMBORA_CREDS)
    yield "bambora get", bambora.build_get(bp, BAMBORA_CREDS)
    hp = authorized("hellgate", HELLGATE_ID, 5000, "EUR")
    yield "hellgate capture", hellgate.build_capture(hp, capture(800, "EUR", "k-4"), HELLGATE_CREDS)
    yield "hellgate cancel", hellgate.build_cancel(hp, capstate.Cancel(at=T0), HELLGATE_CREDS)
    yield "hellgate refund", hellgate.build_refund(captured(hp, 5000), capstate.Refund(amount=100, at=T0),
                                                   HELLGATE_CREDS)
    yield "hellgate get", hellgate.build_get(hp, HELLGATE_CREDS)
    pp = authorized("pipwave", "ORDER-1", 5000, "MYR")
    yield "pipwave capture", pipwave.build_capture(pp, capture(1050, "MYR"), PIPWAVE_CREDS, timestamp=TS)
    yield "pipwave cancel", pipwave.build_cancel(pp, capstate.Cancel(at=T0), PIPWAVE_CREDS, timestamp=TS)
    yield "pipwave refund", pipwave.build_refund(captured(pp, 5000), capstate.Refund(amount=100, at=T0),
                                                 PIPWAVE_CREDS, timestamp=TS)
    yield "pipwave requery", pipwave.build_requery(pp, PIPWAVE_CREDS, timestamp=TS)
