"""Parallel audits that split the input by bytes and give each line to its payment's worker (`--workers N`).

Every worker reading the whole input and judging each line's payment costs each of them a full scan,
and copying the input into per-worker spool files costs a write and a read of all of it. Here:

1. scan: worker k reads only the k-th byte range of each file (cut at line ends) and writes each line's
   owner, one byte a line in line order, to the range's owners file (`owners_of`: a function of the
   payment id's CRC-32, so every event of a payment has one owner). No line is copied.
2. audit: once every range is scanned, worker j reads every range of every file in input order and
   audits the lines the owners files give it (`bytes.translate` turns the owners into a mask,
   `itertools.compress` takes its lines and their numbers). Every payment's events meet in one worker,
   in file order, with their file names, line numbers and positions, so the merged report is
   byte-identical to one process's.

The parent process is worker 0 (it would only wait otherwise): it starts N - 1 forked workers, scans
and audits its own range and share, and merges. Only the other workers' partials come back (through a
file), packed as columns (`pack`), never as a graph of objects; since those workers also pack their
findings for the trip, worker 0 takes a slightly larger share (`owner_table`).

The scan and the selection are C loops over whole blocks (counts, one regex, CRC-32 through `map`,
`translate`, `compress`), no Python statement per line. Temporary disk use is one byte per line.
Measured stages: docs/performance.md (issue 13). It applies to plain canonical files of at most
MAX_RANGE_WORKERS workers; gzip (no byte ranges), stdin and the Vipps export keep the every-worker-reads-all
partitioning in `audit_run`.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from itertools import compress
from typing import Any

from .._audit import Auditor, Dangling, Partial, _finding, message_state
from .._bom import strip_bom
from .._codes import Code
from .options import UsageError

MAX_RANGE_WORKERS = 255
"""Most workers the byte-range path takes: a line's owner is one byte (more go the every-worker way)."""
_TOO_LONG = b"\xff"  # the owner byte of a line past MAX_LINE (worker 0 reports it)
_MASKS: dict[tuple[int, int], bytes] = {}
_VALUE_OF: dict[Code, str] = {c: c.value for c in Code}


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


