"""Settled payments are packed into bytes once no longer young, and recalled whole when an event touches them
again (issue 13 (d)); the spill store packs open payments the same way. Packing must change nothing: a
record comes back field for field, and an audit that packs reports exactly what one that never packs does."""

from __future__ import annotations

import gc
import weakref
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_audit_fastpath import OVERRIDES, logs, plausible_logs

from capstate._audit import Auditor, merge
from capstate._hotpath import hot, plain
from capstate._values import Flow, _Deferrable
from capstate.bench import write_log

BUILDS = {"installed": hot, "plain": plain()}
FIELDS = ("name", "state", "reference", "reference_ok", "currency", "authorized", "captured", "cancelled", "refunded",
          "pending", "capture_count", "refund_count", "authorized_at", "validity", "flow", "uses", "exp", "rwin",
          "after", "at_dt", "line", "file", "pos")


class Key(str):
    """A key of a str subclass, as an Event built by hand may hold: marshal refuses it, pickle keeps it."""


def _fields(r: Any) -> list[tuple[str, Any, type, Any]]:
    """Every field's value, its type and (for an instant) its zone: what a packed record must give back."""
    return [(name, getattr(r, name), type(getattr(r, name)), getattr(getattr(r, name), "tzinfo", None))
            for name in FIELDS] + [("moves", id(r.moves), int, None), ("fast", id(r.fast), int, None)]


def _records(a: Auditor) -> list[Any]:
    k = a._k
    return [*k.live.values(), *k.settled.values(), *(k.unpack(ref, blob) for ref, blob in k.packed.items())]


def _feed(lines: list[bytes | dict[str, Any]], build: str, window: int, overrides: dict[str, Any] | None,
          young: int | None = None) -> Auditor:
    a = Auditor(None, overrides=overrides, settled_window=window, hot=BUILDS[build])
    if young is not None:
        a._k.young = young
    for number, item in enumerate(lines, start=1):
        a.feed(item, number, "x.jsonl")
    return a


@pytest.mark.parametrize("build", BUILDS)
@given(st.one_of(logs(), plausible_logs()), st.sampled_from([2, 40, 250_000]), st.sampled_from(OVERRIDES))
def test_every_record_comes_back_from_its_bytes_as_it_was(build: str, lines: list[bytes | dict[str, Any]],
                                                           window: int, overrides: dict[str, Any] | None) -> None:
    a = _feed(lines, build, window, overrides)
    k = a._k
    for r in _records(a):
        assert _fields(k.unpack(r.reference, k.pack(r))) == _fields(r)
        assert BUILDS[build].packed_pos(k.pack(r)) == r.pos


@pytest.mark.parametrize("build", BUILDS)
def test_records_of_every_shape_come_back(build: str) -> None:
    """The shapes the plain fixed fields cannot hold go the general way, and come back as well."""
    a = _feed([{"payment": "p", "type": "authorized", "at": "2026-03-01T09:00:00Z", "provider": "vipps",
                "amount": 100, "currency": "NOK", "key": "k1"},
               {"payment": "p", "type": "captured", "at": "2026-03-01T09:05:00Z", "amount": 100, "key": "k2"}],
              build, 250_000, None)
    k = a._k
    (base,) = _records(a)
    west = timezone(timedelta(hours=-10))
    shapes: list[dict[str, Any]] = [
        {},
        {"authorized": 2**70, "captured": -(2**64)},  # beyond int64
        {"pos": -5, "line": 2**80},
        {"at_dt": datetime(2026, 3, 1, 9, 0, 0, 500_000, tzinfo=west), "after": "~"},
        {"authorized_at": datetime(2026, 3, 1, 1, 0, tzinfo=west)},
        {"authorized_at": datetime(2026, 3, 1, 1, 0, tzinfo=UTC)},  # set by hand: no stamp known, the wide fields
        {"authorized_at": datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC), "exp": "", "rwin": None},
        {"authorized_at": None, "validity": None, "currency": None, "flow": Flow.AUTOMATIC, "exp": None},
        {"validity": timedelta(days=7, microseconds=3), "flow": Flow.MANUAL, "reference_ok": 0},
        {"uses": ("\u00e6\u00f8\u00e5\ud800", "capture", 2**65, False), "after": "x" * 200},
        {"uses": (Key("k"), "capture", 1, True)},
        {"currency": "X" * 5, "file": "d\u00e9j\u00e0.jsonl"},
        # The halves of the paired fields and the bit fields at their edges, and just past them (the wide
        # fields then).
        {"pos": 2**31 - 1, "line": 2**31 - 1, "authorized": 2**31 - 1, "capture_count": 2**31 - 1},
        {"captured": 2**31 - 1, "cancelled": 2**31 - 1, "refunded": 2**31 - 1, "pending": 2**31 - 1},
        {"refunded": 2**31},
        {"line": 2**31},
        {"refund_count": 2**11 - 1, "reference_ok": 1},
        {"refund_count": 2**11},
        {"refund_count": 2**31},
        {"pending": -1},
        {"reference_ok": 2},
        {"after": "a" * 127, "exp": "b" * 127, "rwin": "c" * 127},
        {"after": "", "exp": "", "rwin": ""},
    ]
    for change in shapes:
        r = k.unpack(base.reference, k.pack(base))
        for name, value in change.items():
            setattr(r, name, value)
        blob = k.pack(r)
        again = k.unpack(r.reference, blob)
        assert _fields(again) == _fields(r), change
        assert BUILDS[build].packed_pos(blob) == r.pos
        assert type(again.uses[0] if again.uses else None) is type(r.uses[0] if r.uses else None)


