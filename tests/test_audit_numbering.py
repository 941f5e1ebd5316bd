"""A byte-range worker numbers its lines from its cut (`audit_ranges.audit_range`): nothing counts the lines
before a range, and the parent, which has just numbered them, makes the worker's numbers one process's when
it stitches the range (findings, dangling payments, positions, the records it adopts). The report must be
one process's byte for byte: messages that quote a record's line of the worker's first file (counted there
once, on first need), cuts inside a file and at a file boundary, a file without a last newline, an empty
file, three ranges (adopted records, the settled window at the seam), and the same file given twice (whose
range still counts the lines before it)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from test_audit_stitch import by_ranges, ev, one_process, report_json, write

from capstate import _audit
from capstate._audit import _exact_imported
from capstate._builds import plain
from capstate._cli import audit_ranges
from capstate._cli.audit_ranges import ranges
from capstate._cli.audit_run import run_audit
from capstate._hotpath import hot
from capstate._hotpath import plain as plain_hot


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """(path, bytes) of every count of the lines before a point (`audit_ranges._count_lines`)."""
    calls: list[tuple[str, int]] = []
    real = audit_ranges._count_lines

    def spy(path: str, end: int, *, whole: bool) -> int:
        calls.append((path, end))
        return real(path, end, whole=whole)

    monkeypatch.setattr(audit_ranges, "_count_lines", spy)
    return calls


@pytest.fixture(params=["imported", "plain"])
def build(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The audit's hot loop and exact path as installed (compiled where built), then as plain Python."""
    if request.param == "plain":
        monkeypatch.setattr(_audit, "_default_hot", plain_hot())
        monkeypatch.setattr(audit_ranges, "_exact", plain(_exact_imported))
    yield request.param


def filler(n: int, day: int = 1) -> list[bytes]:
    return [ev(f"f{day}-{i}", "authorized", day, i % 24, amount=100 + i, currency="NOK", provider="vipps")
            for i in range(n)]


def test_a_worker_does_not_count_the_lines_before_its_range(tmp_path: Path, counted: list[tuple[str, int]]) -> None:
    lines = [*filler(12), ev("c", "authorized", 1, amount=1000, currency="NOK", provider="vipps"),
             ev("c", "captured", 2, amount=400, key="k1"), *filler(12, 2)]
    paths = write(tmp_path, [lines[:20], lines[20:]])
    single = one_process(paths)
    for cut in [(0, 13), (0, 14), (1, 0), (1, 3)]:
        counted.clear()
        assert by_ranges(paths, [cut]) == single, cut
        assert counted == [], cut


