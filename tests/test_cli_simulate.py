"""`capstate simulate`, run as a real process: the matrix, exact JSON, exit codes, --set, one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_cli import SCRIPT, Run, assert_error, run_cli, write

PLANS = Path(__file__).resolve().parents[1] / "examples" / "plans"
SPLIT = PLANS / "split-shipment.toml"
PREORDER = PLANS / "preorder.toml"


@pytest.fixture
def sim(tmp_path: Path) -> Any:
    def bound(*args: str | Path, **env: str) -> Run:
        return run_cli(tmp_path, "simulate", *args, **env)

    return bound


# ----------------------------------------------------------------------------------------------- json


def test_split_shipment_json_all_providers(sim: Any) -> None:
    r = sim(SPLIT, "--provider", "all", "--json")
    assert r.code == 1  # three providers refuse a step
    doc = r.json()
    assert set(doc) == {"results"}
    results = doc["results"]
    assert list(results) == ["bambora", "hellgate", "pipwave", "vipps"]
    vipps = results["vipps"]
    assert (vipps["ok"], vipps["captured"], vipps["released"], vipps["held"]) == (True, 85000, 15000, 0)
    assert [s["allowed"] for s in vipps["steps"]] == [True, True, True, True]
    assert [s["index"] for s in vipps["steps"]] == [1, 2, 3, 4]
    assert [s["op"] for s in vipps["steps"]] == ["capture", "capture", "capture", "cancel"]
    assert vipps["steps"][2]["after"] == {"state": "authorized", "authorized": 100000, "captured": 85000,
                                          "cancelled": 0, "refunded": 0}
    for name in ("bambora", "hellgate", "pipwave"):
        entry = results[name]
        assert entry["ok"] is False
        second = entry["steps"][1]
        assert second["allowed"] is False
        assert [v["code"] for v in second["violations"]] == ["MULTIPLE_CAPTURES_UNSUPPORTED"]
        assert second["violations"][0]["message"] == "1 capture(s) already made; the provider allows 1"
        # Bambora's remainder lapses with its 7-day authorization before the plan's day 9.
        assert (entry["captured"], entry["released"], entry["held"]) == (
            (30000, 70000, 0) if name == "bambora" else (30000, 0, 70000))


def test_single_provider_that_runs_clean_exits_0(sim: Any) -> None:
    r = sim(SPLIT, "--provider", "vipps", "--json")
    assert r.code == 0
    assert list(r.json()["results"]) == ["vipps"]


def test_preorder_bambora_lapses_after_seven_days(sim: Any) -> None:
    doc = sim(PREORDER, "--provider", "bambora,vipps", "--json").json()
    wait, capture = doc["results"]["bambora"]["steps"]
    assert wait["lapsed_at"] == "2026-03-09T08:30:00Z"
    assert [w["code"] for w in wait["warnings"]] == ["AUTHORIZATION_LAPSED"]
    assert wait["after"]["state"] == "expired"
    assert [v["code"] for v in capture["violations"]] == ["AUTHORIZATION_EXPIRED"]
    assert doc["results"]["vipps"]["ok"] is True


def test_set_overrides_one_provider_or_all(sim: Any) -> None:
    r = sim(PREORDER, "--json", "--set", "hellgate.authorization_validity=7d")
    results = r.json()["results"]
    assert results["hellgate"]["steps"][1]["violations"][0]["code"] == "AUTHORIZATION_EXPIRED"
    assert results["pipwave"]["ok"] is True and results["vipps"]["ok"] is True
    # Unprefixed: every provider.
    results = sim(PREORDER, "--json", "--set", "authorization_validity=3d").json()["results"]
    for name, entry in results.items():
        assert entry["steps"][0]["lapsed_at"] == "2026-03-05T08:30:00Z", name
        assert entry["ok"] is False and entry["captured"] == 0, name


def test_json_plan_file(sim: Any) -> None:
    r = sim(PLANS / "partial-refunds.json", "--json")
    assert r.code == 1
    bambora = r.json()["results"]["bambora"]
    assert bambora["steps"][2]["violations"][0]["code"] == "MULTIPLE_REFUNDS_UNSUPPORTED"
    assert bambora["steps"][1]["after"]["refunded"] == 10000


# ---------------------------------------------------------------------------------------------- human


def test_matrix_through_the_installed_script(tmp_path: Path) -> None:
    r = run_cli(tmp_path, "simulate", SPLIT, "--provider", "all", exe=[str(SCRIPT)], FORCE_COLOR="1")
    assert r.code == 1 and r.err == ""
    assert "\x1b" not in r.out
    header = next(line.split() for line in r.out.splitlines() if line.split()[:3] == ["#", "at", "step"])
    assert header == ["#", "at", "step", "bambora", "hellgate", "pipwave", "vipps"]
    second = next(line for line in r.out.splitlines() if "capture 25000" in line)
    # The refusing code in each refusing provider's cell, a check mark for Vipps; never cut.
    assert second.split()[-7:] == ["✗", "MULTIPLE_CAPTURES_UNSUPPORTED"] * 3 + ["✓"]
    # Under each cell, the payment after the step: Vipps ends captured with the rest released.
    lines = r.out.splitlines()
    cancel_row = lines[next(i for i, line in enumerate(lines) if "cancel the rest" in line and "✓" in line) + 1]
    assert cancel_row.split()[-2:] == ["captured", "85000/15000"]
    assert "vipps: runs clean" in r.out
    assert "hellgate: NOT clean (refuses step 2, 3, 4)" in r.out
    # Bambora's week: the remainder it cannot release lapses on day 7, before the plan ends.
    assert "released 70000 (700.00 NOK) (lapsed 70000); nothing held" in r.out
    assert "held 70000 (700.00 NOK) for as long as the card issuer keeps it" in r.out  # hellgate, pipwave


def test_single_provider_step_table(sim: Any) -> None:
    r = sim(PREORDER, "--provider", "bambora")
    assert r.code == 1 and r.err == ""
    for word in ("capstate simulate: bambora", "capture in full", "AUTHORIZATION_EXPIRED", "lapsed 2026-03-09",
                 "AUTHORIZATION_LAPSED", "expired", "bambora: NOT clean (refuses step 2)"):
        assert word in r.out, word


def test_single_clean_provider_human(sim: Any) -> None:
    r = sim(PLANS / "failed-then-retried.toml", "--provider", "vipps")
    assert r.code == 0 and r.err == ""
    assert "vipps: runs clean" in r.out and "OUTCOME_FAILED" in r.out and "(fails)" in r.out


# --------------------------------------------------------------------------------------------- errors


BAD_PLANS = [
    ("float-amount.toml",
     '[payment]\namount = 1000\ncurrency = "NOK"\nauthorized_at = 2026-01-05T10:00:00Z\n'
     '[[step]]\nat = "+1d"\nop = "wait"\n[[step]]\nat = "+1d"\nop = "wait"\n'
     '[[step]]\nat = "+2d"\nop = "capture"\namount = 12.5\n',
     "plan step 3: field 'amount': must be an integer >= 0 of minor units, got 12.5"),
    ("unknown-key.toml",
     '[payment]\namount = 1000\ncurrency = "NOK"\nauthorized_at = 2026-01-05T10:00:00Z\n'
     '[[step]]\nat = "+1d"\nop = "capture"\nammount = 5\n',
     "plan step 1: field 'ammount': unknown field"),
    ("order.json",
     '{"payment": {"amount": 1, "currency": "NOK", "authorized_at": "2026-01-05T10:00:00Z"},'
     ' "step": [{"at": "+2d", "op": "wait"}, {"at": "+1d", "op": "capture"}]}',
     "plan step 2: field 'at': 2026-01-06T10:00:00Z is before step 1's"),
    ("bad-op.json",
     '{"payment": {"amount": 1, "currency": "NOK", "authorized_at": "2026-01-05T10:00:00Z"},'
     ' "step": [{"at": "+1d", "op": "void"}]}',
     "plan step 1: field 'op': got 'void'"),
    ("currency.toml", '[payment]\namount = 1\ncurrency = "kr"\nauthorized_at = 2026-01-05T10:00:00Z\n',
     "plan: field 'payment.currency'"),
    ("huge-amount.toml", '[payment]\namount = 99999999999999999999\ncurrency = "NOK"\n'
     'authorized_at = 2026-01-05T10:00:00Z\n', "plan: field 'payment.amount': 99999999999999999999 is beyond"),
    ("empty.toml", "", "plan: field 'payment': missing"),
    ("far-past.json", '{"payment": {"amount": 1, "currency": "NOK", "authorized_at": "0001-01-01T00:00:00+01:00"}}',
     "plan: field 'payment.authorized_at': 0001-01-01T00:00:00+01:00 is outside the instants capstate accepts"),
    ("syntax.toml", "[payment\n", "plan: not valid TOML"),
    ("syntax.json", "{", "plan: not valid JSON"),
]


@pytest.mark.parametrize(("name", "text", "message"), BAD_PLANS, ids=[b[0] for b in BAD_PLANS])
def test_bad_plans_are_one_line_exit_2(sim: Any, tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path, name, text)
    err = assert_error(sim(path, "--json"), message)
    assert err.startswith(f"capstate: error: {path}: plan")


def test_bad_input_other_than_the_plan(sim: Any, tmp_path: Path) -> None:
    assert_error(sim(tmp_path / "missing.toml"), "cannot read plan", "missing.toml")
    assert_error(sim(write(tmp_path, "plan.yaml", "payment: {}")), "must end in .toml or .json")
    assert_error(sim(SPLIT, "--provider", "stripe"), "stripe", "no shipped spec")
    assert_error(sim(SPLIT, "--provider", "vipps,vipps"), "'vipps' is selected twice")
    assert_error(sim(SPLIT, "--provider", "vipps", "--set", "hellgate.authorization_validity=7d"),
                 "the override is for 'hellgate', but the spec is 'vipps'")
    assert_error(sim(SPLIT, "--set", "max_captures=0"), "--set max_captures")
    # A window no calendar holds: the expiry would overflow datetime at the first step that reads it.
    assert_error(sim(PREORDER, "--set", "authorization_validity=99999999d"), "--set authorization_validity",
                 "99999999d")
    assert_error(sim(PREORDER, "--set", "refund_window=9999999999999d"), "--set refund_window")
    assert_error(sim(PREORDER, "--set", "refund_window=[7]"), "--set refund_window", "not a duration")
    bad_bytes = tmp_path / "latin1.toml"
    bad_bytes.write_bytes(b'description = "caf\xe9"\n')
    assert_error(sim(bad_bytes), "not UTF-8")


def test_a_spec_file_beside_a_shipped_provider_with_its_own_set(sim: Any, tmp_path: Path) -> None:
    from importlib import resources

    text = resources.files("capstate.specs").joinpath("bambora.toml").read_text(encoding="utf-8")
    mine = write(tmp_path, "mybank.toml", text.replace('name = "bambora"', 'name = "mybank"'))
    # mybank = bambora with room for three captures and a longer window, set from the command line.
    r = sim(SPLIT, "--provider", f"vipps,{mine}", "--json", "--set", "mybank.max_captures=3",
            "--set", "mybank.authorization_validity=30d", "--set", "vipps.max_captures=2")
    results = r.json()["results"]
    assert list(results) == ["vipps", "mybank"]
    assert [s["allowed"] for s in results["vipps"]["steps"]] == [True, True, False, True]
    assert results["vipps"]["steps"][2]["violations"][0]["code"] == "MULTIPLE_CAPTURES_UNSUPPORTED"
    # Bambora's machine ends in `captured` after one capture, whatever max_captures says.
    assert results["mybank"]["steps"][1]["violations"][0]["code"] == "INVALID_STATE"
    assert r.code == 1
