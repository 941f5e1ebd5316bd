"""Issue 12, the engine and spec side: each item's defect, reproduced as it was reported.

Each test failed on main before its fix. Sections follow the issue's item numbers.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from capstate import (
    Capture,
    CommandError,
    Event,
    EventError,
    EventType,
    Payment,
    apply,
    audit,
    decide,
    load_spec,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "capstate", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60, check=False, env=env)


def jsonl(path: Path, *events: dict[str, Any]) -> str:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return str(path)


# ------------------------------------------------------------------------------- 14. far instants

FAR = ["0001-01-01T00:00:00+14:00", "9999-12-30T00:00:00Z", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z"]


def far_authorization(at: str) -> dict[str, Any]:
    return {"payment": "order-10001", "type": "authorized", "at": at, "amount": 1000, "currency": "NOK"}


@pytest.mark.parametrize("at", FAR)
def test_a_far_instant_is_an_event_error_naming_at(at: str) -> None:
    with pytest.raises(EventError) as err:
        Event.from_dict(far_authorization(at))
    assert err.value.field == "at"
    assert "outside the instants capstate accepts" in str(err.value)


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-30T00:00:00Z"])
@pytest.mark.parametrize("command", ["validate", "capture"])
def test_validate_and_capture_refuse_a_far_history_on_one_line(tmp_path: Path, at: str, command: str) -> None:
    history = jsonl(tmp_path / "far.jsonl", far_authorization(at))
    extra = ["--dry-run"] if command == "capture" else []
    done = cli(tmp_path, command, "--provider", "bambora", "--history", history, *extra)
    assert done.returncode == 2, done
    assert done.stderr.count("\n") == 1 and "internal error" not in done.stderr, done.stderr
    assert "history line 1: at:" in done.stderr and "outside the instants capstate accepts" in done.stderr


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+14:00", "9999-12-30T00:00:00Z"])
def test_the_audit_calls_the_same_line_malformed_with_the_same_reason(at: str) -> None:
    line = orjson.dumps(far_authorization(at))
    with pytest.raises(EventError) as err:
        Event.from_json(line)
    for fast in (True, False):
        report = audit([line], "bambora", fast=fast)
        assert [f.code.value for f in report.violations] == ["LOG_MALFORMED"]
        assert report.violations[0].message == f"not a valid event: {err.value}"


@pytest.mark.parametrize("at", FAR)
def test_a_hand_built_event_at_a_far_instant_is_refused_by_apply_and_audited_malformed(at: str) -> None:
    when = datetime.fromisoformat(at)
    event = Event("order-10001", EventType.AUTHORIZED, when, 1000, "NOK")
    with pytest.raises(EventError) as err:
        apply(Payment.new(load_spec("bambora"), "order-10001"), event)
    assert err.value.field == "at"
    report = audit([event], "bambora")
    assert [f.code.value for f in report.violations] == ["LOG_MALFORMED"]
    assert "at: " in report.violations[0].message


@pytest.mark.parametrize("at", FAR)
def test_a_command_at_a_far_instant_is_a_command_error(at: str) -> None:
    with pytest.raises(CommandError, match="outside the instants capstate accepts"):
        Capture(at=datetime.fromisoformat(at), amount=100)


def test_a_payment_built_by_hand_with_a_far_authorization_is_refused() -> None:
    with pytest.raises(ValueError, match="authorized_at"):
        Payment(load_spec("bambora"), "order-10001", "authorized", "NOK", 1000,
                authorized_at=datetime(9999, 12, 30, tzinfo=UTC), validity=timedelta(days=7))


_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
_instants = st.builds(lambda d, tz: d.replace(tzinfo=tz), st.datetimes(), _offsets)


@given(authorized=_instants, at=_instants, spec=st.sampled_from(["bambora", "hellgate", "pipwave", "vipps"]),
       validity=st.sampled_from([None, "1s", "7d", "36500d"]))
@example(authorized=datetime(9999, 12, 30, tzinfo=UTC), at=datetime(9999, 12, 31, tzinfo=UTC), spec="bambora",
         validity=None)  # the report: decide raised OverflowError adding the 7 days
def test_decide_never_raises_whatever_the_instants(authorized: datetime, at: datetime, spec: str,
                                                   validity: str | None) -> None:
    s = load_spec(spec, {"authorization_validity": validity} if validity else None)
    try:
        p = Payment.authorized_for(s, "3b2f0c1e-6a4d-4f7b-9c2e-8d1a5e7f0b34", amount=100000, currency="EUR",
                                   at=authorized)
    except EventError as exc:
        assert exc.field == "at"
        return
    try:
        command = Capture(at=at, amount=500, key="k-1")
    except CommandError:
        return
    d = decide(p, command)
    d.to_dict()
    for v in d.violations:
        assert v.message
    if d.after is not None:
        d.after.summary()
