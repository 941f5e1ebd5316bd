"""capstate's own CaptureClient against a real emulator server: every flow of Bambora, Hellgate and Pipwave,
and every fault kind on a capture. The client's final belief must equal the emulator's ledger: no double
capture, no lost capture."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from emulator_server import RunningEmulator, running

import capstate
from capstate import Cancel, Capture, Payment, Refund
from capstate.providers import ProviderError
from capstate.providers.client import CaptureClient
from capstate.providers.retry import RetryPolicy

T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
PROVIDERS = ("bambora", "hellgate", "pipwave")
FAULTS = ("500_before_commit", "500_after_commit", "timeout_after_commit", "drop_after_commit", "409_in_flight",
          "429", "latency")


@pytest.fixture(scope="module")
def emu() -> Iterator[RunningEmulator]:
    with running(list(PROVIDERS), clock=T0, frozen=True) as server:
        yield server


def new_reference(provider: str) -> str:
    # Hellgate addresses payments by UUID; the others take the merchant's reference.
    return str(uuid.uuid4()) if provider == "hellgate" else f"order-{uuid.uuid4().hex[:12]}"


def client(emu: RunningEmulator, provider: str, *, timeout: float = 5.0) -> CaptureClient:
    retry = RetryPolicy(attempts=4, base=0.01, cap=0.05, jitter=False, poll_interval=0.01, polls=3)
    return CaptureClient(provider, emu.credentials(provider), retry=retry, clock=lambda: T0, timeout=timeout)


def seeded(emu: RunningEmulator, provider: str, amount: int = 1000, currency: str = "EUR") -> Payment:
    reference = new_reference(provider)
    emu.seed(provider, reference, amount, currency, at="2026-01-05T12:00:00Z")
    return Payment.authorized_for(capstate.load_spec(provider), reference, amount=amount, currency=currency, at=T0)


def agrees(emu: RunningEmulator, payment: Payment) -> dict[str, object]:
    """Assert the client's payment equals the emulator's ledger, and return the ledger."""
    ledger = emu.ledger(payment.spec.name, payment.reference)
    mine = {k: getattr(payment, k) for k in ("state", "captured", "cancelled", "refunded", "pending")}
    theirs = {k: ledger[k] for k in mine}
    assert mine == theirs, (mine, theirs, ledger["requests"])
    return ledger


# ------------------------------------------------------------------------------------------- flows


def test_bambora_capture_refund_and_get(emu: RunningEmulator) -> None:
    p = seeded(emu, "bambora")
    with client(emu, "bambora") as c:
        out = c.capture(p, Capture(at=T0, amount=300))
        assert out.payment.captured == 300 and out.response is not None and out.response.status == 201
        out = c.refund(out.payment, Refund(amount=100, at=T0))
        assert out.payment.refunded == 100
        remote = c.fetch(out.payment)
    assert (remote.state, remote.captured, remote.refunded, remote.authorized) == ("Refunded", 300, 100, 1000)
    ledger = agrees(emu, out.payment)
    assert [r["op"] for r in ledger["requests"]] == ["capture", "refund", "get"]
    assert ledger["provider_state"] == "Refunded"


def test_bambora_cancel(emu: RunningEmulator) -> None:
    p = seeded(emu, "bambora")
    with client(emu, "bambora") as c:
        out = c.cancel(p, Cancel(at=T0))
    assert out.payment.state == "cancelled"
    assert agrees(emu, out.payment)["cancelled"] == 1000


def test_hellgate_capture_settles_on_command_then_refund(emu: RunningEmulator) -> None:
    p = seeded(emu, "hellgate")
    with client(emu, "hellgate") as c:
        out = c.capture(p, Capture(at=T0, amount=400))
        assert out.payment.state == "capturing" and not out.settled
        agrees(emu, out.payment)
        still = c.refresh(out.payment)
        assert not still.settled  # nobody settled it yet: still capturing after the polls
        r = emu.control("POST", "/hellgate/settle", {"reference": p.reference, "outcome": "captured"})
        assert r.status_code == 200 and r.json()["settled"] == [p.reference]
        done = c.refresh(out.payment)
        assert done.settled and done.payment.captured == 400
        refunded = c.refund(done.payment, Refund(amount=150, at=T0))
    assert refunded.payment.refunded == 150
    agrees(emu, refunded.payment)


def test_hellgate_capture_settled_as_failed(emu: RunningEmulator) -> None:
    p = seeded(emu, "hellgate")
    with client(emu, "hellgate") as c:
        out = c.capture(p, Capture(at=T0, amount=1000))
        emu.control("POST", "/hellgate/settle", {"outcome": "failed"})
        done = c.refresh(out.payment)
    assert done.payment.state == "failed" and done.payment.captured == 0
    agrees(emu, done.payment)


def test_hellgate_void(emu: RunningEmulator) -> None:
    p = seeded(emu, "hellgate")
    with client(emu, "hellgate") as c:
        out = c.cancel(p, Cancel(at=T0))
    assert out.payment.state == "cancelled"
    assert agrees(emu, out.payment)["provider_state"] == "voided"


def test_hellgate_settles_after_a_delay_on_the_virtual_clock() -> None:
    with running(["hellgate"], clock=T0, frozen=True, settings={"hellgate": {"settle_after": "30s"}}) as emu:
        p = seeded(emu, "hellgate")
        with client(emu, "hellgate") as c:
            out = c.capture(p, Capture(at=T0, amount=500))
            assert emu.ledger("hellgate", p.reference)["state"] == "capturing"
            emu.control("POST", "/clock", {"advance": "31s"})
            done = c.refresh(out.payment)
        assert done.payment.captured == 500
        agrees(emu, done.payment)


def test_pipwave_capture_refund_and_requery(emu: RunningEmulator) -> None:
    p = seeded(emu, "pipwave", 12345, "MYR")
    with client(emu, "pipwave") as c:
        out = c.capture(p, Capture(at=T0, amount=10050))
        assert out.payment.captured == 10050
        remote = c.fetch(out.payment)
        assert (remote.state, remote.captured, remote.authorized) == ("Paid", 10050, 12345)
        out = c.refund(out.payment, Refund(amount=50, at=T0))
    assert out.payment.refunded == 50
    ledger = agrees(emu, out.payment)
    assert ledger["provider_state"] == "Partial refund"


def test_pipwave_cancel(emu: RunningEmulator) -> None:
    p = seeded(emu, "pipwave", 5000, "MYR")
    with client(emu, "pipwave") as c:
        out = c.cancel(p, Cancel(at=T0))
    assert out.payment.state == "cancelled"
    agrees(emu, out.payment)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_refusal_is_the_providers_own_error(emu: RunningEmulator, provider: str) -> None:
    """The client's decide would refuse a second capture before sending; the emulator's refusal is
    reached by a client that believes nothing happened yet (a stale copy of the payment)."""
    p = seeded(emu, provider)
    with client(emu, provider) as c:
        first = c.capture(p, Capture(at=T0, amount=1000))
        if provider == "hellgate":
            emu.control("POST", "/hellgate/settle", {"reference": p.reference, "outcome": "captured"})
        with pytest.raises(ProviderError) as err:
            c.capture(p, Capture(at=T0, amount=200))  # the stale payment: still all capturable
    expected = {"bambora": (422, "invalid_payment_state_transition"), "hellgate": (422, None),
                "pipwave": (200, "400")}[provider]
    assert err.value.status == expected[0]
    if expected[1] is not None:
        assert err.value.error_id == expected[1]
    ledger = emu.ledger(provider, p.reference)
    assert ledger["captured"] + ledger["pending"] == 1000
    assert [r["committed"] for r in ledger["requests"] if r["op"] == "capture"][:2] == [True, False]
    del first


# ------------------------------------------------------------------------------------------ faults


@pytest.mark.parametrize("kind", FAULTS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_fault_leaves_the_client_and_the_ledger_in_agreement(emu: RunningEmulator, provider: str,
                                                                   kind: str) -> None:
    p = seeded(emu, provider)
    extra: dict[str, object] = {}
    if kind == "timeout_after_commit":
        extra = {"seconds": 1.2}
    elif kind == "latency":
        extra = {"seconds": 0.2}
    elif kind == "429":
        extra = {"retry_after": 0}
    emu.fault(provider, "capture", kind, **extra)
    with client(emu, provider, timeout=0.6 if kind == "timeout_after_commit" else 5.0) as c:
        try:
            out = c.capture(p, Capture(at=T0, amount=300))
        except ProviderError as exc:
            believed = p  # the client holds its payment as it was
            assert not exc.reconcile, f"the client could not tell what happened: {exc}"
        else:
            believed = out.payment
    ledger = agrees(emu, believed)
    captures = [r for r in ledger["requests"] if r["op"] == "capture"]
    assert captures[0]["fault"] == kind
    assert sum(r["committed"] for r in captures) <= 1, "a second capture was committed"
    assert ledger["captured"] + ledger["pending"] in (0, 300)
    assert not emu.control("GET", "/faults").json()["faults"], "the fault was not used up"
