"""Time values: RFC 3339 instants and short durations ("180d", "36h"). The core never reads a clock."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+)\s*(d|h|m|s|w)\s*$", re.ASCII)
_UNITS = {"w": timedelta(weeks=1), "d": timedelta(days=1), "h": timedelta(hours=1),
          "m": timedelta(minutes=1), "s": timedelta(seconds=1)}
# The longest window a policy may declare (validity, refund window): 100 years. It is added to instants to
# make deadlines, so it bounds the instants capstate accepts (below).
MAX_WINDOW = timedelta(days=36500)
# The instants capstate accepts, wherever one comes in (an event's `at`, a command's, a CLI option): every
# instant is converted to UTC to be shown, and has a policy window added to it for a deadline, and both
# must stay inside what a datetime holds (years 1-9999). 0001-01-01T00:00:00+14:00 is year 0 in UTC, and
# an authorization at 9999-12-30 would expire past the calendar: such instants are refused where they
# enter, as the same typed error every time, never as an OverflowError deep inside. Judged by the year as
# written, one attribute read: an offset moves an instant by less than a day.
FIRST_YEAR, LAST_YEAR = 2, 9898
assert datetime(LAST_YEAR + 1, 1, 2, tzinfo=UTC) + MAX_WINDOW < datetime.max.replace(tzinfo=UTC)
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


def instant_problem(at: datetime) -> str | None:
    """None when `at` (timezone-aware) is an instant capstate accepts, else why not."""
    if FIRST_YEAR <= at.year <= LAST_YEAR:
        return None
    return (f"{at.isoformat()} is outside the instants capstate accepts (years {FIRST_YEAR}-{LAST_YEAR}): a "
            f"deadline or the UTC form of it would fall off the calendar")


def parse_instant(text: str) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset. Naive or malformed text is a ValueError, and
    so is an instant outside the years FIRST_YEAR..LAST_YEAR (`instant_problem`)."""
    if not isinstance(text, str) or not _RFC3339.fullmatch(text):
        raise ValueError(f"{text!r} is not an RFC 3339 timestamp with an offset, like 2026-01-02T10:00:00Z")
    try:
        # RFC 3339 §5.6 allows a lower-case "t" and "z"; fromisoformat does not.
        at = datetime.fromisoformat(text.upper())
    except ValueError:
        # The shape matched, so a field is out of range (month 13, hour 25, offset +25:00); Python's own
        # message for an offset quotes timedelta reprs, which reads as an internal error.
        raise ValueError(f"{text!r} is not a valid RFC 3339 instant: a field is out of range "
                         f"(month, day, hour, minute, second or offset)") from None
    if not FIRST_YEAR <= at.year <= LAST_YEAR:  # instant_problem, inline: every parsed event passes here
        raise ValueError(instant_problem(at))
    return at


def format_instant(at: datetime) -> str:
    """RFC 3339 in UTC with a Z: 2026-01-02T10:00:00Z."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")

