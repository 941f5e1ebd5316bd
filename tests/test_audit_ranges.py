"""--workers N on plain canonical files splits the input by bytes and shuffles lines to their payment's
worker (capstate._cli.audit_ranges): the output must be byte-identical to one process's, whatever the
cut points, the file boundaries, a BOM, a last line without a newline, or a line too long to audit."""

from __future__ import annotations

import os
import random
from pathlib import Path

import orjson
import pytest
from audit_output import stable
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_audit_parallel import SHOP, generated_log
from test_cli import Run, run_cli

from capstate._cli import audit_run
from capstate._cli.audit_ranges import audit_share, cuts, owner_table, owners_of, scan_range, splittable
from capstate._cli.audit_run import _owner_of, _partition, run_audit
from capstate._cli.main import main
from capstate._cli.options import UsageError


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


@pytest.mark.parametrize("parts", [2, 3, 8, 25, 26, 255])
def test_every_owner_gets_a_share_and_worker_0_the_largest(parts: int) -> None:
    slots, table = owner_table(parts)
    shares = [table[:slots].count(j) for j in range(parts)]
    assert sum(shares) == slots and min(shares) >= 1 and shares[0] == max(shares)
    assert max(shares) <= 1.1 * min(shares) + 1


def test_the_api_gives_the_same_report_with_workers(plain_inputs: list[Path]) -> None:
    paths = [str(p) for p in plain_inputs]
    one = run_audit(paths, spec=None)
    two = run_audit(paths, spec=None, workers=2)
    assert orjson.dumps(two.to_dict()) == orjson.dumps(one.to_dict())
    assert os.path.getsize(paths[0]) > 100_000


_TRICKY = [b"", b"\x00\xff garbage", b'{"payment":"d","payment":"e","type":"captured"}', b' {"payment":"g"}',
           b'{"x":{"payment":"c"}}', b'{"payment":"f\\u0041"}', b'{"payment" : "spaced"}', b'{"payment":5}',
           b'{"payment":"h"', b'{"payment":"\xff"}', b"[]", b'{"payment":"order-000003","type":"settled"}']


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(_TRICKY) | st.builds(orjson.dumps, st.fixed_dictionaries(
    {"payment": st.sampled_from(["order-000001", "order-\u00e6-000002", "x", ""]),
     "type": st.sampled_from(["authorized", "captured"])})), max_size=12),
       st.integers(0, 400), st.integers(0, 2**32), st.integers(2, 7))
def test_a_line_of_a_valid_event_gets_its_payment_s_owner(extra: list[bytes], payments: int, seed: int,
                                                            parts: int) -> None:
    """The owner byte of every line whose JSON names a payment is the owner of that payment's CRC-32 (as the
    line-by-line rule reads it), however the block is halved around the lines it cannot vouch for."""
    lines = [line for line in generated_log(payments, seed=seed).split(b"\n") if len(line) < 4096]
    rnd = random.Random(seed)
    for line in extra:
        lines.insert(rnd.randrange(len(lines) + 1), line)
    got = owners_of(b"\n".join(lines), parts)
    slots, table = owner_table(parts)
    assert len(got) == len(lines) and max(got) < parts
    for line, owner in zip(lines, got, strict=True):
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("payment"), str):
            assert owner == table[_owner_of(line, slots)[0]], line


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["audit", *args])
    out, err = capsys.readouterr()
    return code, out, err


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(20, 400), st.integers(0, 2**32), st.lists(st.sampled_from(_TRICKY), max_size=8),
       st.integers(1, 3), st.booleans(), st.booleans(), st.sampled_from([300, 2048, 1 << 18]))
