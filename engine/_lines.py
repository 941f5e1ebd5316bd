"""A log line as the audit's fast path decodes it: typed at the edge, by msgspec.

Decoding a canonical line straight into a `StrictLine` checks every field's JSON type in C (a str, an
int, or null) and refuses any other key, so the hot loop (`_hot`) judges only values, never types. A
line the strict decoder refuses is not thereby wrong: an extra field, or a value of the wrong type,
sends it the way it went before (orjson, then `Event.from_dict`), which reports exactly what it always
did. Refusing unknown keys also keeps msgspec's leniency out of the audit: it would skip an unknown
field's value without checking its UTF-8, where orjson (the reference reader) calls the line malformed.
Duplicate keys read last-wins in both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

from ._values import EventType

# The event types' names: the very str objects `EventType` holds, which `_hot` compares a decoded `type` with
# by identity (msgspec gives a Literal's own object: no str made per line, and no characters compared).
TYPE_NAMES: tuple[str, ...] = tuple(t.value for t in EventType)
if TYPE_CHECKING:
    TypeName = str
else:
    TypeName = Literal[TYPE_NAMES]


class Line(msgspec.Struct, gc=False):
    """The canonical event's fields (DESIGN.md section 3), each its JSON type or None when absent or null;
    `type` one of the event types' names (any other was refused by `plain` anyway: the line goes the same way,
    parsed again). `gc=False`: it holds only str, int and None, so the cyclic collector never needs to track it."""

    payment: str
    type: TypeName
    at: str
    amount: int | None = None
    currency: str | None = None
    provider: str | None = None
    key: str | None = None
    flow: str | None = None
    reason: str | None = None


class StrictLine(Line, forbid_unknown_fields=True, gc=False):
    """A Line decoded from raw JSON: no key beyond the canonical ones (see the module's docstring)."""


decode_line = msgspec.json.Decoder(StrictLine).decode
LineError = msgspec.MsgspecError


def to_line(obj: dict[str, object]) -> Line:
    """A Line from an already decoded object (extra keys ignored, as Event.from_dict ignores them); raises
    LineError when a field has another type."""
    return msgspec.convert(obj, Line)
