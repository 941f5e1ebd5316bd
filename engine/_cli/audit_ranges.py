"""Parallel audits that split the input by bytes and shuffle lines by payment (`--workers N`, N > 1).

Each worker used to read the whole input and keep its share of the payments: N workers did N full scans,
so 2 gave at most ~1.45x one process. Here the work is split twice:

1. scan: worker k reads only the k-th byte range of each file (cut at line ends), finds each line's
   payment (`_partition`, the same function of the line's bytes as before) and appends the line to a
   spool file for the partition that owns it: one per (file, range, partition), in a temporary
   directory, with the line's number within its range;
2. audit: once every range is scanned (the stages are two maps over one pool), worker j audits the spools
   addressed to it in input order (file by file, range by range), numbering each line from the line
   counts the scan returned. Every payment's events meet in one worker, in file order, with their file
   names, line numbers and positions, so the merged report is byte-identical to one process's.

So each worker scans 1/N of the input and audits 1/N of it; the shuffle costs a sequential write and
read of the input's bytes. It applies to plain canonical files; gzip (no byte ranges), stdin and the
Vipps export keep the every-worker-reads-all partitioning in `audit_run`.
"""

from __future__ import annotations

import gc
import os
import struct
from array import array
from collections.abc import Iterator
from typing import Any

from .._audit import Auditor, Partial
from .._bom import strip_bom

_FRAME = struct.Struct("<qq")  # lines in the frame, bytes of their text
_BLOCK = 1 << 18


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


def _spool(directory: str, file: int, part_range: int, owner: int) -> str:
    return os.path.join(directory, f"{file}-{part_range}-{owner}.spool")


def scan_range(paths: tuple[str, ...], bounds: list[list[int]], k: int, parts: int, directory: str) -> list[int]:
    """Stage 1 for range k of every file: spool each line to its owner's file. Returns the lines of range
    k of each file. A line longer than MAX_LINE goes to partition 0 as a marker (number negated)."""
    from .audit_run import MAX_LINE, _blocks, _partition

    counts = []
    for f, path in enumerate(paths):
        start, end = bounds[f][k], bounds[f][k + 1]
        outs = [open(_spool(directory, f, k, j), "wb") for j in range(parts)]  # noqa: SIM115 - closed below
        number = 0
        reader = _Range(path, start, end)
        try:
            for block in _blocks(reader, max_line=MAX_LINE):
                if block is None:
                    number += 1
                    _write(outs[0], [b""], [-number])
                    continue
                if not number and start == 0:
                    block = strip_bom(block)  # it opens the file, not its first line
                lines = block.split(b"\n")
                owners, _ = _partition(block, lines, parts)
                mine: list[list[bytes]] = [[] for _ in range(parts)]
                nums: list[list[int]] = [[] for _ in range(parts)]
                for i, owner in enumerate(owners):
                    mine[owner].append(lines[i])
                    nums[owner].append(number + i + 1)
                for j in range(parts):
                    if mine[j]:
                        _write(outs[j], mine[j], nums[j])
                number += len(lines)
        finally:
            reader.close()
            for out in outs:
                out.close()
        counts.append(number)
    return counts


def _write(out: Any, lines: list[bytes], numbers: list[int]) -> None:
    text = b"\n".join(lines)
    out.write(_FRAME.pack(len(lines), len(text)))
    out.write(array("q", numbers).tobytes())
    out.write(text)


def _frames(path: str) -> Iterator[tuple[list[bytes], list[int]]]:
    with open(path, "rb") as f:
        while True:
            head = f.read(_FRAME.size)
            if not head:
                return
            n, size = _FRAME.unpack(head)
            numbers = array("q")
            numbers.frombytes(f.read(8 * n))
            text = f.read(size)
            yield text.split(b"\n"), numbers.tolist()


def audit_share(job: Any, j: int, parts: int, directory: str, counts: list[list[int]]) -> Partial:
    """Stage 2 for partition j: audit the lines spooled to it, in input order. `counts[k][f]` is the number
    of lines range k of file f holds."""
    from .audit_run import MAX_LINE
    from .spill import SqliteStore

    gc.disable()  # as in audit_partition: the audit's objects die by reference counting
    store = SqliteStore() if job.max_open else None
    auditor = Auditor(job.spec, overrides=job.overrides if job.spec is None else None,
                      settled_window=job.settled_window, fast=job.fast, store=store, max_open=job.max_open)
    try:
        before_file = 0
        for f, name in enumerate(job.names):
            before_range = 0
            for k in range(parts):
                for lines, numbers in _frames(_spool(directory, f, k, j)):
                    if numbers[0] < 0:  # a line too long to audit, reported by partition 0 alone
                        number = before_range - numbers[0]
                        auditor.malformed(number, name, f"line longer than {MAX_LINE} bytes; not audited")
                        continue
                    auditor.feed_numbered(lines, numbers, name, before_range, before_file + before_range)
                before_range += counts[k][f]
            before_file += before_range
        return auditor.partial()
    finally:
        if store is not None:
            store.close()


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