def test_random_logs_give_byte_identical_reports_with_1_2_and_3_workers(  # noqa: PLR0917 - hypothesis draws
        tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        payments: int, seed: int, extra: list[bytes], files: int, bom: bool, last_newline: bool, block: int) -> None:
    """Text, --json and the HTML report of --workers 2 and 3 equal one process's byte for byte, on random
    logs over one to three files (garbage among the lines, a BOM, a last line without a newline), read
    in blocks small enough that every range holds many and the cuts fall anywhere."""
    monkeypatch.setattr(audit_run, "_BLOCK", block)
    lines = [line for line in generated_log(payments, seed=seed).split(b"\n") if line and len(line) < 4096]
    rnd = random.Random(seed)
    parts = [lines[k * len(lines) // files:(k + 1) * len(lines) // files] for k in range(files)]
    for line in extra:
        # Never a file's first line: that is what the format is sniffed from, and a file that opens with
        # `[]` is a Vipps export by its looks (the CLI refuses the mix, exit 2), not what this test is about.
        part = parts[rnd.randrange(files)]
        part.insert(rnd.randrange(1, len(part) + 1), line)
    root = tmp_path_factory.mktemp("random")
    paths = []
    for k, part in enumerate(parts):
        data = (b"\xef\xbb\xbf" if bom and k == 0 else b"") + b"\n".join(part)
        path = root / f"log-{k}.jsonl"
        path.write_bytes(data + (b"\n" if last_newline or k < files - 1 else b""))
        paths.append(str(path))
    assert splittable(tuple(paths), "canonical")
    seen: dict[str, set[str]] = {"text": set(), "json": set(), "html": set()}
    for workers in ("1", "2", "3"):
        html = root / f"report-{workers}.html"
        code, text, err = _cli(capsys, *paths, "--workers", workers, "--report", str(html), "--limit", "100000")
        assert code in (0, 1) and err == "", err
        seen["text"].add(stable(text))
        seen["html"].add(stable(html.read_text()))
        code, out, err = _cli(capsys, *paths, "--workers", workers, "--json")
        assert code in (0, 1) and err == "", err
        seen["json"].add(stable(out))
    assert {kind: len(outs) for kind, outs in seen.items()} == {"text": 1, "json": 1, "html": 1}


def test_a_file_that_changes_between_the_scan_and_the_audit_is_refused(tmp_path: Path) -> None:
    """The owners were written for the bytes the scan read: lines of other bytes would be given to the
    wrong worker, or dropped, so the audit stops with one line instead (the CLI's exit 2)."""
    path = tmp_path / "live.jsonl"
    data = generated_log(300, seed=3).split(b"\n")
    path.write_bytes(b"\n".join(line for line in data if len(line) < 4096))
    size = path.stat().st_size
    job = audit_run.Job((str(path),), ("live.jsonl",), None, None, "canonical")
    bounds = [cuts(str(path), 2)]
    for k in range(2):
        scan_range(job.paths, bounds, k, 2, str(tmp_path))
    assert audit_share(job, 1, 2, str(tmp_path), bounds).events > 0
    path.write_bytes((b'{"payment":"p"}\n' * size)[:size])  # as many bytes, more lines
    with pytest.raises(UsageError, match=r"live\.jsonl changed while it was audited"):
        audit_share(job, 1, 2, str(tmp_path), bounds)


@pytest.mark.parametrize("pair", [
    [b"", b'{"payment":"d","payment":"e","type":"captured"}'],  # no key on one line, two on the next
    [b'{"payment":"d","payment":"e"}', b'{"x":1}'],
    [b'{"x":1}', b'{"payment":"d", "payment": "e"}'],
])
@pytest.mark.parametrize("parts", [2, 3])
def test_a_line_with_two_keys_beside_one_with_none_does_not_shift_the_owners(pair: list[bytes], parts: int) -> None:
    """The counts over a block match when one line has the key twice and another not at all: the regex
    gives at most one match per line, so the block is refused, not read one id off."""
    lines = [orjson.dumps({"payment": f"p-{i}", "type": "captured"}) for i in range(40)]
    lines[20:20] = pair
    block = b"\n".join(lines)
    slots, table = owner_table(parts)
    got = owners_of(block, parts)
    assert list(got) == [table[_owner_of(line, slots)[0]] for line in lines]
    owners, _ = _partition(block, lines, parts)
    assert owners == [_owner_of(line, parts)[0] for line in lines]


def test_the_stages_leave_the_collector_as_they_found_it(tmp_path: Path) -> None:
    """Worker 0 is the caller's own process: a collector left off would stay off for the whole program."""
    import gc

    path = tmp_path / "log.jsonl"
    path.write_bytes(generated_log(50, seed=2).split(b"\n", 1)[1])
    job = audit_run.Job((str(path),), ("log.jsonl",), None, None, "canonical")
    bounds = [cuts(str(path), 2)]
    assert gc.isenabled()
    scan_range(job.paths, bounds, 0, 2, str(tmp_path))
    scan_range(job.paths, bounds, 1, 2, str(tmp_path))
    assert gc.isenabled()
    audit_share(job, 0, 2, str(tmp_path), bounds)
    assert gc.isenabled()
