"""Payments that cross a cut between byte ranges (capstate._cli.audit_ranges): each range is audited from an
empty state and the parent continues the crossing payments, so the report must equal one process's byte
for byte whatever falls on either side: a payment open across the cut, settled just before it and
breached after, forgotten past the settled window and back, a provider that disagrees, an event out of
order, garbage beside the cut, a cut in another file, and payments over three or four ranges.

Most cases run the stitch in this process at cut points the test chooses (`by_ranges`, the same
`audit_plan` the CLI runs, its workers called in line); a few go through `--workers` and fork."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_audit_ranges import _TRICKY

from capstate._audit import merge
from capstate._cli import audit_run
from capstate._cli.audit_ranges import audit_plan, audit_range, between, ranges
from capstate._cli.audit_run import DEFAULT_SETTLED_WINDOW, Job, run_audit

DAY = "2026-01-0{}T{:02d}:00:00Z"


def ev(payment: str, kind: str, day: int, hour: int = 0, **fields: Any) -> bytes:
    return orjson.dumps({"payment": payment, "type": kind, "at": DAY.format(day, hour), **fields})


def write(root: Path, files: Sequence[Sequence[bytes]]) -> list[str]:
    paths = []
    for k, lines in enumerate(files):
        path = root / f"part-{k}.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        paths.append(str(path))
    return paths


def report_json(report: Any) -> bytes:
    return orjson.dumps({**report.to_dict(), "as_of": report.as_of, "providers": report.providers})


def one_process(paths: list[str], *, spec: str | None = None, window: int = DEFAULT_SETTLED_WINDOW) -> bytes:
    return report_json(run_audit(paths, spec=spec, settled_window=window))


def by_ranges(paths: list[str], cuts: Sequence[tuple[int, int]], *, spec: str | None = None,
              window: int = DEFAULT_SETTLED_WINDOW, max_open: int = 0, names: Sequence[str] | None = None) -> bytes:
    """The report of an audit by ranges cut before the given lines ((file, line index) each), run in this
    process: range 0 here, each other range's worker when its result is asked for. `names`: what the
    findings call the files (default: their paths)."""
    from capstate._audit import resolve_spec

    sizes = []
    points = [(0, 0)]
    starts: list[list[int]] = []
    for path in paths:
        data = Path(path).read_bytes()
        sizes.append(len(data))
        offsets = [0]
        for line in data.split(b"\n")[:-1]:
            offsets.append(offsets[-1] + len(line) + 1)
        starts.append(offsets)
    for f, line in sorted(cuts):
        points.append(max(points[-1], (f, starts[f][min(line, len(starts[f]) - 1)])))
    points.append((len(paths) - 1, sizes[-1]))
    plan = between(sizes, points)
    named = tuple(names or paths)
    job = Job(tuple(paths), named, resolve_spec(spec), None, "canonical", window, True, max_open)
    partials = audit_plan(job, plan, lambda k, pieces, last: lambda: audit_range(job, pieces, last=last))
    return report_json(merge(partials, files=named, provider=spec))


def test_a_payment_open_across_the_cut_is_judged_on_its_whole_history(tmp_path: Path) -> None:
    lines = [ev("a", "authorized", 1, amount=1000, currency="NOK", provider="vipps"),
             ev("b", "authorized", 1, 1, amount=500, currency="EUR", provider="bambora"),
             ev("c", "authorized", 1, 1, amount=500, currency="EUR", provider="bambora"),
             # cut
             ev("a", "captured", 2, amount=600, key="c1"),
             ev("a", "captured", 2, 1, amount=600, key="c2"),  # over the authorization: EXCEEDS_CAPTURABLE
             ev("c", "captured", 2, 1, amount=200),
             ev("a", "captured", 2, 2, amount=600, key="c1"),  # the key again
             ev("z", "authorized", 9, amount=1, currency="NOK", provider="vipps")]  # past Bambora's 7 days
    paths = write(tmp_path, [lines])
    single = one_process(paths)
    report = orjson.loads(single)
    assert b"EXCEEDS_CAPTURABLE" in single and b"NOT_AUTHORIZED" not in single
    assert ("b", 500) in {(v["payment"], v["amount"]) for v in report["violations"]
                          if v["code"] == "DANGLING_AUTHORIZATION"}
    for cut in range(1, len(lines)):
        assert by_ranges(paths, [(0, cut)]) == single, cut


def test_settled_just_before_the_cut_and_breached_after_it(tmp_path: Path) -> None:
    lines = [ev("s", "authorized", 1, amount=1000, currency="NOK", provider="vipps"),
             ev("s", "captured", 1, 1, amount=1000, key="c1"),
             ev("s", "refunded", 1, 2, amount=400, key="r1"),
             # cut: s is settled-or-refundable; a refund past what was captured comes after
             ev("s", "refunded", 2, amount=700, key="r2"),
             ev("s", "captured", 2, 1, amount=10, key="c9")]
    paths = write(tmp_path, [lines])
    single = one_process(paths)
    assert b"REFUND_EXCEEDS_CAPTURED" in single
    assert by_ranges(paths, [(0, 3)]) == single


@pytest.mark.parametrize("window", [0, 1, 2, 3, 5])
def test_a_payment_forgotten_past_a_small_window_comes_back_as_new(tmp_path: Path, window: int) -> None:
    """Whether a late event meets the settled payment or starts an unknown one depends on its distance to
    the payment's latest event, measured across the cut."""
    filler = [ev(f"f{i}", "authorized", 1, 3, amount=100, currency="NOK", provider="vipps") for i in range(4)]
    lines = [ev("s", "authorized", 1, amount=1000, currency="NOK", provider="vipps"),
             ev("s", "captured", 1, 1, amount=1000, key="c1"),
             ev("s", "refunded", 1, 2, amount=1000, key="r1"),
             filler[0], filler[1],
             # cut
             filler[2],
             ev("s", "refunded", 2, amount=5, key="r2"),
             filler[3],
             ev("s", "captured", 2, 1, amount=5, key="c2")]
    paths = write(tmp_path, [lines])
    single = one_process(paths, window=window)
    for cut in range(1, len(lines)):
        assert by_ranges(paths, [(0, cut)], window=window) == single, cut


