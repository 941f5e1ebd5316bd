"""A parallel audit's findings cross a pipe (`Finding.__reduce__`, `audit_ranges.pack`/`unpack`): a message
still deferred goes as its deferred state (small and picklable by construction: `_exact.breach`), so no process
formats it before the report is written. The finding read on the other side equals the one sent, message
included."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from typing import Any

import pytest

from capstate import Code
from capstate._audit import Dangling, Finding, Partial, _exact, _said, _said_later, message_state
from capstate._cli.audit_ranges import pack, unpack
from capstate._values import Violation, deferred_slot, deferred_violation

CALLS: list[tuple[Any, ...]] = []


def excess(amount: int, limit: int, currency: str, code: Code) -> tuple[str]:
    """A module-level settle with small arguments, as a guard's deferred message is (it counts its calls)."""
    CALLS.append((amount, limit, currency, code))
    return (f"{amount} {currency} is more than the {limit} left ({code.value})",)


def lapsed(when: datetime, tag: tuple[str, int]) -> tuple[str]:
    CALLS.append((when, tag))
    return (f"lapsed at {when.isoformat()} {tag}",)


def is_deferred(value: Finding) -> bool:
    try:
        deferred_slot(Finding, "message").__get__(value)  # the slot itself: reading `message` settles it
    except AttributeError:
        return True
    return False


def _breach(*args: Any) -> Finding:
    """A breach's finding as the exact path builds it (either build of `_exact`, as the audit chose)."""
    violation = args[5]
    found: Finding = _exact.breach(Finding, _said, _said_later, *args[:6], violation.code, *args[6:])
    return found


def findings() -> list[Finding]:
    small = deferred_violation(Code.EXCEEDS_CAPTURABLE, (excess, 1500, 1000, "NOK", Code.EXCEEDS_CAPTURABLE))
    dated = deferred_violation(Code.AUTHORIZATION_EXPIRED, (lapsed, datetime(2026, 1, 3, tzinfo=UTC), ("a", 1)))
    known = Violation(Code.DUPLICATE_CAPTURE, "already captured under key k1")
    return [
        _breach("p1", 3, "a.jsonl", "captured", 1500, small, "2026-01-01T00:00:00Z", 500, "NOK"),
        _breach("p2", 4, "a.jsonl", "expired", None, dated, None, None, None),
        _breach("p5", 7, "b.jsonl", "captured", 2, known, None, 2, "NOK"),
        Finding(None, 8, "b.jsonl", Code.LOG_MALFORMED, "not JSON", None),
    ]


def expected() -> list[dict[str, Any]]:
    return [f.to_dict() for f in findings()]  # every message formatted, as a report writes them


def test_a_small_deferred_state_crosses_unformatted_and_reads_the_same() -> None:
    want = expected()
    sent = findings()
    CALLS.clear()
    states = [message_state(f) for f in sent]
    # Nothing was formatted to cross: every breach goes as its state (one whose Violation's message was
    # known too), and the finding built with its message as that text.
    assert not CALLS
    assert [type(s) for s in states] == [tuple, tuple, tuple, str]
    back = unpack(pack(Partial(sent, 10, 5, frozenset({"vipps"}), None)))
    assert [is_deferred(f) for f in back.findings] == [True, True, True, False]
    assert not CALLS  # unpacking formats nothing either
    assert [f.to_dict() for f in back.findings] == want  # formatted on first read, after the trip
    assert list(CALLS) == [(1500, 1000, "NOK", Code.EXCEEDS_CAPTURABLE), (datetime(2026, 1, 3, tzinfo=UTC), ("a", 1))]


@pytest.mark.parametrize("index", range(4))
def test_a_finding_pickles_to_an_equal_one(index: int) -> None:
    sent = findings()[index]
    back = pickle.loads(pickle.dumps(sent, pickle.HIGHEST_PROTOCOL))
    assert back == findings()[index]
    assert back.to_dict() == expected()[index]


def test_a_message_read_before_the_trip_reads_the_same_after_it() -> None:
    sent = findings()
    assert sent[0].message.startswith("captured 1500: 1500 NOK")
    back = unpack(pack(Partial(sent, 1, 1, frozenset(), None)))
    assert [f.to_dict() for f in back.findings] == expected()


def test_the_rest_of_a_partial_survives_the_trip() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    dangling = [Dangling("p9", "a.jsonl", 12, "vipps", "NOK", 1000, 400, when, when)]
    sent = Partial(findings(), 42, 17, frozenset({"vipps", "adyen"}), when, dangling)
    back = unpack(pack(sent))
    assert (back.events, back.payments, back.providers, back.latest, back.dangling) == (
        42, 17, frozenset({"vipps", "adyen"}), when, dangling)
    assert [f.to_dict() for f in back.findings] == expected()


def test_a_finding_that_crossed_once_crosses_again_as_it_came() -> None:
    want = expected()
    CALLS.clear()
    once = unpack(pack(Partial(findings(), 1, 1, frozenset(), None))).findings
    twice = unpack(pack(Partial(once, 1, 1, frozenset(), None))).findings
    again = [pickle.loads(pickle.dumps(f, pickle.HIGHEST_PROTOCOL)) for f in twice]
    assert [is_deferred(f) for f in again] == [True, True, True, False]
    assert not CALLS
    assert [f.to_dict() for f in again] == want
