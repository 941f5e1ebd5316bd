"""Each shown payment's history, for the HTML report's timelines: a second read of the inputs.

The audit streams and keeps no events, so the report reads the inputs again, and keeps only the lines
of the payments it shows (at most MAX_EVENTS each): the events as the log states them, in file order,
with their file and line, so a reader sees a finding between the events around it. A line that is not
an event is left out here; it is a LOG_MALFORMED finding, which the timeline shows at its line.
"""

from __future__ import annotations

import zlib
from codecs import BOM_UTF8
from collections.abc import Collection, Sequence
from typing import Any

import orjson
from attrs import frozen

from .audit_run import MAX_LINE, _open, _payment_bytes, _skip_rest

MAX_EVENTS = 200
"""Events kept per payment; a longer history says how many more it had."""
_FIELDS = ("type", "at", "amount", "currency", "key", "provider", "flow", "reason")


@frozen
class Step:
    """One event of a payment's history, as the log states it (values not judged here)."""

    file: str
    line: int
    fields: dict[str, Any]


@frozen
class Timeline:
    steps: list[Step]
    more: int = 0


def timelines(paths: Sequence[str], names: Sequence[str], fmt: str,
              payments: Collection[str]) -> dict[str, Timeline]:
    """The histories of `payments` over all inputs, in input order."""
    wanted = set(payments)
    found: dict[str, list[Step]] = {}
    more: dict[str, int] = {}

    def keep(obj: object, name: str, number: int) -> None:
        if not isinstance(obj, dict):
            return
        ref = obj.get("payment")
        if not isinstance(ref, str) or ref not in wanted:
            return
        steps = found.setdefault(ref, [])
        if len(steps) >= MAX_EVENTS:
            more[ref] = more.get(ref, 0) + 1
            return
        steps.append(Step(name, number, {k: obj[k] for k in _FIELDS if obj.get(k) is not None}))

    if wanted:
        for path, name in zip(paths, names, strict=True):
            if fmt == "vipps-events":
                _read_vipps(path, name, keep)
            else:
                _read_canonical(path, name, wanted, keep)
    return {ref: Timeline(steps, more.get(ref, 0)) for ref, steps in found.items()}


def _read_canonical(path: str, name: str, wanted: set[str], keep: Any) -> None:
    targets = {ref.encode("utf-8", "surrogatepass") for ref in wanted}
    try:
        with _open(path) as (stream, _):
            number = 0
            while True:
                line = stream.readline(MAX_LINE)
                if not line:
                    return
                number += 1
                if number == 1:
                    line = line.removeprefix(BOM_UTF8)
                if not line.endswith(b"\n") and len(line) >= MAX_LINE:
                    _skip_rest(stream.readline)
                    continue
                ref = _payment_bytes(line)
                if ref is not None and ref not in targets:
                    continue  # the common case: another payment's line, not parsed
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                keep(obj, name, number)
    except (OSError, EOFError, zlib.error):
        return  # the audit has reported where the input breaks off


def _read_vipps(path: str, name: str, keep: Any) -> None:
    from ..providers.vipps.events import records

    try:
        with _open(path) as (stream, _):
            for number, item in records(stream, max_line=MAX_LINE):
                keep(item, name, number)
    except (OSError, EOFError, zlib.error):
        return
