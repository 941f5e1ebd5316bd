"""The official Vipps MobilePay SDK (`@vippsmobilepay/sdk`, pinned in package-lock.json) against the emulator:
tests/node/vipps_sdk.test.mjs runs create -> force approve -> capture 300 -> capture 200 -> cancel -> refund ->
get under `node --test`, with an undici dispatcher sending its apitest.vipps.no requests to the emulator started
here. The SDK itself is unchanged; what it reads back must be the expected aggregates, and what the emulator
committed (its ledger, read here) must be the same money.

Needs node and `npm ci` (node_modules): without them this skips with one line, and fails when CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from vipps_emulator import CLIENT_ID, CLIENT_SECRET, MSN, SUBSCRIPTION_KEY, Emulator, serving

ROOT = Path(__file__).resolve().parents[1]
TEST = ROOT / "tests" / "node" / "vipps_sdk.test.mjs"
SDK = ROOT / "node_modules" / "@vippsmobilepay" / "sdk" / "package.json"
UNDICI = ROOT / "node_modules" / "undici" / "package.json"
REFERENCE = "sdk-order-0001"


def _require_node() -> str:
    node = shutil.which("node")
    missing = ("node is not on PATH" if node is None else
               None if SDK.is_file() and UNDICI.is_file() else "node_modules lacks the SDK: run `npm ci`")
    if missing:
        if os.environ.get("CI", "").lower() in {"true", "1"}:
            pytest.fail(f"{missing} (CI installs both: .ci/run)")
        pytest.skip(missing)
    assert node is not None
    return node


def test_the_official_sdk_runs_the_capture_flow_against_the_emulator() -> None:
    node = _require_node()
    with serving() as base:
        env = {**os.environ, "VIPPS_EMULATOR_URL": base + "/vipps", "VIPPS_CLIENT_ID": CLIENT_ID,
               "VIPPS_CLIENT_SECRET": CLIENT_SECRET, "VIPPS_SUBSCRIPTION_KEY": SUBSCRIPTION_KEY, "VIPPS_MSN": MSN,
               "VIPPS_REFERENCE": REFERENCE, "NO_COLOR": "1"}
        run = subprocess.run([node, "--test", str(TEST)], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300, check=False)
        assert run.returncode == 0, f"node --test failed:\n{run.stdout[-4000:]}\n{run.stderr[-2000:]}"
        assert "# pass 1" in run.stdout and "# fail 0" in run.stdout, run.stdout[-2000:]
        emu = Emulator(base)
        try:
            ledger = emu.ledger(REFERENCE)
        finally:
            emu.close()
    assert {k: ledger[k] for k in ("authorized", "captured", "cancelled", "refunded")} == {
        "authorized": 1000, "captured": 500, "cancelled": 500, "refunded": 150}
    assert [e["type"] for e in ledger["events"]] == ["authorized", "captured", "captured", "cancelled", "refunded"]
    # The refused capture after the cancel reached the emulator and committed nothing.
    captures = [r for r in ledger["requests"] if r["op"] == "capture"]
    assert [(r["amount"], r["status"], r["committed"]) for r in captures] == [
        (300, 200, True), (200, 200, True), (100, 400, False)]
