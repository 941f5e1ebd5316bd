"""Parallel audits of plain canonical files by byte ranges (`--workers N`): each worker audits its own
range whole, and the parent continues the payments that cross a cut.

An audit's state is per payment: a line's findings depend only on its payment's record (and whether a
settled one is still within the settled window, by position), plus totals that add up (events,
payments, the latest instant, the providers seen). So:

1. The input (the files one after another) is cut into N ranges of about equal bytes, each cut just
   after a line end (`ranges`). Worker k audits range k alone, from an empty state, numbering
   its lines and positions from its cut (`audit_range`); the parent, which knows the lines before the
   cut when it stitches the range, makes them the numbers one process gives those lines. The parent
   process is worker 0; the others are forked.
2. A worker notes where each payment it held was last seen: (hash of its id, position) for every record
   held at the end, every settled one reclaimed past the window (`Auditor.track_forgotten`), and every
   LOG_MALFORMED line that names a payment (a line refused for its provider depends on the record it
   met). Only lines of those payments can depend on the state before the range.
3. Stitching range k (in the parent, after its own range): the crossing payments are the ids the parent
   holds (live, settled, spilled) whose hash the worker noted. The parent re-reads range k from its start
   up to the last position noted for them, takes the lines of those ids (`line_ids`, the id rule of the
   other partitioning), and feeds them to its own auditor, which goes on from its state exactly as one
   process would. The worker's view of those lines is taken out of its partial: its findings on them
   are dropped (by file and line), and its events and payments counts lose what a fresh auditor fed the
   same lines counts (records are independent, so that is the worker's own view of them); its dangling
   payments lose the crossing ids (the parent's records report those). The latest instant and the set
   of providers cannot be subtracted; when the worker's could have come from a crossing line only (a
   line the parent then refused for its provider), the worker's range is audited again without the
   crossing lines (`_without`), which is exact and, outside such logs, never needed.
4. With more ranges, the parent adopts each worker's records (`Auditor.export`/`adopt`, but those of
   the crossing ids) before stitching the next range, so that it holds the state one process has at the
   next cut. The last range's records are not needed: its partial's dangling payments serve.

A hash collision only makes a payment crossing that is not, which re-audits its lines exactly. Python's
str hash is the same in forked workers. The workers' partials come back through a file, packed as
columns (`pack`), never as a graph of objects. gzip (no byte ranges) and the Vipps export keep the
every-worker-reads-all partitioning in `audit_run`; stdin is spooled to a file first. Measured:
docs/performance.md ("Workers").
"""

from __future__ import annotations

import os
import pickle
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from itertools import chain, compress, count, pairwise, repeat
from operator import add
from typing import Any

from attrs import evolve

from .._audit import _CODES, Auditor, Dangling, Finding, Index, Partial, _exact, index_of, message_state
from .._bom import strip_bom
from .._codes import Code
from .options import UsageError

_VALUE_OF: dict[Code, str] = {c: c.value for c in Code}
_MALFORMED = _VALUE_OF[Code.LOG_MALFORMED]
_COUNT_BLOCK = 1 << 20
Piece = tuple[int, int, int]
"""Part of a range in one file: (file index, start, end), in bytes."""


