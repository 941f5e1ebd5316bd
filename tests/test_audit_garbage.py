"""Garbage never crashes an audit nor loses the rest of the report.

Hypothesis mixes garbage lines (binary, cut-off JSON, huge lines, wrong types, unknown event types,
JSON that is not an object) into a real history. The audit must report each garbage line as
LOG_MALFORMED at its own line number, and everything else exactly as if the garbage lines had been
blank. A gzip file cut short is reported where it breaks, and the files after it are audited in full.
"""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capstate import Code, Event, EventError, audit
from capstate._audit import AuditReport
from capstate._cli import audit_run
from capstate._cli.audit_run import run_audit

LOGS = Path(__file__).resolve().parents[1] / "examples" / "logs"


def _is_event(raw: bytes) -> bool:
    try:
        Event.from_json(raw)
    except EventError:
        return False
    return True


HISTORY = [line for line in (LOGS / "shop-2026-01.jsonl").read_bytes().splitlines() if _is_event(line)]
VALID = orjson.loads(HISTORY[3])
AS_OF = "2026-02-01T00:00:00Z"
SMALL_MAX_LINE = 400  # "huge" for the test, without writing megabytes per example


def _mutate(change: dict[str, Any]) -> bytes:
    return orjson.dumps({**VALID, **change})


wrong_types = st.sampled_from([
    {"amount": "150.00"}, {"amount": 1.5}, {"amount": -1}, {"amount": True}, {"at": 1767225600},
    {"at": "2026-01-05"}, {"payment": 7}, {"payment": ""}, {"currency": "XXX"}, {"currency": 578},
    {"provider": ["vipps"]}, {"key": {"k": 1}}, {"flow": "sometimes"}, {"type": None},
    # RFC 3339 instants that datetime cannot shift to UTC or add a validity window to
    {"at": "0001-01-01T00:00:00+01:00"}, {"at": "9999-12-31T23:59:59-01:00"}, {"at": "9999-12-30T00:00:00Z"},
    # beyond int64, the largest amount any provider takes (orjson reads these as int, larger as float)
    {"amount": 2**63}, {"amount": 2**64 - 1},
]).map(_mutate)
unknown_types = st.sampled_from(["settled", "CAPTURED", "chargeback", ""]).map(lambda t: _mutate({"type": t}))
not_objects = st.sampled_from([b"[]", b"null", b"42", b'"captured"', b"[{}]", b"{}"])
cut_off = st.sampled_from(HISTORY).flatmap(lambda raw: st.integers(1, len(raw) - 1).map(lambda n: raw[:n]))
binary = st.binary(min_size=1, max_size=60).map(lambda b: b.replace(b"\n", b"\x00")).filter(lambda b: b.strip())
huge = st.integers(SMALL_MAX_LINE + 1, SMALL_MAX_LINE * 3).map(lambda n: b'{"payment":"' + b"y" * n + b'"}')
garbage = st.one_of(wrong_types, unknown_types, not_objects, cut_off, binary, huge)


@contextmanager
def small_max_line() -> Iterator[None]:
    saved = audit_run.MAX_LINE
    audit_run.MAX_LINE = SMALL_MAX_LINE
    try:
        yield
    finally:
        audit_run.MAX_LINE = saved


def run(files: dict[str, bytes], **kwargs: Any) -> AuditReport:
    with tempfile.TemporaryDirectory() as tmp, small_max_line():
        paths = []
        for name, data in files.items():
            path = Path(tmp) / name
            path.write_bytes(data)
            paths.append(str(path))
        report = run_audit(paths, spec=None, as_of=AS_OF, **kwargs)
    # Findings name files; compare them by base name across temporary directories.
    return report


def findings(report: AuditReport) -> list[tuple[str, int, str | None, str, str]]:
    return [(Path(f.file).name, f.line, f.payment, f.code.value, f.message) for f in report.violations]


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=60)
@given(st.lists(st.tuples(st.integers(0, len(HISTORY)), garbage), min_size=1, max_size=8))
def test_garbage_lines_are_malformed_at_their_line_and_nothing_else_changes(
        inserts: list[tuple[int, bytes]]) -> None:
    dirty: list[bytes] = list(HISTORY)
    for position, junk in sorted(inserts, key=lambda x: -x[0]):
        dirty.insert(position, b"\x01GARBAGE\x01")
        dirty[position] = junk
    garbage_lines = {i for i, line in enumerate(dirty, start=1) if line not in HISTORY}
    blanked = [b"" if i in garbage_lines else line for i, line in enumerate(dirty, start=1)]

    report = run({"dirty.jsonl": b"\n".join(dirty) + b"\n"})
    baseline = run({"dirty.jsonl": b"\n".join(blanked) + b"\n"})

    malformed = [f for f in report.violations if f.code is Code.LOG_MALFORMED]
    assert sorted(f.line for f in malformed) == sorted(garbage_lines)
    assert [f for f in findings(report) if f[3] != "LOG_MALFORMED"] == findings(baseline)
    assert report.events == baseline.events and report.payments == baseline.payments
    assert all(len(f.message) < 400 for f in malformed)


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=30)
@given(st.data())
def test_a_truncated_gzip_is_reported_and_the_next_file_is_audited_in_full(data: st.DataObject) -> None:
    packed = gzip.compress(b"\n".join(HISTORY) + b"\n")
    cut = data.draw(st.integers(2, len(packed) - 1))
    second = b"\n".join(HISTORY) + b"\n"
    report = run({"a.jsonl.gz": packed[:cut], "b.jsonl": second})
    alone = run({"b.jsonl": second})
    broken = [f for f in report.violations if f.file.endswith("a.jsonl.gz")]
    assert broken and broken[-1].code is Code.LOG_MALFORMED
    assert "cannot read past line" in broken[-1].message
    # The second file's own findings are all there (its payments may have met events in the first).
    b_codes = [(f.line, f.code) for f in report.violations if f.file.endswith("b.jsonl")]
    assert len(b_codes) >= 1
    assert {line for line, _ in b_codes} >= {f.line for f in alone.violations
                                              if f.code in (Code.LOG_MALFORMED, Code.OUT_OF_ORDER)}