def cuts(path: str, parts: int) -> list[int]:
    """Where each of `parts` ranges of the file starts, each just after a line end; then the file's size."""
    from .audit_run import _BLOCK

    size = os.path.getsize(path)
    starts = [0]
    with open(path, "rb") as f:
        for k in range(1, parts):
            at = max(k * size // parts, starts[-1])
            f.seek(max(at - 1, 0))
            while True:
                data = f.read(_BLOCK)
                if not data:
                    starts.append(size)
                    break
                nl = data.find(b"\n")
                if nl >= 0:
                    starts.append(f.tell() - len(data) + nl + 1)
                    break
    starts.append(size)
    return starts


def _owners_path(directory: str, file: int, part_range: int) -> str:
    return os.path.join(directory, f"{file}-{part_range}.owners")


def _mask(parts: int, owner: int) -> bytes:
    """The `bytes.translate` table turning a block's owners into 1 for `owner`'s lines, 0 for the rest."""
    table = _MASKS.get((parts, owner))
    if table is None:
        table = _MASKS[parts, owner] = bytes(1 if b == owner else 0 for b in range(256))
    return table


def owner_table(parts: int) -> tuple[int, bytes]:
    """(slots, table): a line's owner is `table[crc32(id) % slots]`. Worker 0 (the parent) takes 11 slots
    to every other worker's 10 (while parts * 10 + 1 slots fit in a byte), because the others also pack
    their findings for the trip back and it does not: ~12% of a share when the findings' deferred messages
    cross as they are, ~20% when they must be formatted (docs/performance.md, "Workers")."""
    slots = parts * 10 + 1
    if slots > 256:
        return parts, bytes(range(parts)) + bytes(256 - parts)
    return slots, bytes(0 if s < 11 else (s - 1) // 10 for s in range(slots)) + bytes(256 - slots)


def owners_of(block: bytes, parts: int) -> bytes:
    """Each line's owner as one byte: for a valid event, `owner_table` of its payment id's CRC-32 (which
    `audit_run._owner_of` gives for any line).

    A clean block (the common case) costs C loops only: two counts, one regex, CRC-32 through `map`. A
    block `line_ids` cannot vouch for is halved at a line end until each piece is clean or one line,
    which `_owner_of` judges alone: one garbage line in a block of thousands costs ~2 log2(lines) small
    rescans, not the block (with 0.1% garbage lines most blocks hold one). A line that is not a valid
    event may get any owner: its LOG_MALFORMED finding says what the line says, whichever worker reads it
    (unlike `audit_run._owners`, whose every worker must agree on every line, and asks more of a block)."""
    from .audit_run import _owner_of, crc32, line_ids

    slots, table = owner_table(parts)
    out = []
    pending = [block]
    while pending:
        piece = pending.pop()
        n = piece.count(b"\n") + 1
        ids = line_ids(piece, n)
        if ids is not None:
            out.append(bytes(map(slots.__rmod__, map(crc32, ids))))
        elif n == 1:
            out.append(bytes((_owner_of(piece, slots)[0],)))
        else:
            cut = piece.find(b"\n", len(piece) // 2)
            if cut < 0:
                cut = piece.rfind(b"\n")
            pending += (piece[cut + 1:], piece[:cut])  # the first half is popped first: owners stay in order
    return b"".join(out).translate(table)


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


def scan_range(paths: tuple[str, ...], bounds: list[list[int]], k: int, parts: int, directory: str) -> None:
    """Stage 1 for range k of every file: write each line's owner, one byte a line in line order, to the
    range's owners file (TOO_LONG for a line past MAX_LINE)."""
    from .audit_run import _gc_paused

    # Nothing here makes a cycle; a worker's collector would only walk what fork gave it.
    with _gc_paused():
        for f, path in enumerate(paths):
            with open(_owners_path(directory, f, k), "wb") as out:
                for block in _range_blocks(path, bounds[f][k], bounds[f][k + 1]):
                    out.write(_TOO_LONG if block is None else owners_of(block, parts))


def audit_share(job: Any, j: int, parts: int, directory: str, bounds: list[list[int]]) -> Partial:
    """Stage 2 for partition j: read every range of every file in input order, and audit the lines the
    owners files give to j. Runs with the cyclic collector paused, as `audit_partition` does."""
    from .audit_run import _gc_paused

    with _gc_paused():
        return _audit_share(job, j, parts, directory, bounds)


def _audit_share(job: Any, j: int, parts: int, directory: str, bounds: list[list[int]]) -> Partial:
    from .audit_run import MAX_LINE
    from .spill import SqliteStore

    store = SqliteStore() if job.max_open else None
    auditor = Auditor(job.spec, overrides=job.overrides if job.spec is None else None,
                      settled_window=job.settled_window, fast=job.fast, store=store, max_open=job.max_open)
    feed = auditor.feed_numbered
    table = _mask(parts, j)
    try:
        before_file = 0
        for f, (path, name) in enumerate(zip(job.paths, job.names, strict=True)):
            number = 0  # lines of the file so far
            for k in range(parts):
                with open(_owners_path(directory, f, k), "rb") as owners:
                    for block in _range_blocks(path, bounds[f][k], bounds[f][k + 1]):
                        if block is None:
                            if owners.read(1) != _TOO_LONG:
                                raise UsageError(f"{name} changed while it was audited; audit it again")
                            number += 1
                            if j == 0:  # a line too long to audit: one partition reports it
                                auditor.malformed(number, name, f"line longer than {MAX_LINE} bytes; not audited")
                            continue
                        lines = block.split(b"\n")
                        n = len(lines)
                        mask = owners.read(n).translate(table)
                        if len(mask) != n:  # the scan saw other bytes: compress would drop lines silently
                            raise UsageError(f"{name} changed while it was audited; audit it again")
                        mine = list(compress(lines, mask))
                        if mine:
                            feed(mine, list(compress(range(number + 1, number + n + 1), mask)), name, 0,
                                 before_file)
                        number += n
                    if owners.read(1):
                        raise UsageError(f"{name} changed while it was audited; audit it again")
            before_file += number
        return auditor.partial()
    finally:
        auditor.release()  # its records go when this returns, not at the next collection (the merge's)
        if store is not None:
            store.close()


# A worker's Partial goes back to the parent as columns of plain values: pickling ~100,000 Findings one
# by one (each a reduce call, then a constructor call in the parent) was most of a worker's hand-over.
# A message goes as its deferred state (`_audit.message_state`: small and picklable by construction):
# formatting it was ~13% of a worker's share on the bench log, and the parent formats nothing before
# the report is written (one process does not either).


def pack(p: Partial) -> bytes:
    """A Partial as bytes: its findings and dangling payments as columns."""
    fs = p.findings
    value = _VALUE_OF
    findings = ([f.payment for f in fs], [f.line for f in fs], [f.file for f in fs],
                [value[f.code] for f in fs], list(map(message_state, fs)), [f.at for f in fs],
                [f.amount for f in fs], [f.currency for f in fs])
    ds = p.dangling
    dangling = ([d.payment for d in ds], [d.file for d in ds], [d.line for d in ds], [d.provider for d in ds],
                [d.currency for d in ds], [d.authorized for d in ds], [d.remainder for d in ds],
                [d.authorized_at for d in ds], [d.expires_at for d in ds])
    return pickle.dumps((findings, p.events, p.payments, tuple(p.providers), p.latest, dangling),
                        pickle.HIGHEST_PROTOCOL)


def unpack(blob: bytes) -> Partial:
    """The Partial `pack` packed (equal to it, field by field; messages still deferred stay deferred)."""
    findings, events, payments, providers, latest, dangling = pickle.loads(blob)  # a blob our own worker wrote
    return Partial(list(map(_finding, *findings)), events, payments, frozenset(providers), latest,
                   list(map(Dangling, *dangling)))


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
