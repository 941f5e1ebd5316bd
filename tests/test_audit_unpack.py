"""A worker's packed partial (`audit_ranges.pack`) comes back equal, field by field, in both builds of the batch
builder (`_exact.new_findings`): the compiled one and its plain-Python source (CAPSTATE_NO_MYPYC=1)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from test_audit_parallel import generated_log

from capstate import _audit
from capstate._audit import _CODES, Auditor, Finding, _exact_imported, _get_pending
from capstate._builds import is_compiled, plain
from capstate._cli import audit_ranges
from capstate._cli.audit_ranges import pack, unpack
from capstate._codes import Code


def _pending(f: Finding) -> object:
    try:
        return _get_pending(f)
    except AttributeError:
        return None


def _partial() -> _audit.Partial:
    auditor = Auditor()
    auditor.feed_block(generated_log(600, seed=3), 1, "log.jsonl", 0)
    partial = auditor.partial()
    partial.findings.insert(0, Finding("p-1", 9, "log.jsonl", Code.LOG_MALFORMED, "built with its text", None))
    return partial


@pytest.mark.parametrize("build", ["imported", "plain"])
def test_unpack_gives_back_the_partial_pack_packed(build: str, monkeypatch: pytest.MonkeyPatch) -> None:
    exact: ModuleType = _exact_imported if build == "imported" else plain(_exact_imported)
    if build == "plain":
        assert not is_compiled(exact)
    monkeypatch.setattr(audit_ranges, "_exact", exact)
    sent = _partial()
    got = unpack(pack(sent))
    assert type(got.findings) is list
    assert len(got.findings) == len(sent.findings) > 50
    # Deferred messages stay deferred (neither side formats one), a text comes back as its text.
    assert [_pending(f) for f in got.findings] == [_pending(f) for f in sent.findings]
    assert sum(_pending(f) is not None for f in got.findings) > 50
    assert _pending(got.findings[0]) is None
    assert got.findings[0].message == "built with its text"
    assert all(type(f) is Finding for f in got.findings)
    assert [f.to_dict() for f in got.findings] == [f.to_dict() for f in sent.findings]
    assert got == sent


def test_the_batch_builder_refuses_a_code_it_does_not_know() -> None:
    columns: list[list[object]] = [["p"], [1], ["f"], ["NO_SUCH_CODE"], ["text"], [None], [None], [None]]
    for exact in (_exact_imported, plain(_exact_imported)):
        with pytest.raises(KeyError):
            exact.new_findings(Finding, _CODES, *columns)


def test_a_workers_partial_shifts_the_lines_of_one_file() -> None:
    """A range worker numbers its first file from its cut: the parent adds the lines before it to that
    file's findings alone, whichever object spells the file's name and in whatever order files come."""
    name = "".join(["log", ".jsonl"])  # equal to the findings' file, not the same object
    files = ["log.jsonl", "other.jsonl", "log.jsonl", "log.jsonl", "other.jsonl"]
    columns: list[list[object]] = [["p"] * 5, [1, 2, 3, 3, 4], files, ["OUT_OF_ORDER"] * 5, ["text"] * 5,
                                   [None] * 5, [None] * 5, [None] * 5]
    dangling: list[list[object]] = [[] for _ in range(9)]

    def partial(shift: int) -> Any:
        return audit_ranges._partial(audit_ranges._pickled((columns, 5, 1, (), None, dangling)), name, shift)

    shifted = partial(10)
    assert [(f.file, f.line) for f in shifted.findings] == [("log.jsonl", 11), ("other.jsonl", 2), ("log.jsonl", 13),
                                                            ("log.jsonl", 13), ("other.jsonl", 4)]
    assert [f.line for f in partial(0).findings] == [1, 2, 3, 3, 4]
    one = "log.jsonl"  # every finding of the shifted file (one object, as unpickled): the C map
    assert audit_ranges._shifted([1, 2, 3], [one] * 3, name, 10) == [11, 12, 13]
    assert audit_ranges._shifted([1, 2, 3], ["other.jsonl"] * 3, name, 10) == [1, 2, 3]
