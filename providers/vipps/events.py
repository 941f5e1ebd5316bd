"""The Vipps ePayment event log as canonical events.

`GET /epayment/v1/payments/{reference}/events` answers with a JSON array of PaymentEvent objects,
`{reference, pspReference, name, amount {currency, value}, timestamp, idempotencyKey, success}`
(vipps-epayment-openapi.yaml `#/components/schemas/PaymentEvent`; research/providers.md section 2.5:
Vipps calls it "the authoritative data for all details"). An export is that array, pretty-printed or
not (several pretty-printed responses may follow one another), or one PaymentEvent (or one such array)
per line.

Mapping (https://developer.vippsmobilepay.com/docs/APIs/epayment-api/):
- `AUTHORIZED`, `CAPTURED`, `REFUNDED` are the canonical `authorized`, `captured`, `refunded`, with
  `amount.value` (minor units, `Amount` schema) and `amount.currency`.
- `CANCELLED` (after authorization) and `TERMINATED` (the merchant cancelled before authorization,
  `State` schema) are `cancelled` without an amount: "Cancelling a payment will always cancel the
  entire remaining not-captured amount" (operations/cancel.md), so the log's amount adds nothing the
  aggregate does not know, and is not a partial cancel.
- `CREATED`, `ABORTED` and `EXPIRED` are the user's side before any reservation ("The user did not act
  on the payment within the payment expiration time", `State` schema): no money was held, so there is
  no canonical fact and nothing to audit.
- `success: false` is a failed attempt, not a fact: Vipps logs refused operations too (research 2.5,
  "success can be false, so a failed capture attempt is still logged"). It moves no money and is left
  out; the operations that did succeed are judged on their own.
- `idempotencyKey` is the canonical `key`; `pspReference` is Vipps's own id and plays no part.

Everything here is pure: bytes in, canonical dicts out. The CLI reads the files.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, runtime_checkable

import orjson
from attrs import frozen

from capstate import EventError
from capstate._bom import strip_bom

PROVIDER = "vipps"
_TYPES = {"AUTHORIZED": "authorized", "CAPTURED": "captured", "REFUNDED": "refunded",
          "CANCELLED": "cancelled", "TERMINATED": "cancelled"}
_BEFORE_RESERVATION = frozenset({"CREATED", "ABORTED", "EXPIRED"})
_WITH_AMOUNT = frozenset({"authorized", "captured", "refunded"})
# Vipps is a .NET shop: timestamps may carry 7 fractional digits, which RFC 3339 allows and Python's
# datetime (microseconds) cannot hold. Truncating to 6 loses 100 ns, never an ordering that matters here.
_LONG_FRACTION = re.compile(r"^(.*T\d{2}:\d{2}:\d{2}\.\d{6})\d+(.*)$")
_MAX_DOCUMENT = 256 << 20


@frozen
class BadRecord:
    """A record that is not a valid PaymentEvent: the audit reports it (LOG_MALFORMED) and goes on."""

    message: str
    payment: str | None = None


def to_canonical(obj: object) -> dict[str, Any] | None:
    """One PaymentEvent as a canonical event dict, or None when it records no fact (see the module doc).

    Raises EventError naming the PaymentEvent field. Amount and time are checked by `Event.from_dict`.
    """
    if not isinstance(obj, dict):
        raise EventError(f"a PaymentEvent is a JSON object, got {type(obj).__name__}")
    reference = obj.get("reference")
    if not isinstance(reference, str) or not reference:
        raise EventError("required, a non-empty string", field="reference")
    # v1.2.0 of the spec still names the field `paymentAction` in `required` (research 2.7, quirk 2).
    name = obj.get("name", obj.get("paymentAction"))
    if not isinstance(name, str) or (name not in _TYPES and name not in _BEFORE_RESERVATION):
        known = ", ".join(sorted({*_TYPES, *_BEFORE_RESERVATION}))
        raise EventError(f"{_short(name)} is not a PaymentEventName ({known})", field="name")
    success = obj.get("success")
    if type(success) is not bool:
        raise EventError(f"required, true or false, got {_short(success)}", field="success")
    if not success or name in _BEFORE_RESERVATION:
        return None
    # A wrong type is named by the export's own field (an auditor reads `timestamp`, not the canonical
    # `at`); the values themselves (an RFC 3339 time, a currency code, an amount >= 0) are judged by
    # Event.from_dict, as for any canonical line.
    timestamp = obj.get("timestamp")
    if not isinstance(timestamp, str):
        raise EventError(f"required, an RFC 3339 string, got {_short(timestamp)}", field="timestamp")
    m = _LONG_FRACTION.match(timestamp)
    if m:
        timestamp = m.group(1) + m.group(2)
    amount = obj.get("amount")
    if not isinstance(amount, dict):
        raise EventError(f"required, an object {{currency, value}}, got {_short(amount)}", field="amount")
    currency, value = amount.get("currency"), amount.get("value")
    if not isinstance(currency, str):
        raise EventError(f"required, an ISO 4217 code, got {_short(currency)}", field="amount.currency")
    if type(value) is not int:  # not a bool, not a float: minor units are whole numbers (`Amount` schema)
        raise EventError(f"required, an integer of minor units, got {_short(value)}", field="amount.value")
    key = obj.get("idempotencyKey")
    if key is not None and not isinstance(key, str):
        raise EventError(f"a string or null, got {_short(key)}", field="idempotencyKey")
    canonical = _TYPES[name]
    out: dict[str, Any] = {"payment": reference, "type": canonical, "at": timestamp, "provider": PROVIDER,
                           "currency": currency}
    if canonical in _WITH_AMOUNT:
        out["amount"] = value
    if key is not None:
        out["key"] = key
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:60] + "..."


def _record(obj: object) -> dict[str, Any] | BadRecord | None:
    try:
        return to_canonical(obj)
    except EventError as exc:
        ref = obj.get("reference") if isinstance(obj, dict) else None
        return BadRecord(f"not a valid Vipps PaymentEvent: {exc}", ref if isinstance(ref, str) and ref else None)


def _from_value(value: object) -> Iterator[dict[str, Any] | BadRecord]:
    """The records of one decoded line: a PaymentEvent, or an array of them (one GET response)."""
    for obj in (value if isinstance(value, list) else (value,)):
        rec = _record(obj)
        if rec is not None:
            yield rec


_STRUCTURE = re.compile(rb'["\\\[\]{},\n]')


def split_array(data: bytes, first_line: int = 1) -> Iterator[tuple[int, bytes | BadRecord]]:
    """The elements of a top-level JSON array (or of several, one after another: responses appended to
    one file), each with the line it starts on.

    orjson gives no positions, so the structure is scanned: strings (with their escapes) and nesting
    are tracked, and each top-level element is cut out whole for orjson to parse. A document that
    breaks off inside an element yields a BadRecord at the line where that element starts; one that breaks
    off between elements (a missing final `]`) yields every element, then a BadRecord at its last line.
    """
    start = len(data) - len(data.lstrip())
    line = first_line + data.count(b"\n", 0, start)
    if data[start:start + 1] != b"[":
        yield line, BadRecord("a Vipps event log is a JSON array of PaymentEvent objects")
        return
    depth = 0
    in_string = False
    skip_until = -1  # the byte after a backslash is escaped, whatever it is
    seg_start, seg_line = start + 1, line

    def segment(end: int) -> tuple[int, bytes | BadRecord]:
        text = data[seg_start:end]
        body = text.lstrip()
        where = seg_line + text.count(b"\n", 0, len(text) - len(body))
        body = body.rstrip()
        return where, (body if body else BadRecord("an empty element in the JSON array"))

    for m in _STRUCTURE.finditer(data, start):
        pos = m.start()
        ch = m.group()
        if ch == b"\n":
            line += 1
        elif pos < skip_until:
            continue
        elif in_string:
            if ch == b"\\":
                skip_until = pos + 2
            elif ch == b'"':
                in_string = False
        elif ch == b'"':
            in_string = True
        elif ch in (b"[", b"{"):
            depth += 1
        elif ch in (b"]", b"}"):
            depth -= 1
            if depth == 0:
                where, element = segment(pos)
                # `[]` is an empty log; `[a, ]` has an empty element.
                if not (isinstance(element, BadRecord) and seg_start == start + 1):
                    yield where, element
                rest = data[pos + 1:]
                body = rest.lstrip()
                if not body:
                    return
                if body[:1] != b"[":
                    yield line, BadRecord("text after the end of the JSON array")
                    return
                # Another response follows (GET .../events of each payment, pretty-printed and appended,
                # as `jq . >> export.json` writes them): its elements are as much the log as the first's.
                start = pos + 1 + len(rest) - len(body)
                seg_start, seg_line = start + 1, line + data.count(b"\n", pos + 1, start)
        elif ch == b"," and depth == 1:
            yield segment(pos)
            seg_start, seg_line = pos + 1, line
    where, last = segment(len(data))
    if depth == 1 and not in_string:
        # Cut between elements (only the closing `]` missing, or after a comma): every element is whole, the
        # last one included. Keep them all, then say where the array breaks off.
        if isinstance(last, bytes):
            yield where, last
        end = first_line + data.count(b"\n", 0, len(data.rstrip()))
        yield end, BadRecord("the JSON array breaks off after its last complete element: no closing ']' "
                             "(truncated export?)")
        return
    yield where, BadRecord("the JSON array breaks off inside this element (truncated export?)")


@runtime_checkable
class Reader(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


def records(stream: Reader | Iterable[bytes], *, max_line: int = 1 << 20
            ) -> Iterator[tuple[int, dict[str, Any] | BadRecord]]:
    """(line, canonical event dict or BadRecord) for each PaymentEvent of an export.

    When the first non-blank line opens an array that does not close on that line, the input is one
    (pretty-printed) JSON document; otherwise each line is a PaymentEvent or an array of them.
    """
    lines: Iterator[bytes] = (iter(lambda: stream.readline(max_line + 1), b"")
                              if isinstance(stream, Reader) else iter(stream))
    number = 0
    first = True
    try:
        for raw in lines:
            number += 1
            if number == 1:
                # PowerShell and Notepad open a UTF-8 export with a BOM: the file's, not its first record's.
                raw = strip_bom(raw)
            if len(raw) > max_line:
                if not raw.endswith(b"\n"):
                    for more in lines:
                        if more.endswith(b"\n"):
                            break
                yield number, BadRecord(f"line longer than {max_line} bytes; not audited")
                first = False
                continue
            if not raw.strip():
                continue
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                if first and raw.lstrip().startswith(b"["):
                    yield from _read_document(raw, lines, number)
                    return
                yield number, BadRecord(f"not valid JSON ({exc})")
                first = False
                continue
            first = False
            for rec in _from_value(value):
                yield number, rec
    except _READ_ERRORS as exc:
        # A gzip stream that breaks off says so only while being read: after the lines before it,
        # at the line it breaks on (counted here, whether or not those lines recorded a fact).
        yield number + 1, _unreadable(number, exc)


# What reading a plain or gzip stream raises when the file is cut short or corrupt.
_READ_ERRORS = (OSError, EOFError, zlib.error)


def _unreadable(number: int, exc: BaseException) -> BadRecord:
    return BadRecord(f"cannot read past line {number}: {exc}")


def _read_document(head: bytes, lines: Iterator[bytes], number: int
                   ) -> Iterator[tuple[int, dict[str, Any] | BadRecord]]:
    """One (pretty-printed) JSON array starting at line `number`: read up to the cap and no further (a
    file that opens an array and never closes it must not be pulled into memory whole before its size
    is known), then split. A read error keeps the elements read before it."""
    chunks, size = [head], len(head)
    broken: BaseException | None = None
    try:
        for more in lines:
            size += len(more)
            if size > _MAX_DOCUMENT:
                yield number, BadRecord(f"a JSON document over {_MAX_DOCUMENT >> 20} MiB; export one "
                                        f"PaymentEvent per line instead")
                return
            chunks.append(more)
    except _READ_ERRORS as exc:
        broken = exc
    yield from _document(b"".join(chunks), number)
    if broken is not None:
        last = number + len(chunks) - 1
        yield last + 1, _unreadable(last, broken)


def _document(data: bytes, first_line: int) -> Iterator[tuple[int, dict[str, Any] | BadRecord]]:
    for line, element in split_array(data, first_line):
        if isinstance(element, BadRecord):
            yield line, element
            continue
        try:
            value = orjson.loads(element)
        except orjson.JSONDecodeError as exc:
            yield line, BadRecord(f"not valid JSON ({exc})")
            continue
        rec = _record(value)
        if rec is not None:
            yield line, rec