@pytest.mark.parametrize("build", BUILDS)
def test_an_authorization_the_fast_path_applied_packs_as_its_stamp(build: str) -> None:
    """The fast path keeps an authorization's instant as a stamp too, which the small fields hold (not the
    datetime's state); setting `authorized_at` forgets the stamp, so a stale one is never packed."""
    module = BUILDS[build]
    a = _feed([{"payment": "p", "type": "authorized", "at": "2026-03-01T09:00:07Z", "provider": "vipps",
                "amount": 100, "currency": "NOK"}], build, 250_000, None)
    k = a._k
    (r,) = _records(a)
    assert r.auth_stamp == 20260301090007
    blob = k.pack(r)
    assert blob[0] == module._PLAIN_SMALL
    again = k.unpack(r.reference, blob)
    assert again.authorized_at == datetime(2026, 3, 1, 9, 0, 7, tzinfo=UTC) and again.authorized_at.tzinfo is UTC
    assert again.auth_stamp == r.auth_stamp and k.pack(again) == blob
    r.authorized_at = datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert r.auth_stamp == -1
    assert k.unpack(r.reference, k.pack(r)).authorized_at == datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("build", BUILDS)
def test_names_numbered_past_the_small_fields_come_back(build: str) -> None:
    """The small fields hold a spec name's number below 2**15 and a file's below 2**16; past them, the wide ones."""
    a = _feed([{"payment": "p", "type": "authorized", "at": "2026-03-01T09:00:00Z", "provider": "vipps",
                "amount": 100, "currency": "NOK", "key": "k1"}], build, 250_000, None)
    k = a._k
    (base,) = _records(a)
    small = len(k.pack(base))
    for n in range(2**16):
        k.word(f"w{n}")
    for change in ({"file": "w40000"}, {"file": "w65000"}, {"name": "w33000"}):
        r = k.unpack(base.reference, k.pack(base))
        for name, value in change.items():
            setattr(r, name, value)
        if "name" in change:  # no spec of that name: keep the record's, numbered past 2**15
            k.words[k.word_ids["w33000"]] = base.name
            k.word_ids[base.name] = k.word_ids["w33000"]
            r.name = base.name
        blob = k.pack(r)
        assert _fields(k.unpack(r.reference, blob)) == _fields(r), change
        assert BUILDS[build].packed_pos(blob) == r.pos
        assert len(blob) > small or "file" in change


