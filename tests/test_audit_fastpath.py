"""The audit's fast path is an exact optimisation: on any log, with or without a spec, overrides or a
settled window, it reports exactly what the reference path (every line through `observe`) reports, down
to the `--json` bytes. Random logs mix legal histories with every kind of trouble the fast path must
hand to the exact path: boundary amounts, wrong currencies, reused keys, expiry edges, out-of-order and
non-canonical times, malformed lines, unknown providers."""

from __future__ import annotations

import os
import pickle
import re
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_audit import line

from capstate import Code, Event, EventType, Finding, Payment, audit, observe
from capstate._audit import Auditor, merge, resolve_spec
from capstate._audit_fast import ascii_pieces, canonical, canonical_at, fast_spec
from capstate._cli.audit_run import _owner_of, run_audit
from capstate._hotpath import hot, plain
from capstate._policy import IdentifierRule
from capstate._spec import load_spec, shipped
from capstate._values import _Deferrable

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
PROVIDERS = (*shipped(), None, "stripe")
TYPES = ("authorized", "capture_requested", "captured", "capture_failed", "cancelled", "refunded", "expired")
# Steps between a payment's events: mostly forward, some at the shipped validities' edges, some back.
STEPS = (0, 1, 60, 3600, 86400, 7 * 86400 - 1, 7 * 86400, 14 * 86400, 180 * 86400, 200 * 86400, -1, -3600)
OVERRIDES: tuple[dict[str, Any] | None, ...] = (
    None, {"max_captures": 2}, {"authorization_validity": "7d"}, {"hellgate.authorization_validity": "1d"},
    {"refund_window": "30d"}, {"over_capture_percent": 10}, {"partial_capture": "no"}, {"max_refunds": 1},
    {"amount_format": "decimal(5,2)"}, {"vipps.amount_min": 1, "max_captures": "unlimited"},
    {"authorization_validity": "36h", "bambora.max_refunds": 2},
)
STYLES = ("z",) * 12 + ("offset", "west", "fraction", "lower", "edge", "late", "invalid", "int")
GARBAGE = (b"", b"   ", b"not json", b"[1, 2]", b"42", b'{"payment": "cut", "type": "capt', b"\xff\xfe",
           b'{"payment": "", "type": "captured", "at": "2026-03-01T10:00:00Z", "amount": 1}')


def _at(when: datetime, style: str) -> object:
    if style == "z":
        return when.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "offset":
        return when.astimezone(timezone(timedelta(hours=2))).isoformat()
    if style == "west":  # an offset whose local date is not the UTC date (T0 is 09:00Z)
        return when.astimezone(timezone(timedelta(hours=-10))).isoformat()
    if style == "fraction":
        return when.strftime("%Y-%m-%dT%H:%M:%S.5Z")
    if style == "lower":
        return when.strftime("%Y-%m-%dt%H:%M:%Sz")
    if style == "edge":
        return "0001-01-01T00:00:00Z"
    if style == "late":
        return "9999-12-31T23:59:59Z"
    if style == "invalid":
        return when.strftime("%Y-02-30T%H:%M:%SZ")
    return 1767225600  # not a string