@pytest.mark.parametrize("window", [1, 4, DEFAULT_SETTLED_WINDOW])
def test_a_crossing_payment_the_worker_settled_and_forgot(tmp_path: Path, window: int) -> None:
    """Range 1 alone takes x's second authorization for its first and settles it; settles by other
    payments then reclaim x past the window, so only the worker's note of what it forgot says x crossed."""
    lines = [ev("x", "authorized", 1, amount=1000, currency="EUR", provider="bambora"),
             # cut
             ev("x", "authorized", 1, 1, amount=1000, currency="EUR", provider="bambora"),
             ev("x", "captured", 1, 2, amount=1000)]
    for i in range(8):
        lines += [ev(f"y{i}", "authorized", 2, i, amount=10, currency="EUR", provider="bambora"),
                  ev(f"y{i}", "cancelled", 2, i)]
    lines.append(ev("z", "authorized", 9, amount=10, currency="EUR", provider="bambora"))
    paths = write(tmp_path, [lines])
    single = one_process(paths, window=window)
    assert by_ranges(paths, [(0, 1)], window=window) == single


def test_a_crossing_payment_authorized_again_after_the_cut_dangles_once(tmp_path: Path) -> None:
    """Range 1 alone holds y authorized (its second authorization taken for the first): only the parent's
    record of y may report the remainder held past Bambora's 7 days."""
    lines = [ev("y", "authorized", 1, amount=1000, currency="EUR", provider="bambora"),
             # cut
             ev("y", "authorized", 1, 1, amount=1000, currency="EUR", provider="bambora"),
             ev("z", "authorized", 9, amount=10, currency="NOK", provider="vipps")]
    paths = write(tmp_path, [lines])
    single = one_process(paths)
    assert single.count(b"DANGLING_AUTHORIZATION") == 2  # the finding and its count
    assert by_ranges(paths, [(0, 1)]) == single


