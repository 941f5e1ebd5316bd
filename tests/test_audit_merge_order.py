"""The merge's order of findings (`_audit._ordered`): (file in input order, line, code, message, payment),
equal keys in the order given, whatever order the partials bring them in. The reference is the plain
sort on the whole key; the merge takes a cheaper way to the same list."""

from __future__ import annotations

from collections import Counter

from attrs import evolve
from hypothesis import given, settings
from hypothesis import strategies as st

from capstate._audit import Finding, Index, Partial, _ordered, merge
from capstate._codes import Code

FILES = ("b.jsonl", "a.jsonl", "c.jsonl")


def reference(findings: list[Finding], files: tuple[str, ...]) -> list[Finding]:
    rank = {name: i for i, name in reversed(list(enumerate(files)))}
    return sorted(findings, key=lambda f: (rank.get(f.file, len(rank)), f.file, f.line, f.code.value, f.message,
                                           f.payment or ""))


finding = st.builds(
    Finding,
    st.one_of(st.none(), st.sampled_from(["p1", "p2", "p3"])),
    st.integers(1, 6),  # few lines: many findings share one
    st.sampled_from((*FILES, "z.jsonl")),  # z is not among the files given
    st.sampled_from([Code.EXCEEDS_CAPTURABLE, Code.LOG_MALFORMED, Code.DUPLICATE_CAPTURE, Code.NOT_AUTHORIZED]),
    st.sampled_from(["m", "n", "o"]),
    st.just(None),
    st.one_of(st.none(), st.integers(0, 3)),  # tells apart findings equal on the key
)


@settings(max_examples=400, deadline=None)
@given(st.lists(finding, max_size=40), st.integers(1, 3))
def test_ordered_is_the_sort_on_the_whole_key(findings: list[Finding], files: int) -> None:
    given_files = FILES[:files]
    want = reference(findings, given_files)
    got = _ordered(list(findings), given_files)
    assert [id(f) for f in got] == [id(f) for f in want]  # the same objects: ties keep the order given


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(finding, max_size=20), min_size=1, max_size=3))
def test_merge_orders_partials_given_in_runs(runs: list[list[Finding]]) -> None:
    # Partials bring their findings in line order, as an auditor does; merge meets runs, not a shuffle.
    parts = [Partial(sorted(run, key=lambda f: f.line), 0, 0, frozenset(), None) for run in runs]
    report = merge(parts, files=FILES)
    every = [f for p in parts for f in p.findings]
    assert [id(f) for f in report.violations] == [id(f) for f in reference(every, FILES)]
    counts: dict[str, int] = {}
    for f in every:
        counts[f.code.value] = counts.get(f.code.value, 0) + 1
    assert report.counts == dict(sorted(counts.items()))


wide_finding = st.builds(
    Finding,
    st.one_of(st.none(), st.sampled_from(["p1", "p2", "p3"])),
    st.one_of(st.integers(1, 8), st.integers(1, 2**40)),  # repeated lines, and lines far apart
    st.sampled_from((*FILES, "z.jsonl", "y.jsonl")),  # z and y are not among the files given
    st.sampled_from([Code.EXCEEDS_CAPTURABLE, Code.LOG_MALFORMED, Code.DUPLICATE_CAPTURE, Code.NOT_AUTHORIZED,
                     Code.IDEMPOTENCY_KEY_CONFLICT]),
    st.sampled_from(["m", "n", "o"]),
    st.just(None),
    st.one_of(st.none(), st.integers(0, 3)),
)


@st.composite
def partial_findings(draw: st.DrawFn) -> list[Finding]:
    """One partial's findings as an auditor brings them: a run in (file, line) order over its own files and
    lines, then an out-of-order tail (lines fed after its range, findings judged at the end), with
    lines repeated within and across the two."""
    run = draw(st.lists(wide_finding, max_size=30))
    run.sort(key=lambda f: (f.file, f.line))
    tail = draw(st.lists(wide_finding, max_size=8))
    if draw(st.booleans()):
        tail.sort(key=lambda f: f.line)
    return run + tail


@settings(max_examples=300, deadline=None)
@given(st.lists(partial_findings(), min_size=1, max_size=4), st.integers(0, 3))
def test_merge_of_partials_with_out_of_order_tails_is_the_plain_sort(runs: list[list[Finding]], files: int) -> None:
    given_files = FILES[:files]
    parts = [Partial(run, 0, 0, frozenset(), None) for run in runs]
    every = [f for run in runs for f in run]
    want = reference(every, given_files)
    report = merge(parts, files=given_files)
    assert [id(f) for f in report.violations] == [id(f) for f in want]
    assert [id(f) for f in _ordered(list(every), given_files)] == [id(f) for f in want]
    counts: dict[str, int] = {}
    for f in every:
        counts[f.code.value] = counts.get(f.code.value, 0) + 1
    assert report.counts == dict(sorted(counts.items()))
    assert list(report.counts) == sorted(report.counts)


@settings(max_examples=300, deadline=None)
@given(st.lists(partial_findings(), min_size=1, max_size=4), st.integers(0, 3), st.data())
def test_merge_with_indexed_partials_is_the_plain_sort(runs: list[list[Finding]], files: int,
                                                        data: st.DataObject) -> None:
    """Partials that bring their lines and counts (`Index`, as audits by ranges do): where every partial
    with findings has one and all are of one file, the merge takes them instead of reading the findings;
    the order and the counts must be those of the plain sort all the same (a count of 0, which a stitch
    leaves, is not reported)."""
    given_files = FILES[:files]
    one_file = data.draw(st.booleans())
    if one_file:  # the usual case, where the index is taken
        name = data.draw(st.sampled_from((*FILES, "z.jsonl")))
        runs = [[evolve(f, file=name) for f in run] for run in runs]
    parts = []
    for run in runs:
        files_of = {f.file for f in run}
        index = None
        if len(files_of) <= 1 and data.draw(st.booleans() if not one_file else st.just(True)):
            counts = Counter(f.code for f in run)
            if data.draw(st.booleans()):
                counts[Code.DUPLICATE_CAPTURE] += 0  # counted down to 0 by a stitch
            index = Index(next(iter(files_of), ""), [f.line for f in run], counts)
        parts.append(Partial(run, 0, 0, frozenset(), None, index=index))
    every = [f for run in runs for f in run]
    want = reference(every, given_files)
    report = merge(parts, files=given_files)
    assert [id(f) for f in report.violations] == [id(f) for f in want]
    assert report.counts == dict(sorted(Counter(f.code.value for f in every).items()))
    for p, run in zip(parts, runs, strict=True):  # the merge leaves the partials' indexes as they were
        assert p.index is None or p.index.lines == [f.line for f in run]
