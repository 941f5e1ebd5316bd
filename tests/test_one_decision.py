"""`validate` and `capture` decide identically for the same arguments (issue 11, item 2).

Each case runs the real `capstate validate --json` and `capstate capture --dry-run --json` with the same
options: the verdict, the codes, the instant (now when --at is not given) and the idempotency key (the
one capture derives when none is given) must be the same. Nothing is sent: --dry-run builds the request
with masked credentials.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[1]
HISTORIES = ROOT / "examples" / "histories"
VIPPS = str(HISTORIES / "vipps-partial.jsonl")
BAMBORA = str(HISTORIES / "bambora-expired.jsonl")
HELLGATE = str(HISTORIES / "hellgate-capturing.jsonl")
ENV = {"CAPSTATE_VIPPS_MERCHANT_SERIAL_NUMBER": "123456", "CAPSTATE_BAMBORA_MERCHANT_NUMBER": "T123456789"}


def _cli(*args: str) -> tuple[int, dict[str, Any], str]:
    import os

    env = {**os.environ, **ENV}
    env.pop("CI", None)
    out = subprocess.run([sys.executable, "-m", "capstate", *args], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60, check=False)
    doc = orjson.loads(out.stdout) if out.stdout.strip() else {}
    return out.returncode, doc, out.stderr


CASES: list[tuple[str, list[str]]] = [
    ("vipps derived key", ["--provider", "vipps", "--history", VIPPS, "--amount", "50000",
                           "--at", "2026-01-08T09:00:00Z"]),
    ("vipps given key", ["--provider", "vipps", "--history", VIPPS, "--amount", "50000", "--key", "ship-2",
                         "--at", "2026-01-08T09:00:00Z"]),
    ("vipps over the capturable amount", ["--provider", "vipps", "--history", VIPPS, "--amount", "80000",
                                          "--key", "ship-2", "--at", "2026-01-08T09:00:00Z"]),
    ("vipps key reused", ["--provider", "vipps", "--history", VIPPS, "--amount", "1000", "--key", "ship-1",
                          "--at", "2026-01-08T09:00:00Z"]),
    ("vipps full and final", ["--provider", "vipps", "--history", VIPPS, "--final", "--at", "2026-01-09T00:00:00Z"]),
    ("vipps now: the authorization lapsed", ["--provider", "VIPPS", "--history", VIPPS, "--amount", "1000"]),
    ("vipps currency any case", ["--provider", "vipps", "--history", VIPPS, "--amount", "1000", "--currency", "nok",
                                 "--at", "2026-01-08T09:00:00Z"]),
    ("bambora after expiry", ["--provider", "bambora", "--history", BAMBORA, "--at", "2026-01-20T00:00:00Z"]),
    ("hellgate capture in flight", ["--provider", "hellgate", "--history", HELLGATE,
                                    "--at", "2026-02-04T00:00:00Z"]),
    ("one payment out of a log", ["--provider", "vipps", "--history", "{log}", "--payment", "order-10001",
                                  "--at", "2026-01-10T00:00:00Z", "--amount", "100"]),
]


def _decision(doc: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = doc.get("decision", doc)
    return found


@pytest.mark.parametrize(("name", "args"), CASES, ids=[c[0] for c in CASES])
def test_validate_and_capture_decide_the_same(name: str, args: list[str], tmp_path: Path) -> None:
    # A log of two payments, interleaved: --payment picks one history out of it.
    log = tmp_path / "two-payments.jsonl"
    vipps, other = Path(VIPPS).read_text().splitlines(), Path(BAMBORA).read_text().splitlines()
    log.write_text("\n".join([other[0], vipps[0], other[1], vipps[1]]) + "\n")
    args = [str(log) if a == "{log}" else a for a in args]
    before = datetime.now(UTC).replace(microsecond=0)
    v_code, validated, v_err = _cli("validate", *args, "--json")
    c_code, captured, c_err = _cli("capture", *args, "--dry-run", "--json")
    after = datetime.now(UTC) + timedelta(seconds=1)
    assert v_code in (0, 1), v_err
    assert c_code in (0, 1), c_err
    v, c = validated, _decision(captured)
    assert (v["allowed"], c["allowed"]) == (v_code == 0, c_code == 0)
    assert v["allowed"] == c["allowed"], (v, c)
    assert [x["code"] for x in v["violations"]] == [x["code"] for x in c["violations"]]
    assert [x["code"] for x in v["warnings"]] == [x["code"] for x in c["warnings"]]
    assert v["after"] == c["after"]
    assert v["capture"]["key"] == c["capture"]["key"]
    assert v["capture"]["amount"] == c["capture"]["amount"]
    if "--at" in args:
        assert v["capture"]["at"] == c["capture"]["at"] == args[args.index("--at") + 1]
    else:
        # Both default to now, and print it: validate in its decision, capture on stderr before sending.
        for at in (v["capture"]["at"], c["capture"]["at"]):
            assert before <= datetime.fromisoformat(at) <= after
    if "--key" not in args and v["allowed"]:
        assert v["capture"]["key_derived"] is True
    if v["allowed"]:
        sent = captured["requests"][0]
        headers = dict(sent["headers"])
        if "Idempotency-Key" in headers:
            assert headers["Idempotency-Key"] == v["capture"]["key"]


def test_the_key_rules_are_one_function() -> None:
    # capture (through CaptureClient.prepare) and validate derive through capstate._keys, nowhere else.
    from capstate import _keys
    from capstate._cli import decision
    from capstate.providers import client

    assert client.with_derived_key is _keys.with_derived_key
    assert decision.with_derived_key is _keys.with_derived_key
    assert client.derive_key is _keys.derive_key


def test_now_is_whole_seconds_unless_that_comes_before_the_latest_fact() -> None:
    """A journal stamps its facts to the microsecond: `validate` on its export in the same second must not
    call "now" earlier than the capture it just recorded (it did, as now in whole seconds)."""
    from capstate._cli.decision import default_instant

    now = datetime(2026, 12, 7, 15, 40, 12, 750_000, tzinfo=UTC)
    assert default_instant(now, datetime(2026, 12, 7, 15, 40, 11, tzinfo=UTC)) == now.replace(microsecond=0)
    assert default_instant(now, now.replace(microsecond=500_000)) == now
    assert default_instant(now, now) == now
    # A fact after now is the history's problem to report (decide_capture refuses it), not rounded away.
    assert default_instant(now, datetime(2026, 12, 7, 15, 40, 13, tzinfo=UTC)) == now.replace(microsecond=0)