def test_a_provider_that_disagrees_across_the_cut(tmp_path: Path) -> None:
    """Range 1 alone would start the payment under the provider its line names (adding that provider, and
    the line's instant as the latest); one process refuses the line, as the payment is another's."""
    lines = [ev("p", "authorized", 1, amount=1000, currency="EUR", provider="bambora"),
             ev("q", "authorized", 1, 1, amount=1000, currency="EUR", provider="bambora"),
             # cut
             ev("p", "captured", 9, 23, amount=100, provider="pipwave"),  # the log's latest instant
             ev("p", "captured", 2, amount=100, provider="hellgate"),
             ev("q", "captured", 2, 1, amount=100)]
    paths = write(tmp_path, [lines])
    single = one_process(paths)
    report = orjson.loads(single)
    assert report["providers"] == ["bambora"] and not report["as_of"].startswith("2026-01-09")
    assert by_ranges(paths, [(0, 2)]) == single
    assert by_ranges(paths, [(0, 2)], spec="bambora") == one_process(paths, spec="bambora")


def test_an_unknown_provider_and_an_event_out_of_order_across_the_cut(tmp_path: Path) -> None:
    lines = [ev("o", "authorized", 3, amount=1000, currency="NOK", provider="vipps"),
             ev("o", "captured", 4, amount=100, key="c1"),
             # cut
             ev("o", "captured", 2, amount=100, key="c2"),  # earlier than line 2: OUT_OF_ORDER
             ev("o", "captured", 5, amount=100, key="c3", provider="nope"),
             ev("n", "captured", 5, amount=100, key="c3", provider="nope")]
    paths = write(tmp_path, [lines])
    single = one_process(paths)
    assert b"OUT_OF_ORDER" in single
    assert by_ranges(paths, [(0, 2)]) == single


def test_garbage_beside_the_cut(tmp_path: Path) -> None:
    lines = [ev("g", "authorized", 1, amount=1000, currency="NOK", provider="vipps"),
             b'{"payment":"g","type":"captured","at":"2026-01-01T05:00:00Z","amount":"12.50"}',
             b"\x00\xff not json",
             # cut
             b'{"payment":"g","type":"captured","at":"2026-01-0',
             b'{"payment":"g","type":"settled","at":"2026-01-02T00:00:00Z"}',
             ev("g", "captured", 2, amount=1000, key="c1"),
             b'{"payment":"g","type":"captured","at":"2026-01-02T05:00:00Z","amount":99999999999999999999}',
             b'{"payment":"g\\u0041","type":"captured","at":"2026-01-02T05:00:00Z","amount":5}',
             *_TRICKY]
    paths = write(tmp_path, [lines])
    single = one_process(paths)
    for cut in range(1, len(lines)):
        assert by_ranges(paths, [(0, cut)]) == single, cut


def test_a_cut_in_the_second_file_and_a_payment_over_both_files(tmp_path: Path) -> None:
    first = [ev("m", "authorized", 1, amount=1000, currency="DKK", provider="vipps"),
             ev("k", "authorized", 1, amount=1000, currency="DKK", provider="vipps")]
    second = [ev("k", "captured", 2, amount=300, key="c1"),
              ev("m", "captured", 2, amount=2000, key="c1"),
              ev("m", "cancelled", 3, key="x1"),
              ev("k", "captured", 3, amount=900, key="c2")]
    paths = write(tmp_path, [first, [], second])
    single = one_process(paths)
    for cuts in ([(0, 1)], [(2, 1)], [(2, 2)], [(0, 1), (2, 2)], [(1, 0), (2, 3)], [(0, 1), (2, 1), (2, 3)]):
        assert by_ranges(paths, cuts) == single, cuts


@pytest.mark.parametrize("parts", [2, 3, 4])
def test_payments_over_several_ranges(tmp_path: Path, parts: int) -> None:
    """Every event of `w` and `v` falls in another range: each stitch continues from the state the one
    before left, records the other workers started included."""
    lines = []
    for i in range(12):
        lines.append(ev("w", "captured" if i else "authorized", 1 + i // 6, i % 6, amount=100 + i,
                        currency="NOK" if not i else None, key=f"c{i}", provider="vipps"))
        lines.append(ev(f"v{i % 3}", "authorized" if i < 3 else "refunded" if i > 8 else "captured", 1 + i // 6,
                        i % 6, amount=50, currency="EUR", provider="bambora"))
    lines = [line.replace(b',"currency":null', b"") for line in lines]
    paths = write(tmp_path, [lines])
    single = one_process(paths)
    rnd = random.Random(parts)
    for _ in range(15):
        cuts = [(0, rnd.randrange(len(lines) + 1)) for _ in range(parts - 1)]
        assert by_ranges(paths, cuts) == single, cuts
        assert by_ranges(paths, cuts, window=3) == one_process(paths, window=3), cuts