@pytest.mark.parametrize("build", BUILDS)
def test_settled_payments_are_packed_and_the_report_is_the_same(build: str, tmp_path: Path) -> None:
    log = write_log(str(tmp_path), payments=600, seed=7)
    lines = Path(log.path).read_bytes().splitlines()

    def report(fast: bool, young: int | None) -> tuple[bytes, int]:
        a = Auditor(None, settled_window=1600, fast=fast, hot=BUILDS[build])  # young: 100 lines
        if young is not None:
            a._k.young = young
        packed = 0
        for start in range(0, len(lines), 100):
            for number, raw in enumerate(lines[start:start + 100], start=start + 1):
                a.feed(raw, number, log.path)
            packed = max(packed, len(a._k.packed))
        return orjson.dumps(merge([a.partial()], files=(log.path,)).to_dict()), packed

    packing, packed = report(True, None)
    never, none_packed = report(True, 10**12)
    assert packed > 250 and none_packed == 0  # most of the ~320 settled payments held were packed
    assert packing == never == report(False, None)[0]
    assert b"REFUND_EXCEEDS_CAPTURED" in packing  # late events on settled payments, so the comparison can fail


@given(st.one_of(logs(), plausible_logs()), st.integers(1, 40), st.sampled_from(OVERRIDES))
def test_packing_young_or_old_reports_the_same(lines: list[bytes | dict[str, Any]], window: int,
                                               overrides: dict[str, Any] | None) -> None:
    def run(build: str, young: int) -> bytes:
        a = _feed(lines, build, window, overrides, young)
        return orjson.dumps(merge([a.partial()], files=("x.jsonl",)).to_dict())

    never = run("installed", 10**12)
    assert run("installed", 0) == never
    assert run("plain", 0) == never


def test_a_released_auditor_with_a_store_is_freed_at_once_with_the_collector_off() -> None:
    # Its kernel's spill hooks are the auditor's own bound methods: a cycle that kept every record alive
    # through the merge, the collector being off through an audit. `release` breaks it.
    from capstate._cli.spill import SqliteStore

    def held(release: bool) -> bool:
        with SqliteStore() as store:
            a = Auditor(None, max_open=2, store=store)
            for number, ref in enumerate(("p1", "p2", "p3", "p4"), start=1):
                a.feed({"payment": ref, "type": "authorized", "at": "2026-01-01T00:00:00Z", "provider": "vipps",
                        "amount": 100, "currency": "NOK"}, number, "x.jsonl")
            assert a._k.spilled > 0  # the store was used, so the hooks were
            assert a.partial().payments == 4
            if release:
                a.release()
            gone = weakref.ref(a)
            del a
            return gone() is not None

    enabled = gc.isenabled()
    gc.disable()
    try:
        assert held(release=False)  # the cycle this guards against
        assert not held(release=True)
    finally:
        if enabled:
            gc.enable()


def test_findings_of_one_rule_share_its_text_and_read_as_before() -> None:
    # Three payments captured (a capture is applied as logged) in the wrong currency (CURRENCY_MISMATCH,
    # an amount each), then cancelled (INVALID_STATE, no amount, one text): each rule's text is held once,
    # the states of the breaches without an amount once too, and every message reads as the rule says.
    raw: list[dict[str, Any]] = []
    for ref in ("a", "b", "c"):
        raw += [{"payment": ref, "type": "authorized", "at": "2026-03-01T10:00:00Z", "provider": "hellgate",
                 "amount": 800, "currency": "USD", "flow": "manual"},
                {"payment": ref, "type": "captured", "at": "2026-03-01T11:00:00Z", "amount": 100 + len(raw),
                 "currency": "EUR"},
                {"payment": ref, "type": "cancelled", "at": "2026-03-01T12:00:00Z"}]
    a = Auditor(None)
    for number, item in enumerate(raw, start=1):
        a.feed(item, number, "x.jsonl")
    findings = a.partial().findings
    state = _Deferrable.__dict__["_pending"].__get__
    by_code: dict[str, list[Any]] = {}
    for f in findings:
        by_code.setdefault(f.code.value, []).append(f)
    mismatched, invalid = by_code["CURRENCY_MISMATCH"], by_code["INVALID_STATE"]
    assert len(mismatched) == len(invalid) == 3
    assert len({id(state(f)[3]) for f in mismatched}) == 1  # one text
    assert len({id(state(f)) for f in invalid}) == 1  # one state
    assert [f.message for f in mismatched] == [f"captured {100 + 3 * k}: capture in EUR, but the payment was "
                                               "authorized in USD" for k in range(3)]
    assert {f.message for f in invalid} == {"cancelled: hellgate has no cancelled transition from state 'captured'"}


