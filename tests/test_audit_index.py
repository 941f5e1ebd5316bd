"""The merge's `Index` on real audits by ranges (capstate._cli.audit_ranges): the lines and counts a range
worker's columns give, and those the parent reads of its own findings before it waits for a worker, must
be what reading the merged partials' findings gives, after the stitch drops the worker's findings on the
crossing payments' lines; and the report must be the one without any index (and one process's)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from attrs import evolve

from capstate._audit import Partial, merge
from capstate._cli import audit_ranges
from capstate._cli.audit_ranges import audit_plan, audit_range, ranges
from capstate._cli.audit_run import DEFAULT_SETTLED_WINDOW, Job, run_audit
from capstate.bench import write_log


def _report(report: Any) -> bytes:
    return orjson.dumps({**report.to_dict(), "as_of": report.as_of, "providers": report.providers})


def _check_index(p: Partial) -> None:
    index = p.index
    assert index is not None
    assert index.lines == [f.line for f in p.findings]
    assert {f.file for f in p.findings} <= {index.file}
    assert +index.counts == Counter(f.code for f in p.findings)  # `+` drops the codes counted down to 0


@pytest.mark.parametrize("parts", [2, 3, 4])
def test_the_index_of_each_partial_is_its_findings_after_the_stitch(tmp_path: Path, parts: int,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    log = write_log(str(tmp_path), payments=1500, seed=7)
    paths = (str(log.path),)
    job = Job(paths, paths, None, None, "canonical", DEFAULT_SETTLED_WINDOW, True, 0)
    dropped = []
    without = audit_ranges._without_crossing

    def watched(*args: Any) -> Partial:
        out = without(*args)
        dropped.append(len(args[4].findings) - len(out.findings))
        return out

    monkeypatch.setattr(audit_ranges, "_without_crossing", watched)
    plan = ranges(list(paths), parts, lead=0.0)
    partials = audit_plan(job, plan, lambda k, pieces, last: lambda: audit_range(job, pieces, last=last))
    assert len(dropped) == parts - 1 and all(n > 0 for n in dropped)  # crossing findings were taken out
    for p in partials:
        _check_index(p)
    got = _report(merge(partials, files=paths))
    assert got == _report(merge([evolve(p, index=None) for p in partials], files=paths))
    assert got == _report(run_audit(list(paths), spec=None))