_IDS = ["a", "b", "c", "d", "e\u00e6"]
_KINDS = ["authorized", "authorized", "captured", "captured", "capture_requested", "capture_failed", "cancelled",
          "refunded", "expired"]


@st.composite
def event_lines(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from(_TRICKY))
    obj: dict[str, Any] = {"payment": draw(st.sampled_from(_IDS)), "type": draw(st.sampled_from(_KINDS)),
                           "at": DAY.format(draw(st.integers(1, 9)), draw(st.integers(0, 23)))}
    if draw(st.booleans()):
        obj["amount"] = draw(st.sampled_from([1, 100, 500, 1000, 2000]))
    if draw(st.integers(0, 2)):
        obj["currency"] = draw(st.sampled_from(["NOK", "EUR", "DKK"]))
    if draw(st.integers(0, 3)):
        obj["provider"] = draw(st.sampled_from(["vipps", "vipps", "bambora", "hellgate", "nope"]))
    if draw(st.booleans()):
        obj["key"] = draw(st.sampled_from(["k1", "k2", "k3"]))
    line = orjson.dumps(obj)
    layout = draw(st.integers(0, 9))
    if layout == 0:  # the id escaped: only parsing the line gives its payment
        first = obj["payment"][0]
        return line.replace(b'"payment":"' + first.encode(), b'"payment":"\\u00' + f"{ord(first):02x}".encode(), 1)
    if layout == 1:  # the key twice: the last one is the payment
        return b'{"payment":"zz",' + line[1:]
    if layout == 2:
        return line.replace(b'":', b'": ')
    return line


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(event_lines(), min_size=1, max_size=40), st.lists(st.integers(0, 40), min_size=1, max_size=3),
       st.integers(1, 3), st.sampled_from([0, 1, 2, 4, 8, DEFAULT_SETTLED_WINDOW]),
       st.sampled_from([None, None, "vipps"]), st.sampled_from([0, 1, 3]))