class _Range:
    """A file's bytes [start, end), read as `_blocks` reads a stream."""

    def __init__(self, path: str, start: int, end: int) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._f.seek(start)
        self._left = end - start

    def read1(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        data = self._f.read(min(self._left, size if size > 0 else self._left))
        self._left -= len(data)
        return data

    def readline(self, size: int = -1) -> bytes:  # pragma: no cover - _Reader protocol; _blocks reads read1
        raise NotImplementedError

    def close(self) -> None:
        self._f.close()


def line_start(path: str, at: int) -> int:
    """The first line start at or after byte `at` of the file (its size when none)."""
    from .audit_run import _BLOCK

    if at <= 0:
        return 0
    with open(path, "rb") as f:
        f.seek(at - 1)
        while True:
            data = f.read(_BLOCK)
            if not data:
                return f.tell()
            nl = data.find(b"\n")
            if nl >= 0:
                return f.tell() - len(data) + nl + 1


LEAD = 0.10
"""How much larger the parent's own range is than another's, as a share of one range: the others also
note their payments and send their findings back (~0.08 s on the bench log: 17 ms noting, ~55 ms
pickling), which the parent does not, so that their results come back about when the parent is ready to
stitch them. The parent, before it waits, also hashes the ids it holds and reads its findings' lines and
codes (~0.02 s, `audit_plan`). Timelines on the seed-7 bench log (quiet machine, 8 runs each) put the
worker's result ready (its last pickle) 18 ms after the parent was ready at 0.06, 10 ms before it at 0.08,
16 ms before at 0.10 and 30 ms before at 0.12 (the parent then takes it ~6 ms later). run_audit, workers=2
against workers=1, interleaved, median of 11 rounds: seed 7: 0.06 1.63x, 0.08 1.68x, 0.10 1.69x, 0.12
1.68x; seed 4 (the bench's): 0.06 1.63x, 0.08 1.68x, 0.10 1.70x, 0.12 1.67x. Before (at 2a201bb, without
the work before the wait): 0.08 gave 1.51x, 0.12 1.62x, 0.25 1.58x. Under load (other processes on the
cores) the balance moves toward the parent (docs/performance.md, "Workers")."""


def ranges(paths: Sequence[str], parts: int, lead: float = LEAD) -> list[list[Piece]]:
    """The input (the files one after another) cut into `parts` ranges of about equal bytes, the first
    `lead` larger, each cut just after a line end; a range is its pieces, in input order (none for an
    empty range)."""
    sizes = [os.path.getsize(p) for p in paths]
    total = sum(sizes)
    points = [(0, 0)]
    for k in range(1, parts):
        at = int(total * (k + lead) / (parts + lead))
        f = 0
        while f < len(sizes) - 1 and at >= sizes[f]:
            at -= sizes[f]
            f += 1
        points.append(max((f, line_start(paths[f], at)), points[-1]))
    points.append((len(paths) - 1, sizes[-1]))
    return between(sizes, points)


def between(sizes: Sequence[int], points: Sequence[tuple[int, int]]) -> list[list[Piece]]:
    """The ranges between cut points (file index, byte offset; increasing, the first (0, 0) and the last
    the input's end), given the files' sizes."""
    out = []
    for (fa, a), (fb, b) in pairwise(points):
        pieces = []
        for f in range(fa, fb + 1):
            start = a if f == fa else 0
            end = b if f == fb else sizes[f]
            if end > start:
                pieces.append((f, start, end))
        out.append(pieces)
    return out


def _count_lines(path: str, end: int, *, whole: bool) -> int:
    """Lines in the file's first `end` bytes (a cut at a line start: its newlines); `whole`: the file's
    lines as `audit_run._blocks` numbers them (a last line without a newline is one)."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as f:
        left = end
        while left > 0:
            data = f.read(min(left, _COUNT_BLOCK))
            if not data:
                break
            lines += data.count(b"\n")
            left -= len(data)
            last = data[-1:]
    return lines + (whole and last != b"\n")


def numbering(paths: Sequence[str], pieces: list[Piece]) -> tuple[int, int]:
    """(lines of its file before the range's first piece, lines of the files before that file)."""
    if not pieces:
        return 0, 0
    f, start, _ = pieces[0]
    before = sum(_count_lines(paths[g], os.path.getsize(paths[g]), whole=True) for g in range(f))
    return _count_lines(paths[f], start, whole=False), before


class _Before:
    """A range worker's numbering of its first file's lines from its cut (`audit_range`), turned into the
    file's: the lines before the cut are counted on the first call only, which only a message quoting a
    record's line there makes (`_exact.Judge.line_of`); the stitch adds them to everything else."""

    def __init__(self, name: str, path: str, start: int) -> None:
        self._name = name
        self._path = path
        self._start = start
        self._lines = -1

    def __call__(self, line: int, file: str) -> int:
        if file != self._name:
            return line  # a later file's: numbered from its start
        if self._lines < 0:
            self._lines = _count_lines(self._path, self._start, whole=False)
        return line + self._lines


def _range_blocks(path: str, start: int, end: int) -> Iterator[bytes | None]:
    """The blocks of whole lines of bytes [start, end) of a file (see `audit_run._blocks`); a BOM that
    opens the file is dropped."""
    from . import audit_run

    reader = _Range(path, start, end)
    try:
        first = start == 0
        for block in audit_run._blocks(reader, audit_run._BLOCK, audit_run.MAX_LINE):
            if first and block is not None:
                block = strip_bom(block)  # it opens the file, not its first line (RFC 8259 8.1)
            first = False
            yield block
    finally:
        reader.close()


def _blocks_of(job: Any, pieces: list[Piece], starts: list[tuple[int, int]]
               ) -> Iterator[tuple[str, int, int, bytes | None]]:
    """(file name, lines before the file, lines of the file before the block, block or None for a line
    too long) for the range's blocks; `starts` gives each piece's first two."""
    for (f, start, end), (number, before) in zip(pieces, starts, strict=True):
        name = job.names[f]
        for block in _range_blocks(job.paths[f], start, end):
            yield name, before, number, block
            number += 1 if block is None else block.count(b"\n") + 1


def new_auditor(job: Any, store: Any = None, *, columns: bool = False) -> Auditor:
    """An empty auditor for `job` (bounded by its `max_open` when given a store to spill to; collecting its
    findings as columns with `columns`, see `Auditor`)."""
    return Auditor(job.spec, overrides=job.overrides if job.spec is None else None,
                   settled_window=job.settled_window, fast=job.fast, store=store,
                   max_open=job.max_open if store is not None else 0, columns=columns)


Numbering = tuple[int, int]
"""(lines of a file before a point, lines of the files before that file)."""


def audit_pieces(auditor: Auditor, job: Any, pieces: list[Piece], number: int, before: int
                 ) -> tuple[list[Numbering], Numbering]:
    """Audit a range whose first line is line `number + 1` of its file, with `before` lines of files
    before it; returns each piece's numbering at its start, and the numbering at the range's end (in the
    file of its last piece)."""
    from .audit_run import MAX_LINE

    starts = []
    for i, (f, start, end) in enumerate(pieces):
        if i:
            before += number  # the previous piece ran to its file's end
            number = 0
        starts.append((number, before))
        name = job.names[f]
        for block in _range_blocks(job.paths[f], start, end):
            if block is None:
                number += 1
                auditor.malformed(number, name, f"line longer than {MAX_LINE} bytes; not audited")
                continue
            # feed_block cuts lines with memchr (readlines), ~0.6k instructions a line cheaper than split
            number += auditor.feed_block(block, number, name, before)
    return starts, (number, before)


def audit_range(job: Any, pieces: list[Piece], *, last: bool, keep: list[object] | None = None) -> bytes:
    """A worker's range, audited from an empty state: its packed partial, where it last saw each payment
    (hash, position pairs), each piece's numbering and the numbering at its end, whether those are
    `relative`, and unless it is the last range, its records. The auditor goes into `keep` when given: a
    forked worker exits after its range, and freeing its records one by one first (~0.02 s on the bench
    log) would only delay the result.

    Relative (the rule): the range is numbered as if the input began at its cut. Its first file's lines
    are then short by the lines of that file before the cut (L), and every position by the lines before
    the cut (L plus the lines of the files before, B); the other files' lines are exact. The parent, which
    has just numbered every line before the cut, adds them when it stitches the range (`stitch`), so no
    process counts them: counting was 0.05-0.065 s of the bench log's worker before its first line, on
    the critical path of two workers. Only a message quoting a record's line of the first file needs L
    here (`_Before`). When the first file's name comes again later in the range (a file given twice),
    its lines could not be told apart: that range counts the lines before it, as it always did."""
    from .audit_run import _gc_paused
    from .spill import SqliteStore

    store = SqliteStore() if job.max_open else None
    # Its findings go straight into the columns it sends (no Finding is built only to be taken apart).
    auditor = new_auditor(job, store, columns=True)
    marks = auditor.track_forgotten()
    if keep is not None:
        keep.append(auditor)
    names = job.names
    relative = not pieces or names[pieces[0][0]] not in {names[f] for f, _, _ in pieces[1:]}
    try:
        with _gc_paused():
            if not relative:
                starts, end = audit_pieces(auditor, job, pieces, *numbering(job.paths, pieces))
            else:
                if pieces and pieces[0][1]:  # a cut inside a file (at a file's start, its lines are exact)
                    f, start, _ = pieces[0]
                    auditor.number_from_cut(_Before(names[f], job.paths[f], start))
                starts, end = audit_pieces(auditor, job, pieces, 0, 0)
            auditor.mark_held(marks)
            records = None if last else auditor.export()
            packed = _packed(auditor.partial(), auditor.columns())
            offset: dict[str, int] = {}
            for (file, _, _), (_, before) in zip(pieces, starts, strict=True):
                offset[job.names[file]] = max(before, offset.get(job.names[file], 0))
            # The LOG_MALFORMED findings, picked from the packed columns (a C scan, no per-finding frame).
            payments, lines, files, codes = packed[0][:4]
            for i in compress(count(), map(_MALFORMED.__eq__, codes)):
                if payments[i] is not None:
                    marks.extend((hash(payments[i]), offset[files[i]] + lines[i]))
            return pickle.dumps((_pickled(packed), marks.tobytes(), starts, end, relative, records),
                                pickle.HIGHEST_PROTOCOL)
    finally:
        auditor.release()
        if store is not None:
            store.close()


def audit_plan(job: Any, plan: list[list[Piece]], start: Callable[[int, list[Piece], bool], Callable[[], bytes]],
               progress: Callable[[int], None] | None = None) -> list[Partial]:
    """The partials of an audit by ranges: this process audits range 0 and stitches the others in order.
    `start(k, pieces, last)` starts range k's worker (`audit_range`) and returns what waits for its result;
    `progress` is told the bytes of the ranges done."""
    from .audit_run import _gc_paused
    from .spill import SqliteStore

    last = len(plan) - 1
    store = SqliteStore() if job.max_open else None
    auditor = new_auditor(job, store)
    # Each range is read twice (by its worker, then by the stitch), and the cuts were made on the sizes:
    # a file appended to or rewritten meanwhile would be stitched from other bytes than its worker judged.
    before = _stamps(job.paths)
    with _gc_paused(), store if store is not None else nullcontext():
        results = [start(k, plan[k], k == last) for k in range(1, len(plan))]
        _, end = audit_pieces(auditor, job, plan[0], 0, 0)
        at = (*end, plan[0][-1][0] if plan[0] else -1)
        done = 0
        others = []
        seen: Index | None = None
        for k, pieces in enumerate(plan):
            if k:
                # What depends on this process alone, done while worker k may still run: the ids held at
                # the cut (what `_crossing` matches) and the lines and codes of the findings so far.
                held = _held(auditor.held_ids())
                seen = index_of(auditor.findings, seen)
                theirs, at = stitch(auditor, job, pieces, held, results[k - 1](), at, last=k == last)
                others.append(theirs)
            done += sum(end - begin for _, begin, end in pieces)
            if progress is not None:
                progress(done)
        mine = auditor.partial()
        if seen is not None:
            mine = evolve(mine, index=index_of(mine.findings, seen))
        auditor.release()  # its records go now, not at the next collection (the merge's)
    for name, was, now in zip(job.names, before, _stamps(job.paths), strict=True):
        if was != now:
            raise UsageError(f"{name} changed while it was audited; audit it again")
    return [mine, *others]


def _stamps(paths: Sequence[str]) -> list[tuple[int, int, int]]:
    """What says a file is unchanged: its size, modification time and inode."""
    return [(st.st_size, st.st_mtime_ns, st.st_ino) for st in map(os.stat, paths)]


At = tuple[int, int, int]
"""The numbering at a point of the input (`Numbering`) and the index of its file (-1: before the first)."""


def stitch(auditor: Auditor, job: Any, pieces: list[Piece], held: Held, blob: bytes, at: At, *,  # noqa: PLR0917
           last: bool) -> tuple[Partial, At]:
    """Continue `auditor` (holding the state one process has at the start of this range, numbered `at`,
    and the ids `held` there, `_held`) over the lines of the range's crossing payments, and return the
    worker's partial without them (see the module's doc), with the numbering at the range's end. Unless
    it is the last range, the auditor then holds the worker's other records too."""
    packed, mark_bytes, starts, end, relative, records = pickle.loads(blob)  # a blob our own worker wrote
    name = ""
    lines = shift = 0
    if pieces:
        f = pieces[0][0]
        name = job.names[f]
        if relative:  # numbered from the cut (`audit_range`): the lines before it are `at`'s
            lines, before = (at[0], at[1]) if f == at[2] else (0, at[1] + at[0])
            shift = before + lines
            starts = [(starts[0][0] + lines, before), *((n, b + shift) for n, b in starts[1:])]
            end = (end[0] + lines, before) if len(pieces) == 1 else (end[0], end[1] + shift)
        at = (end[0], end[1], pieces[-1][0])
    # Numbered as one process numbers them before any line is compared with a line fed below.
    theirs = _partial(packed, name, lines)
    marks = array("q")
    marks.frombytes(mark_bytes)
    crossing, until = _crossing(held, marks)
    until += shift
    if crossing:
        twin = new_auditor(job)
        fed = _continue(auditor, twin, job, pieces, starts, crossing, until)
        theirs = _without_crossing(auditor, job, pieces, starts, theirs, twin.partial(), fed)
    if not last:  # the parent holds its records now, and reports their dangling itself
        auditor.adopt(records, crossing, shift, lines, name)
        return evolve(theirs, dangling=[]), at
    if crossing:
        return evolve(theirs, dangling=[d for d in theirs.dangling if d.payment not in crossing]), at
    return theirs, at


Held = tuple[list[str], list[int], dict[int, str]]
"""Ids held at a cut (`Auditor.held_ids`), their hashes, and the id of each hash (`_held`)."""


def _held(ids: list[str]) -> Held:
    """`ids` with their hashes, as `_crossing` matches them, made before waiting for the worker's result:
    ~8 ms of the ~18 ms `_crossing` took on the bench log's ~53,000 ids, and the id of each hash, which
    spares `_crossing` a pass over the hashes for the ids of the hits (6.4 ms)."""
    hashes = list(map(hash, ids))
    return ids, hashes, dict(zip(hashes, ids, strict=True))


def _crossing(held: Held, marks: array[int]) -> tuple[set[str], int]:
    """The ids held whose hash the worker noted, and the last position noted for any of them (marks:
    hash, position pairs). One C scan of the marks against the held ids' hashes (the smaller side: the
    bench log's parent holds ~53,000 ids, its worker notes ~91,000), which yields the few hits."""
    ids, hashes, by_hash = held
    # A set's `intersection` loops over the marks in C (a map, a compress and a count were half of this);
    # the ids are then those of the few hashes hit (every one of them when two held ids share a hash).
    hits = by_hash.keys() & marks[0::2]
    if not hits:
        return set(), 0
    if len(by_hash) == len(ids):  # no hash shared: one id each
        return {by_hash[h] for h in hits}, _last_noted(marks, hits)
    return set(compress(ids, map(hits.__contains__, hashes))), _last_noted(marks, hits)


_FEW_HITS = 64
"""Up to this many hashes, `_last_noted` finds their marks by bytes."""


def _last_noted(marks: array[int], hits: set[int]) -> int:
    """The last position noted for any hash in `hits` (0 for none).

    A pass over the marks would box every one of them again, for the bench log's ~50 hits among ~90,000
    marks. Instead each of a hash's first four bytes (in memory) is looked up in a table of the hits' (a
    C `translate` over that byte of every mark), the four answers are and-ed as one integer, and only the
    marks that pass all four (the hits, and by chance about one in a thousand others) are read."""
    if len(hits) > _FEW_HITS:  # the tables would pass most marks
        return max(compress(marks[1::2], map(hits.__contains__, marks[0::2])), default=0)
    size = marks.itemsize
    raw = marks.tobytes()  # a bytes slice with a step is a byte loop; a memoryview's, a memcpy a byte
    keys = [h.to_bytes(size, sys.byteorder, signed=True) for h in hits]
    passing = -1
    for b in range(4):
        table = bytearray(256)
        for key in keys:
            table[key[b]] = 1
        passing &= int.from_bytes(raw[b::2 * size].translate(table), "little")
    sel = passing.to_bytes(len(marks) // 2, "little")
    last = 0
    i = sel.find(1)
    while i >= 0:
        if marks[2 * i] in hits:
            last = max(last, marks[2 * i + 1])
        i = sel.find(1, i + 1)
    return last


def _continue(auditor: Auditor, twin: Auditor, job: Any, pieces: list[Piece],  # noqa: PLR0917
              starts: list[tuple[int, int]], crossing: set[str], until: int) -> dict[str, set[int]]:
    """Feed the lines of the crossing payments up to position `until` to `auditor` and to `twin` (which
    starts empty, as the worker did); returns the line numbers fed, by file name."""
    from .audit_run import line_ids, payment_key

    want = {ref.encode("utf-8", "surrogatepass") for ref in crossing}
    fed: dict[str, set[int]] = {}
    for name, before, number, block in _blocks_of(job, pieces, starts):
        if before + number >= until:
            break
        if block is None:
            continue
        lines = block.split(b"\n")
        n = len(lines)
        ids = line_ids(block, n)
        mask = list(map(want.__contains__, ids if ids is not None else map(payment_key, lines)))
        if any(mask):
            mine = list(compress(lines, mask))
            numbers = list(compress(range(number + 1, number + n + 1), mask))
            auditor.feed_numbered(mine, numbers, name, 0, before)
            twin.feed_numbered(mine, numbers, name, 0, before)
            fed.setdefault(name, set()).update(numbers)
    return fed


def _without_crossing(auditor: Auditor, job: Any, pieces: list[Piece], starts: list[tuple[int, int]],  # noqa: PLR0917
                      theirs: Partial, twin: Partial, fed: dict[str, set[int]]) -> Partial:
    """The worker's partial without its view of the lines fed (`twin` is that view)."""
    latest = theirs.latest
    mine = auditor.latest_at()
    unsure_latest = (twin.latest is not None and latest is not None and twin.latest >= latest
                     and (mine is None or mine < latest))
    if unsure_latest or (theirs.providers & twin.providers) - auditor.providers:
        return _without(job, pieces, starts, fed)
    index = theirs.index
    if index is not None:
        # The lines are there already: one C scan finds the few findings dropped (the bench log's: ~40 of
        # ~55,000), and the others are the slices between them (a mask and two `compress`: 2.8 -> 2.2 ms).
        at = list(compress(count(), map(fed.get(index.file, set()).__contains__, index.lines)))
        counts = index.counts.copy()
        counts.subtract([theirs.findings[i].code for i in at])
        findings = _between(theirs.findings, at)
        index = Index(index.file, _between(index.lines, at), counts)
    elif len(fed) == 1:
        ((name, lines),) = fed.items()
        findings = [f for f in theirs.findings if f.line not in lines or f.file != name]
    else:
        none: set[int] = set()
        findings = [f for f in theirs.findings if f.line not in fed.get(f.file, none)]
    return Partial(findings, theirs.events - twin.events, theirs.payments - twin.payments, theirs.providers,
                   latest, theirs.dangling, index)


def _between(items: list[Any], at: list[int]) -> list[Any]:
    """`items` without those at the positions `at` (increasing)."""
    if not at:
        return items
    slices = map(slice, [0, *map(add, at, repeat(1))], [*at, len(items)])
    return list(chain.from_iterable(map(items.__getitem__, slices)))


def _without(job: Any, pieces: list[Piece], starts: list[tuple[int, int]], fed: dict[str, set[int]]) -> Partial:
    """The range audited again from an empty state without the lines fed: what the worker's partial is
    without them, when subtracting cannot say (its latest instant or a provider may be theirs alone)."""
    from .audit_run import MAX_LINE
    from .spill import SqliteStore

    store = SqliteStore() if job.max_open else None  # a whole range's payments: under the same bound
    auditor = new_auditor(job, store)
    none: set[int] = set()
    try:
        for name, before, number, block in _blocks_of(job, pieces, starts):
            if block is None:
                auditor.malformed(number + 1, name, f"line longer than {MAX_LINE} bytes; not audited")
                continue
            lines = block.split(b"\n")
            skip = fed.get(name, none)
            numbers = [k for k in range(number + 1, number + len(lines) + 1) if k not in skip]
            kept = [lines[k - number - 1] for k in numbers]
            if kept:
                auditor.feed_numbered(kept, numbers, name, 0, before)
        return auditor.partial()
    finally:
        auditor.release()
        if store is not None:
            store.close()


# A worker's Partial goes back to the parent as columns of plain values: pickling ~100,000 Findings one
# by one (each a reduce call, then a constructor call in the parent) was most of a worker's hand-over.
# A message goes as its deferred state (`_audit.message_state`: small and picklable by construction):
# formatting it was ~13% of a worker's share on the bench log, and the parent formats nothing before
# the report is written (one process does not either). The parent builds the findings from the columns
# in one compiled loop (`_exact.new_findings`): a call each (`_audit._finding`) was most of its unpack.
# A range worker's auditor collects its findings straight into these columns (`_exact.Columns`): building
# ~51,000 Findings on the bench log only to take them apart here cost ~4.3k instructions a finding.


def pack(p: Partial) -> bytes:
    """A Partial as bytes: its findings and dangling payments as columns."""
    return pickle.dumps(_pickled(_packed(p)), pickle.HIGHEST_PROTOCOL)


def unpack(blob: bytes) -> Partial:
    """The Partial `pack` packed (equal to it, field by field; messages still deferred stay deferred)."""
    return _partial(pickle.loads(blob))  # a blob our own worker wrote


Packed = tuple[Any, ...]
"""A Partial as columns of plain values (`_packed`), which a worker pickles with the rest of its result."""


def _packed(p: Partial, findings: tuple[list[Any], ...] | None = None) -> Packed:
    """`p` as columns; `findings`, the columns of its findings when its auditor collected them so (`Auditor(
    columns=True)`, whose partial holds none)."""
    if findings is None:
        fs = p.findings
        value = _VALUE_OF
        findings = ([f.payment for f in fs], [f.line for f in fs], [f.file for f in fs],
                    [value[f.code] for f in fs], list(map(message_state, fs)), [f.at for f in fs],
                    [f.amount for f in fs], [f.currency for f in fs])
    else:
        assert not p.findings
    ds = p.dangling
    dangling = ([d.payment for d in ds], [d.file for d in ds], [d.line for d in ds], [d.provider for d in ds],
                [d.currency for d in ds], [d.authorized for d in ds], [d.remainder for d in ds],
                [d.authorized_at for d in ds], [d.expires_at for d in ds])
    return findings, p.events, p.payments, tuple(p.providers), p.latest, dangling


def _pickled(packed: Packed) -> Packed:
    """`packed` as it is sent: each findings column pickled on its own. Pickled in one, the bench log's
    worker's findings (51,475) keep one memo of ~300,000 entries, whose lookups miss the cache, and refer
    to it with 4-byte indices: column by column the instructions are the same (+1.6%) but the CPU time
    34.7 -> 27.6 ms (medians of 21, interleaved), the bytes 5.74 -> 4.71 MB; unpickled, the same time and
    the same memory (the objects shared across columns are few)."""
    return (tuple(pickle.dumps(c, pickle.HIGHEST_PROTOCOL) for c in packed[0]), *packed[1:])


def _unpickled(sent: Packed) -> Packed:
    """The `_packed` columns `_pickled` sent."""
    return (tuple(map(pickle.loads, sent[0])), *sent[1:])  # bytes our own worker wrote


def _partial(sent: Packed, file: str = "", lines: int = 0) -> Partial:
    """The Partial of the `_packed` columns `_pickled` sent, with `lines` added to the line numbers of
    `file` (a range worker's first file, numbered from its cut: `audit_range`)."""
    findings, events, payments, providers, latest, dangling = _unpickled(sent)
    refs, numbers, files, *rest = findings
    findings = (refs, _shifted(numbers, files, file, lines), files, *rest)
    refs, files, numbers, *rest = dangling
    dangling = (refs, files, _shifted(numbers, files, file, lines), *rest)
    return Partial(_exact.new_findings(Finding, _CODES, *findings), events, payments, frozenset(providers), latest,
                   list(map(Dangling, *dangling)), _index(findings))


def _shifted(numbers: list[int], files: list[str], file: str, lines: int) -> list[int]:
    """`numbers` (lines of `files`, by position) with `lines` added to those of `file`. All of one file (the
    usual case), one C map: the column's files share one object, which `count` compares by identity."""
    if not lines:
        return numbers
    if files and files[0] == file and files.count(files[0]) == len(files):
        return list(map(add, numbers, repeat(lines)))
    return [n + lines if f == file else n for n, f in zip(numbers, files, strict=True)]


def _index(columns: tuple[list[Any], ...]) -> Index | None:
    """The `Index` of the findings of `_packed` columns, from the columns: the merge need not read ~50,000
    findings again for their lines and codes. None unless of one file."""
    numbers, files, code_texts = columns[1], columns[2], columns[3]
    if not files:
        return Index("", [], Counter())
    name = files[0]
    if files.count(name) != len(files):  # compared by identity first: a file's findings share its name
        return None
    counts = Counter({_CODES[text]: n for text, n in Counter(code_texts).items()})
    return Index(name, numbers, counts)


def splittable(paths: tuple[str, ...], fmt: str) -> bool:
    """Whether the input can be split by bytes: canonical JSONL in plain (not gzip) regular files."""
    from .audit_run import _looks_gzip

    if fmt != "canonical":
        return False
    for path in paths:
        if path == "-" or not os.path.isfile(path):
            return False
        with open(path, "rb") as f:
            if _looks_gzip(f.read(4)):
                return False
    return True
