"""Running an audit over files: reading them, and spreading the work over processes or a Dask cluster.

The core (`capstate._audit`) never reads a file; this module does. Input is canonical JSONL or the
Vipps ePayment event log, plain or gzip (sniffed by its magic bytes, not trusted from the name), from
paths or stdin ("-").

Garbage never ends an audit: a line longer than MAX_LINE, binary noise, or a gzip stream that breaks
off is a LOG_MALFORMED finding at its line, and the audit goes on with the next line or file. Only a
file that cannot be opened at all is a usage error (exit 2), checked before any work starts.

Parallel runs partition by payment, so the events of one payment meet in one process, in file order,
with their original file names and line numbers; the partitions' results are merged and sorted exactly
as a single process's, so the output is byte-identical. Plain canonical files (and stdin, copied to a
file first) are split by byte ranges instead (`audit_ranges`: each worker audits its range, and the
payments that cross a cut are continued where their earlier events were).
gzip and the Vipps export are read whole by every partition, which keeps the lines whose payment hashes
(CRC-32, the same in every process) to it: canonical input is read in blocks of whole lines, and a
block whose every line names its payment beyond doubt is partitioned by one regex and four counts over
the block (`_owners`); otherwise runs of 64 lines try the same, and the rest go line by line (the id
sliced from the bytes, `_payment_bytes`, or the line parsed, `_owner_of`). Every path gives a line the
same partition, a function of its bytes alone.

The hot loop runs with the cyclic garbage collector paused: the audit's per-line objects die by
reference counting, and each collection would walk every payment held (~13% of the time).
"""

from __future__ import annotations

import gc
import gzip
import os
import pickle
import re
import shutil
import signal
import sys
import tempfile
import zlib
from codecs import BOM_UTF8
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, nullcontext, suppress
from datetime import datetime
from itertools import compress
from typing import IO, Any, Protocol, cast

import orjson
from attrs import frozen

from .._audit import (
    DEFAULT_SETTLED_WINDOW,
    Auditor,
    AuditReport,
    Partial,
    merge,
    overrides_for,
    parse_as_of,
    resolve_spec,
)
from .._bom import strip_bom
from .._policy import POLICY_PARSERS
from .._spec import Spec, load_spec, shipped
from .options import UsageError

FORMATS = ("auto", "canonical", "vipps-events")
EMPTY = "empty"
"""What `detect_format` says of an input with nothing but whitespace in it."""
_SNIFF = 1 << 16
"""Bytes read (after gzip) to tell a Vipps event log from canonical JSONL."""
MAX_LINE = 1 << 20
"""Longest line audited (1 MiB); a longer one is LOG_MALFORMED and skipped without being held."""

# A gzip member starts 1f 8b, then CM = 8 (deflate, the only method RFC 1952 defines; gzip refuses any
# other), then FLG with its reserved bits 5-7 zero. A file is read as gzip when its first bytes are that
# (or, cut short, a prefix of it), so a plain log whose first line happens to start with 1f 8b (binary
# garbage) is not taken for a broken gzip stream and lost whole.
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_DEFLATE = 8
_GZIP_RESERVED_FLAGS = 0xE0


def _looks_gzip(head: bytes) -> bool:
    return (head[:2] == _GZIP_MAGIC and (len(head) < 3 or head[2] == _GZIP_DEFLATE)
            and (len(head) < 4 or not head[3] & _GZIP_RESERVED_FLAGS))
_KEY_LEN = len(b'"payment":"')
crc32 = zlib.crc32
_PROGRESS_EVERY = 0x3FFF  # lines between progress updates, minus one (a mask)

Tick = Callable[[int], None]


class _Reader(Protocol):
    """A binary file, plain or gzip (both read a line, or what one read of the source gives)."""

    def readline(self, size: int = -1, /) -> bytes: ...

    def read1(self, size: int = -1, /) -> bytes: ...


class DaskMissingError(UsageError):
    """--dask without dask.distributed installed."""


@frozen
class Job:
    """A picklable description of one audit: what every partition needs to run its share."""

    paths: tuple[str, ...]
    names: tuple[str, ...]
    spec: Spec | None
    overrides: Mapping[str, Any] | None
    fmt: str
    settled_window: int = DEFAULT_SETTLED_WINDOW
    fast: bool = True  # False: every line through observe (the reference the fast path is tested against)
    max_open: int = 0  # open payments a partition holds in memory before spilling to disk (0: no bound)
    as_of: datetime | None = None


