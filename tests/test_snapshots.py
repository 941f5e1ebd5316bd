"""The 80-column rendering of every command's human output, pinned (issue 11, item 3).

Each command runs for real in a pseudo-terminal 80 columns wide (tests/terminal.py) and its text is
compared with tests/snapshots/NAME.txt. Every line must fit in 80 columns: no table drops a column or
splits a code to get there. `capstate audit` is pinned by its own tests; `capstate bench` prints
timings, which differ on every run.

After an intended change of output: CAPSTATE_UPDATE_SNAPSHOTS=1 pytest tests/test_snapshots.py, then
read the diff of tests/snapshots/ before committing it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from terminal import run_in_terminal

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
VIPPS = "examples/histories/vipps-partial.jsonl"
AT = "2026-01-08T09:00:00Z"
WIDTH = 80

CASES: dict[str, tuple[list[str], int]] = {
    "help": ([], 0),
    "providers": (["providers"], 0),
    "spec-vipps": (["spec", "vipps"], 0),
    "spec-bambora": (["spec", "bambora"], 0),
    "validate-allowed": (["validate", "--provider", "vipps", "--history", VIPPS, "--amount", "50000",
                          "--at", AT], 0),
    "validate-refused": (["validate", "--provider", "vipps", "--history", VIPPS, "--amount", "80000",
                          "--key", "ship-2", "--at", AT], 1),
    "validate-warning": (["validate", "--provider", "pipwave", "--history", "-", "--at", AT], 0),
    "capture-dry-run": (["capture", "--provider", "vipps", "--history", VIPPS, "--amount", "50000",
                         "--key", "ship-2", "--at", AT, "--dry-run"], 0),
    "capture-refused": (["capture", "--provider", "vipps", "--history", VIPPS, "--amount", "80000",
                         "--key", "ship-2", "--at", AT, "--dry-run"], 1),
    "simulate-matrix": (["simulate", "examples/plans/split-shipment.toml"], 1),
    "simulate-single": (["simulate", "examples/plans/split-shipment.toml", "--provider", "bambora"], 1),
    "simulate-clean": (["simulate", "examples/plans/failed-then-retried.toml", "--provider", "vipps"], 0),
    "check": (["check", "bambora"], 0),
    "diagram": (["diagram", "hellgate"], 0),
    "diagram-guards": (["diagram", "hellgate", "--guards"], 0),
    "codes": (["codes"], 0),
    "explain": (["explain", "exceeds_capturable"], 0),
    "error": (["validate", "--provider", "vips", "--history", VIPPS], 2),
}
# Lines that are one thing to copy, not a table to read: a curl command, a diagram's edge, and the
# one-line message on stderr that every refusal and error is (the terminal folds it; a log keeps it whole).
LONG_LINES_ALLOWED = {"capture-dry-run", "diagram-guards", "capture-refused", "error"}


@pytest.mark.parametrize("name", list(CASES))
def test_80_column_rendering(name: str, tmp_path: Path) -> None:
    args, expected_code = CASES[name]
    env = {"CAPSTATE_VIPPS_MERCHANT_SERIAL_NUMBER": "123456"}
    if name == "validate-warning":
        # A Pipwave payment whose partial capture becomes a full one: a warning, not a refusal.
        history = tmp_path / "pipwave.jsonl"
        history.write_text('{"payment":"PW-1","type":"authorized","at":"2026-01-05T10:00:00Z","amount":15000,'
                           '"currency":"MYR","provider":"pipwave"}\n')
        args = [str(history) if a == "-" else a for a in args] + ["--amount", "5000"]
    code, text = run_in_terminal(args, cwd=ROOT, columns=WIDTH, env=env)
    assert code == expected_code, text
    text = text.replace(str(tmp_path), "<tmp>")
    if name not in LONG_LINES_ALLOWED:
        wide = [line for line in text.splitlines() if len(line) > WIDTH]
        assert not wide, "\n".join(wide)
    assert not re.search(r"…", text), "a cell was cut with an ellipsis"
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("CAPSTATE_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if os.environ.get("CAPSTATE_UPDATE_SNAPSHOTS") != "1":
            pytest.fail(f"{path.name} was missing and is now written; read it, commit it, run again")
    assert text == path.read_text(encoding="utf-8"), f"{name}: the output changed; see the module docstring"


def test_a_pipe_is_not_wrapped() -> None:
    # The same matrix to a pipe: full codes, one provider's verdict per line, never folded at 80.
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "capstate", "simulate", "examples/plans/split-shipment.toml"],
                         cwd=ROOT, capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "80"})
    lines = out.stdout.splitlines()
    assert any(line.startswith("hellgate: NOT clean") and line.endswith("for as long as the card issuer keeps it")
               for line in lines)
    assert any("MULTIPLE_CAPTURES_UNSUPPORTED: 1 capture(s) already made; the provider allows 1" in line
               for line in lines)
    codes = subprocess.run([sys.executable, "-m", "capstate", "codes"], cwd=ROOT, capture_output=True, text=True,
                           check=False).stdout.splitlines()
    assert any(line.startswith("  AMOUNT_INVALID: ") and line.endswith("(no provider takes more).") for line in codes)