def test_a_forked_worker_does_not_count_either(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through `run_audit` and fork: the worker's counts are written down where this process reads them."""
    lines = [*filler(300), *filler(300, 2)]
    paths = write(tmp_path, [lines])
    assert ranges(paths, 2)[1][0][1] > 0  # the cut is inside the file
    seen = tmp_path / "counted"
    seen.touch()
    real = audit_ranges._count_lines

    def spy(path: str, end: int, *, whole: bool) -> int:
        with open(seen, "a") as f:
            f.write(f"{path} {end}\n")
        return real(path, end, whole=whole)

    monkeypatch.setattr(audit_ranges, "_count_lines", spy)
    assert report_json(run_audit(paths, spec=None, workers=2)) == one_process(paths)
    assert seen.read_text() == ""


def _quoting(before: int) -> list[bytes]:
    """`before` lines of other payments, then (the cut) lines whose findings quote a line after the cut."""
    return [*filler(before),
            ev("o", "authorized", 3, amount=1000, currency="NOK", provider="vipps"),
            ev("o", "captured", 4, amount=100, key="c1"),
            ev("p", "authorized", 3, amount=1000, currency="EUR", provider="bambora"),
            ev("o", "captured", 2, amount=100, key="c2"),  # earlier than o's previous event: OUT_OF_ORDER
            ev("p", "captured", 4, amount=100, provider="vipps")]  # p is Bambora's


def test_messages_that_quote_a_line_of_the_worker_s_first_file(tmp_path: Path, counted: list[tuple[str, int]],
                                                               build: str) -> None:
    lines = _quoting(10)
    paths = write(tmp_path, [lines])
    single = one_process(paths)
    assert b"(line 12); applied in file order" in single and b"under 'bambora' since line 13" in single
    counted.clear()
    assert by_ranges(paths, [(0, 10)]) == single
    # Counted once, by the worker, for the first message that needed it.
    cut = len(b"".join(line + b"\n" for line in lines[:10]))
    assert counted == [(paths[0], cut)]
    for at in range(11, len(lines)):  # o's or p's first line before the cut: only the parent quotes it
        assert by_ranges(paths, [(0, at)]) == single, at


def test_messages_in_a_later_file_that_quote_the_worker_s_first_file(tmp_path: Path, build: str) -> None:
    lines = _quoting(10)
    paths = write(tmp_path, [lines[:13], lines[13:]])
    single = one_process(paths)
    assert f"({paths[0]}:12); applied in file order".encode() in single
    assert b"under 'bambora' since line 13" in single
    for cut in [(0, 10), (0, 11), (0, 12), (1, 0), (1, 1)]:
        assert by_ranges(paths, [cut]) == single, cut


def _three_files(root: Path) -> list[str]:
    """A file without a last newline, an empty one, and a third; payments over all of them."""
    first = [*filler(4),
             ev("d", "authorized", 1, 5, amount=700, currency="EUR", provider="bambora"),  # dangles
             ev("o", "authorized", 3, amount=1000, currency="NOK", provider="vipps"),
             ev("s", "authorized", 1, 6, amount=500, currency="NOK", provider="vipps"),
             ev("s", "captured", 1, 7, amount=500, key="k1"),  # settled here
             ev("o", "captured", 4, amount=100, key="c1"),
             ev("m", "authorized", 1, 8, amount=300, currency="DKK", provider="vipps")]
    third = [ev("o", "captured", 2, amount=100, key="c2"),  # OUT_OF_ORDER: quotes the first file's line 9
             ev("s", "refunded", 2, 1, amount=100, key="r1"),  # the settled window decides what this meets
             ev("m", "captured", 2, 2, amount=200, provider="bambora"),  # m is Vipps's: since line 10
             *filler(3, 2),
             ev("s", "refunded", 2, 5, amount=500, key="r2"),
             ev("z", "authorized", 9, amount=1, currency="EUR", provider="bambora")]  # the latest instant
    paths = write(root, [first, [], third])
    Path(paths[0]).write_bytes(Path(paths[0]).read_bytes().rstrip(b"\n"))
    return paths


def _cuts(paths: Sequence[str]) -> list[tuple[int, int]]:
    """Every line start of every file, as (file, line index)."""
    return [(f, i) for f, path in enumerate(paths) for i in range(Path(path).read_bytes().count(b"\n") + 1)]


@pytest.mark.parametrize("window", [2, 3, 6, 1000])
def test_several_files_cut_anywhere_into_two_and_three_ranges(tmp_path: Path, window: int, build: str) -> None:
    paths = _three_files(tmp_path)
    single = one_process(paths, window=window)
    report = single.decode()
    assert "OUT_OF_ORDER" in report and "since line 10" in report and "DANGLING_AUTHORIZATION" in report
    cuts = _cuts(paths)
    for a in cuts:
        assert by_ranges(paths, [a], window=window) == single, a
    for i, a in enumerate(cuts):
        for b in cuts[i:]:
            assert by_ranges(paths, [a, b], window=window) == single, (a, b)


def test_the_settled_window_at_the_seam_of_three_ranges(tmp_path: Path, build: str) -> None:
    """s settles in the middle range, which the parent adopts: whether its late refund meets it or starts an
    unknown payment is the distance between their positions, one counted by the worker from its cut."""
    lines = [*filler(5),
             ev("s", "authorized", 1, 6, amount=500, currency="NOK", provider="vipps"),
             ev("s", "captured", 1, 7, amount=500, key="k1"),
             *filler(4, 2),
             ev("s", "refunded", 2, 8, amount=600, key="r1")]  # more than captured, if s is still known
    paths = write(tmp_path, [lines])
    for window in range(2, 8):
        single = one_process(paths, window=window)
        for first in range(1, 7):
            for second in range(first + 1, 11):
                assert by_ranges(paths, [(0, first), (0, second)], window=window) == single, (window, first, second)
    near, far = one_process(paths, window=5), one_process(paths, window=4)
    assert b"REFUND_EXCEEDS_CAPTURED" in near and b"REFUND_EXCEEDS_CAPTURED" not in far


def test_two_files_of_one_name_still_count(tmp_path: Path, counted: list[tuple[str, int]]) -> None:
    """A range over the end of a file and another the caller gave the same name (`run_audit`'s `names`):
    its findings' file names cannot tell which file a line is of, so that range is numbered from the
    input's start (its lines counted first), as before."""
    lines = _quoting(6)
    paths = write(tmp_path, [lines, lines])
    names = ["log.jsonl", "log.jsonl"]
    single = report_json(run_audit(paths, spec=None, names=names))
    assert single.count(b"OUT_OF_ORDER") >= 2
    def at(i: int) -> int:
        return len(b"".join(line + b"\n" for line in lines[:i]))

    # Counted up front when the range holds the end of the first file and the second (though no message
    # quotes a line of the first there), else only for a message that quotes one.
    for cut, counts in [((0, 10), [(paths[0], at(10))]), ((0, 6), [(paths[0], at(6))]), ((1, 0), []),
                        ((1, 10), []), ((1, 7), [(paths[1], at(7))])]:
        counted.clear()
        assert by_ranges(paths, [cut], names=names) == single, cut
        assert counted == counts, cut
    for cuts in ([(0, 7), (1, 2)], [(0, 3), (0, 9)], [(0, 9), (1, 4)]):
        assert by_ranges(paths, cuts, names=names) == single, cuts
    assert report_json(run_audit(paths, spec=None, names=names, workers=3)) == single


def test_the_build_is_the_one_named(build: str) -> None:
    assert _audit.Auditor()._hot is (plain_hot() if build == "plain" else hot)
