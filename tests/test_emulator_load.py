"""A load run: 8 concurrent CaptureClients against `capstate emulate` in its own process, payments mixed over
Bambora, Hellgate, Pipwave and Vipps. 0 unexpected errors, every payment's ledger equal to its client's belief,
and the ledger totals equal to the clients' totals.

CI runs a small size (it is a correctness test under concurrency, not a benchmark: `capstate bench`
measures throughput). CAPSTATE_EMULATOR_LOAD=full runs the issue's size: 1,000 payments, >= 10,000
operations."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("uvicorn", reason="the emulator needs the 'emulator' extra")

from capstate.providers.emulator import load

FULL = os.environ.get("CAPSTATE_EMULATOR_LOAD") == "full"


def test_concurrent_clients_agree_with_the_ledgers() -> None:
    payments, reads = (1000, 4) if FULL else (48, 1)  # with Vipps in the mix, 4 reads reach 10,000 operations
    with load.spawned() as url:
        report = load.run(url, clients=8, payments=payments, reads=reads)
    assert report.errors == []
    assert report.mismatches == []
    assert report.client_totals == report.ledger_totals
    # Every fifth payment is cancelled whole; the others capture half and refund 1,000 (+500 where allowed).
    cancelled = sum(1 for i in range(payments) if i % 5 == 4)
    assert report.ledger_totals["cancelled"] == cancelled * load.AMOUNT
    assert report.ledger_totals["captured"] == (payments - cancelled) * load.AMOUNT // 2
    if FULL:
        assert report.operations >= 10_000, load.summary(report)


def test_the_bench_rows_report_throughput_and_latency_against_the_core() -> None:
    said: list[str] = []
    rows = {r["key"]: r for r in load.bench_rows(True, said.append)}
    assert set(rows) == {"emu_ops", "emu_p50", "emu_p99", "emu_core"}
    for key in ("emu_ops", "emu_p50", "emu_p99", "emu_core"):
        assert rows[key]["value"] > 0
    assert rows["emu_p50"]["value"] <= rows["emu_p99"]["value"]
    assert rows["emu_ops"]["ratio"] == rows["emu_ops"]["value"] / rows["emu_core"]["value"]
    assert "0 errors, 0 mismatches" in rows["emu_ops"]["measure"]
    assert said and "emulator" in said[0]
