"""Reading a payment's canonical JSONL history and replaying it: the CLI's file I/O.

The core never reads files (DESIGN.md section 2), so the lines are read here, plain or gzip, from a
path or stdin, and handed to the pure `Event.from_json` and `apply` one at a time. Every failure is a
`HistoryError` that names the line, so the CLI can print one line and exit 2.
"""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from attrs import frozen

from .._bom import strip_bom
from .._engine import apply
from .._errors import EventError, InvalidTransition
from .._spec import Spec
from .._values import Event, Payment

_GZIP_MAGIC = b"\x1f\x8b"


class HistoryError(ValueError):
    """A history that cannot be read or replayed; the message names the file or the line."""


@frozen
class Replayed:
    """A replayed history: the payment after its last event, and when the latest event happened."""

    payment: Payment
    events: int
    latest_at: datetime
    latest_line: int


@contextmanager
def _open(source: str) -> Iterator[Iterable[bytes]]:
    if source == "-":
        stdin = sys.stdin.buffer
        # Sniff rather than trust a name: stdin has none, and `zcat`-less pipes are common.
        gz = stdin.peek(2)[:2] == _GZIP_MAGIC if hasattr(stdin, "peek") else False
        yield gzip.GzipFile(fileobj=stdin, mode="rb") if gz else stdin
        return
    try:
        raw = open(source, "rb")  # noqa: SIM115 - closed below; gzip wraps it
    except OSError as exc:
        raise HistoryError(f"cannot read history {source}: {exc.strerror or exc}") from None
    try:
        yield gzip.GzipFile(fileobj=raw, mode="rb") if source.endswith(".gz") else raw
    finally:
        raw.close()


def read_events(source: str) -> Iterator[tuple[int, Event]]:
    """(line number, event) for each non-blank line of `source` (a path, or "-" for stdin).

    Streams: a long history is never held in memory. Raises HistoryError.
    """
    name = "stdin" if source == "-" else source
    with _open(source) as stream:
        number = 0
        try:
            for number, line in enumerate(stream, start=1):
                if number == 1:
                    line = strip_bom(line)
                if not line.strip():
                    continue
                try:
                    yield number, Event.from_json(line)
                except EventError as exc:
                    raise HistoryError(f"history line {number}: {exc}") from None
        except (OSError, EOFError, zlib.error) as exc:
            # gzip reports a corrupt or truncated stream while iterating, after some lines were read.
            where = f" after line {number}" if number else ""
            raise HistoryError(f"cannot read history {name}{where}: {exc}") from None


def replay_history(spec: Spec, source: str, *, payment: str | None = None) -> Replayed:
    """Replay `source` strictly with `apply`, from `Payment.new(spec, <first event's payment>)`.

    Every event must be for one payment, or with `payment` (`--payment REF`) only that payment's events
    are read out of a log of many; each, when it names a provider, for `spec`'s. Raises HistoryError
    naming the line for a bad line, a foreign event or an impossible transition.
    """
    current: Payment | None = None
    count = 0
    latest: tuple[datetime, int] | None = None
    for number, event in read_events(source):
        if payment is not None and event.payment != payment:
            continue
        if current is None:
            current = Payment.new(spec, event.payment)
        elif event.payment != current.reference:
            raise HistoryError(f"history line {number}: event for payment {event.payment!r} in the history of "
                               f"{current.reference!r}; give one payment's history, or pick one with --payment REF")
        if event.provider is not None and event.provider != spec.name:
            raise HistoryError(f"history line {number}: event from provider {event.provider!r}, but the spec "
                               f"is {spec.name!r}")
        try:
            current = apply(current, event)
        except InvalidTransition as exc:
            raise HistoryError(f"history line {number}: {exc}") from None
        count += 1
        if latest is None or event.at >= latest[0]:
            latest = (event.at, number)
    name = "stdin" if source == "-" else source
    if current is None or latest is None:
        if payment is not None:
            raise HistoryError(f"history {name} has no events for payment {payment!r} (--payment)")
        raise HistoryError(f"history {name} has no events")
    return Replayed(current, count, latest[0], latest[1])