@pytest.mark.parametrize("build", BUILDS)
def test_key_uses_pack_into_fields_and_come_back(build: str) -> None:
    """Up to four key uses of the usual shape (an ASCII str key of at most 255 characters, one of the three ops,
    an int amount in 0..2**51-1, a bool) are held in fields of their own, a key repeated from the use before held
    once; any other shape goes marshalled as before. Each comes back equal, of the same types."""
    module = BUILDS[build]
    a = _feed([{"payment": "p", "type": "authorized", "at": "2026-03-01T09:00:00Z", "provider": "vipps",
                "amount": 100, "currency": "NOK"}], build, 250_000, None)
    k = a._k
    (base,) = _records(a)
    cap, ref, cancel = module._OP_CAPTURE, module._OP_REFUND, module._OP_CANCEL
    equal_op = "".join(["cap", "ture"])  # equal to capture's op, not the same str: marshalled
    held: list[tuple[Any, ...]] = [
        ("k1", cap, 100, False),
        ("k1", cap, 100, False, "k1", cap, 100, True),
        ("", cap, 0, True, "", ref, 5, True, "k", cancel, 2**51 - 1, True),
        ("a" * 255, cap, 1, False, "b", cap, 1, True, "b", ref, 1, True, "a" * 255, cancel, 7, True),
    ]
    marshalled: list[tuple[Any, ...]] = [
        ("k1", cap, 2**51, True),  # the amount past the field
        ("k1", cap, -1, True),
        ("a" * 256, cap, 1, True),  # the key past its length's byte
        ("k1", equal_op, 1, True),
        ("k1", "authorize", 1, True),
        ("k1", cap, True, True),  # a bool amount: its type kept
        ("k1", cap, 1, 1),  # an int for succeeded: its type kept
        ("k\u00e9", cap, 1, True),  # beyond ASCII
        ("k1", cap, 1, True) * 5,  # more than four uses
        ("k1", cap, 1, True, 7, cap, 1, True),  # a key not a str (by hand)
        ("k1", cap, 1),  # not four to a use (by hand)
    ]
    for uses, tag in [*((u, module._PLAIN_SMALL + len(u) // 4) for u in held),
                      *((u, module._PLAIN_SMALL) for u in marshalled)]:
        r = k.unpack(base.reference, k.pack(base))
        r.uses = uses
        blob = k.pack(r)
        assert blob[0] == tag, uses
        again = k.unpack(r.reference, blob)
        assert _fields(again) == _fields(r), uses
        assert [type(x) for x in again.uses] == [type(x) for x in uses], uses
        assert module.packed_pos(blob) == r.pos
        if tag != module._PLAIN_SMALL:  # (marshal flags an object by its reference count: not the same bytes)
            assert k.pack(again) == blob  # packed again, the same bytes
    # The fields hold a repeated key once: a record with two uses of one key is smaller than with two keys.
    r = k.unpack(base.reference, k.pack(base))
    r.uses = ("x" * 30, cap, 1, False, "x" * 30, cap, 1, True)
    once = len(k.pack(r))
    r.uses = ("x" * 30, cap, 1, False, "y" * 30, cap, 1, True)
    assert len(k.pack(r)) == once + 30


@pytest.mark.parametrize("build", BUILDS)
def test_the_bench_log_packs_its_key_uses_into_fields(build: str, tmp_path: Path) -> None:
    """Every settled payment of the bench log's shape packs its key uses into fields (no marshal), and comes back
    as it was."""
    module = BUILDS[build]
    log = write_log(str(tmp_path), payments=400, seed=7)
    a = Auditor(None, settled_window=5_000, hot=module)
    a._k.young = 0
    for number, raw in enumerate(Path(log.path).read_bytes().splitlines(), start=1):
        a.feed(raw, number, log.path)
    k = a._k
    tags = [blob[0] for blob in k.packed.values()]
    assert len(tags) > 100 and set(tags) <= {module._PLAIN_SMALL + n for n in range(5)}
    assert any(tag > module._PLAIN_SMALL + 1 for tag in tags)
    for ref, blob in k.packed.items():
        r = k.unpack(ref, blob)
        assert (blob[0] - module._PLAIN_SMALL) * 4 == len(r.uses)
        assert k.pack(r) == blob