def test_random_logs_at_random_cuts_equal_one_process(  # noqa: PLR0917 - hypothesis draws
        tmp_path_factory: pytest.TempPathFactory, lines: list[bytes], cut_lines: list[int], files: int,
        window: int, spec: str | None, max_open: int) -> None:
    """A few payments, every event type and provider (one unknown), garbage, events out of order, one to
    three files, two to four ranges cut anywhere, small windows and a memory bound of a few payments."""
    root = tmp_path_factory.mktemp("stitch")
    split = [lines[k * len(lines) // files:(k + 1) * len(lines) // files] for k in range(files)]
    paths = write(root, split)
    offsets = []
    for f, part in enumerate(split):
        offsets += [(f, i) for i in range(len(part))]
    offsets.append((files - 1, len(split[-1])))
    cuts = [offsets[min(c, len(offsets) - 1)] for c in cut_lines]
    single = one_process(paths, spec=spec, window=window)
    assert by_ranges(paths, cuts, spec=spec, window=window, max_open=max_open) == single


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_forked_workers_on_payments_that_cross_every_cut(tmp_path: Path, workers: int) -> None:
    """Through `--workers` and fork: long-lived payments over the whole log, a small window."""
    rnd = random.Random(workers)
    lines = [ev(f"L{i}", "authorized", 1, amount=10_000, currency="NOK", provider="vipps") for i in range(30)]
    for i in range(600):
        ref = f"L{rnd.randrange(30)}" if rnd.random() < 0.3 else f"S{i}"
        kind = "captured" if ref.startswith("L") else "authorized"
        lines.append(ev(ref, kind, 2 + i // 200, i % 24, amount=rnd.choice([100, 900]), currency="NOK",
                        key=f"k{rnd.randrange(40)}", provider=rnd.choice(["vipps", "vipps", "bambora"])))
    paths = write(tmp_path, [lines[:350], lines[350:]])
    for window in (DEFAULT_SETTLED_WINDOW, 40):
        single = one_process(paths, window=window)
        assert report_json(run_audit(paths, spec=None, workers=workers, settled_window=window)) == single
        plan = ranges(paths, workers)
        assert len(plan) == workers and all(plan)


def test_the_bench_log_s_cut_is_stitched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench's generator interleaves ~64 payments at a time: each cut falls inside such a window."""
    from capstate import bench

    log = bench.write_log(str(tmp_path), payments=600, seed=3)
    single = one_process([log.path])
    monkeypatch.setattr(audit_run, "_BLOCK", 4096)
    for workers in (2, 3):
        assert report_json(run_audit([log.path], spec=None, workers=workers)) == single


def test_a_file_that_changes_while_it_is_audited_is_refused(tmp_path: Path) -> None:
    """Each range is read by its worker and again by the stitch: a file appended to in between would be
    stitched from other bytes than its worker judged, so the audit stops instead of reporting."""
    from capstate._audit import resolve_spec
    from capstate._cli.options import UsageError

    lines = [ev(f"p{i}", "authorized", 1, amount=1000, currency="NOK") for i in range(8)]
    paths = write(tmp_path, [lines])
    plan = ranges(paths, 2)
    job = Job(tuple(paths), ("live.jsonl",), resolve_spec("vipps"), None, "canonical", DEFAULT_SETTLED_WINDOW,
              True, 0)

    def start(k: int, pieces: Any, last: bool) -> Any:
        result = audit_range(job, pieces, last=last)
        with open(paths[0], "ab") as f:  # the export grows while the audit runs
            f.write(ev("late", "authorized", 2, amount=1000, currency="NOK") + b"\n")
        return lambda: result

    with pytest.raises(UsageError, match=r"live\.jsonl changed while it was audited"):
        audit_plan(job, plan, start)
    # Unchanged, the same plan audits.
    (tmp_path / "again").mkdir()
    paths2 = write(tmp_path / "again", [lines])
    job2 = Job(tuple(paths2), ("live.jsonl",), resolve_spec("vipps"), None, "canonical",
               DEFAULT_SETTLED_WINDOW, True, 0)
    assert len(audit_plan(job2, ranges(paths2, 2), lambda k, p, last: lambda: audit_range(job2, p, last=last))) == 2


def test_crossing_ids_and_their_last_position_match_with_or_without_a_shared_hash() -> None:
    from array import array

    from capstate._cli.audit_ranges import _crossing, _held

    held = [f"p{k}" for k in range(50)]
    marks = array("q")
    for ref, pos in [("p3", 10), ("zz", 99), ("p7", 40), ("p3", 25), ("p49", 30), ("other", 7)]:
        marks.extend((hash(ref), pos))
    assert _crossing(_held(held), marks) == ({"p3", "p7", "p49"}, 40)
    # A held id twice stands for two held ids of one hash: the other way must give the same answer.
    assert _crossing(_held([*held, "p3"]), marks) == ({"p3", "p7", "p49"}, 40)
    assert _crossing(_held(held), array("q", [hash("nope"), 5])) == (set(), 0)
    assert _crossing(_held([]), marks) == (set(), 0)
    # Two distinct ids of one hash (as `_held` gives them, forced here): both cross, not the one the
    # hash's entry keeps.
    assert _crossing((["q1", "q2"], [5, 5], {5: "q2"}), array("q", [5, 12])) == ({"q1", "q2"}, 12)


@pytest.mark.parametrize("hits", [1, 3, 64, 65, 300])
def test_the_last_position_noted_for_the_hits_is_read_past_marks_that_only_share_their_first_bytes(
        hits: int) -> None:
    from array import array

    from capstate._cli.audit_ranges import _last_noted

    wanted = {(k * 0x9E3779B97F4A7C15) % (1 << 63) - (1 << 62) for k in range(1, hits + 1)}
    marks = array("q")
    expect = 0
    for pos, h in enumerate(sorted(wanted), start=1):
        marks.extend((h, pos))
        expect = pos
        # The same low four bytes (the first in memory on a little-endian machine), another hash: a mark
        # that passes the byte tables and is no hit.
        marks.extend((h ^ (1 << 35) ^ (1 << 60), 10_000 + pos))
    marks.extend((12345, 99_999))
    assert _last_noted(marks, wanted) == expect
    assert _last_noted(marks, {12345}) == 99_999
    assert _last_noted(marks, {h ^ (1 << 35) ^ (1 << 60) for h in wanted}) == 10_000 + hits
