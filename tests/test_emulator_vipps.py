"""The Vipps emulator driven by capstate's own CaptureClient, over real sockets: every flow, and every fault
kind on every operation, ends with the client believing exactly what the emulator's ledger committed (no
double capture, no lost capture).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count

import httpx
import pytest
from vipps_emulator import Emulator, serving, summary

from capstate import Cancel, Capture, EventType, Payment, Refund
from capstate.providers import HttpResponse, vipps
from capstate.providers.client import CaptureClient
from capstate.providers.retry import RetryPolicy

_refs = count(1)


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with serving() as base:
        emu = Emulator(base)
        try:
            yield emu
        finally:
            emu.close()


def reference() -> str:
    return f"flow-{datetime.now(UTC):%H%M%S}-{next(_refs):04d}"


def now() -> datetime:
    return datetime.now(UTC)


class Recorder:
    """RetryPolicy.sleep: records the waits instead of sleeping (the faults need no real back-off)."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def client(emu: Emulator, *, timeout: float = 10.0, sleep: Recorder | None = None) -> CaptureClient:
    retry = RetryPolicy(attempts=4, base=0.01, cap=0.05, jitter=False, sleep=sleep or Recorder())
    return CaptureClient("vipps", emu.credentials(), timeout=timeout, retry=retry)


def agrees(emu: Emulator, payment: Payment) -> dict[str, object]:
    """Assert the client's belief equals the emulator's ledger and the provider's own GET; return the ledger."""
    ledger = emu.ledger(payment.reference)
    assert payment.summary() == summary(ledger)
    with client(emu) as c:
        remote = c.fetch(payment)
    assert (remote.authorized, remote.captured, remote.cancelled, remote.refunded) == (
        payment.authorized, payment.captured, payment.cancelled, payment.refunded)
    return ledger


def committed(ledger: dict[str, object], etype: str) -> list[int]:
    events = ledger["events"]
    assert isinstance(events, list)
    return [e.get("amount") for e in events if e["type"] == etype]


# ------------------------------------------------------------------------------------------------- flows


def test_partial_captures_cancel_and_refund(emulator: Emulator) -> None:
    p = emulator.authorized(reference(), 1000)
    with client(emulator) as c:
        p = c.capture(p, Capture(at=now(), amount=300)).payment
        p = c.capture(p, Capture(at=now(), amount=200)).payment
        p = c.cancel(p, Cancel(at=now())).payment
        p = c.refund(p, Refund(amount=150, at=now())).payment
    assert (p.state, p.captured, p.cancelled, p.refunded) == ("captured", 500, 500, 150)
    ledger = agrees(emulator, p)
    assert committed(ledger, "captured") == [300, 200]
    assert ledger["provider_state"] == "AUTHORIZED"


def test_full_capture_then_two_refunds(emulator: Emulator) -> None:
    p = emulator.authorized(reference(), 2500, "DKK")
    with client(emulator) as c:
        p = c.capture(p, Capture(at=now())).payment  # no amount: the whole capturable amount
        p = c.refund(p, Refund(amount=1000, at=now())).payment
        p = c.refund(p, Refund(amount=1500, at=now())).payment
    assert (p.captured, p.refunded) == (2500, 2500)
    agrees(emulator, p)


def test_a_final_capture_releases_the_remainder_with_a_cancel(emulator: Emulator) -> None:
    p = emulator.authorized(reference(), 1000)
    with client(emulator) as c:
        outcome = c.capture(p, Capture(at=now(), amount=400, final=True))
    assert outcome.release_error is None
    assert [e.type for e in outcome.events] == [EventType.CAPTURED, EventType.CANCELLED]
    assert (outcome.payment.captured, outcome.payment.cancelled) == (400, 600)
    agrees(emulator, outcome.payment)


def test_a_cancel_before_any_capture_releases_everything(emulator: Emulator) -> None:
    p = emulator.authorized(reference(), 1000, "EUR")
    with client(emulator) as c:
        p = c.cancel(p, Cancel(at=now())).payment
    assert (p.state, p.cancelled) == ("cancelled", 1000)
    agrees(emulator, p)


