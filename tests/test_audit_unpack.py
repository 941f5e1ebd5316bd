"""A worker's packed partial (`audit_ranges.pack`) comes back equal, field by field, in both builds of the batch
builder (`_exact.new_findings`): the compiled one and its plain-Python source (CAPSTATE_NO_MYPYC=1)."""

from __future__ import annotations

from types import ModuleType

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
