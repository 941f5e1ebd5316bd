"""The memory bound: past `max_open` open payments (from --max-memory) the oldest spill to an on-disk
store and come back when their next event arrives. The report must be exactly an unbounded run's, on
random logs (every kind of trouble the fast path hands on) and on the bench's synthetic log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_audit_fastpath import OVERRIDES, logs, plausible_logs

from capstate._audit import Auditor, merge
from capstate._cli.audit_run import BASE_BYTES, BYTES_PER_OPEN, max_open_for, run_audit
from capstate._cli.spill import SqliteStore
from capstate._hotpath import hot, plain
from capstate.bench import write_log


def _run(lines: list[bytes | dict[str, Any]], *, max_open: int, window: int, overrides: dict[str, Any] | None,
         build: Any = hot, alone: bool = True) -> tuple[bytes, int]:
    with SqliteStore() as store:
        auditor = Auditor(None, overrides=overrides, settled_window=window, store=store if max_open else None,
                          max_open=max_open, hot=build)
        for number, item in enumerate(lines, start=1):
            auditor.feed(item, number, "x.jsonl")
        report = merge([auditor.partial(alone=alone)], files=("x.jsonl",))
        return orjson.dumps(report.to_dict()), store.spilled


@settings(max_examples=150)
@given(st.one_of(logs(), plausible_logs(), plausible_logs()), st.integers(1, 3), st.sampled_from([0, 2, 250_000]),
       st.sampled_from(OVERRIDES), st.booleans())
def test_a_bounded_audit_reports_exactly_what_an_unbounded_one_does(
        lines: list[bytes | dict[str, Any]], max_open: int, window: int, overrides: dict[str, Any] | None,
        alone: bool) -> None:
    unbounded, _ = _run(lines, max_open=0, window=window, overrides=overrides, alone=alone)
    for build in (hot, plain()):
        bounded, _ = _run(lines, max_open=max_open, window=window, overrides=overrides, build=build, alone=alone)
        assert bounded == unbounded


def test_the_bench_log_under_a_tiny_budget_spills_and_reports_the_same(tmp_path: Path) -> None:
    log = write_log(str(tmp_path), payments=600, seed=7)
    free = run_audit([log.path], spec=None, max_memory=None)
    tight = run_audit([log.path], spec=None, max_memory=BASE_BYTES + 40 * BYTES_PER_OPEN)
    assert orjson.dumps(tight.to_dict()) == orjson.dumps(free.to_dict())
    assert free.violations  # the log has breaches of every kind, so the comparison can fail
    # Spilling really happened: 600 payments over a window of ~64 open at once, 40 held.
    lines = Path(log.path).read_bytes().splitlines()
    with SqliteStore() as store:
        auditor = Auditor(None, store=store, max_open=40)
        auditor.feed_lines(lines, 0, log.path, 0)
        auditor.partial()
        assert store.spilled > 0


def test_two_workers_under_a_tiny_budget_give_the_same_bytes(tmp_path: Path) -> None:
    log = write_log(str(tmp_path), payments=400, seed=3)
    free = run_audit([log.path], spec=None, max_memory=None)
    tight = run_audit([log.path], spec=None, workers=2, max_memory=BASE_BYTES + 60 * BYTES_PER_OPEN)
    assert orjson.dumps(tight.to_dict()) == orjson.dumps(free.to_dict())


def test_max_open_follows_the_budget() -> None:
    assert max_open_for(None) == 0
    assert max_open_for(1) == 1  # below the base: still audits, spilling nearly everything
    assert max_open_for(BASE_BYTES + 1000 * BYTES_PER_OPEN) == 1000
    assert max_open_for(BASE_BYTES + 1000 * BYTES_PER_OPEN, parts=2) == 500


@pytest.mark.parametrize(("value", "ok"), [("512MB", True), ("4GiB", True), ("1000", True), ("none", True),
                                          ("0", False), ("-1GB", False), ("1.5GB", False), ("12XB", False)])
def test_the_cli_reads_max_memory(tmp_path: Path, value: str, ok: bool) -> None:
    log = write_log(str(tmp_path), payments=20, seed=1)
    done = subprocess.run([sys.executable, "-m", "capstate", "audit", log.path, "--json", "--max-memory", value],
                          capture_output=True, text=True, check=False, timeout=120)
    if ok:
        assert done.returncode == 1 and orjson.loads(done.stdout)["events"] > 0, done.stderr
    else:
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
        assert "--max-memory" in done.stderr
