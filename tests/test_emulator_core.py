"""The emulator's pure core, without sockets: answers are functions of (state, request, now); the clock
fires expiry as `simulate` does; faults are taken per (provider, op) and counted; a state file reloads."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import capstate
from capstate.providers._http import Headers
from capstate.providers.emulator import Emulator, Fault, FaultKind, build

T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
AUTH = Headers({"Authorization": "Basic " + base64.b64encode(b"emulator-token@T000000001:emulator-secret").decode(),
                "API-Version": "1"})


def capture(emu: Emulator, reference: str, amount: int, now: datetime) -> tuple[int, bytes]:
    d = emu.route("bambora", "POST", f"/payments/{reference}/capture/", headers=AUTH,
                  body=b'{"amount": %d}' % amount, now=now)
    reply = emu.run(d, now)
    return reply.answer.status, reply.answer.body


def test_answers_are_a_function_of_state_request_and_now() -> None:
    a, b = build(["bambora"], clock=T0, frozen=True), build(["bambora"], clock=T0, frozen=True)
    for emu in (a, b):
        emu.seed("bambora", "p1", 1000, "NOK", at=T0)
    assert capture(a, "p1", 300, T0) == capture(b, "p1", 300, T0)
    assert a.entries[("bambora", "p1")].ledger() == b.entries[("bambora", "p1")].ledger()


def test_expiry_fires_at_the_validity_exactly_as_simulate() -> None:
    emu = build(["bambora"], clock=T0, frozen=True)
    emu.seed("bambora", "late", 1000, "NOK", at=T0)
    plan = capstate.Plan.from_dict({"payment": {"amount": 1000, "currency": "NOK",
                                                "authorized_at": "2026-01-05T12:00:00Z"},
                                    "step": [{"op": "capture", "amount": 100, "at": "+7d"}]})
    simulated = capstate.simulate(plan, "bambora")
    emu.set_clock(T0 + timedelta(days=7), 0.0)
    entry = emu.entries[("bambora", "late")]
    lapse = next(e for e in simulated.steps[0].events if e.type.value == "expired")
    assert entry.events[-1].type.value == "expired" and entry.events[-1].at == lapse.at
    assert entry.payment.state == simulated.payment.state == "expired"
    status, body = capture(emu, "late", 100, T0 + timedelta(days=7))
    assert status == 422 and b"invalid_payment_state_transition" in body
    assert entry.requests[-1].committed is False


def test_faults_are_taken_per_provider_and_op_and_counted() -> None:
    emu = build(["bambora", "pipwave"], clock=T0, frozen=True)
    emu.add_fault(Fault("bambora", "capture", FaultKind.BEFORE_500, 2))
    emu.add_fault(Fault("pipwave", "*", FaultKind.RATE_LIMIT, 1, retry_after=3))
    assert emu.take_fault("bambora", "get") is None
    assert emu.take_fault("pipwave", "get") is not None and emu.take_fault("pipwave", "get") is None
    emu.seed("bambora", "f", 1000, "EUR", at=T0)
    assert capture(emu, "f", 100, T0)[0] == 500
    assert capture(emu, "f", 100, T0)[0] == 500
    assert capture(emu, "f", 100, T0)[0] == 201
    ledger = emu.entries[("bambora", "f")].ledger()
    assert [(r["fault"], r["committed"]) for r in ledger["requests"]] == [
        ("500_before_commit", False), ("500_before_commit", False), (None, True)]


def test_after_commit_faults_commit_and_say_so() -> None:
    emu = build(["bambora"], clock=T0, frozen=True)
    emu.seed("bambora", "g", 1000, "EUR", at=T0)
    emu.add_fault(Fault("bambora", "capture", FaultKind.DROP, 1))
    d = emu.route("bambora", "POST", "/payments/g/capture/", headers=AUTH, body=b'{"amount": 1000}', now=T0)
    reply = emu.run(d, T0)
    assert reply.drop and emu.entries[("bambora", "g")].payment.captured == 1000
    emu.add_fault(Fault("bambora", "get", FaultKind.TIMEOUT, 1, seconds=2.5))
    reply = emu.run(emu.route("bambora", "GET", "/payments/g/", headers=AUTH, now=T0), T0)
    assert reply.hold == 2.5 and reply.answer.status == 200


def test_a_state_file_reloads_the_same_ledgers(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    emu = build(["bambora", "hellgate"], clock=T0, frozen=True, state=db)
    emu.seed("bambora", "s", 1000, "EUR", at=T0)
    capture(emu, "s", 250, T0)
    emu.seed("hellgate", "3f1c1f0e-8b1e-4c6a-9d2b-1a2b3c4d5e6f", 700, "EUR", at=T0)
    before = {k: e.ledger() for k, e in emu.entries.items()}
    assert emu.store is not None
    emu.store.close()
    again = build(["bambora", "hellgate"], state=db)
    assert {k: e.ledger() for k, e in again.entries.items()} == before
    assert again.now(0.0) == T0 and again.clock.frozen


def test_spec_overrides_change_what_the_emulator_allows() -> None:
    default = build(["bambora"], clock=T0, frozen=True)  # validity 7d (_capture.md: "about 1 week")
    short = build(["bambora"], clock=T0, frozen=True, overrides={"bambora": {"authorization_validity": "1d"}})
    later = T0 + timedelta(days=3)
    for emu in (default, short):
        emu.seed("bambora", "o", 1000, "EUR", at=T0)
        emu.set_clock(later, 0.0)
    assert capture(default, "o", 300, later)[0] == 201
    status, _ = capture(short, "o", 300, later)
    assert status == 422 and short.entries[("bambora", "o")].payment.state == "expired"


def test_hellgate_automatic_flow_refuses_a_manual_capture() -> None:
    emu = build(["hellgate"], clock=T0, frozen=True)
    pid = "3f1c1f0e-8b1e-4c6a-9d2b-1a2b3c4d5e6f"
    emu.seed("hellgate", pid, 1000, "EUR", at=T0, flow=capstate.Flow.AUTOMATIC)
    key = Headers({"X-API-Key": "emulator-hellgate-key"})
    reply = emu.run(emu.route("hellgate", "GET", f"/payments/{pid}", headers=key, now=T0), T0)
    assert b'"status":"processing"' in reply.answer.body
    reply = emu.run(emu.route("hellgate", "POST", f"/payments/{pid}/capture", headers=key,
                              body=b'{"reference": "all"}', now=T0), T0)
    assert reply.answer.status == 422 and b"automatic_capture_flow" in reply.answer.body


def test_cli_sets_split_into_policy_overrides_and_emulator_settings() -> None:
    from capstate._cli.emulate import split_sets
    from capstate.providers.emulator import plugin

    names = ["bambora", "hellgate"]
    settings = {n: dict(plugin(n).settings) for n in names}
    overrides, emulator = split_sets(["hellgate.settle_after=30s", "max_captures=2",
                                      "hellgate.authorization_validity=7d"], names, settings)
    assert emulator == {"hellgate": {"settle_after": timedelta(seconds=30)}}
    assert overrides == {"bambora": {"max_captures": 2},
                         "hellgate": {"max_captures": 2, "authorization_validity": "7d"}}