@st.composite
def logs(draw: st.DrawFn) -> list[bytes | dict[str, Any]]:
    """A log of a few payments, interleaved, each a mostly plausible history with breaches mixed in."""
    out: list[tuple[int, bytes | dict[str, Any]]] = []
    for n in range(draw(st.integers(1, 4))):
        ref = draw(st.sampled_from([f"order-{n}", f"order-{n}", "shared", "\u00e6\u00f8\u00e5-1"]))
        provider = draw(st.sampled_from(PROVIDERS))
        base = draw(st.sampled_from([100, 1000, 5000, 65_000_000]))
        currency = draw(st.sampled_from(["NOK", "NOK", "EUR", "DKK", "MYR", "JPY", "KWD"]))
        amounts = (None, 0, 1, 99, 100, 101, base // 3, base // 2, base - base // 2, base - 1, base, base + 1, 2 * base)
        when = T0 + timedelta(seconds=draw(st.integers(0, 10_000)))
        rank = draw(st.integers(0, 300))  # where the payment's lines fall among the others': in its own order
        for k in range(draw(st.integers(1, 7))):
            etype = "authorized" if k == 0 and draw(st.booleans()) else draw(st.sampled_from(TYPES))
            when += timedelta(seconds=draw(st.sampled_from(STEPS)))
            style = draw(st.sampled_from(STYLES))
            obj: dict[str, Any] = {"payment": ref, "type": etype, "at": _at(when, style)}
            if draw(st.integers(0, 9)) < 8:
                obj["provider"] = provider
            amount = base if etype == "authorized" and draw(st.booleans()) else draw(st.sampled_from(amounts))
            if amount is not None:
                obj["amount"] = amount
            cur = draw(st.sampled_from([None, None, None, currency, currency, "EUR", "XXX", "nok", 5]))
            if etype == "authorized" and draw(st.integers(0, 9)) < 9:
                cur = currency
            if cur is not None:
                obj["currency"] = cur
            key = draw(st.sampled_from([None, None, f"k{k}", "k1", "k2", "capture", "", "x" * 300]))
            if key is not None:
                obj["key"] = key
            if draw(st.integers(0, 9)) == 0:
                obj["flow"] = draw(st.sampled_from(["manual", "automatic", "sideways", 1]))
            if draw(st.integers(0, 19)) == 0:
                obj[draw(st.sampled_from(["reason", "provider", "key", "amount", "type", "payment"]))] = draw(
                    st.sampled_from([True, 1.5, -1, [], {"x": 1}, "junk"]))
            as_dict = draw(st.integers(0, 9)) == 0
            rank += draw(st.integers(0, 300))
            out.append((rank, obj if as_dict else orjson.dumps(obj)))
    for _ in range(draw(st.integers(0, 2))):
        out.append((draw(st.integers(0, 1000)), draw(st.sampled_from(GARBAGE))))
    # Interleave payments by their ranks, which rise within each payment (a stable sort keeps ties in order).
    out.sort(key=lambda item: item[0])
    return [line for _, line in out]


# Plausible histories: what a provider's log mostly holds, so that most lines take the fast path, with
# the boundary cases (the exact rest, one over, the edge of a validity) and a few breaches mixed in.
FLOWS = ("capture",) * 4 + ("refund",) * 3 + ("request", "cancel", "fail", "expire")
NEAR = ("rest", "rest", "half", "half", "one", "none", "over")
JUMPS = ("step",) * 8 + ("edge", "back")
VALIDITY_EDGES = (7 * 86400, 14 * 86400, 180 * 86400, 36 * 3600, 86400)


@st.composite
def plausible_logs(draw: st.DrawFn) -> list[bytes | dict[str, Any]]:
    out: list[tuple[int, bytes | dict[str, Any]]] = []
    # Mostly one provider: only its first payment must go the exact way (to load its spec).
    common = draw(st.sampled_from((*shipped(), None)))
    for n in range(draw(st.integers(1, 6))):
        ref = f"pay-{n}"
        provider = common or draw(st.sampled_from(shipped()))
        currency = draw(st.sampled_from(["NOK", "DKK", "EUR", "MYR", "JPY"]))
        authorized = draw(st.sampled_from([100, 1000, 4999, 250_000]))
        start = T0 + timedelta(seconds=draw(st.integers(0, 86400)))
        when = start
        captured = refunded = 0
        events: list[dict[str, Any]] = [{"type": "authorized", "amount": authorized, "currency": currency,
                                         "flow": draw(st.sampled_from([None, None, None, "manual", "automatic"]))}]
        for k in range(draw(st.integers(0, 6))):
            kind = draw(st.sampled_from(FLOWS))
            rest, refundable = authorized - captured, captured - refunded
            near = draw(st.sampled_from(NEAR))
            amount = {"rest": rest, "half": max(rest // 2, 1), "one": 1, "over": rest + 1, "none": None}[near]
            if kind == "capture":
                event: dict[str, Any] = {"type": "captured", "amount": amount if amount is not None else rest}
                captured += event["amount"]
            elif kind == "request":
                event = {"type": "capture_requested", "amount": amount}
            elif kind == "refund":
                event = {"type": "refunded", "amount": draw(st.sampled_from([refundable, max(refundable // 2, 1),
                                                                             refundable + 1]))}
                refunded += event["amount"]
            elif kind == "cancel":
                event = {"type": "cancelled"}
            elif kind == "fail":
                event = {"type": "capture_failed", "reason": "declined"}
            else:
                event = {"type": "expired"}
            if draw(st.integers(0, 2)) == 0:
                event["key"] = draw(st.sampled_from([f"{ref}-{k}", f"{ref}-{k}", f"{ref}-0", "shared"]))
            if draw(st.integers(0, 7)) == 0:
                event["currency"] = draw(st.sampled_from([currency, "EUR"]))
            jump = draw(st.sampled_from(JUMPS))
            if jump == "edge":
                when = start + timedelta(seconds=draw(st.sampled_from(VALIDITY_EDGES)) + draw(st.sampled_from([-1, 0])))
            else:
                when += timedelta(seconds=draw(st.integers(1, 7200)) * (-1 if jump == "back" else 1))
            event["at"] = when
            events.append(event)
        events[0]["at"] = start
        rank = draw(st.integers(0, 300))
        for event in events:
            obj = {"payment": ref, "provider": provider,
                   **{k: v for k, v in event.items() if v is not None and k != "at"}}
            obj["at"] = _at(event["at"], draw(st.sampled_from(("z",) * 30 + ("offset", "fraction"))))
            if draw(st.integers(0, 50)) == 0:
                obj["amount"] = "12.50"
            rank += draw(st.integers(0, 300))
            out.append((rank, orjson.dumps(obj)))
    out.sort(key=lambda item: item[0])
    return [line for _, line in out]


# The hot loop as installed (compiled by mypyc where a C compiler was available) and as plain Python.
BUILDS = {"installed": hot, "plain": plain()}


def _report(lines: list[bytes | dict[str, Any]], *, fast: bool, build: str = "installed", spec: str | None = None,
            overrides: dict[str, Any] | None = None) -> bytes:
    """`audit(lines, ...)`'s --json bytes, on the named build of the hot loop."""
    resolved = resolve_spec(spec, overrides)
    auditor = Auditor(resolved, overrides=overrides if resolved is None else None, fast=fast, hot=BUILDS[build])
    for number, item in enumerate(lines, start=1):
        auditor.feed(item, number, "-")
    report = merge([auditor.partial()], files=("-",), provider=resolved.name if resolved is not None else None)
    return orjson.dumps(report.to_dict())


@given(st.one_of(logs(), plausible_logs(), plausible_logs()), st.sampled_from((None, *shipped())),
       st.sampled_from(OVERRIDES))
def test_fast_and_reference_audits_agree(lines: list[bytes | dict[str, Any]], spec: str | None,
                                         overrides: dict[str, Any] | None) -> None:
    slow = _report(lines, fast=False, spec=spec, overrides=overrides)
    assert _report(lines, fast=True, spec=spec, overrides=overrides) == slow
    assert _report(lines, fast=True, build="plain", spec=spec, overrides=overrides) == slow
    assert orjson.dumps(audit(lines, spec=spec, overrides=overrides).to_dict()) == slow


def test_an_expired_line_of_zero_with_money_held_is_a_lapse_either_way() -> None:
    # Found by Hypothesis: the fast path read "nothing held" from the line's amount (0), the reference from
    # the payment (100 held), so only the reference reported the remainder left to lapse.
    lines: list[bytes | dict[str, Any]] = [
        {"payment": "order-1", "type": "authorized", "at": "2026-03-01T09:00:00Z", "provider": "bambora",
         "amount": 100, "currency": "NOK"},
        {"payment": "order-1", "type": "expired", "at": "2026-03-01T09:00:00Z", "provider": "bambora", "amount": 0}]
    slow = _report(lines, fast=False)
    assert b"DANGLING_AUTHORIZATION" in slow
    assert _report(lines, fast=True) == slow
    assert _report(lines, fast=True, build="plain") == slow


def test_an_expired_line_releases_what_was_left_not_the_amount_it_claims() -> None:
    # Found by Hypothesis: with more captured than authorized (capturable -1), the fast path counted the
    # `expired` line's own amount (1) as released, the reference what was left (0), so the next capture
    # request read REMAINDER_CANCELLED on one path and EXCEEDS_CAPTURABLE on the other.
    common = {"payment": "order-0", "at": "2026-03-01T09:00:00Z", "provider": "vipps"}
    lines: list[bytes | dict[str, Any]] = [
        {**common, "type": "captured", "amount": 1},
        {**common, "type": "authorized", "amount": 0, "currency": "NOK", "flow": "manual"},
        {**common, "type": "expired", "amount": 1},
        {**common, "type": "capture_requested", "flow": "manual"}]
    slow = _report(lines, fast=False)
    assert b"EXCEEDS_CAPTURABLE" in slow
    assert b"REMAINDER_CANCELLED" not in slow
    assert _report(lines, fast=True) == slow
    assert _report(lines, fast=True, build="plain") == slow


@given(st.one_of(logs(), plausible_logs()), st.integers(0, 6), st.sampled_from(OVERRIDES))
def test_fast_and_reference_agree_on_what_the_settled_window_forgets(
        lines: list[bytes | dict[str, Any]], window: int, overrides: dict[str, Any] | None) -> None:
    def run(fast: bool, build: str = "installed") -> bytes:
        auditor = Auditor(None, overrides=overrides, settled_window=window, fast=fast, hot=BUILDS[build])
        for number, item in enumerate(lines, start=1):
            auditor.feed(item, number, "x.jsonl")
        return orjson.dumps(merge([auditor.partial()], files=("x.jsonl",)).to_dict())

    assert run(True) == run(False) == run(True, "plain")


@pytest.mark.parametrize("build", BUILDS)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),
       st.one_of(st.integers(-800_000, 3_000_000).map(lambda d: timedelta(days=d)),
                 st.timedeltas(min_value=timedelta(days=-5), max_value=timedelta(days=5))),
       st.booleans())
@example(datetime(9999, 12, 31, 23, 0, tzinfo=UTC), timedelta(days=1), True)
@example(datetime(2026, 1, 31, 12, 0, tzinfo=UTC), timedelta(days=(1 << 20) + 3), True)
def test_a_deadline_is_the_canonical_text_of_its_instant(build: str, start: datetime, span: timedelta,
                                                         whole: bool) -> None:
    """`deadline` shifts a canonical day by whole days from a cache keyed by the day's number: the same text
    as the instant's own, "" where there is none (sub-second, or past year 9999)."""
    module = BUILDS[build]
    if whole:
        start = start.replace(microsecond=0)
    text = module.canonical(start)
    try:
        expected = module.canonical(start + span) or ""
    except OverflowError:
        expected = ""
    assert module.deadline(text, start, span) == expected
    assert module.deadline(text, start, span) == expected  # cached
    assert module.deadline(None, start, span) == expected


@given(st.one_of(logs(), plausible_logs()),
       st.lists(st.sampled_from([b"", b"\r", b" ", b"{", b"\n", b"not json", b'{"payment":"p"}\r']), max_size=4),
       st.randoms(use_true_random=False))
@example([], [b""], None)
@example([], [], None)
def test_a_block_is_fed_as_its_lines_are(lines: list[bytes | dict[str, Any]], odd: list[bytes], rnd: Any) -> None:
    """`feed_block` (lines cut by readlines, each keeping its "\n") reports what `feed_lines` on the block's
    `split(b"\n")` does, and counts the same lines: empty ones, a last one that is empty, garbage."""
    raw = [line if isinstance(line, bytes) else orjson.dumps(line) for line in lines]
    for extra in odd:
        raw.insert(rnd.randint(0, len(raw)) if rnd is not None else len(raw), extra)
    block = b"\n".join(raw)

    def run(fast: bool, build: str, by_block: bool) -> tuple[int, bytes]:
        auditor = Auditor(None, fast=fast, hot=BUILDS[build])
        if by_block:
            n = auditor.feed_block(block, 3, "x.jsonl", 10)
        else:
            split = block.split(b"\n")
            auditor.feed_lines(split, 3, "x.jsonl", 10)
            n = len(split)
        return n, orjson.dumps(merge([auditor.partial()], files=("x.jsonl",)).to_dict())

    reference = run(False, "installed", False)
    assert reference[0] == block.count(b"\n") + 1
    for fast in (True, False):
        for build in BUILDS:
            assert run(fast, build, True) == reference


@given(st.one_of(logs(), plausible_logs()), st.sampled_from(OVERRIDES))
def test_the_cli_json_bytes_are_the_same_either_way(lines: list[bytes | dict[str, Any]],
                                                    overrides: dict[str, Any] | None) -> None:
    raw = [line if isinstance(line, bytes) else orjson.dumps(line) for line in lines]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "log.jsonl")
        with open(path, "wb") as f:
            f.write(b"\n".join(raw) + b"\n")
        out = [orjson.dumps(run_audit([path], spec=None, overrides=overrides, fast=fast).to_dict(),
                            option=orjson.OPT_APPEND_NEWLINE) for fast in (True, False)]
    assert out[0] == out[1]


def test_the_fast_path_takes_the_clean_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without this the differential tests would pass with a fast path that never fires."""
    exact: list[str] = []
    init = Auditor.__init__

    def spying(self: Auditor, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        judge = self._judge  # the exact path (`_exact.Judge.line`, compiled: not patchable on its class)

        def spy(event: Any, *rest: Any) -> None:
            exact.append(event.type.value)
            judge(event, *rest)

        self._judge = spy

    monkeypatch.setattr(Auditor, "__init__", spying)
    lines = []
    for i in range(50):
        ref, at = f"order-{i:04d}", T0 + timedelta(minutes=i)
        lines += [orjson.dumps({"payment": ref, "type": "authorized", "at": canonical(at), "amount": 10_000,
                                "currency": "NOK", "provider": "vipps"}),
                  orjson.dumps({"payment": ref, "type": "captured", "at": canonical(at + timedelta(hours=1)),
                                "amount": 4_000, "key": f"{ref}-1", "provider": "vipps"}),
                  orjson.dumps({"payment": ref, "type": "captured", "at": canonical(at + timedelta(hours=2)),
                                "amount": 6_000, "key": f"{ref}-2"}),
                  orjson.dumps({"payment": ref, "type": "refunded", "at": canonical(at + timedelta(hours=3)),
                                "amount": 1_000})]
    report = audit(lines)
    assert report.clean and report.events == 200 and report.payments == 50
    assert exact == ["authorized"]  # only vipps's first payment: the exact path loads its spec


def test_a_breach_goes_the_exact_way_and_keeps_its_evidence() -> None:
    head = [orjson.dumps({"payment": "p", "type": "authorized", "at": "2026-03-01T10:00:00Z", "amount": 1000,
                          "currency": "DKK", "provider": "bambora"}),
            orjson.dumps({"payment": "p", "type": "captured", "at": "2026-03-08T10:00:00Z", "amount": 500})]
    (finding,) = audit(head).violations
    assert finding.code.value == "AUTHORIZATION_EXPIRED" and finding.line == 2
    assert "2026-03-08T10:00:00Z is at or past expiry 2026-03-08T10:00:00Z" in finding.message
    # One second earlier the capture is clean, on the fast path.
    early = head[1].replace(b"T10:00:00Z", b"T09:59:59Z")
    assert audit([head[0], early]).clean


def test_every_shipped_spec_compiles_a_fast_move_for_every_transition() -> None:
    for name in shipped():
        spec = load_spec(name)
        by_state = fast_spec(spec).by_state
        assert {(state, t.value) for state, t in spec.table.steps} == {
            (state, t) for state, moves in by_state.items() for t in moves}
    overridden = resolve_spec("hellgate", {"authorization_validity": "7d"})
    assert overridden is not None and fast_spec(overridden) is not fast_spec(load_spec("hellgate"))


@pytest.mark.parametrize(("text", "ok"), [
    ("2026-03-01T10:00:00Z", True), ("2026-02-29T10:00:00Z", False), ("2026-03-01T24:00:00Z", False),
    ("2026-03-01t10:00:00Z", False), ("2026-03-01T10:00:00+00:00", False), ("0001-01-01T00:00:00Z", False),
    ("9998-01-01T00:00:00Z", False), ("0002-01-01T00:00:00Z", True), ("2026-W09-1T10:00:00Z", False),
    ("\uff12026-03-01T10:00:00Z", False),
])
def test_only_valid_canonical_instants_are_taken_as_text(text: str, ok: bool) -> None:
    assert (canonical_at(text) == text) is ok


_CLOCK_CHARS = st.sampled_from("0123456789:Z+-.T \u0661\uff10")


@given(st.sampled_from(tuple(BUILDS)), st.sampled_from(["2026-03-01T", "2024-02-29T", "0002-01-01T", "9898-12-31T"]),
       st.one_of(st.text(_CLOCK_CHARS, min_size=7, max_size=11),
                 st.tuples(st.integers(0, 99), st.integers(0, 99), st.integers(0, 99)).map(
                     lambda t: "%02d:%02d:%02dZ" % t)))  # noqa: UP031 - the clock's own zero-padded shape
@example("plain", "2026-03-01T", "24:00:00Z")
@example("installed", "2026-03-01T", "23:60:00Z")
@example("installed", "2026-03-01T", "23:59:60Z")
@example("plain", "2026-03-01T", "23:59:59Z")
@example("installed", "2026-03-01T", "2\u0663:00:00Z")
def test_the_digit_by_digit_clock_check_agrees_with_the_exact_parser(build: str, day: str, clock: str) -> None:
    """`clock_ok` (the fast path's check of a time of day, for a day already validated) accepts exactly the
    instants `canonical_at` (regex, then parse_instant) accepts."""
    module = BUILDS[build]
    text = day + clock
    assert module.canonical_at(day + "00:00:00Z") is not None  # the day is valid, and now known
    assert module.clock_ok(text) is (module.canonical_at(text) == text)
    # `take`'s one-pass reading: a day number exactly when the day is read and the clock passes.
    stamp = module._stamp(text)
    assert (stamp >= 0) is module.clock_ok(text)
    if stamp >= 0:
        assert stamp // 1_000_000 == module._day_code(text) == int(day[:4] + day[5:7] + day[8:10])
        assert stamp % 1_000_000 == int(clock[:2] + clock[3:5] + clock[6:8])


_INSTANTS = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
                         timezones=st.just(UTC)).map(lambda t: t.replace(microsecond=0))


@given(st.sampled_from(tuple(BUILDS)), _INSTANTS, _INSTANTS)
@example("plain", datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC))
@example("installed", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), datetime(1, 1, 1, tzinfo=UTC))
def test_stamps_order_as_the_canonical_texts_do(build: str, a: datetime, b: datetime) -> None:
    """`take` compares a line's instant with the payment's latest (`Record.after`) as stamps: the same order as
    the texts', "" (no event yet) before every instant and EXACT_ONLY after every one."""
    module = BUILDS[build]
    x, y = module.canonical(a), module.canonical(b)
    assert x is not None and y is not None
    sx, sy = module.after_stamp(x), module.after_stamp(y)
    assert (sx < sy) is (x < y) and (sx == sy) is (x == y)
    assert module.after_stamp("") < sx < module.after_stamp(module.EXACT_ONLY)
    assert module._stamp(x) == sx


@pytest.mark.parametrize("build", BUILDS)
def test_a_line_earlier_than_what_the_exact_path_applied_is_out_of_order(build: str) -> None:
    """The exact path sets a payment's `after` (the setter marks its stamp unknown, `take` reads it again): a
    line stamped before it is OUT_OF_ORDER on the fast path too, and one after it is taken."""
    common = {"payment": "vi-000000001", "provider": "vipps"}
    lines: list[bytes | dict[str, Any]] = [
        {**common, "type": "authorized", "at": "2026-03-01T09:00:00Z", "amount": 10000, "currency": "NOK"},
        # Over the capturable amount: judged (and applied) by the exact path, which sets `after`.
        {**common, "type": "captured", "at": "2026-03-01T10:00:00Z", "amount": 15000},
        {**common, "type": "refunded", "at": "2026-03-01T09:30:00Z", "amount": 1000},
        {**common, "type": "refunded", "at": "2026-03-01T11:00:00Z", "amount": 1000}]
    slow = _report(lines, fast=False)
    assert slow.count(b'"code":"OUT_OF_ORDER"') == 1 and slow.count(b'"line":3') == 1
    assert _report(lines, fast=True, build=build) == slow
    module = BUILDS[build]
    rec = module.Record(fast_spec(load_spec("vipps"), module), "vi-000000001")
    rec.after = "2026-03-01T10:00:00Z"
    assert rec.after == "2026-03-01T10:00:00Z" and rec.after_stamp == module._STAMP_UNKNOWN


@given(st.integers(1, 10**16), st.sampled_from(["NOK", "JPY", "KWD", "USD", "CLF"]),
       st.integers(1, 18).flatmap(lambda p: st.tuples(st.just(p), st.integers(0, p))))
def test_decimal_bounds_say_what_fits_decimal_says(minor: int, currency: str, format_: tuple[int, int]) -> None:
    from capstate._money import decimal_bounds, fits_decimal

    precision, scale = format_
    step, bound = decimal_bounds(currency, precision, scale)
    assert (minor % step == 0 and minor < bound) is (fits_decimal(minor, currency, precision, scale) is None)


def _parsed_owner(line: bytes, parts: int) -> int:
    import zlib

    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return -1
    ref = obj.get("payment") if isinstance(obj, dict) else None
    return zlib.crc32(ref.encode("utf-8", "surrogatepass") if isinstance(ref, str) else b"") % parts


_VALUES = st.one_of(st.text(max_size=8), st.integers(-(2**63), 2**63 - 1),
                   st.dictionaries(st.just("payment"), st.text()), st.lists(st.sampled_from(["payment", "{", "\\"])))


@given(st.dictionaries(st.sampled_from(["payment", "type", "x", "pay", "k"]), _VALUES, max_size=5),
       st.sampled_from([b'"payment":', b'"payment": ']), st.integers(2, 5))
def test_partitioning_from_the_bytes_agrees_with_parsing(obj: dict[str, Any], spacing: bytes, parts: int) -> None:
    line = orjson.dumps(obj).replace(b'"payment":', spacing)
    owner, _ = _owner_of(line, parts)
    parsed = _parsed_owner(line, parts)
    assert parsed in {-1, owner}


def test_an_authorization_logged_with_an_offset_gets_its_utc_deadline_and_leaves_others_theirs() -> None:
    # 2026-01-01T00:00:00+01:00 is 2025-12-31T23:00Z. The fast path's deadline took the local date
    # (2026-01-15) and the UTC time (23:00Z), a day late, and cached it per UTC day: this payment's capture
    # after its 14 days, and every later DKK payment authorized on 2025-12-31 UTC, passed as clean.
    log = [line("order-dkk-0001", "authorized", "2026-01-01T00:00:00+01:00", amount=10000, currency="DKK"),
           line("order-dkk-0001", "captured", "2026-01-14T23:30:00Z", amount=10000, key="k1"),
           line("order-dkk-0002", "authorized", "2025-12-31T12:00:00Z", amount=10000, currency="DKK"),
           line("order-dkk-0002", "captured", "2026-01-15T10:00:00Z", amount=10000, key="k1")]
    for fast in (True, False):
        report = audit(log, fast=fast)
        assert [(f.payment, f.code.value) for f in report.violations] == [
            ("order-dkk-0001", "AUTHORIZATION_EXPIRED"), ("order-dkk-0002", "AUTHORIZATION_EXPIRED")], fast


# A finding's deferred message keeps only values like these (and the module-level functions that format
# them): never the Payment, the Event or the Violation it was judged from.
_PLAIN = (str, int, type(None), datetime, timedelta, EventType, Code)


def _message_state(finding: Finding) -> tuple[Any, ...] | None:
    try:
        state: tuple[Any, ...] = _Deferrable.__dict__["_pending"].__get__(finding)
    except AttributeError:
        return None  # built with its message
    return state


@pytest.mark.parametrize("overrides", [None, {"over_capture_percent": 10}, {"authorization_validity": "36h"}])
def test_a_findings_message_state_is_plain_values_and_says_what_observe_says(overrides: dict[str, Any] | None) -> None:
    # One payment per deferred guard message (over-capture, over-refund, expiry) and a few eager ones; the
    # text `observe` gives each Violation (read on the Payment it judged) is the text the finding writes.
    day = "2026-03-0{}T10:00:00Z"
    raw = [line("x", "authorized", day.format(1), "bambora", amount=1000, currency="DKK"),
           line("x", "captured", day.format(2), "bambora", amount=1500, key="k1"),
           line("x", "refunded", day.format(3), "bambora", amount=2000, currency="SEK", key="k1"),
           line("e", "authorized", day.format(1), "bambora", amount=500, currency="NOK"),
           line("e", "captured", day.format(9), "bambora", amount=100),
           line("c", "authorized", day.format(1), "hellgate", amount=800, currency="USD", flow="manual"),
           line("c", "cancelled", day.format(2), "hellgate"),
           line("c", "captured", day.format(3), "hellgate", amount=100),
           line("k", "authorized", day.format(1), "vipps", amount=900, currency="NOK"),
           line("k", "captured", day.format(2), "vipps", amount=100, key="k2"),
           line("k", "captured", day.format(3), "vipps", amount=200, key="k2")]
    report = audit(raw, overrides=overrides)
    payments: dict[str, Payment] = {}
    expected: list[tuple[int, str, str]] = []
    for number, r in enumerate(raw, start=1):
        event = Event.from_json(r)
        spec = resolve_spec(event.provider, overrides)
        assert spec is not None
        p = payments.get(event.payment) or Payment.new(spec, event.payment)
        payments[event.payment], violations = observe(p, event)
        said = f"{event.type.value} {event.amount}" if event.amount is not None else event.type.value
        expected += [(number, v.code.value, f"{said}: {v.message}") for v in violations]
    deferred = 0
    for finding in report.violations:
        state = _message_state(finding)
        if state is None:
            continue
        deferred += 1
        assert all((callable(x) and getattr(x, "__module__", "").startswith("capstate.")) or isinstance(x, _PLAIN)
                   for x in state), state
        # Picklable as it stands: a worker can send it unformatted.
        again = pickle.loads(pickle.dumps(finding))
        assert again == finding
    assert deferred >= 3
    found = [(f.line, f.code.value, f.message) for f in report.violations
             if f.code.value not in {"DANGLING_AUTHORIZATION", "OUT_OF_ORDER"}]
    assert found == sorted(expected)  # the report orders a line's findings by code, then message
    assert {"EXCEEDS_CAPTURABLE", "REFUND_EXCEEDS_CAPTURED", "AUTHORIZATION_EXPIRED"} <= {c for _, c, _ in found}
    # Both of key_unique's conflicts (another currency; another amount), deferred too.
    assert [m for _, c, m in found if c == "IDEMPOTENCY_KEY_CONFLICT"] == [
        "refunded 2000: key 'k1' already did capture 1500 DKK; reused for refund in SEK",
        "captured 200: key 'k2' already did capture 100; reused for capture 200"]


def test_a_pickled_finding_formats_its_message_where_it_lands() -> None:
    raw = [line("x", "authorized", "2026-03-01T10:00:00Z", "bambora", amount=1000, currency="DKK"),
           line("x", "captured", "2026-03-02T10:00:00Z", "bambora", amount=1500)]
    (finding,) = audit(raw).violations
    state = _message_state(finding)
    assert state is not None and not any(isinstance(x, Payment | Event) for x in state)
    assert pickle.loads(pickle.dumps(state))[0] is state[0]  # the function itself, by reference
    assert finding.message.startswith("captured 1500: capture 1500 > capturable 1000 = authorized 1000")


# Reference patterns as `_acceptor` wraps them (with and without the path lookahead): the shipped ones, and
# shapes `ascii_pieces` reads or must refuse (a variable piece before one that could start with its characters).
_REFERENCE_PATTERNS = [None, "[a-zA-Z0-9-]{8,50}",
                       "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
                       "pi-[0-9]{3,5}", "[a-c]{2,}d", "[a-c]*", "ab[0-9]+x?", "[a-c]+[b-d]", "x{2}[/.]?"]
_REFERENCE_TEXT = st.text(st.sampled_from("abcdx0129AFf-./%?#\\ \n\x00\x7féП"), max_size=40)


@pytest.mark.parametrize("build", BUILDS)
@pytest.mark.parametrize("pattern", _REFERENCE_PATTERNS)
@pytest.mark.parametrize("in_path", [False, True])
@settings(max_examples=30)
@given(data=st.data())
def test_a_reference_matched_as_pieces_gets_the_regex_verdict(build: str, pattern: str | None, in_path: bool,
                                                              data: st.DataObject) -> None:
    """`FastSpec.reference_accepted` reads a reference regex as pieces (`ascii_pieces`) and matches an ASCII
    value without `re`: its verdict is the rule's own, on values the pattern matches and on any others."""
    module = BUILDS[build]
    rule = IdentifierRule(1, 60, pattern, in_path)
    parts = rule.fullmatch_parts()
    assert parts is not None
    fast = module.FastSpec(load_spec("vipps"), {}, load_spec("vipps").policy, None, rule.acceptor(), parts, in_path)
    pieces = ascii_pieces(parts[2])
    if pattern in {"ab[0-9]+x?", "[a-c]+[b-d]"}:
        assert pieces is None  # greedy reading could differ from the regex's
        return
    assert pieces is not None
    fast.ref_sets, fast.ref_mins, fast.ref_maxs = pieces
    fast.ref_pieces = True
    values = data.draw(st.lists(_REFERENCE_TEXT | (st.from_regex(pattern, fullmatch=True) if pattern else
                                                   _REFERENCE_TEXT), max_size=10))
    for v in [*values, ".", "..", ""]:
        assert fast.reference_accepted(v) == (rule.problem(v) is None), v
        assert module._pieces_match(v, *pieces) == (v.isascii() and parts[2](v) is not None), v


_STAMP_CHARS = st.sampled_from("0123456789-:TZ+. t\u0661\uff10")


@given(st.sampled_from(tuple(BUILDS)),
       st.one_of(st.text(_STAMP_CHARS, min_size=18, max_size=22),
                 st.tuples(st.integers(0, 9999), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
                           st.integers(0, 99), st.integers(0, 99)).map(
                     lambda t: "%04d-%02d-%02dT%02d:%02d:%02dZ" % t)))  # noqa: UP031 - the canonical zero-padded shape
@example("installed", "2026-03-01T23:59:59Z")
@example("plain", "2026-03-01T24:00:00Z")
@example("installed", "2026-03-01T23:59:59z")
@example("installed", "2026-03-01t23:59:59Z")
@example("installed", "2026-03-0\u0661T23:59:59Z")
@example("plain", "2026/03-01T23:59:59Z")
@example("installed", "2026-03-01T23:59:59Z ")
def test_a_stamp_reads_an_instant_of_the_canonical_shape(build: str, text: str) -> None:
    """`_stamp` reads the whole instant in one pass: the digits as one number exactly when `text` has the
    canonical shape with a time of day `parse_instant` takes (the date's digits are judged by DAY_CODES), else -1;
    `_day_code` is its day."""
    module = BUILDS[build]
    shaped = re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]Z", text)
    stamp = int(re.sub("[^0-9]", "", text)) if shaped else -1
    assert module._stamp(text) == stamp
    assert module._day_code(text) == (stamp // 1_000_000 if shaped else -1)