def test_a_truncated_gzip_vipps_export_is_reported_at_the_line_it_breaks() -> None:
    events = (LOGS / "vipps-events-2026-01.jsonl").read_bytes()
    packed = gzip.compress(events)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.jsonl.gz"
        path.write_bytes(packed[: len(packed) - 12])
        report = run_audit([str(path)], spec=None, fmt="vipps-events")
    last = report.violations[-1]
    assert last.code is Code.LOG_MALFORMED and "cannot read past line" in last.message
    assert last.line > 1


@pytest.mark.parametrize("data", [
    b"\x1f\x8b",                      # a gzip magic and nothing else
    b"\x1f\x8bnot really gzip at all\n",
    b"\xff\xfe\x00{\x00}\x00\n",     # UTF-16 with a BOM
    b"\n\n   \n\t\n",                 # blank lines only: nothing to report
])
def test_odd_files_never_crash(data: bytes) -> None:
    report = run({"odd.jsonl": data})
    assert report.events == 0
    assert all(f.code is Code.LOG_MALFORMED for f in report.violations)
    assert (report.violations == ()) == (data.strip() == b"")


def test_a_huge_line_is_skipped_without_being_held_and_the_next_line_counts() -> None:
    huge = b'{"payment":"' + b"z" * (SMALL_MAX_LINE * 50) + b'"}'
    report = run({"h.jsonl": b"\n".join([HISTORY[0], huge, HISTORY[2]]) + b"\n"})
    assert [(f.line, f.code) for f in report.violations if f.code is Code.LOG_MALFORMED] == \
           [(2, Code.LOG_MALFORMED)]
    assert report.events == 2


def test_garbage_in_parallel_partitions_matches_one_process() -> None:
    dirty = [*HISTORY[:5], b"\x00\x01", HISTORY[5][:20], b'{"payment":"order-20260105-0002","type":"x"}',
             *HISTORY[5:]]
    data = {"g.jsonl": b"\n".join(dirty) + b"\n"}
    assert findings(run(data, workers=2)) == findings(run(data))


@pytest.mark.parametrize("pack", [lambda b: b, gzip.compress])
@pytest.mark.parametrize("ending", [b"\n", b"\r\n"])
def test_a_utf8_bom_at_the_start_of_a_file_is_ignored(pack: Any, ending: bytes) -> None:
    # Windows tools (PowerShell's Out-File, Notepad) start a UTF-8 file with EF BB BF. It used to make the
    # first line LOG_MALFORMED, so that payment's authorization was lost and its capture became
    # NOT_AUTHORIZED; RFC 8259 8.1 lets a parser ignore the mark, and the audit now does.
    plain = ending.join(HISTORY) + ending
    clean = run({"plain.jsonl": plain})
    for workers in (1, 2):
        marked = run({"bom.jsonl": pack(b"\xef\xbb\xbf" + plain)}, workers=workers)
        assert [f[1:] for f in findings(marked)] == [f[1:] for f in findings(clean)]
        assert (marked.events, marked.payments) == (clean.events, clean.payments)
    # Only at the start of the file: a BOM on a later line is garbage on that line.
    later = run({"late.jsonl": HISTORY[0] + ending + b"\xef\xbb\xbf" + HISTORY[1] + ending})
    assert [(f.line, f.code) for f in later.violations if f.code is Code.LOG_MALFORMED] == [(2, Code.LOG_MALFORMED)]


@pytest.mark.parametrize("provider", ["bambora", "hellgate", "vipps"])
def test_an_amount_beyond_int64_is_malformed_on_every_provider(provider: str) -> None:
    # orjson reads integers up to 2**64 - 1 exactly and larger ones as floats: an amount of 2**64 was
    # LOG_MALFORMED while 2**64 - 1 was audited as a fact, silently on a spec without a maximum (Bambora,
    # Hellgate: a clean authorization of 18 quintillion minor units, and every capture judged against it).
    ref = {"bambora": "T0000000042", "hellgate": "8f14e45f-ceea-4e7a-9c2b-000000000042",
           "vipps": "order-0000042"}[provider]
    currency = "EUR" if provider == "hellgate" else "NOK"

    def auth(amount: int) -> bytes:
        return orjson.dumps({"payment": ref, "type": "authorized", "at": "2026-01-01T10:00:00Z", "amount": amount,
                             "currency": currency, "provider": provider})

    for fast in (True, False):
        for amount in (2**63, 2**64 - 1):
            report = audit([auth(amount)], fast=fast)
            assert [(f.code, f.payment) for f in report.violations] == [(Code.LOG_MALFORMED, ref)]
            assert "int64" in report.violations[0].message and report.events == 0
        largest = audit([auth(2**63 - 1)], fast=fast)
        assert Code.LOG_MALFORMED not in {f.code for f in largest.violations} and largest.events == 1
