"""The benchmark suite never rots: `--quick` runs end to end in a real subprocess.

No timing is asserted (performance is a report, DESIGN.md section 6); what is checked is that every
row is measured, every ratio is a number, and the verdicts follow from the figures.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from capstate.bench import FULL_PAYMENTS, floor, hand_fsm, naive_transitions_audit, write_log

TARGET_ROWS = {"a", "b", "c_allowed", "c_allowed_vs", "c_rejected", "c_rejected_vs", "d", "e", "f", "journal"}
BASELINE_ROWS = {"floor", "naive", "trigger", "fsm", "decide_read", "observe", "from_json", "bare", "bare_client",
                 "commit"}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture(scope="module")
def quick() -> dict[str, object]:
    done = run("-m", "capstate.bench", "--quick", "--json")
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    assert isinstance(result, dict)
    return result


def test_quick_json_measures_every_row_with_numeric_ratios(quick: dict[str, object]) -> None:
    rows = {r["key"]: r for r in quick["rows"]}  # type: ignore[attr-defined]
    baselines = {r["key"]: r for r in quick["baselines"]}  # type: ignore[attr-defined]
    assert set(rows) == TARGET_ROWS
    assert set(baselines) == BASELINE_ROWS
    assert quick["audit_missing"] is False
    for row in [*rows.values(), *baselines.values()]:
        for name in ("value", "ratio"):
            value = row[name]
            assert isinstance(value, int | float) and math.isfinite(value) and value > 0, (row["key"], name, value)
    for row in rows.values():
        assert row["verdict"] in {"PASS", "MISS"}, row
    # The verdicts follow from the figures, not from anything else.
    assert (rows["a"]["verdict"] == "PASS") == (rows["a"]["ratio"] >= 0.5)
    assert quick["log"]["workers_report_identical"] is True  # type: ignore[index]
    assert (rows["b"]["verdict"] == "PASS") == (rows["b"]["ratio"] >= 1.6)
    assert (rows["c_allowed"]["verdict"] == "PASS") == (rows["c_allowed"]["value"] <= 1500)
    assert (rows["c_rejected_vs"]["verdict"] == "PASS") == (rows["c_rejected_vs"]["value"] >= 10)
    assert (rows["d"]["verdict"] == "PASS") == (rows["d"]["value"] <= 100)
    # (e): the quick open log is small enough to audit unbounded too, and the two reports are one.
    opened = quick["open_log"]
    assert isinstance(opened, dict)
    assert opened["compared_with"] == "unbounded run" and opened["report_identical"] is True
    assert opened["over_captures"] > 0 and opened["lapsed"] > 0
    assert (rows["e"]["verdict"] == "PASS") == (rows["e"]["value"] <= 1024)
    assert (rows["f"]["verdict"] == "PASS") == (rows["f"]["value"] <= 150)
    assert rows["f"]["ratio"] == pytest.approx(rows["f"]["value"] / baselines["bare"]["value"])
    assert rows["a"]["ratio"] == pytest.approx(rows["a"]["value"] / baselines["floor"]["value"])
    # The journal's time per capture beyond the bare client's, in durable commits measured in the same run.
    added_us = 1e6 / rows["journal"]["value"] - 1e6 / baselines["bare_client"]["value"]
    assert baselines["commit"]["ratio"] == pytest.approx(added_us / baselines["commit"]["value"])


def test_quick_log_has_the_promised_shape(quick: dict[str, object]) -> None:
    log = quick["log"]
    assert isinstance(log, dict)
    assert log["lines"] == 20_000 and log["payments"] == 4_000
    assert log["events"] == log["lines"] - log["malformed"]
    # About 10% of the events break a rule; the audit found them (and the malformed lines).
    assert 0.05 * log["events"] <= log["violations_reported"] <= 0.2 * log["events"]
    assert quick["rounds"] == 5


def test_table_output_names_every_measure(quick: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    # The table is `render` of the very result --json prints (one measured run, rendered both ways:
    # a second bench run here cost a minute of CI for the same figures).
    from capstate.bench import render

    render(quick)
    out = capsys.readouterr().out
    for label in ("(a) audit throughput", "(b) audit, 2 workers", "(c) decide(), allowed", "(c) decide(), rejected",
                  "(d) peak RSS", "floor", "naive transitions audit", "one transitions trigger", "hand-written FSM"):
        assert label in out, label
    assert "PASS" in out or "MISS" in out


@pytest.mark.parametrize("args", [["--rounds", "2"], ["--rounds", "many"], ["--no-such-option"], ["--seed", "x"]])
def test_bad_arguments_exit_2_with_one_line(args: list[str]) -> None:
    done = run("-m", "capstate.bench", "--quick", *args)
    assert done.returncode == 2
    # One line, before any work (no progress line, no table): only the last line was checked before.
    (line,) = done.stderr.splitlines()
    assert line.startswith("capstate: error: ")
    assert done.stdout == ""


def test_synthetic_log_is_seeded_and_its_baselines_run() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one = write_log(tmp, payments=200, seed=7)
        first = Path(one.path).read_bytes()
        two = write_log(tmp, payments=200, seed=7)
        assert Path(two.path).read_bytes() == first
        assert one.lines == 1000
        # Some malformed lines are JSON objects (a wrong type, an unknown event type): the floor parses them.
        assert one.lines - one.malformed <= floor(one.path) <= one.lines
        assert one.lines - one.malformed <= naive_transitions_audit(one.path, 10_000) <= one.lines
        assert hand_fsm([("p", "authorized", 100), ("p", "captured", 150), ("p", "refunded", 10)]) == 1
    assert FULL_PAYMENTS * 5 == 1_000_000


def test_naive_audit_is_not_quadratic_in_transitions_model_list(monkeypatch: pytest.MonkeyPatch) -> None:
    # add_model scans machine.models; left in that list, the models made the baseline quadratic in
    # payments, so it measured transitions' list scan, not its triggers, and slowed as the prefix grew.
    from transitions import Machine

    sizes: list[int] = []
    add_model = Machine.add_model

    def spy(self: Machine, model: object, initial: Any = None) -> None:
        sizes.append(len(self.models))
        add_model(self, model, initial)

    monkeypatch.setattr(Machine, "add_model", spy)
    with tempfile.TemporaryDirectory() as tmp:
        log = write_log(tmp, payments=300, seed=3)
        assert naive_transitions_audit(log.path, 10_000) >= log.lines - log.malformed
    assert len(sizes) >= 290 and max(sizes) <= 1


def test_baselines_run_with_the_collector_paused_as_the_audit_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # The audit pauses the cyclic collector in its loop; a baseline left with it on is handicapped.
    import gc

    from capstate import bench

    seen: list[bool] = []

    class Spy:
        JSONDecodeError = orjson.JSONDecodeError

        @staticmethod
        def loads(line: bytes) -> object:
            seen.append(gc.isenabled())
            return orjson.loads(line)

    def events() -> Iterator[tuple[str, str, int]]:
        seen.append(gc.isenabled())
        yield ("p", "authorized", 100)

    assert gc.isenabled()
    with tempfile.TemporaryDirectory() as tmp:
        log = write_log(tmp, payments=20, seed=5)
        monkeypatch.setattr(bench, "orjson", Spy)
        floor(log.path)
        naive_transitions_audit(log.path, 10_000)
    hand_fsm(events())
    assert len(seen) == 2 * log.lines + 1 and not any(seen)
    assert gc.isenabled()


def test_quick_ratios_point_the_way_their_labels_say(quick: dict[str, object]) -> None:
    rows = {r["key"]: r for r in quick["rows"]}  # type: ignore[attr-defined]
    baselines = {r["key"]: r for r in quick["baselines"]}  # type: ignore[attr-defined]
    a = rows["a"]["value"]
    assert rows["b"]["ratio"] == pytest.approx(rows["b"]["value"] / a)
    trigger = baselines["trigger"]["value"]
    for key in ("c_allowed", "c_rejected"):
        faster = trigger / rows[key]["value"]
        assert rows[key]["ratio"] == pytest.approx(faster)
        assert rows[f"{key}_vs"]["value"] == pytest.approx(faster)
        assert (rows[key]["verdict"] == "PASS") == (rows[key]["value"] <= 1500)
        assert (rows[f"{key}_vs"]["verdict"] == "PASS") == (rows[f"{key}_vs"]["value"] >= 10)
    assert baselines["naive"]["ratio"] == pytest.approx(a / baselines["naive"]["value"])
    assert baselines["fsm"]["ratio"] == pytest.approx(1e9 / a / baselines["fsm"]["value"])
    assert rows["d"]["ratio"] > 1  # the audit's peak over an interpreter that only imported it


def test_synthetic_log_mixes_providers_operations_and_breaches() -> None:
    from collections import Counter

    from capstate._cli.audit_run import run_audit

    with tempfile.TemporaryDirectory() as tmp:
        log = write_log(tmp, payments=400, seed=4)
        providers: Counter[str] = Counter()
        types: Counter[str] = Counter()
        for line in Path(log.path).read_bytes().splitlines():
            try:
                e = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            providers[e.get("provider")] += 1
            types[e.get("type")] += 1
        report = run_audit([log.path], spec=None).to_dict()
    assert {p for p, n in providers.items() if n >= 400} == {"vipps", "hellgate", "bambora", "pipwave"}
    for kind in ("authorized", "capture_requested", "captured", "capture_failed", "cancelled", "refunded"):
        assert types[kind] >= 40, kind
    # About 10% of the events break a rule, of every kind the README names, counted from the audit's report.
    breaking = {v["line"] for v in report["violations"] if v["code"] != "LOG_MALFORMED"}
    assert 0.07 <= len(breaking) / (log.lines - log.malformed) <= 0.13
    assert {"EXCEEDS_CAPTURABLE", "REFUND_EXCEEDS_CAPTURED", "AUTHORIZATION_EXPIRED", "INVALID_STATE",
            "MULTIPLE_CAPTURES_UNSUPPORTED", "CURRENCY_MISMATCH"} <= set(report["counts"])


def test_jobs_timed_together_run_round_by_round_and_drop_each_result() -> None:
    # A ratio between two jobs compares rounds run side by side: job order a, b, a, b, ... and each
    # result gone before the next job starts (so (b) never forks from a process holding (a)'s report).
    import weakref

    from capstate.bench import timed_together

    order: list[str] = []
    alive: list[weakref.ref[object]] = []

    class Result:
        pass

    def job(name: str) -> Any:
        def run() -> Result:
            assert all(ref() is None for ref in alive), "the previous job's result was still held"
            order.append(name)
            made = Result()
            alive.append(weakref.ref(made))
            return made
        return run

    kept = timed_together([(job("a"), lambda r: ("a", type(r).__name__)), (job("b"), lambda r: "b")], 3)
    assert order == ["a", "b"] * 3
    assert [what for _, what in kept] == [("a", "Result"), "b"]
    assert all(seconds >= 0 for seconds, _ in kept)
