"""`capstate bench` (or `python -m capstate.bench`): the benchmark suite of issue 4.

It writes a seeded synthetic canonical log (DESIGN.md section 3) to a temporary directory, then measures
in one process, as the median of `--rounds` rounds (at least 5):

- (a) audit throughput, one process, in events/s, against the parse floor;
- (b) the same audit with 2 worker processes, against (a);
- (c) `decide()` latency, allowed and rejected paths, in ns per call, against one transitions trigger;
- (d) the peak RSS of (a), measured in a child process so that this one's memory does not count;
- (e) the peak RSS of an audit of a generated log of open authorizations (`--open-log SIZE`, 1 GB by
  default) under the default --max-memory, in a child process, and whether its report is the one an
  unbounded run gives (compared with an unbounded run when the log is small enough to hold, else with
  what the generator put in the log);
- (f) the start-up of `capstate --help` in a fresh process, in ms, against a bare interpreter.

Baselines are measured in the same run, on the same machine and log, with the cyclic garbage collector
paused as the audit's own loop runs:

- floor: `for line in f: orjson.loads(line)`, plus picking the payment id into a dict;
- naive transitions audit: one shared `transitions.Machine`, `add_model` per payment, triggers with
  condition callbacks, which is how a team would audit with transitions alone;
- single transitions trigger: `Machine.trigger` with one condition;
- hand-written FSM: a dict of (state, event type) -> state over attrs slots classes, on pre-parsed
  events: the practical limit of a Python event loop.

This is an application module, like the CLI: it reads and writes files, forks processes and reads the
clock. The core never does. The result is a report: the exit code is 0 even when a target is missed,
and 2 only for bad arguments.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import orjson
from attrs import define, frozen

MIN_ROUNDS = 5
# Every synthetic payment has five events: 1,000,000 events over 200,000 payments; 20,000 with --quick.
FULL_PAYMENTS = 200_000
QUICK_PAYMENTS = 4_000
# The naive transitions audit is the slowest measure; timing it on a prefix keeps a full run short, and
# its cost per event does not grow with the payments seen (see naive_transitions_audit), so events/s on
# the prefix is the rate on the whole log.
NAIVE_PREFIX = 100_000
# Events pre-parsed for the hand-written FSM (parsing is not part of what it measures).
FSM_EVENTS = 200_000
T0 = datetime(2026, 1, 5, tzinfo=UTC)
_T = TypeVar("_T")
_U = TypeVar("_U")
_P = ParamSpec("_P")


# ------------------------------------------------------------------------------------ synthetic log


@frozen
class LogInfo:
    path: str
    lines: int
    payments: int
    injected: int  # payments given one breach on purpose
    malformed: int  # lines that are not valid events
    size: int


def _at(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Writer:
    """Builds the five events of one payment: a valid history, then perhaps one breach."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def history(self, i: int, *, breach: bool) -> list[dict[str, Any]]:
        rng = self.rng
        provider = ("vipps", "hellgate", "bambora", "pipwave")[i % 4]
        start = T0 + timedelta(seconds=7 * i + rng.randrange(7))
        make = {"vipps": self.vipps, "hellgate": self.hellgate, "bambora": self.bambora, "pipwave": self.pipwave}
        # A Hellgate payment's reference is its payment id, a UUID (specs/hellgate.toml policy.reference).
        ref = f"00000000-0000-4000-8000-{i:012d}" if provider == "hellgate" else f"{provider[:2]}-{i:09d}"
        events = make[provider](ref, start)
        if breach:
            self.breach(events)
        for e in events:
            e["payment"] = ref
            e["provider"] = provider
        return events

    def _times(self, start: datetime, n: int, *, within: timedelta) -> list[str]:
        step = within / n
        return [_at(start + step * k + timedelta(seconds=self.rng.randrange(60))) for k in range(n)]

    def vipps(self, ref: str, start: datetime) -> list[dict[str, Any]]:
        rng = self.rng
        currency = rng.choice(("NOK", "NOK", "DKK", "EUR"))
        amount = rng.randrange(10_000, 500_000)
        part = amount // rng.choice((2, 3, 4))
        t = self._times(start, 5, within=timedelta(days=5))
        auth = {"type": "authorized", "at": t[0], "amount": amount, "currency": currency}
        if rng.random() < 0.5:
            # Reserve, capture in two parts, refund some.
            return [auth,
                    {"type": "captured", "at": t[1], "amount": part, "key": f"{ref}-c1"},
                    {"type": "captured", "at": t[2], "amount": amount - part, "key": f"{ref}-c2"},
                    {"type": "refunded", "at": t[3], "amount": part // 2, "key": f"{ref}-r1"},
                    {"type": "refunded", "at": t[4], "amount": part // 4, "key": f"{ref}-r2"}]
        # Reserve, capture part (request line, then the answer), cancel the rest, refund.
        return [auth,
                {"type": "capture_requested", "at": t[1], "amount": part, "key": f"{ref}-c1"},
                {"type": "captured", "at": t[2], "amount": part, "key": f"{ref}-c1"},
                {"type": "cancelled", "at": t[3], "key": f"{ref}-x1"},
                {"type": "refunded", "at": t[4], "amount": part // 3, "key": f"{ref}-r1"}]

    def hellgate(self, ref: str, start: datetime) -> list[dict[str, Any]]:
        rng = self.rng
        currency = rng.choice(("EUR", "USD", "GBP"))
        amount = rng.randrange(1_000, 300_000)
        take = amount if rng.random() < 0.7 else amount // 2
        t = self._times(start, 5, within=timedelta(days=3))
        return [{"type": "authorized", "at": t[0], "amount": amount, "currency": currency, "flow": "manual"},
                {"type": "capture_requested", "at": t[1], "amount": take, "key": f"{ref}-c1"},
                {"type": "captured", "at": t[2], "amount": take, "key": f"{ref}-c1"},
                {"type": "refunded", "at": t[3], "amount": take // 4, "key": f"{ref}-r1"},
                {"type": "refunded", "at": t[4], "amount": take // 4, "key": f"{ref}-r2"}]

    def bambora(self, ref: str, start: datetime) -> list[dict[str, Any]]:
        rng = self.rng
        currency = rng.choice(("SEK", "DKK", "NOK", "EUR"))
        amount = rng.randrange(1_000, 200_000)
        t = self._times(start, 5, within=timedelta(days=4))
        # One declined attempt, then the capture that succeeds; one refund (Bambora allows one).
        return [{"type": "authorized", "at": t[0], "amount": amount, "currency": currency},
                {"type": "capture_requested", "at": t[1], "amount": amount},
                {"type": "capture_failed", "at": t[2], "reason": "issuer_unavailable"},
                {"type": "captured", "at": t[3], "amount": amount},
                {"type": "refunded", "at": t[4], "amount": amount // 5}]

    def pipwave(self, ref: str, start: datetime) -> list[dict[str, Any]]:
        rng = self.rng
        currency = rng.choice(("MYR", "SGD", "USD"))
        amount = rng.randrange(1_000, 200_000)
        t = self._times(start, 5, within=timedelta(days=2))
        return [{"type": "authorized", "at": t[0], "amount": amount, "currency": currency},
                {"type": "capture_requested", "at": t[1], "amount": amount},
                {"type": "captured", "at": t[2], "amount": amount},
                {"type": "refunded", "at": t[3], "amount": amount // 4},
                {"type": "refunded", "at": t[4], "amount": amount // 4}]

    def breach(self, events: list[dict[str, Any]]) -> None:
        """Turn one event into a breach a real log shows: over-capture, over-refund, a capture past
        expiry or after a cancel, a second capture under one key, a wrong currency."""
        rng = self.rng
        auth = events[0]
        kind = rng.randrange(6)
        captured = next(e for e in events if e["type"] == "captured")
        refund = events[-1]
        if kind == 0:
            captured["amount"] = auth["amount"] + rng.randrange(1, 5_000)
        elif kind == 1:
            refund["amount"] = auth["amount"] * 2
        elif kind == 2:
            # Past every shipped validity that is known (Bambora 7 days, Vipps DKK/EUR 14, NOK 180).
            late = datetime.fromisoformat(auth["at"]) + timedelta(days=200)
            events[1:] = [dict(e, at=_at(late + timedelta(minutes=k))) for k, e in enumerate(events[1:])]
        elif kind == 3:
            events[-1] = {"type": "captured", "at": refund["at"], "amount": 100, "key": "after-cancel"}
            events[-2] = {"type": "cancelled", "at": events[-2]["at"]}
        elif kind == 4:
            events[-1] = dict(captured, at=refund["at"])
        else:
            captured["currency"] = "JPY" if auth["currency"] != "JPY" else "EUR"


_MALFORMED = (b'{"payment": "broken", "type": "captured", "at": "2026-01-05T10:00:00Z", "amount": "12.50"}',
              b'{"payment": "cut", "type": "capt',
              b'{"payment": "unknown-type", "type": "settled", "at": "2026-01-05T10:00:00Z"}',
              b"\x00\xff\xfe not json at all")


def write_log(directory: str, *, payments: int, seed: int, breach_rate: float = 0.45,
              malformed_rate: float = 0.001) -> LogInfo:
    """Write `payments` x 5 canonical JSONL lines; payments overlap in time (a window of ~64 open at
    once, shuffled), as a real export interleaves them. Deterministic for a seed."""
    rng = random.Random(seed)
    writer = _Writer(rng)
    path = os.path.join(directory, f"synthetic-{payments}-{seed}.jsonl")
    lines = injected = malformed = 0
    window = 64
    dumps = orjson.dumps
    with open(path, "wb") as out:
        for first in range(0, payments, window):
            histories = []
            for i in range(first, min(first + window, payments)):
                broken = rng.random() < breach_rate
                events = writer.history(i, breach=broken)
                injected += broken
                histories.append([dumps(e) for e in events])
            # Interleave the window's payments, keeping each payment's own order.
            order = [h for h, events in enumerate(histories) for _ in events]
            rng.shuffle(order)
            cursors = [0] * len(histories)
            chunk = []
            for h in order:
                line = histories[h][cursors[h]]
                cursors[h] += 1
                if rng.random() < malformed_rate:
                    line = rng.choice(_MALFORMED)
                    malformed += 1
                chunk.append(line)
            out.write(b"\n".join(chunk) + b"\n")
            lines += len(chunk)
    return LogInfo(path, lines, payments, injected, malformed, os.path.getsize(path))


OPEN_LOG_FULL = 1_000_000_000
OPEN_LOG_QUICK = 8_000_000
# Below this size (e) also audits the open log unbounded and compares the reports byte for byte; above it
# an unbounded run is what (e) exists to avoid, so the report is checked against what the generator wrote.
OPEN_LOG_COMPARE = 64_000_000
_LATE = 100_000  # at most this many lines between an authorization and the over-capture that comes back for it


@frozen
class OpenLogInfo:
    path: str
    lines: int
    payments: int
    over_captures: int  # EXCEEDS_CAPTURABLE findings the log holds, each for a payment authorized long before
    lapsed: int  # DANGLING_AUTHORIZATION findings: Bambora authorizations older than its 7 days at the end
    size: int


def write_open_log(directory: str, *, size: int, seed: int) -> OpenLogInfo:
    """About `size` bytes of authorizations that stay open: a month-end export. One payment a second;
    every 1000th is Bambora, stamped 8 days early so that it lapses (7-day validity) and is reported at
    the end, and every 1000th Vipps payment gets a capture above its authorization up to `_LATE` lines
    later, so a bounded audit must bring back payments it spilled long before. Deterministic for a seed."""
    late = max(100, min(_LATE, size // 1000))  # ~1/8 of the log's lines
    rng = random.Random(seed)
    path = os.path.join(directory, f"open-{size}-{seed}.jsonl")
    dumps = orjson.dumps
    written = lines = payments = over = lapsed = 0
    owed: dict[int, tuple[str, int]] = {}  # line at which an over-capture is due -> (payment, amount)
    with open(path, "wb") as out:
        chunk: list[bytes] = []
        i = 0
        while written < size:
            at = T0 + timedelta(seconds=i)
            due = owed.pop(i, None)
            if due is not None:
                ref, amount = due
                chunk.append(dumps({"payment": ref, "type": "captured", "at": _at(at), "amount": amount + 1,
                                    "key": f"{ref}-c1"}))
                over += 1
            else:
                amount = rng.randrange(1_000, 500_000)
                if payments % 1000 == 7:
                    ref = f"bam-{payments:010d}"
                    chunk.append(dumps({"payment": ref, "type": "authorized", "at": _at(at - timedelta(days=8)),
                                        "amount": amount, "currency": "SEK", "provider": "bambora"}))
                    lapsed += 1
                else:
                    ref = f"vip-{payments:010d}"
                    chunk.append(dumps({"payment": ref, "type": "authorized", "at": _at(at), "amount": amount,
                                        "currency": "NOK", "provider": "vipps"}))
                    if payments % 1000 == 0:
                        owed[i + late] = (ref, amount)
                payments += 1
            written += len(chunk[-1]) + 1
            i += 1
            if len(chunk) >= 4096:
                out.write(b"\n".join(chunk) + b"\n")
                chunk = []
        if chunk:
            out.write(b"\n".join(chunk) + b"\n")
        lines = i
    return OpenLogInfo(path, lines, payments, over, lapsed, os.path.getsize(path))


# --------------------------------------------------------------------------------------- baselines


def _like_the_audit(fn: Callable[_P, _T]) -> Callable[_P, _T]:
    """Run a baseline with the cyclic garbage collector paused, as the audit runs its loop (and releases
    what it held) in capstate._cli.audit_run. Left on, each collection walks every object a baseline
    holds: the naive transitions audit lost ~45% at 20,000 payments, slowing as the prefix grew, and the
    ratios measured a collector setting rather than the engine."""

    @functools.wraps(fn)
    def paused(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused


@_like_the_audit
def floor(path: str) -> int:
    """The parse floor: decode every line and pick its payment id into a dict."""
    loads = orjson.loads
    last: dict[object, Any] = {}
    n = 0
    with open(path, "rb") as f:
        for line in f:
            try:
                obj = loads(line)
            except orjson.JSONDecodeError:
                continue
            if type(obj) is dict:
                last[obj.get("payment")] = obj
                n += 1
    return n


class _NaiveModel:
    """One payment as a team would model it for transitions: the state plus the four amounts."""

    def __init__(self) -> None:
        self.authorized_ = self.captured_ = self.refunded_ = self.pending_ = 0
        self.currency_: str | None = None

    # Conditions and callbacks (send_event=True: each receives the EventData).
    def valid_auth(self, ev: Any) -> bool:
        e = ev.kwargs["e"]
        return isinstance(e.get("amount"), int) and e["amount"] > 0 and isinstance(e.get("currency"), str)

    def within_capturable(self, ev: Any) -> bool:
        e = ev.kwargs["e"]
        amount = e.get("amount")
        return isinstance(amount, int) and 0 < amount <= self.authorized_ - self.captured_ and (
            e.get("currency") in (None, self.currency_))

    def takes_rest(self, ev: Any) -> bool:
        return bool(ev.kwargs["e"].get("amount", 0) >= self.authorized_ - self.captured_)

    def within_refundable(self, ev: Any) -> bool:
        amount = ev.kwargs["e"].get("amount")
        return isinstance(amount, int) and 0 < amount <= self.captured_ - self.refunded_

    def on_auth(self, ev: Any) -> None:
        self.authorized_ = ev.kwargs["e"]["amount"]
        self.currency_ = ev.kwargs["e"]["currency"]

    def on_capture(self, ev: Any) -> None:
        self.captured_ += ev.kwargs["e"]["amount"]
        self.pending_ = 0

    def on_request(self, ev: Any) -> None:
        self.pending_ = ev.kwargs["e"].get("amount", 0)

    def on_refund(self, ev: Any) -> None:
        self.refunded_ += ev.kwargs["e"]["amount"]


def _naive_machine() -> Any:
    from transitions import Machine

    states = ["open", "authorized", "capturing", "captured", "cancelled", "failed", "expired"]
    transitions: list[Any] = [
        {"trigger": "authorized", "source": "open", "dest": "authorized", "conditions": "valid_auth",
         "after": "on_auth"},
        {"trigger": "capture_requested", "source": "authorized", "dest": "capturing",
         "conditions": "within_capturable", "after": "on_request"},
        {"trigger": "captured", "source": ["authorized", "capturing"], "dest": "captured",
         "conditions": ["within_capturable", "takes_rest"], "after": "on_capture"},
        {"trigger": "captured", "source": ["authorized", "capturing"], "dest": "authorized",
         "conditions": "within_capturable", "after": "on_capture"},
        {"trigger": "capture_failed", "source": "capturing", "dest": "authorized"},
        {"trigger": "cancelled", "source": "authorized", "dest": "cancelled"},
        {"trigger": "refunded", "source": ["authorized", "captured"], "dest": None,
         "conditions": "within_refundable", "after": "on_refund"},
        {"trigger": "expired", "source": "authorized", "dest": "expired"},
    ]
    return Machine(model=None, states=states, transitions=transitions, initial="open", auto_transitions=False,
                   send_event=True)


@_like_the_audit
def naive_transitions_audit(path: str, limit: int) -> int:
    """Audit the first `limit` lines with transitions alone; returns the events judged."""
    from transitions import MachineError

    machine = _naive_machine()
    models: dict[str, _NaiveModel] = {}
    broken = n = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f):
            if number >= limit:
                break
            try:
                e = orjson.loads(line)
            except orjson.JSONDecodeError:
                broken += 1
                continue
            ref = e.get("payment") if type(e) is dict else None
            if not isinstance(ref, str):
                broken += 1
                continue
            model = models.get(ref)
            if model is None:
                model = models[ref] = _NaiveModel()
                machine.add_model(model)
                # add_model checks `model not in machine.models`, a linear scan: kept in that list, the
                # models make the audit quadratic in payments (at 20,000 payments ~80% of its time went to
                # that scan, and the rate fell as the prefix grew). A team that profiled it would drop the
                # model from the list, which only serves to pass on states and transitions added later
                # (none are); the model keeps its triggers and callbacks, and every verdict is the same.
                machine.remove_model(model)
            n += 1
            try:
                if not model.trigger(e.get("type"), e=e):  # type: ignore[attr-defined]
                    broken += 1
            except (MachineError, AttributeError, KeyError, TypeError):
                broken += 1
    return n


class _TriggerModel:
    capturable = 100_000

    def fits(self, amount: int) -> bool:
        return amount <= self.capturable


def transitions_trigger() -> Callable[[], object]:
    """One `Machine.trigger` with a condition: a self-loop so every call does the same work."""
    from transitions import Machine

    model = _TriggerModel()
    Machine(model=model, states=["authorized"], initial="authorized", auto_transitions=False,
            transitions=[{"trigger": "capture", "source": "authorized", "dest": "authorized", "conditions": "fits"}])
    trigger = model.trigger  # type: ignore[attr-defined]
    return lambda: trigger("capture", 30_000)


@define(slots=True)
class _FsmPayment:
    state: str = "open"
    authorized: int = 0
    captured: int = 0
    refunded: int = 0
    pending: int = 0


_FSM: dict[tuple[str, str], str] = {
    ("open", "authorized"): "authorized",
    ("authorized", "capture_requested"): "capturing",
    ("authorized", "captured"): "captured",
    ("capturing", "captured"): "captured",
    ("capturing", "capture_failed"): "authorized",
    ("authorized", "cancelled"): "cancelled",
    ("authorized", "refunded"): "authorized",
    ("captured", "refunded"): "captured",
    ("authorized", "expired"): "expired",
}


def fsm_events(path: str, limit: int) -> list[tuple[str, str, int]]:
    out = []
    with open(path, "rb") as f:
        for line in f:
            try:
                e = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if type(e) is dict and isinstance(e.get("payment"), str) and isinstance(e.get("type"), str):
                amount = e.get("amount")
                out.append((e["payment"], e["type"], amount if type(amount) is int else 0))
                if len(out) >= limit:
                    break
    return out


@_like_the_audit
def hand_fsm(events: Iterable[tuple[str, str, int]]) -> int:
    """The practical limit: a dict lookup per event and the counters, on mutable slots objects."""
    payments: dict[str, _FsmPayment] = {}
    table = _FSM
    broken = 0
    for ref, etype, amount in events:
        p = payments.get(ref)
        if p is None:
            p = payments[ref] = _FsmPayment()
        nxt = table.get((p.state, etype))
        if nxt is None:
            broken += 1
            continue
        if etype == "captured":
            if amount > p.authorized - p.captured:
                broken += 1
            p.captured += amount
            p.pending = 0
        elif etype == "refunded":
            if amount > p.captured - p.refunded:
                broken += 1
            p.refunded += amount
        elif etype == "authorized":
            p.authorized = amount
        elif etype == "capture_requested":
            p.pending = amount
        p.state = nxt
    return broken


# ------------------------------------------------------------------------------------------ capstate


def _compiled() -> bool:
    from ._hotpath import COMPILED

    return COMPILED


def _capture_compiled() -> bool:
    from ._builds import CAPTURE_COMPILED

    return CAPTURE_COMPILED


def _run_audit() -> Callable[..., Any] | None:
    try:
        from ._cli.audit_run import run_audit
    except ImportError:
        return None
    return run_audit


def decide_cases() -> dict[str, Callable[[], object]]:
    """decide() on a Vipps payment of NOK 1000.00 with NOK 300.00 captured: a capture that fits
    (allowed), and one above the capturable amount (refused, EXCEEDS_CAPTURABLE, with its arithmetic)."""
    from . import Capture, Event, EventType, Payment, apply, decide, load_spec, observe

    spec = load_spec("vipps")
    p = Payment.authorized_for(spec, "order-10001", amount=100_000, currency="NOK", at=T0)
    p = apply(p, Event(p.reference, EventType.CAPTURED, T0 + timedelta(days=1), 30_000, key="cap-1"))
    ok = Capture(at=T0 + timedelta(days=2), amount=20_000, key="cap-2")
    bad = Capture(at=T0 + timedelta(days=2), amount=90_000, key="cap-3")
    assert decide(p, ok).allowed and not decide(p, bad).allowed
    fact = Event(p.reference, EventType.CAPTURED, T0 + timedelta(days=2), 20_000, key="cap-2")
    line = fact.to_json()

    def read_all() -> object:
        d = decide(p, ok)
        return d.after, d.event, d.command

    return {
        "decide_allowed": lambda: decide(p, ok),
        "decide_rejected": lambda: decide(p, bad),
        "decide_allowed_read": read_all,
        "observe": lambda: observe(p, fact),
        "event_from_json": lambda: Event.from_json(line),
    }


# ------------------------------------------------------------------------------------------ timing


def per_call_ns(fn: Callable[[], object], *, rounds: int, budget: float = 0.2) -> float:
    """Median over rounds of the mean ns per call, each round a batch of about `budget` seconds."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        spent = time.perf_counter() - start
        if spent >= budget / 10:
            break
        n *= 4
    batch = max(1, int(n * budget / spent))
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        samples.append((time.perf_counter_ns() - start) / batch)
    return statistics.median(samples)


def timed(fn: Callable[[], _T], rounds: int) -> tuple[float, _T]:
    """Median seconds of `fn` over rounds (collected garbage first), and its last result."""
    return timed_then(fn, rounds, lambda result: result)


def timed_then(fn: Callable[[], _T], rounds: int, then: Callable[[_T], _U]) -> tuple[float, _U]:
    """Median seconds of `fn` over rounds (collected garbage first), and what `then` makes of the last
    round's result, off the clock. Each round's result is dropped before the next round starts: a run is
    timed as a user's fresh run meets it, not beside the heap of the run before (a forked worker's
    parent wrote to that heap's pages, ~27,000 copy-on-write faults a round when (b) ran holding (a)'s
    report)."""
    ((median, kept),) = timed_together([(fn, then)], rounds)
    return median, kept


def timed_together(jobs: Sequence[tuple[Callable[[], Any], Callable[[Any], Any]]], rounds: int
                   ) -> list[tuple[float, Any]]:
    """`timed_then` for several jobs at once, their rounds interleaved (job 1, job 2, ..., then again):
    for each job its median seconds and what its `then` makes of its last round's result. A ratio between
    two jobs then compares rounds run side by side, where timing all of one job's rounds before the next
    job's let the host's speed drift between them (a shared 2-core machine moved its floor from 367,514 to
    595,331 events/s between two runs ten minutes apart). Each result is dropped before the next job runs."""
    samples: list[list[float]] = [[] for _ in jobs]
    kept: list[Any] = [None] * len(jobs)
    for k in range(rounds):
        for i, (fn, then) in enumerate(jobs):
            gc.collect()
            start = time.perf_counter()
            result = fn()
            samples[i].append(time.perf_counter() - start)
            if k == rounds - 1:
                kept[i] = then(result)
            del result
    return [(statistics.median(times), what) for times, what in zip(samples, kept, strict=True)]


def _nothing(result: object) -> None:
    """What a timed job keeps of its result when nothing is compared."""


def _digest(report: Any) -> tuple[bytes, int]:
    """A report as `--json` writes it, hashed, and its number of violations: what (b) is compared by, so
    that (a)'s report need not be held through (b)."""
    return hashlib.sha256(orjson.dumps(report.to_dict())).digest(), len(report.violations)


# The child reports its own peak: VmHWM from /proc (per address space, so it starts afresh at exec),
# falling back to ru_maxrss, which Linux carries over from the forking parent across exec.
_PEAK = """
def peak_kib():
    try:
        with open("/proc/self/status") as status:
            for text in status:
                if text.startswith("VmHWM:"):
                    return int(text.split()[1])
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""
_RSS_CHILD = _PEAK + """
import sys
from capstate._cli.audit_run import run_audit
report = run_audit([sys.argv[1]], spec=None, workers=1)
print(report.events, peak_kib())
"""
_OPEN_CHILD = _PEAK + """
import hashlib, sys, orjson
from capstate._cli.audit_run import run_audit
from capstate._cli.audit import parse_size
report = run_audit([sys.argv[1]], spec=None, workers=1, max_memory=parse_size(sys.argv[2]))
counts = orjson.dumps(report.counts).decode()
print(hashlib.sha256(orjson.dumps(report.to_dict())).hexdigest(), report.events, report.payments, counts, peak_kib())
"""
_IDLE_CHILD = _PEAK + """
import capstate._cli.audit_run
print(0, peak_kib())
"""


def _child_peak_mb(code: str, *args: str) -> float | None:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return None
    return int(done.stdout.split()[-1]) / 1024


def peak_rss_mb(path: str) -> float | None:
    """Peak RSS of a single-process audit of `path`, run in a fresh child process."""
    return _child_peak_mb(_RSS_CHILD, path)


@frozen
class OpenRun:
    digest: str
    events: int
    payments: int
    counts: dict[str, int]
    peak_mb: float


def open_log_run(path: str, max_memory: str) -> OpenRun | None:
    """Audit `path` in a fresh child under `--max-memory max_memory` ("none": unbounded)."""
    done = subprocess.run([sys.executable, "-c", _OPEN_CHILD, path, max_memory], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0 or not done.stdout.strip():
        return None
    digest, events, payments, counts, peak = done.stdout.split()
    return OpenRun(digest, int(events), int(payments), orjson.loads(counts), int(peak) / 1024)


def idle_rss_mb() -> float | None:
    """Peak RSS of a child that only imports the audit: the interpreter's own share of (d)."""
    return _child_peak_mb(_IDLE_CHILD)


# ------------------------------------------------------------------------------------------ report


@frozen
class Row:
    """One line of the table. `ratio` compares `value` with `against` (the value of another row)."""

    key: str
    measure: str
    unit: str
    value: float | None
    target: str
    ratio: float | None = None
    ratio_label: str = ""
    verdict: str = ""  # PASS, MISS, MISSING, or "" for a baseline

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "measure": self.measure, "unit": self.unit, "value": self.value,
                "target": self.target, "ratio": self.ratio, "ratio_label": self.ratio_label,
                "verdict": self.verdict}


def startup_ms(argv: Sequence[str], rounds: int) -> float:
    """Median wall time, in ms, of a fresh interpreter running `argv` (output discarded)."""
    times = []
    for _ in range(max(rounds, 5)):
        start = time.perf_counter()
        subprocess.run([sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _verdict(ok: bool | None) -> str:
    return "MISSING" if ok is None else "PASS" if ok else "MISS"


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"python": platform.python_version(), "implementation": platform.python_implementation(),
            "system": f"{platform.system()} {platform.release()}", "cpu": cpu, "cores": os.cpu_count(),
            "load_at_start": [round(x, 2) for x in load] if load else None}


# The journal's row is measured by the I/O side (capstate.providers.bench_journal, against a real
# `capstate emulate`): the CLI passes it in, so this module never imports the providers.
JournalBench = Callable[..., dict[str, Any] | None]


def measure(*, payments: int, rounds: int, seed: int, say: Callable[[str], None],
            open_log: int = OPEN_LOG_QUICK, journal: JournalBench | None = None) -> dict[str, Any]:
    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="capstate-bench-") as tmp:
        start = time.perf_counter()
        log = write_log(tmp, payments=payments, seed=seed)
        say(f"wrote {log.lines:,} lines over {log.payments:,} payments ({log.size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - start:.1f}s")
        events = log.lines - log.malformed

        run_audit = _run_audit()
        audit_eps = audit2_eps = rss = None
        workers_identical: bool | None = None
        load_after_b: list[float] | None = None
        violations: int | None = None
        if run_audit is None:
            say("floor: orjson.loads + payment id into a dict")
            floor_s, _ = timed(lambda: floor(log.path), rounds)
        else:
            say("floor: orjson.loads + payment id into a dict; (a) audit, 1 process; (b) audit, 2 workers "
                "(their rounds interleaved)")
            # Each report is hashed once its last round is done and then dropped, so that (b) runs as a fresh
            # `capstate audit --workers 2` does, not forked from a process holding (a)'s findings.
            (floor_s, _), (a_s, (digest_a, violations)), (b_s, (digest_b, _)) = timed_together(
                [(lambda: floor(log.path), _nothing),
                 (lambda: run_audit([log.path], spec=None, workers=1), _digest),
                 (lambda: run_audit([log.path], spec=None, workers=2), _digest)], rounds)
            audit_eps = events / a_s
            audit2_eps = events / b_s
            # (b) counts only when its report is (a)'s, byte for byte as --json writes it.
            workers_identical = digest_a == digest_b
            load_after_b = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
            say("(d) peak RSS of (a), in a child process")
            rss = peak_rss_mb(log.path)
        floor_eps = events / floor_s

        prefix = min(NAIVE_PREFIX, log.lines)
        say(f"naive transitions audit (first {prefix:,} lines)")
        naive_s, naive_n = timed(lambda: naive_transitions_audit(log.path, prefix), rounds)
        naive_eps = (naive_n or 0) / naive_s

        parsed = fsm_events(log.path, FSM_EVENTS)
        say(f"hand-written FSM ({len(parsed):,} pre-parsed events)")
        fsm_s, _ = timed(lambda: hand_fsm(parsed), rounds)
        fsm_ns = fsm_s / len(parsed) * 1e9
        os.remove(log.path)  # room for the open log

        start = time.perf_counter()
        opened = write_open_log(tmp, size=open_log, seed=seed)
        say(f"wrote {opened.lines:,} lines of open authorizations ({opened.size / 1e6:,.0f} MB) in "
            f"{time.perf_counter() - start:.1f}s")
        open_run = unbounded = None
        identical: bool | None = None
        if run_audit is not None:
            say("(e) audit of the open log under the default --max-memory, in a child process")
            open_run = open_log_run(opened.path, "1GiB")
            if open_run is not None and opened.size <= OPEN_LOG_COMPARE:
                say("(e) the same log unbounded, to compare the reports")
                unbounded = open_log_run(opened.path, "none")
                identical = unbounded is not None and unbounded.digest == open_run.digest
            elif open_run is not None:
                expected = {"EXCEEDS_CAPTURABLE": opened.over_captures, "DANGLING_AUTHORIZATION": opened.lapsed}
                identical = (open_run.events == opened.lines and open_run.payments == opened.payments
                             and open_run.counts == {k: v for k, v in sorted(expected.items()) if v})

    say("(c) decide() latency and one transitions trigger")
    cases = decide_cases()
    trigger_ns = per_call_ns(transitions_trigger(), rounds=rounds)
    ns = {name: per_call_ns(fn, rounds=rounds) for name, fn in cases.items()}
    idle = idle_rss_mb()
    say("(f) start-up: capstate --help, and a bare interpreter")
    help_ms = startup_ms(["-m", "capstate", "--help"], rounds)
    bare_ms = startup_ms(["-c", "pass"], rounds)

    j = journal(quick=payments == QUICK_PAYMENTS, rounds=rounds, say=say) if journal is not None else None
    audit_ns = 1e9 / audit_eps if audit_eps else None
    rows = [
        Row("a", "(a) audit throughput, 1 process", "events/s", audit_eps, ">= 0.5x floor",
            audit_eps / floor_eps if audit_eps else None, "x floor",
            _verdict(audit_eps / floor_eps >= 0.5 if audit_eps else None)),
        Row("b", "(b) audit, 2 workers", "events/s", audit2_eps, ">= 1.6x (a), same report",
            audit2_eps / audit_eps if audit2_eps and audit_eps else None, "x (a)",
            _verdict(audit2_eps / audit_eps >= 1.6 and bool(workers_identical) if audit2_eps and audit_eps
                     else None)),
        Row("c_allowed", "(c) decide(), allowed capture", "ns/call", ns["decide_allowed"], "<= 1500 ns",
            trigger_ns / ns["decide_allowed"], "x faster than trigger", _verdict(ns["decide_allowed"] <= 1500)),
        Row("c_allowed_vs", "(c) decide() allowed vs one trigger", "x", trigger_ns / ns["decide_allowed"],
            ">= 10x faster", trigger_ns / ns["decide_allowed"], "x faster than trigger",
            _verdict(trigger_ns / ns["decide_allowed"] >= 10)),
        Row("c_rejected", "(c) decide(), rejected capture", "ns/call", ns["decide_rejected"], "<= 1500 ns",
            trigger_ns / ns["decide_rejected"], "x faster than trigger", _verdict(ns["decide_rejected"] <= 1500)),
        Row("c_rejected_vs", "(c) decide() rejected vs one trigger", "x", trigger_ns / ns["decide_rejected"],
            ">= 10x faster", trigger_ns / ns["decide_rejected"], "x faster than trigger",
            _verdict(trigger_ns / ns["decide_rejected"] >= 10)),
        Row("d", "(d) peak RSS of (a)", "MB", rss, "<= 100 MB",
            rss / idle if rss and idle else None, "x idle interpreter", _verdict(rss <= 100 if rss else None)),
        Row("e", f"(e) peak RSS, {opened.size / 1e6:,.0f} MB log of open authorizations", "MB",
            open_run.peak_mb if open_run else None, "<= 1024 MB, same report",
            open_run.peak_mb / (opened.size / 2**20) if open_run else None, "x log size",
            _verdict(open_run.peak_mb <= 1024 and identical if open_run and identical is not None else None)),
        Row("f", "(f) start-up: capstate --help", "ms", help_ms, "<= 150 ms", help_ms / bare_ms,
            "x bare interpreter", _verdict(help_ms <= 150)),
        Row("journal", "journal + client captures (vs bare client)", "captures/s", j["journal_cps"] if j else None,
            "<= 1.25x bare time", j["overhead"] if j else None, "x bare client time",
            _verdict(j["overhead"] <= 1.25 if j else None)),
    ]
    baselines = [
        Row("floor", "floor: orjson.loads + id into dict", "events/s", floor_eps, "",
            audit_eps / floor_eps if audit_eps else None, "(a) / floor"),
        Row("naive", "naive transitions audit", "events/s", naive_eps, "",
            audit_eps / naive_eps if audit_eps else None, "(a) / naive"),
        Row("trigger", "one transitions trigger with a condition", "ns/call", trigger_ns, "",
            trigger_ns / ns["decide_allowed"], "trigger / decide allowed"),
        Row("fsm", "hand-written FSM (pre-parsed events)", "ns/event", fsm_ns, "",
            audit_ns / fsm_ns if audit_ns else None, "(a) ns/event / FSM"),
        Row("decide_read", "decide() allowed, reading after/event/command", "ns/call", ns["decide_allowed_read"],
            "", ns["decide_allowed_read"] / ns["decide_allowed"], "x decide allowed"),
        Row("observe", "observe() of one capture", "ns/call", ns["observe"], "",
            ns["observe"] / fsm_ns, "x FSM event"),
        Row("from_json", "Event.from_json of one line", "ns/call", ns["event_from_json"], "",
            ns["event_from_json"] / (1e9 / floor_eps), "x floor per event"),
        Row("bare", "bare interpreter start (python -c pass)", "ms", bare_ms, "", help_ms / bare_ms,
            "(f) / bare"),
        Row("bare_client", "bare CaptureClient captures against capstate emulate", "captures/s",
            j["bare_cps"] if j else None, "", j["overhead"] if j else None, "journal time / bare time"),
        # What the journal adds per capture, in durable commits: its intent is committed to disk before the
        # request leaves (what the provider proved is committed after it without waiting: docs/journal.md).
        Row("commit", "one durable SQLite commit (WAL, synchronous FULL)", "us",
            j["commit_ms"] * 1000 if j else None, "",
            (1000 / j["journal_cps"] - 1000 / j["bare_cps"]) / j["commit_ms"] if j else None,
            "journal time added per capture / commit"),
    ]
    return {
        "machine": info,
        "rounds": rounds,
        "seed": seed,
        "log": {"lines": log.lines, "events": events, "payments": log.payments, "malformed": log.malformed,
                "payments_with_breach": log.injected, "violations_reported": violations, "bytes": log.size,
                "workers_report_identical": workers_identical, "load_after_b": load_after_b},
        "open_log": {"lines": opened.lines, "payments": opened.payments, "bytes": opened.size,
                     "over_captures": opened.over_captures, "lapsed": opened.lapsed,
                     "report_identical": identical,
                     "compared_with": "unbounded run" if opened.size <= OPEN_LOG_COMPARE else "generator",
                     "unbounded_peak_mb": unbounded.peak_mb if unbounded else None},
        "hot_loop": "compiled (mypyc)" if _compiled() else "plain Python",
        "decide_plan": "compiled (mypyc)" if _capture_compiled() else "plain Python",
        "audit_missing": run_audit is None,
        "rows": [r.to_dict() for r in rows],
        "baselines": [r.to_dict() for r in baselines],
    }


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "ms":
        return f"{value:.0f} ms"
    return f"{value:,.0f} {unit}"


def render(result: dict[str, Any]) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    # Wide enough for one line per row when piped (rich would wrap at 80 columns).
    out = Console(width=None if sys.stdout.isatty() else 132)
    m, log = result["machine"], result["log"]
    out.print(f"[bold]capstate bench[/] - median of {result['rounds']} rounds, seed {result['seed']}")
    out.print(f"machine: {m['cpu']}, {m['cores']} cores, {m['system']}, {m['implementation']} {m['python']}, "
              f"load average at start {m['load_at_start']}")
    out.print(f"log: {log['lines']:,} lines ({log['malformed']:,} malformed), {log['payments']:,} payments, "
              f"{log['payments_with_breach']:,} with a breach, "
              f"{log['violations_reported'] if log['violations_reported'] is not None else '-'} violations "
              f"reported, {log['bytes'] / 1e6:.0f} MB; (b)'s report identical to (a)'s: "
              f"{log.get('workers_report_identical')}, load average after (b) {log.get('load_after_b')}")
    opened = result["open_log"]
    out.print(f"open log (e): {opened['lines']:,} lines, {opened['payments']:,} payments, "
              f"{opened['bytes'] / 1e6:,.0f} MB; report identical to the {opened['compared_with']}'s: "
              f"{opened['report_identical']}; hot loop: {result['hot_loop']}")
    out.print(f"(c) decide's capture plan: {result.get('decide_plan', '-')}")
    if result["audit_missing"]:
        out.print("[red]capstate._cli.audit_run.run_audit is missing: (a), (b) and (d) were not measured[/]")
    tables = [("Targets", result["rows"]), ("Baselines (same run)", result["baselines"])]
    if result.get("emulator"):
        tables.append(("Emulator on loopback (reported, not asserted)", result["emulator"]))
    for title, rows in tables:
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("measure", "measured", "target", "ratio", "verdict"):
            table.add_column(col, justify="right" if col in {"measured", "ratio"} else "left")
        for r in rows:
            ratio = f"{r['ratio']:.2f} {r['ratio_label']}" if r["ratio"] is not None else "-"
            style = {"PASS": "green", "MISS": "red", "MISSING": "yellow"}.get(r["verdict"], "")
            table.add_row(r["measure"], _fmt(r["value"], r["unit"]), r["target"], ratio,
                          f"[{style}]{r['verdict']}[/]" if style else r["verdict"])
        out.print(table)


Extra = Callable[[bool, Callable[[str], None]], list[dict[str, Any]]]


def run(*, quick: bool, rounds: int, seed: int, as_json: bool, say: Callable[[str], None] | None = None,
        open_log: int | None = None, extra: Extra | None = None, journal: JournalBench | None = None) -> int:
    """Measure and print; the exit code is 0 whatever the verdicts (a report, not a test). `extra` adds the
    rows of measures that live outside the core (the CLI passes the emulator's), under "emulator";
    `journal` measures the journal's row (capstate.providers.bench_journal)."""
    payments = QUICK_PAYMENTS if quick else FULL_PAYMENTS
    if open_log is None:
        open_log = OPEN_LOG_QUICK if quick else OPEN_LOG_FULL
    result = measure(payments=payments, rounds=rounds, seed=seed, say=say or (lambda text: None),
                     open_log=open_log, journal=journal)
    if extra is not None:
        result["emulator"] = extra(quick, say or (lambda text: None))
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(result, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_INDENT_2))
    else:
        render(result)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m capstate.bench [options]`: the same as `capstate bench [options]`."""
    from ._cli.main import main as cli_main

    return cli_main(["bench", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