DEFAULT_MAX_MEMORY = 1 << 30
"""--max-memory's default: 1 GiB."""
# What one open payment costs in memory (its Record, id, deadlines and dict slot: ~0.9 KiB measured on
# Vipps authorizations, rounded up for longer ids and keys), and what an audit holds besides them (the
# interpreter and its modules, the settled window, the findings, SQLite's page cache, a spill batch in
# flight): the budget left over is for open payments.
BYTES_PER_OPEN = 1280
BASE_BYTES = 192 << 20


def max_open_for(max_memory: int | None, parts: int = 1) -> int:
    """How many open payments each of `parts` partitions keeps in memory under `max_memory` bytes (0: no
    bound). At least one each, so a budget below the base still audits, spilling nearly everything."""
    if max_memory is None:
        return 0
    if max_memory <= 0:
        raise UsageError(f"--max-memory {max_memory}: expected a size > 0")
    return max(1, (max_memory - BASE_BYTES) // BYTES_PER_OPEN // parts)


# ----------------------------------------------------------------------------------------- reading


def display_name(path: str) -> str:
    """A path as findings name it: valid UTF-8, whatever bytes the file name holds. Python hands such bytes
    over as lone surrogates, which no JSON or HTML writer can encode; they are shown as \\xNN instead."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return path


def same_file_key(path: str) -> object:
    """What identifies the file a path names: its device and inode when it exists, else its real path."""
    if path == "-":
        return path
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino)


def _check_readable(path: str) -> None:
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


@contextmanager
def _open(path: str) -> Iterator[tuple[_Reader, IO[bytes]]]:
    """(stream of decompressed bytes, raw file) for a path or "-"; gzip is sniffed."""
    raw: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115 - closed below
    try:
        head = raw.peek(4)[:4] if hasattr(raw, "peek") else b""
        # Both have read1 (BufferedReader, GzipFile); typeshed's IO[bytes] does not say so.
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if _looks_gzip(head) else cast(_Reader, raw)
        yield stream, raw
    finally:
        if path != "-":
            raw.close()


def detect_format(path: str) -> str:
    """"canonical", "vipps-events" or EMPTY, from the first bytes of a file (after gzip and a BOM).

    A Vipps export is a JSON array of PaymentEvents or one PaymentEvent per line, pretty-printed or not:
    an opening `[`, or a first object with Vipps's own keys (`reference`, `name`, `timestamp`) and no
    canonical `payment`/`type`. Anything else is canonical, whose audit reports what it cannot read.
    Raises UsageError when the file cannot be read.
    """
    try:
        with _open(path) as (stream, _):
            head = b""
            while len(head) < _SNIFF:
                more = stream.read1(_SNIFF - len(head))
                if not more:
                    break
                head += more
    except (OSError, EOFError, zlib.error):
        return "canonical"  # the audit reports the broken stream at its line
    body = head.removeprefix(BOM_UTF8).lstrip()
    if not body:
        return EMPTY
    if body[:1] == b"[":
        return "vipps-events"
    first = body.split(b"\n", 1)[0]
    try:
        obj = orjson.loads(first)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        return "vipps-events" if _vipps_keys(obj.keys()) else "canonical"
    # A pretty-printed object: its keys are on the lines after the `{`.
    keys = {k.decode("utf-8", "replace") for k in re.findall(rb'^\s*"([A-Za-z]+)"\s*:', body[:4096], re.M)}
    return "vipps-events" if body[:1] == b"{" and _vipps_keys(keys) else "canonical"


def _vipps_keys(keys: Iterable[object]) -> bool:
    have = set(keys)
    return {"reference", "name", "timestamp"} <= have and not {"payment", "type"} & have


def resolve_formats(paths: Sequence[str], names: Sequence[str], fmt: str) -> tuple[str, tuple[str, ...]]:
    """The one format all inputs are read in, and each input's sniffed format (EMPTY for an empty one).

    `fmt` "auto" takes what the inputs are; a given format that an input plainly is not is refused (a
    Vipps export read as canonical would be every line LOG_MALFORMED). Raises UsageError.
    """
    found = tuple(detect_format(p) for p in paths)
    kinds = {f for f in found if f != EMPTY}
    if fmt == "auto":
        if len(kinds) > 1:
            mixed = ", ".join(f"{n} ({f})" for n, f in zip(names, found, strict=True) if f != EMPTY)
            raise UsageError(f"inputs in different formats: {mixed}; audit them separately")
        return (kinds.pop() if kinds else "canonical"), found
    if fmt == "canonical":
        for name, kind in zip(names, found, strict=True):
            if kind == "vipps-events":
                raise UsageError(f"{name} is a Vipps ePayment event log, not canonical JSONL: "
                                 f"use --format vipps-events (or leave --format at auto)")
    return fmt, found


def _skip_rest(readline: Callable[[int], bytes]) -> None:
    while True:
        more = readline(MAX_LINE)
        if not more or more.endswith(b"\n"):
            return


def _payment_bytes(line: bytes) -> bytes | None:
    """The payment id's bytes when the line says them beyond doubt, else None (then parse it).

    No backslash: no escapes, so the bytes are the id's UTF-8, and no `"` inside a string, so a
    `"payment":"` is a key. One `{`: no nested object, so it is the top-level key. `"payment"` once:
    no duplicate key. A line that only looks like JSON lands in one partition all the same, which
    reports it.
    """
    if b"\\" in line or line.count(b"{") != 1 or line.count(b'"payment"') != 1:
        return None
    start = line.find(b'"payment":"')
    if start < 0:
        start = line.find(b'"payment": "')  # json.dumps's separator
        if start < 0:
            return None
        start += 1
    start += _KEY_LEN
    end = line.find(b'"', start)
    return line[start:end] if end >= 0 else None


def _key_of(line: bytes) -> tuple[bytes, object]:
    """(the payment id's bytes, b"" when the line names none; decoded object or None) of a raw line; the
    object is returned when it had to be parsed."""
    found = _payment_bytes(line)
    if found is not None:
        return found, None
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return b"", None
    ref = obj.get("payment") if isinstance(obj, dict) else None
    return (ref.encode("utf-8", "surrogatepass") if isinstance(ref, str) else b""), obj


def payment_key(line: bytes) -> bytes:
    """The payment id's bytes of a raw line (b"" when it names none), by the rule every partition uses."""
    return _key_of(line)[0]


def _owner_of(line: bytes, parts: int) -> tuple[int, object]:
    """(partition, decoded object or None) of a raw line; the object is returned when it had to be parsed."""
    key, obj = _key_of(line)
    return crc32(key) % parts, obj


_BLOCK = 1 << 18
"""Bytes read at a time (read1: what one read of the file, or one gzip member's worth, gives)."""
_ONE_BLOCK = 1 << 16
"""The same for a single-process audit, whose peak memory is (d)'s: 256 KiB blocks held ~1.6 MB more at
the peak than 64 KiB ones (the block, its carried copy, its lines), for the same instructions per line."""
# A "payment" key whose value is a string: the id's bytes (group 1), then the rest of the line, so that
# a line gives at most one match (`findall` goes on after it). Unanchored, so the regex engine searches
# for its literal prefix; `line_ids` counts the key once per line, so a block whose lines give one match
# each gives each line's id, in order.
_LINE_ID = re.compile(rb'"payment"(?::"|: ")([^"\n]*)"[^\n]*')


def _blocks(stream: _Reader, block: int = _BLOCK, max_line: int = MAX_LINE) -> Iterator[bytes | None]:
    """The stream's whole lines, many at a time: each bytes item is one or more lines joined by "\n"
    (without the last line's "\n"); None stands for one line of `max_line` bytes or more, skipped without
    being held. A last line without a newline is a line. Lines are numbered as `readline` would."""
    read = stream.read1
    carry = b""
    skipping = False
    while True:
        data = read(block)
        if not data:
            if carry and not skipping:
                yield carry
            return
        if skipping:
            cut = data.find(b"\n")
            if cut < 0:
                continue
            skipping = False
            data = data[cut + 1:]
        data = carry + data if carry else data
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
        else:
            carry = data[cut + 1:]
            body = data[:cut]
            if len(body) < max_line:
                yield body
            else:  # it may hold a line too long: that one is a None, the lines around it blocks
                kept: list[bytes] = []
                for line in body.split(b"\n"):
                    if len(line) < max_line:
                        kept.append(line)
                        continue
                    if kept:
                        yield b"\n".join(kept)
                        kept = []
                    yield None
                if kept:
                    yield b"\n".join(kept)
        if len(carry) >= max_line:
            yield None
            carry = b""
            skipping = True


def line_ids(piece: bytes, n: int) -> list[bytes] | None:
    """The id's bytes of each of the piece's `n` lines when no line holds a backslash (no escape) and each
    holds the text `"payment"` once, as the key of a string (`_LINE_ID`); else None."""
    if b"\\" in piece or piece.count(b'"payment"') != n:
        return None
    ids = _LINE_ID.findall(piece)
    return ids if len(ids) == n else None


def _block_ids(block: bytes, n: int) -> list[bytes] | None:
    """The payment id's bytes of each of the block's `n` lines, when the block names every payment beyond
    doubt (as `_payment_bytes` does line by line: no backslash, one `{` and one `"payment"` per line, every
    line starting `{` with a string id); else None. Counting over the block is exact: every line starts
    with a `{` and holds at least one match, so equal totals mean exactly one each."""
    if block[:1] != b"{" or block.count(b"{") != n or block.count(b"\n{") != n - 1:
        return None
    return line_ids(block, n)


def _owners(block: bytes, lines: list[bytes], parts: int) -> list[int] | None:
    """Each line's partition when `_block_ids` vouches for the whole block, else None."""
    ids = _block_ids(block, len(lines))
    if ids is None:
        return None
    return list(map(parts.__rmod__, map(crc32, ids)))


_RUN = 64
"""Lines judged together when a block holds a line that must be partitioned alone (one garbage line in
a few thousand would otherwise send its whole block the slow way)."""


def _partition(block: bytes, lines: list[bytes], parts: int) -> tuple[list[int], dict[int, object]]:
    """Each line's partition, and the lines that had to be parsed for it (by index)."""
    owners = _owners(block, lines, parts)
    if owners is not None:
        return owners, {}
    owners = []
    parsed: dict[int, object] = {}
    for first in range(0, len(lines), _RUN):
        run = lines[first:first + _RUN]
        found = _owners(b"\n".join(run), run, parts)
        if found is not None:
            owners.extend(found)
            continue
        for k, line in enumerate(run, first):
            owner, obj = _owner_of(line, parts)
            owners.append(owner)
            if obj is not None:
                parsed[k] = obj
    return owners, parsed


def _audit_canonical(auditor: Auditor, stream: _Reader, raw: IO[bytes], *, name: str, part: int, parts: int,
                     tick: Tick | None, start: int) -> int:
    """Audit one file's lines of this partition; returns how many lines the file had (read so far)."""
    feed = auditor.feed
    feed_object = auditor.feed_object
    number = 0
    try:
        for block in _blocks(stream, _ONE_BLOCK if parts == 1 else _BLOCK):
            if tick is not None:
                tick(raw.tell())
            if not number and block is not None:
                block = strip_bom(block)  # it opens the file, not its first line (RFC 8259 8.1)
            if block is None:
                number += 1
                # Every partition skips it; one reports it.
                if parts == 1 or part == 0:
                    auditor.malformed(number, name, f"line longer than {MAX_LINE} bytes; not audited")
                continue
            if parts == 1:
                number += auditor.feed_block(block, number, name, start)
                continue
            lines = block.split(b"\n")
            owners, parsed = _partition(block, lines, parts)
            for k in compress(range(len(lines)), map(part.__eq__, owners)):
                obj = parsed.get(k) if parsed else None
                at = number + k + 1
                if obj is None:
                    feed(lines[k], at, name, start + at)
                else:
                    feed_object(obj, at, name, start + at)
            number += len(lines)
    except (OSError, EOFError, zlib.error) as exc:
        # gzip says a stream is corrupt or cut short only while reading it, after the lines before.
        if parts == 1 or part == 0:
            auditor.malformed(number + 1, name, f"cannot read past line {number}: {exc}")
    return number


def _audit_vipps(auditor: Auditor, stream: _Reader, raw: IO[bytes], *, name: str, part: int, parts: int,
                 tick: Tick | None, start: int) -> int:
    from ..providers.vipps.events import records

    number = 0
    try:
        for number, item in records(stream, max_line=MAX_LINE):
            if tick is not None and not number & _PROGRESS_EVERY:
                tick(raw.tell())
            if parts > 1:
                ref = item.get("payment") if isinstance(item, dict) else item.payment
                key = ref.encode("utf-8", "surrogatepass") if isinstance(ref, str) else b""
                if zlib.crc32(key) % parts != part:
                    continue
            if isinstance(item, dict):
                auditor.feed_object(item, number, name, start + number)
            else:
                auditor.malformed(number, name, item.message, item.payment)
    except (OSError, EOFError, zlib.error) as exc:
        if parts == 1 or part == 0:
            auditor.malformed(number + 1, name, f"cannot read past line {number}: {exc}")
    return number


def _sizes(paths: Sequence[str]) -> list[int]:
    out = []
    for path in paths:
        try:
            out.append(os.path.getsize(path) if path != "-" else 0)
        except OSError:
            out.append(0)
    return out


def audit_partition(job: Job, part: int = 0, parts: int = 1, progress: Tick | None = None) -> Partial:
    """Audit the share of `job`'s input whose payments hash to `part` of `parts`.

    `progress` is told the bytes read so far over all files (as stored, so gzip counts compressed).
    """
    from .spill import SqliteStore

    store = SqliteStore() if job.max_open else None
    auditor = Auditor(job.spec, overrides=job.overrides if job.spec is None else None,
                      settled_window=job.settled_window, fast=job.fast, store=store, max_open=job.max_open)
    run = _audit_vipps if job.fmt == "vipps-events" else _audit_canonical
    base = lines_before = 0
    sizes = _sizes(job.paths) if progress is not None else [0] * len(job.paths)
    with _gc_paused(), store if store is not None else nullcontext():
        for path, name, size in zip(job.paths, job.names, sizes, strict=True):
            with _open(path) as (stream, raw):
                tick = None
                # A pipe has no position to report (tell() would raise); its bar just runs without a total.
                if progress is not None and raw.seekable():
                    def tick(position: int, base: int = base) -> None:
                        progress(base + position)
                lines_before += run(auditor, stream, raw, name=name, part=part, parts=parts, tick=tick,
                                    start=lines_before)
            base += size
            if progress is not None:
                progress(base)
        result = auditor.partial(job.as_of, alone=parts == 1)
        # Released while the collector is still off: its records die by reference counting, and the
        # first collection afterwards has only the findings to walk.
        auditor.release()
        del auditor
    return result


@contextmanager
def _gc_paused() -> Iterator[None]:
    """The cyclic collector off for the audit loop, restored after as it was."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            # Everything the loop allocated is still in the youngest generation, so the first collection
            # after it would walk every finding and record (~15% of an audit). Freezing and unfreezing
            # moves them to the oldest generation without a walk (both O(1)); they are collected as usual.
            gc.freeze()
            gc.unfreeze()
            gc.enable()


# ---------------------------------------------------------------------------------------- parallel

# The job a forked partition worker inherits: set just before the pool forks, cleared after.
_FORKED: dict[str, Any] = {}
# What a forked range worker leaves to die with its process (see audit_ranges.audit_range).
_KEPT: list[object] = []


def _forked_partition(part: int, parts: int) -> Partial:
    # A collection in a forked worker would touch every object inherited from the parent, copying its
    # pages; the worker runs one partition and exits, so its collector stays off.
    gc.disable()
    shared = _FORKED.get("progress")
    # Every partition reads all the input, so the first one's position is the whole run's.
    progress = None
    if shared is not None and part == 0:
        def progress(done: int) -> None:
            shared.value = done
    return audit_partition(_FORKED["job"], part, parts, progress)


def _range_child(job: Job, pieces: list[tuple[int, int, int]], last: bool, path: str, done: int) -> None:
    """A forked range worker's whole life: its range's result into the file `path`, then b"ok" (or b"E"
    and the pickled exception) down the pipe `done`, then the process ends at once (`os._exit`: no
    finalization, no atexit handler, no buffered output of the parent's written twice)."""
    from .audit_ranges import audit_range

    code = 1
    try:
        _worker_signals()
        # The collector stays off through the packing too: the columns it builds (~10 objects a finding)
        # would set off collections, and nothing here needs one (see _forked_partition).
        gc.disable()
        # The result goes through a file, not the pipe: ~9 MB from a 1,000,000-line log took ~40 ms
        # through a pipe's 64 KiB at a time, ~5 ms through the page cache.
        with open(path, "wb") as out:
            out.write(audit_range(job, pieces, last=last, keep=_KEPT))
        os.write(done, b"ok")
        code = 0
    except BaseException as e:  # every failure goes to the parent, which raises it
        try:
            said = pickle.dumps(e, pickle.HIGHEST_PROTOCOL)
        except Exception:  # an exception that does not pickle goes as its text
            said = pickle.dumps(RuntimeError(f"a range worker failed: {e!r}"))
        with suppress(OSError):
            os.write(done, b"E" + said)
    finally:
        os._exit(code)


def _run_ranges(job: Job, workers: int, bar: _Bar) -> list[Partial]:
    """Audit the input by byte ranges, one a worker, and stitch the cuts (see audit_ranges). This process
    is worker 0: it audits range 0 while `workers - 1` forked processes audit the others.

    The workers are plain forks, not a multiprocessing pool: each ends by itself as soon as its result is
    written (while this process stitches), where a pool's teardown waited for them to exit and for its
    threads to stop (10-18 ms on the bench log, after the last stitch)."""
    from .audit_ranges import audit_plan, ranges

    started: list[int] = []
    pipes: dict[int, int] = {}  # pid -> the read end of its pipe, until read
    with tempfile.TemporaryDirectory(prefix="capstate-ranges-") as tmp:
        def start(k: int, pieces: list[tuple[int, int, int]], last: bool) -> Callable[[], bytes]:
            path = os.path.join(tmp, f"{k}.range")
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child; coverage does not follow a fork that _exits
                os.close(read_end)
                _range_child(job, pieces, last, path, write_end)
            os.close(write_end)  # so that the pipe ends (EOF) when the child does, however it ends
            started.append(pid)
            pipes[pid] = read_end

            def result() -> bytes:
                with os.fdopen(pipes.pop(pid), "rb", buffering=0) as pipe:
                    # b"ok" is taken as it comes, not at the pipe's end: that comes when the child has
                    # ended, after the kernel has unmapped its memory (~10 ms on the bench log's worker,
                    # which the parent would wait through before its stitch).
                    said = pipe.read(2)
                    if said != b"ok":
                        said += pipe.readall()
                if said != b"ok":
                    how = _reap(pid)
                    if said[:1] == b"E":
                        raise pickle.loads(said[1:])  # what our own child pickled
                    raise RuntimeError(f"a range worker ended without its result ({how})")
                with open(path, "rb") as blob:
                    return blob.read()
            return result

        try:
            return audit_plan(job, ranges(job.paths, workers), start, bar.update if bar.enabled else None)
        finally:
            # A child whose result was read has ended or is ending by itself; any other (this process
            # failed or was interrupted first) is ended here. Either way it is reaped, not left a zombie.
            for pid, read_end in pipes.items():
                os.close(read_end)
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            for pid in started:
                _reap(pid)


def _reap(pid: int) -> str:
    """Wait for a forked child to end (at once, when it has); how it ended, in words."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:  # reaped already
        return "reaped"
    if os.WIFSIGNALED(status):
        return f"signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _worker_signals() -> None:
    # Ctrl-C reaches the whole process group: only the parent answers it (one line, exit 130) and
    # ends the workers, so a worker never prints a KeyboardInterrupt traceback of its own. SIGTERM
    # (sent by Pool.terminate, or by _run_ranges) ends a worker quietly, without the parent's handler it
    # inherited.
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _run_processes(job: Job, workers: int, bar: _Bar) -> list[Partial]:
    import multiprocessing

    from .audit_ranges import splittable

    # fork hands each worker the loaded spec as it is (a Spec holds functions that pickle cannot carry).
    try:
        ctx = multiprocessing.get_context("fork")
    except ValueError:  # pragma: no cover - platforms without fork
        raise UsageError("--workers needs the 'fork' start method (Linux, macOS); use --dask local") from None
    # What the parent holds goes to the permanent generation before the fork (gc.freeze's purpose), so
    # that no collection in a worker walks, and copies, the parent's heap.
    gc.freeze()
    try:
        if splittable(job.paths, job.fmt):
            return _run_ranges(job, workers, bar)
        _FORKED["job"] = job
        if bar.enabled:
            _FORKED["progress"] = ctx.Value("q", 0, lock=False)
        with ctx.Pool(workers, initializer=_worker_signals) as pool:
            pending = pool.starmap_async(_forked_partition, [(k, workers) for k in range(workers)])
            while not pending.ready():
                pending.wait(0.2)
                if bar.enabled:
                    bar.update(_FORKED["progress"].value)
            return pending.get()
    finally:
        gc.unfreeze()
        _FORKED.clear()


def _run_dask(job: Job, address: str, workers: int, bar: _Bar) -> list[Partial]:
    # SIGINT is blocked in this thread until the cluster has started: every thread distributed starts
    # from here inherits the mask, and so does every worker process those threads spawn (a mask
    # survives fork and exec). Ctrl-C, which reaches the whole process group, is then answered by this
    # process alone, which stops the workers; one pressed while the cluster starts is held, not lost.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return _run_dask_blocked(job, address, workers, bar)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _run_dask_blocked(job: Job, address: str, workers: int, bar: _Bar) -> list[Partial]:
    try:
        import distributed  # noqa: F401 - only to say how to install it when it is missing
    except ImportError:
        raise DaskMissingError('--dask needs dask.distributed: pip install "capstate[dask]"') from None
    with ExitStack() as stack:
        stack.callback(_reap_children)  # runs last: whatever a teardown cut short does not outlive us
        try:
            return _dask_parts(stack, job, address, workers, bar)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: the cluster's teardown, cut short, logs tracebacks from its event loop
            # thread; the user gets main's one line, and nothing after it.
            import logging

            logging.disable(logging.CRITICAL)
            # A graceful close waits for running tasks, which may be blocked reading a file for as long
            # as it likes: the user asked to stop now, so the worker processes go first.
            _reap_children()
            raise


def _reap_children() -> None:
    import multiprocessing

    for child in multiprocessing.active_children():
        child.kill()


def _dask_parts(stack: ExitStack, job: Job, address: str, workers: int, bar: _Bar) -> list[Partial]:
    from distributed import Client, LocalCluster, as_completed

    if address == "local":
        import logging

        n = workers if workers > 1 else (os.cpu_count() or 1)
        # A SIGTERM while the cluster starts is held until it has started (not blocked: the workers
        # would inherit that, and the nanny stops them with SIGTERM): interrupted half-way,
        # distributed's own teardown fails on workers still starting, and prints its tracebacks.
        held: list[int] = []
        previous_term = signal.signal(signal.SIGTERM, lambda signum, _frame: held.append(signum))
        try:
            # Its workers' own logs (warnings while a cancelled run stops) would garble the report's
            # stderr; a failing task reaches us through gather() as an exception anyway.
            cluster = stack.enter_context(LocalCluster(  # type: ignore[no-untyped-call]
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=logging.CRITICAL))
        finally:
            signal.signal(signal.SIGTERM, previous_term)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # a Ctrl-C held meanwhile lands now
        if held:
            os.kill(os.getpid(), signal.SIGTERM)  # now, to the handler main installed: a clean stop
        client = stack.enter_context(Client(cluster))  # type: ignore[no-untyped-call]
    else:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # no worker of ours to protect
        try:
            client = stack.enter_context(Client(address, timeout=30))  # type: ignore[no-untyped-call]
        except (OSError, ValueError, TimeoutError) as exc:
            raise UsageError(f"--dask {address}: cannot reach the scheduler: {exc}") from None
    available = len(client.scheduler_info().get("workers", {}))
    # One task per partition; events of one payment meet in one task because they hash to it.
    parts = max(workers, available, 1)
    futures = client.map(audit_partition, [job] * parts, range(parts), [parts] * parts, pure=False)
    if bar.enabled:
        # A remote task cannot report bytes read; a finished partition is the unit here.
        bar.restart(total=parts, unit="partitions")
        for done, _ in enumerate(as_completed(futures), start=1):  # type: ignore[no-untyped-call]
            bar.update(done)
    result: list[Partial] = client.gather(futures)
    return result


# -------------------------------------------------------------------------------------------- entry


def check_overrides(overrides: Mapping[str, Any] | None) -> None:
    """Load every shipped spec an override may touch, so a bad --set fails before the audit starts."""
    if not overrides:
        return
    for key in overrides:
        head, dot, _ = str(key).partition(".")
        if dot and head not in POLICY_PARSERS and head not in shipped():
            raise UsageError(f"--set {key}: {head!r} is neither a policy rule nor a shipped provider "
                             f"({', '.join(shipped())})")
    for name in shipped():
        mine = overrides_for(name, overrides)
        if mine:
            load_spec(name, mine)


@contextmanager
def _spooled(paths: Sequence[str], needed: bool) -> Iterator[tuple[str, ...]]:
    """The paths, with stdin copied to a temporary file when other processes must read it."""
    if not needed or "-" not in paths:
        yield tuple(paths)
        return
    with tempfile.NamedTemporaryFile(prefix="capstate-stdin-", delete=True) as tmp:
        shutil.copyfileobj(sys.stdin.buffer, tmp)
        tmp.flush()
        yield tuple(tmp.name if p == "-" else p for p in paths)


def run_audit(paths: Sequence[str], *, spec: Spec | str | None, fmt: str = "canonical",
              as_of: datetime | str | None = None, workers: int = 1, dask: str | None = None,
              progress: bool = False, overrides: Mapping[str, Any] | None = None,
              settled_window: int = DEFAULT_SETTLED_WINDOW, fast: bool = True,
              names: Sequence[str] | None = None, max_memory: int | None = DEFAULT_MAX_MEMORY) -> AuditReport:
    """Audit files (paths or "-") in one process, in `workers` processes, or on Dask (`dask`:
    "local" or a scheduler address). The report is the same whichever way it runs, and with `fast=False`
    (every line through `observe`, the reference of the audit's fast path).

    `fmt` "auto" reads the inputs as what they are (`resolve_formats`; stdin as canonical unless
    given). `names` are what findings call the inputs (default: the paths as given).

    `max_memory` (bytes; None: no bound) bounds the open payments held in memory: past it the oldest
    spill to a temporary SQLite file and come back when their next event arrives (the same report).

    Raises UsageError (unreadable file, bad option, no dask), SpecError (bad spec or override).
    """
    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if workers < 1:
        raise UsageError(f"--workers {workers}: expected a whole number >= 1")
    if not paths:
        raise UsageError("no input: give one or more files, or - for stdin")
    seen: dict[object, str] = {}
    twice = []
    for p in paths:
        # One file under two spellings (./a.jsonl and a.jsonl, a symlink, a hard link) is one file.
        key = same_file_key(p)
        if key not in seen:
            seen[key] = p
        elif seen[key] not in twice:
            twice.append(seen[key])
    if twice:
        # Every event would be judged twice: a duplicate capture on every line.
        raise UsageError(f"{', '.join(twice)} given more than once")
    when = parse_as_of(as_of)
    if names is None:
        names = tuple(display_name(p) for p in paths)
    elif len(names) != len(paths):
        raise UsageError(f"{len(names)} names for {len(paths)} inputs")
    if fmt == "auto":
        fmt = "canonical" if "-" in paths else resolve_formats(paths, names, fmt)[0]
    if fmt == "vipps-events" and spec is None:
        spec = "vipps"
    resolved = resolve_spec(spec, overrides)
    if resolved is None:
        check_overrides(overrides)
    for path in paths:
        if path != "-":
            _check_readable(path)
    parallel = workers > 1 or dask is not None
    names = tuple(names)
    with _spooled(paths, parallel) as real, _Bar(progress, sum(_sizes(real)) if progress else 0) as bar:
        parts_held = max(workers, 1)
        job = Job(real, names, resolved, dict(overrides) if overrides and resolved is None else None, fmt,
                  settled_window, fast, max_open_for(max_memory, parts_held), when)
        if dask is not None:
            parts = _run_dask(job, dask, workers, bar)
        elif workers > 1:
            parts = _run_processes(job, workers, bar)
        else:
            parts = [audit_partition(job, progress=bar.update if bar.enabled else None)]
    return merge(parts, as_of=when, files=names, provider=resolved.name if resolved is not None else None)


class _Bar:
    """A progress bar on stderr (bytes read of the files as stored), or nothing when disabled."""

    def __init__(self, enabled: bool, total: int):
        self.enabled = enabled
        self._total = total
        self._stack = ExitStack()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

            columns = (TextColumn("auditing"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
            self._progress = self._stack.enter_context(Progress(*columns, console=Console(stderr=True),
                                                                transient=True))
            self._task = self._progress.add_task("audit", total=self._total or None)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def update(self, completed: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed)

    def restart(self, *, total: int, unit: str) -> None:
        if self._progress is not None:
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn

            self._progress.columns = (TextColumn("auditing"), BarColumn(), MofNCompleteColumn(), TextColumn(unit))
            self._progress.reset(self._task, total=total, completed=0)
