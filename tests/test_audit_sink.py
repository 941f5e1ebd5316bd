"""A range worker collects its findings straight into the columns it sends (`Auditor(columns=True)`,
`_exact.Columns`) instead of building Findings and packing them (`audit_ranges._packed`): the columns
must be what packing an ordinary auditor's findings gives, field by field (the message's text or deferred
state included), in both builds of the exact path (compiled and its plain source) and both modes."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_audit_fastpath import BUILDS, logs, plausible_logs
from test_audit_parallel import generated_log
from test_audit_ranges import _TRICKY

from capstate._audit import Auditor, _exact_for, resolve_spec
from capstate._builds import is_compiled
from capstate._cli import audit_ranges
from capstate._cli.audit_run import Job

_FIELDS = ("payment", "line", "file", "code", "message", "at", "amount", "currency")


def _fed(lines: list[Any], *, columns: bool, build: str, fast: bool, block: bool) -> Auditor:
    auditor = Auditor(None, fast=fast, hot=BUILDS[build], columns=columns)
    if block:
        auditor.feed_block(b"\n".join(lines), 0, "x.jsonl", 0)
    else:
        for number, item in enumerate(lines, start=1):
            auditor.feed(item, number, "x.jsonl")
    return auditor


def _same_columns(lines: list[Any], *, build: str, fast: bool, block: bool = False) -> list[list[Any]]:
    """Assert the sink's packed partial equals the ordinary one's, field by field; return its columns."""
    ordinary = _fed(lines, columns=False, build=build, fast=fast, block=block)
    sink = _fed(lines, columns=True, build=build, fast=fast, block=block)
    assert ordinary.columns() is None
    expected = audit_ranges._packed(ordinary.partial())
    columns = sink.columns()
    assert columns is not None
    got = audit_ranges._packed(sink.partial(), columns)
    assert sink.partial().findings == []  # the sink took every finding
    for name, want, have in zip(_FIELDS, expected[0], got[0], strict=True):
        assert type(have) is list
        assert have == want, name
        assert list(map(type, have)) == list(map(type, want)), name
    assert got[1:] == expected[1:]  # events, payments, providers, latest, dangling
    # The same objects shared the same way (a rule's text, a whole state with no amount): the same pickle.
    # Against an auditor fed after the sink: the first auditor of a process fills the caches of strings
    # the later ones share (so its pickle can differ in its memo alone).
    after = audit_ranges._packed(_fed(lines, columns=False, build=build, fast=fast, block=block).partial())
    assert pickle.dumps(got, pickle.HIGHEST_PROTOCOL) == pickle.dumps(after, pickle.HIGHEST_PROTOCOL)
    return got[0]


def _tricky_log(seed: int) -> list[bytes]:
    """A generated log with garbage, an out-of-order event, and Bambora lapses the log records."""
    lines = [line for line in generated_log(300, seed=seed).split(b"\n") if line and len(line) < 4096]
    rnd = random.Random(seed)
    for extra in _TRICKY:
        lines.insert(rnd.randrange(1, len(lines)), extra)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def at(delta: timedelta) -> str:
        return (t0 + delta).strftime("%Y-%m-%dT%H:%M:%SZ")

    for i in range(3):
        common = {"provider": "bambora", "at": at(timedelta(days=50))}
        lapsed, late = f"order-8{i:05d}", f"order-9{i:05d}"
        lines += [orjson.dumps({"payment": lapsed, "type": "authorized", "amount": 1000, "currency": "DKK", **common}),
                  orjson.dumps({"payment": late, "type": "authorized", "amount": 1000, "currency": "DKK", **common}),
                  orjson.dumps({"payment": lapsed, "type": "expired", "provider": "bambora",
                                "at": at(timedelta(days=50 + 7 * i))}),
                  orjson.dumps({"payment": late, "type": "captured", "amount": 400, "provider": "bambora",
                                "at": at(timedelta(days=49))}),
                  # No amount: the breach's whole state is shared (`_exact._STATES`).
                  orjson.dumps({"payment": late, "type": "expired", "provider": "bambora",
                                "at": at(timedelta(days=51))}),
                  # After the lapse, in another currency
                  orjson.dumps({"payment": lapsed, "type": "captured", "amount": 1, "currency": "EUR",
                                "provider": "bambora", "at": at(timedelta(days=50))})]
    # Malformed: not JSON, and a provider's name long enough that the message is clipped.
    lines += [b"x" * 300, orjson.dumps({"payment": "order-7", "type": "authorized", "provider": "p" * 400,
                                        "at": at(timedelta(days=1)), "amount": 5, "currency": "NOK"})]
    return lines


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("seed", [1, 2])
def test_the_sink_gives_the_columns_packing_gives(build: str, fast: bool, seed: int) -> None:
    exact = _exact_for(BUILDS[build])
    assert is_compiled(exact) == (build == "installed" and is_compiled(BUILDS["installed"]))
    columns = _same_columns(_tricky_log(seed), build=build, fast=fast, block=True)
    codes, messages = columns[3], columns[4]
    # The log holds every kind of finding the sink takes: a rule's breach (deferred, from its text or its
    # own deferred state), a malformed line, an event out of order, a lapse the log records.
    for code in ("LOG_MALFORMED", "OUT_OF_ORDER", "DANGLING_AUTHORIZATION", "EXCEEDS_CAPTURABLE", "INVALID_STATE"):
        assert code in codes, code
    kinds = {(code, type(m) is str) for code, m in zip(codes, messages, strict=True)}
    assert {("LOG_MALFORMED", True), ("OUT_OF_ORDER", True), ("DANGLING_AUTHORIZATION", True),
            ("EXCEEDS_CAPTURABLE", False)} <= kinds
    deferred = [m for m in messages if type(m) is not str]
    assert any(m[0].__name__ == "_said" for m in deferred)
    assert any(m[0].__name__ == "_said_later" for m in deferred)
    # A breach with no amount shares its rule's whole state with every other (`_exact._STATES`), sink or not.
    shared = [m for m in deferred if m[0].__name__ == "_said" and m[2] is None]
    assert shared
    if len(exact._STATES) < exact._MAX_TEXTS:
        assert all(m is exact._STATES[m[1], m[3]] for m in shared)


@settings(max_examples=60, deadline=None)
@given(st.one_of(logs(), plausible_logs()), st.sampled_from(sorted(BUILDS)), st.booleans())
def test_the_sink_gives_the_columns_packing_gives_on_random_logs(lines: list[Any], build: str, fast: bool) -> None:
    _same_columns(lines, build=build, fast=fast)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.integers(0, 2**32), st.integers(2, 3))
def test_a_range_worker_sends_what_an_ordinary_auditor_packs(tmp_path: Path, seed: int, parts: int) -> None:
    """`audit_range` (the sink) against an ordinary auditor fed the same range the same way."""
    log = tmp_path / f"log-{seed}.jsonl"
    log.write_bytes(b"\n".join(_tricky_log(seed % 7)) + b"\n")
    job = Job((str(log),), (str(log),), resolve_spec(None, None), None, "canonical")
    for pieces in audit_ranges.ranges([str(log)], parts)[1:]:
        sent = audit_ranges._unpickled(pickle.loads(audit_ranges.audit_range(job, pieces, last=True))[0])
        ordinary = audit_ranges.new_auditor(job)
        # Numbered as the worker numbers a range (from its cut; the stitch adds the lines before it).
        f, start, _ = pieces[0]
        if start:
            ordinary.number_from_cut(audit_ranges._Before(job.names[f], job.paths[f], start))
        audit_ranges.audit_pieces(ordinary, job, pieces, 0, 0)
        assert sent == audit_ranges._packed(ordinary.partial())
        assert len(sent[0][0]) > 10