# ------------------------------------------------------------------------------------------------ faults

FAULTS = ["500_before_commit", "500_after_commit", "timeout_after_commit", "drop_after_commit", "409_in_flight",
          "429", "latency"]


def _ready(emu: Emulator, op: str) -> tuple[Payment, object]:
    """A payment on which `op` is allowed, and the command."""
    p = emu.authorized(reference(), 1000)
    if op == "capture":
        return p, Capture(at=now(), amount=300)
    with client(emu) as c:
        p = c.capture(p, Capture(at=now(), amount=600)).payment
    if op == "refund":
        return p, Refund(amount=250, at=now())
    return p, Cancel(at=now())


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize("op", ["capture", "cancel", "refund"])
def test_every_fault_ends_with_the_client_and_the_ledger_agreeing(emulator: Emulator, op: str, kind: str) -> None:
    p, command = _ready(emulator, op)
    extra: dict[str, object] = {}
    if kind == "timeout_after_commit":
        extra["seconds"] = 2.0  # past the client's 1 s read timeout below
    elif kind == "latency":
        extra["seconds"] = 0.2
    elif kind == "429":
        extra["retry_after"] = 1
    emulator.fault(op, kind, **extra)
    waits = Recorder()
    with client(emulator, timeout=1.0, sleep=waits) as c:
        outcome = getattr(c, op)(p, command)
    etype = {"capture": "captured", "cancel": "cancelled", "refund": "refunded"}[op]
    assert [e.type.value for e in outcome.events] == [etype]
    ledger = agrees(emulator, outcome.payment)
    before = {"capture": 0, "cancel": 0, "refund": 0}[op]
    assert len(committed(ledger, etype)) == before + 1, "exactly one commit, whatever the fault"
    sent = [r for r in ledger["requests"] if r["op"] == op]
    assert sum(r["committed"] for r in sent) == 1
    assert len({r["key"] for r in sent}) == 1, "every resend carries the one key of the logical operation"
    faulted = [r for r in sent if r["fault"] == kind]
    assert len(faulted) == 1
    assert len(sent) == (1 if kind == "latency" else 2)
    if kind == "429":
        assert waits.waits and waits.waits[0] >= 1.0, "Retry-After is honoured"


def test_latency_past_the_client_timeout_still_commits_once(emulator: Emulator) -> None:
    # The first request sleeps 2 s before it executes; the client gives up after 1 s and resends under the
    # same key; whichever arrives second replays the first's stored answer.
    p, command = _ready(emulator, "capture")
    emulator.fault("capture", "latency", seconds=2.0)
    with client(emulator, timeout=1.0) as c:
        outcome = c.capture(p, command)
    assert outcome.payment.captured == 300
    time.sleep(2.5)  # let the slow first request finish on the server, then look
    ledger = agrees(emulator, outcome.payment)
    assert committed(ledger, "captured") == [300]


def test_a_fault_on_get_is_retried_by_a_read(emulator: Emulator) -> None:
    p = emulator.authorized(reference(), 1000)
    emulator.fault("get", "500_before_commit")
    with client(emulator) as c:
        remote = c.fetch(p)
    assert (remote.state, remote.authorized) == ("AUTHORIZED", 1000)


# ----------------------------------------------------------------------------------------- refusals


def test_what_capstate_refuses_locally_the_emulator_refuses_too(emulator: Emulator) -> None:
    p = emulator.authorized(reference(), 1000)
    too_much = emulator.call("POST", f"/epayment/v1/payments/{p.reference}/capture", key="x-1",
                             json={"modificationAmount": {"currency": "NOK", "value": 1001}})
    assert (too_much.status_code, too_much.json()["title"]) == (400, "Capture amount too high")
    assert too_much.headers["content-type"].startswith("application/problem+json")
    err = vipps.parse_error(vipps_response(too_much))
    assert (err.status, err.title, err.retryable) == (400, "Capture amount too high", False)


def vipps_response(answer: httpx.Response) -> HttpResponse:
    return HttpResponse(answer.status_code, list(answer.headers.multi_items()), answer.content)
