"""Time values: RFC 3339 instants and short durations ("180d", "36h"). The core never reads a clock."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+)\s*(d|h|m|s|w)\s*$", re.ASCII)
_UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1),
          "m": timedelta(minutes=1), "s": timedelta(seconds=1)}
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII)


def parse_duration(text: str) -> timedelta:
    """'180d' -> 180 days. Units: w, d, h, m, s. ValueError for anything else (no floats, no sums)."""
    m = _DURATION.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"{text!r} is not a duration like '14d', '36h' or '90m'")
    return int(m.group(1)) * _UNITS[m.group(2)]


def format_duration(delta: timedelta) -> str:
    """The shortest exact spelling: 180 days -> '180d', 36 hours -> '36h'."""
    secs = int(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs % size == 0 and secs:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def parse_instant(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset. Naive or malformed text is a ValueError."""
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp with an offset, like 2026-01-02T10:00:00Z")
    try:
        # RFC 3339 §5.6 allows a lower-case "t" and "z"; fromisoformat does not.
        return datetime.fromisoformat(text.upper())
    except ValueError:
        # The shape matched, so a field is out of range (month 13, hour 25, offset +25:00); Python's own
        # message for an offset quotes timedelta reprs, which reads as an internal error.
        raise ValueError(f"{text!r} is not a valid RFC 3339 instant: a field is out of range "
                         f"(month, day, hour, minute, second or offset)") from None


def format_instant(at: datetime) -> str:
    """RFC 3339 in UTC with a Z: 2026-01-02T10:00:00Z."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")

