"""--workers N on plain canonical files splits the input by bytes and shuffles lines to their payment's
worker (capstate._cli.audit_ranges): the output must be byte-identical to one process's, whatever the
cut points, the file boundaries, a BOM, a last line without a newline, or a line too long to audit."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from audit_output import stable
from hypothesis import given, settings
from hypothesis import strategies as st
from test_audit_parallel import SHOP, generated_log
from test_cli import Run, run_cli

from capstate._cli.audit_ranges import cuts, splittable
from capstate._cli.audit_run import run_audit


@pytest.fixture(scope="module")
def plain_inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("ranges")
    big = root / "generated.jsonl"
    big.write_bytes(b"\xef\xbb\xbf" + generated_log(1200, seed=8))  # a BOM, and a line past MAX_LINE inside
    tail = root / "no-newline.jsonl"
    tail.write_bytes(generated_log(200, seed=9).rstrip(b"\n"))
    return [big, SHOP, tail]


def audit(cwd: Path, files: list[Path], *extra: str) -> Run:
    return run_cli(cwd, "audit", *files, "--json", *extra)


def test_the_plain_inputs_take_the_byte_range_path(plain_inputs: list[Path]) -> None:
    assert splittable(tuple(map(str, plain_inputs)), "canonical")
    assert not splittable(tuple(map(str, plain_inputs)), "vipps-events")
    assert not splittable(("-",), "canonical")


@pytest.mark.parametrize("workers", ["2", "3", "5"])
def test_byte_ranges_give_byte_identical_output(plain_inputs: list[Path], tmp_path: Path, workers: str) -> None:
    single = audit(tmp_path, plain_inputs)
    assert single.code == 1 and single.err == ""
    report = orjson.loads(single.out)
    assert report["events"] > 3000 and "LOG_MALFORMED" in report["counts"]
    parallel = audit(tmp_path, plain_inputs, "--workers", workers)
    assert (parallel.code, parallel.err) == (single.code, "")
    assert stable(parallel.out) == stable(single.out)


def test_byte_ranges_with_a_small_window_and_a_tiny_memory_budget(plain_inputs: list[Path], tmp_path: Path) -> None:
    single = audit(tmp_path, plain_inputs, "--settled-window", "300", "--max-memory", "none")
    parallel = audit(tmp_path, plain_inputs, "--settled-window", "300", "--workers", "2", "--max-memory", "1KB")
    assert stable(parallel.out) == stable(single.out)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([b"", b"a", b"bb", b"x" * 40]), min_size=0, max_size=30), st.booleans(),
       st.integers(1, 7))
def test_cuts_fall_at_line_starts_and_cover_the_file(tmp_path_factory: pytest.TempPathFactory, lines: list[bytes],
                                                      last_newline: bool, parts: int) -> None:
    data = b"\n".join(lines) + (b"\n" if last_newline and lines else b"")
    path = tmp_path_factory.mktemp("cuts") / "f.jsonl"
    path.write_bytes(data)
    bounds = cuts(str(path), parts)
    assert len(bounds) == parts + 1 and bounds[0] == 0 and bounds[-1] == len(data)
    assert bounds == sorted(bounds)
    for start in bounds[1:-1]:
        assert start in (0, len(data)) or data[start - 1:start] == b"\n"


def test_the_api_gives_the_same_report_with_workers(plain_inputs: list[Path]) -> None:
    paths = [str(p) for p in plain_inputs]
    one = run_audit(paths, spec=None)
    two = run_audit(paths, spec=None, workers=2)
    assert orjson.dumps(two.to_dict()) == orjson.dumps(one.to_dict())
    assert os.path.getsize(paths[0]) > 100_000
