"""Model checking a spec: lint its graph, then explore every short history and check the money.

Theory of operation. `check_spec` first collects the lint findings: what the lenient loader
(`lint_spec`) found (unknown triggers, guards, routes and states, overlapping transitions) and the
graph problems (unreachable states, exits out of terminal states, states that cannot reach a terminal
one). It then runs a breadth-first search over (payment, clock) nodes from a fresh payment. The step
function is the engine itself: every merchant command goes through `decide` and, when allowed, its
decision's `after`; every provider fact (a capture's outcome, a lapse, a logged request) goes through
`apply`. The payment aggregate is a frozen value, so nodes deduplicate by equality.

The domain is small on purpose: authorized 100 in one currency of each class the policy tells
apart (minimum amount, validity; EUR when the spec takes any), in each flow a guard reads (with a
key where the provider takes keys); capture amounts 1, 50, 99, 100, 101 and "the rest", with
`final` where the remainder is held until a cancel; cancel of the rest, of 50 and of 101; refunds of
1, 50, 100 and 101; a capture and a refund of 50 in another currency; no key, a fresh key, or each
key already used; provider facts (capture requested,
captured, capture_failed, cancelled, refunded, expired); the clock moved to each deadline the payment
has (validity, refund window). Every allowed move is checked against the invariants below; BFS order
makes the first counterexample found for an invariant a shortest one.

A policy whose minimum amount is above 100 gets the same domain scaled by a power of 10; one that
authorizes nothing in the domain at all is reported as an `unexplored` finding, never as a pass.

Beside the money, an allowed command is held to the spec's own declared policy (`single_currency`,
`obeys_own_policy`): a transition that lost its currency, expiry, count or partial-capture guard can
keep the sums right and still break the contract the spec states.

"A terminal state absorbs" means: no move leaves it, and the money it settled (authorized,
captured, cancelled, pending) never changes again. Refunds are the exception the design allows: they
change `refunded` (and the counts and keys) of a payment in `captured`, never its state.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from attrs import evolve, frozen

from ._engine import apply, decide
from ._errors import InvalidTransition
from ._policy import IdentifierRule, Policy
from ._spec import Spec, SpecFinding, apply_overrides, graph_problems, lint_spec
from ._time import format_instant
from ._values import Authorize, Cancel, Capture, Command, Event, EventType, Flow, Payment, Refund

DEFAULT_DEPTH = 6
AUTHORIZED = 100
CAPTURE_AMOUNTS: tuple[int | None, ...] = (1, 50, 99, 100, 101, None)
CANCEL_AMOUNTS: tuple[int | None, ...] = (None, 50, 101)
REFUND_AMOUNTS = (1, 50, 100, 101)
REFERENCE = "check-0001"
_UUID = "5f0c6b1e-8d2a-4c3b-9e7f-1a2b3c4d5e6f"  # a UUIDv4, for a spec whose references are payment ids
T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
_SOON = timedelta(hours=1)

# The invariants, in the order they are reported. Stable names: --json carries them.
INVARIANTS: dict[str, str] = {
    "captured_within_authorized": "captured <= authorized + over-capture allowance",
    "released_within_authorized": "captured + cancelled <= authorized (nothing released beyond what is left)",
    "in_flight_within_authorized": "captured + cancelled + pending <= authorized + allowance",
    "refunded_within_captured": "refunded <= captured",
    "no_negative_amount": "no amount is ever negative",
    "amounts_never_decrease": "authorized (once set), captured, cancelled and refunded never decrease",
    "terminal_absorbs": "no move leaves a terminal state or changes the money it settled (refunds excepted)",
    "single_currency": "an allowed capture or refund is in the authorized currency",
    "obeys_own_policy": "an allowed command keeps the spec's own policy numbers: capture and refund counts, "
                        "partial capture, minimum amount, authorization validity, refund window",
    "decide_agrees_with_apply": "the fact an allowed decision predicts is accepted by apply, with the same result",
    "engine_answers": "decide and apply answer every command and fact without an unexpected exception",
}


@frozen
class Move:
    """One step of a counterexample: what happened, when, and the payment after it."""

    label: str
    at: datetime
    after: Payment

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.label, "at": format_instant(self.at), "after": _summary(self.after)}


@frozen
class Counterexample:
    """A shortest history that breaks `invariant`; `message` shows the arithmetic of the last step."""

    invariant: str
    message: str
    moves: tuple[Move, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "message": self.message, "steps": [m.to_dict() for m in self.moves]}


@frozen
class CheckResult:
    """What `check_spec` found. `ok` holds when there is no lint finding and no counterexample."""

    spec: Spec
    depth: int
    states: int
    moves: int
    complete: bool  # the search ran out of new states before the depth bound
    findings: tuple[SpecFinding, ...]
    counterexamples: tuple[Counterexample, ...]

    @property
    def ok(self) -> bool:
        return not self.findings and not self.counterexamples

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec.name, "file": self.spec.file, "ok": self.ok, "depth": self.depth,
            "states": self.states, "moves": self.moves, "complete": self.complete,
            "findings": [{"kind": f.kind, "path": f.path, "line": f.line, "message": f.message}
                         for f in self.findings],
            "invariants": list(INVARIANTS),
            "counterexamples": [c.to_dict() for c in self.counterexamples],
        }


def _summary(p: Payment) -> dict[str, Any]:
    return {**p.summary(), "pending": p.pending}


def check_spec(spec: Spec | str | Path, *, depth: int = DEFAULT_DEPTH,
               overrides: Mapping[str, Any] | None = None) -> CheckResult:
    """Lint and model-check a spec (a Spec, a shipped name or a spec file path).

    A name or path is loaded leniently, so structural problems are findings rather than a SpecError;
    a spec that cannot be built at all still raises SpecError, as does a bad override. `depth` bounds
    the moves per history; `overrides` are policy numbers, as for `load_spec`.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    if isinstance(spec, Spec):
        findings = tuple(SpecFinding(kind, path, None, message) for kind, path, message
                         in graph_problems(spec.states, spec.initial, spec.terminal, spec.transitions))
    else:
        spec, findings = lint_spec(spec)
    if overrides:
        spec = evolve(spec, policy=apply_overrides(spec.policy, overrides, file=spec.file))
    states, moves, complete, counterexamples, authorized = _explore(spec, depth)
    if not authorized:
        tried = ", ".join(f"{AUTHORIZED * _scale(spec, c)} {c}" for c in _currencies(spec))
        findings = (*findings, SpecFinding(
            "unexplored", "policy", None,
            f"no authorization in the explored domain succeeded (authorize {tried}), so no capture was "
            f"checked; the policy's amount bounds, currencies or identifier rules leave nothing to explore"))
    return CheckResult(spec, depth, states, moves, complete, findings, counterexamples)


# ------------------------------------------------------------------------------------------ exploring

_Node = tuple[Payment, int]  # the payment and the index of the current instant in its clock
_Broken = list[tuple[str, str]]  # (invariant, message) pairs
_Action = tuple[str, datetime, Callable[[Payment], tuple[Payment | None, _Broken]]]


def _clock(p: Payment) -> tuple[datetime, ...]:
    """The instants a payment's history visits: soon after authorization, then each deadline it has,
    exactly at the deadline (the guards treat "at or past" as past)."""
    if p.authorized_at is None:
        return (T0,)
    deadlines = set()
    if p.expires_at is not None:
        deadlines.add(p.expires_at)
    window = p.spec.policy.refund_window
    if window is not None:
        deadlines.add(p.authorized_at + window)
    soon = p.authorized_at + _SOON
    return (soon, *sorted(d for d in deadlines if d > soon))


def _explore(spec: Spec, depth: int) -> tuple[int, int, bool, tuple[Counterexample, ...], bool]:
    start: _Node = (Payment.new(spec, _fitting(spec.policy.reference, REFERENCE, _UUID, "CHECK0001")), 0)
    parents: dict[_Node, tuple[_Node, str, datetime] | None] = {start: None}
    found: dict[str, Counterexample] = {}
    frontier: deque[tuple[_Node, int]] = deque([(start, 0)])
    moves = 0
    complete = True

    def path_to(node: _Node) -> list[Move]:
        out: list[Move] = []
        link = parents[node]
        while link is not None:
            prev, label, at = link
            out.append(Move(label, at, node[0]))
            node = prev
            link = parents[node]
        return out[::-1]

    while frontier:
        node, level = frontier.popleft()
        if level >= depth:
            complete = False
            continue
        p, tick = node
        for label, at, step in _actions(p, tick):
            try:
                q, judged = step(p)
            except InvalidTransition:  # apply refusing a fact the spec forbids: not a move
                continue
            except Exception as exc:  # an engine bug is a finding, not a crash of the checker
                name = "no_negative_amount" if "negative" in str(exc) else "engine_answers"
                if name not in found:
                    found[name] = Counterexample(name, f"{label}: {type(exc).__name__}: {exc}",
                                                 (*path_to(node), Move(f"{label} (raised)", at, p)))
                continue
            if q is None:
                continue
            moves += 1
            child: _Node = (q, _tick_after(q, tick, at))
            broken = _broken(p, q) + judged
            new = child not in parents
            if new:
                parents[child] = (node, label, at)
                frontier.append((child, level + 1))
            for name, message in broken:
                if name not in found:
                    tail = [Move(label, at, q)] if not new else []
                    found[name] = Counterexample(name, f"{label}: {message}",
                                                 tuple(path_to(child if new else node) + tail))
    ordered = tuple(found[n] for n in INVARIANTS if n in found)
    authorized = any(p.authorized_at is not None for p, _ in parents)
    return len(parents), moves, complete, ordered, authorized


def _tick_after(q: Payment, tick: int, at: datetime) -> int:
    """The clock index after a move at `at` (an authorization starts the payment's own clock)."""
    clock = _clock(q)
    return max(i for i, instant in enumerate(clock) if instant <= at) if at >= clock[0] else 0


def _actions(p: Payment, tick: int) -> Iterator[_Action]:
    policy = p.spec.policy
    clock = _clock(p)
    at = clock[min(tick, len(clock) - 1)]
    if p.authorized_at is None:
        # Where the provider takes keys, the authorization sends one (Vipps requires it on create too).
        auth_key = None if policy.idempotency == "none" else _key(policy, "auth", 0)
        for currency in _currencies(p.spec):
            for flow in _flows(p.spec):
                total = AUTHORIZED * _scale(p.spec, currency)
                text = f"authorize {total} {currency}" + (f" flow={flow.value}" if flow else "")
                yield text, at, _command(Authorize(amount=total, currency=currency, at=at, flow=flow, key=auth_key))
    elif tick + 1 < len(clock):
        nxt = clock[tick + 1]
        yield f"time passes to {format_instant(nxt)}", nxt, lambda q: (q, [])

    foreign = _foreign(p)
    u = max(p.authorized // AUTHORIZED, 1)  # the domain, scaled as the authorization was
    used = sorted({use.key for use in p.keys})
    keys: list[str | None] = [None, _key(policy, "k", len(used) + 1), *used]
    for key in keys:
        suffix = f" key={key}" if key else ""
        for amount in _times(CAPTURE_AMOUNTS, u):
            what = f"capture {'rest' if amount is None else amount}{suffix}"
            yield what, at, _command(Capture(at=at, amount=amount, key=key))
            if policy.remainder == "reserved_until_cancel" and amount == 50 * u:
                yield f"{what} final", at, _command(Capture(at=at, amount=amount, key=key, final=True))
        for amount in _times(CANCEL_AMOUNTS, u):
            yield f"cancel {'rest' if amount is None else amount}{suffix}", at, _command(
                Cancel(at=at, amount=amount, key=key))
        for refund in (a * u for a in REFUND_AMOUNTS):
            yield f"refund {refund}{suffix}", at, _command(Refund(amount=refund, at=at, key=key))
        if foreign is not None:
            # Money in another currency than the authorization's: only a currency guard refuses it.
            half = 50 * u
            yield f"capture {half} {foreign}{suffix}", at, _command(
                Capture(at=at, amount=half, currency=foreign, key=key))
            yield f"refund {half} {foreign}{suffix}", at, _command(
                Refund(amount=half, at=at, currency=foreign, key=key))

    # Facts the provider reports: outcomes of a capture in flight, lapses, logged requests. They go
    # through apply, which holds them to the same spec with command=False.
    ref = p.reference
    outcome_amounts = sorted({a * u for a in CAPTURE_AMOUNTS if a is not None} | ({p.pending} if p.pending else set()))
    for etype in (EventType.CAPTURE_REQUESTED, EventType.CAPTURED):
        for amount in (*outcome_amounts, None):
            text = f"provider reports {etype.value} {'rest' if amount is None else amount}"
            yield text, at, _fact(Event(ref, etype, at, amount))
    for refund in (a * u for a in REFUND_AMOUNTS):
        yield f"provider reports refunded {refund}", at, _fact(Event(ref, EventType.REFUNDED, at, refund))
    for etype in (EventType.CAPTURE_FAILED, EventType.CANCELLED, EventType.EXPIRED):
        yield f"provider reports {etype.value}", at, _fact(Event(ref, etype, at))


def _fitting(rule: IdentifierRule, *candidates: str) -> str:
    """The first candidate the provider's identifier rule accepts (the first one if none does: the
    refusals then show in the search as an unexplored spec, never as a silent pass)."""
    return next((c for c in candidates if rule.problem(c) is None), candidates[0])


def _key(policy: Policy, stem: str, n: int) -> str:
    """Idempotency key number `n`, short and readable where the provider's key format allows it."""
    return _fitting(policy.idempotency_key, f"{stem}{n}" if n else stem, f"{stem}-{n:016d}",
                    f"{n:08x}-0000-4000-8000-000000000000", f"{n:032x}")


def _scale(spec: Spec, currency: str) -> int:
    """1, or the power of 10 that lifts the authorization of 100 to the policy's minimum amount (a spec
    with a minimum of 500 is explored with 1000 authorized and captures of 10, 500, 990, ...)."""
    scale = 1
    while AUTHORIZED * scale < spec.policy.min_amount(currency) and scale < 10**15:
        scale *= 10
    return scale


def _times(amounts: tuple[int | None, ...], u: int) -> tuple[int | None, ...]:
    return tuple(None if a is None else a * u for a in amounts)


def _currencies(spec: Spec) -> list[str]:
    """One currency per class the policy tells apart (minimum amount, validity): Vipps's DKK and EUR
    behave alike, so exploring both would only double the states."""
    policy = spec.policy
    if policy.currencies is None:
        return ["EUR"]
    seen: dict[tuple[int, timedelta | None], str] = {}
    for currency in sorted(policy.currencies):
        seen.setdefault((policy.min_amount(currency), policy.validity_for(currency)), currency)
    return sorted(seen.values())


def _foreign(p: Payment) -> str | None:
    """A currency other than the authorized one, taken from those the spec accepts where it can (so that
    only the currency-matches rule, not the supported-currencies one, stands in its way)."""
    if p.currency is None:
        return None
    accepted = sorted((p.spec.policy.currencies or frozenset()) - {p.currency})
    return accepted[0] if accepted else ("SEK" if p.currency != "SEK" else "DKK")


def _flows(spec: Spec) -> tuple[Flow | None, ...]:
    """The automatic-capture flow only matters to a spec whose guards read the flow."""
    if any("manual_flow" in t.guards for t in spec.transitions):
        return (None, Flow.AUTOMATIC)
    return (None,)


def _command(cmd: Command) -> Callable[[Payment], tuple[Payment | None, _Broken]]:
    def step(p: Payment) -> tuple[Payment | None, _Broken]:
        d = decide(p, cmd)
        if not d.allowed or d.after is None:
            return None, []
        if d.event is None:  # an idempotent replay: nothing moves
            if d.after != p:
                return p, [("decide_agrees_with_apply", "an idempotent replay changed the payment")]
            return None, []
        judged = _policy_breaks(p, d.command, d.after)
        try:
            recorded = apply(p, d.event)
        except InvalidTransition as exc:
            return d.after, [*judged, ("decide_agrees_with_apply",
                                       f"decide allowed it, but apply refuses its fact: {exc}")]
        rewritten = {w.code.value for w in d.warnings} & {"REMAINDER_RELEASED"}
        if not rewritten and recorded != d.after:
            return d.after, [*judged, ("decide_agrees_with_apply",
                                       f"decide predicts {_summary(d.after)}, apply records {_summary(recorded)}")]
        return d.after, judged

    return step


def _policy_breaks(p: Payment, cmd: Command, after: Payment) -> _Broken:
    """What an ALLOWED command breaks of the spec's own declared policy (a guard missing from a transition
    shows here even when the money still adds up): a currency other than the authorized one; more captures
    or refunds than the policy allows; a partial capture where the provider captures in full only; a
    capture below the minimum amount, or at or past the authorization's expiry; a refund at or past the end
    of the refund window."""
    out: _Broken = []
    policy = p.spec.policy
    if isinstance(cmd, Capture | Refund) and p.currency is not None and cmd.currency not in (None, p.currency):
        out.append(("single_currency", f"{type(cmd).__name__.lower()} in {cmd.currency} allowed on a payment "
                                       f"authorized in {p.currency}"))
    problems: list[str] = []
    if isinstance(cmd, Capture) and p.authorized_at is not None:
        if policy.max_captures is not None and after.capture_count > policy.max_captures:
            problems.append(f"capture {after.capture_count} of at most {policy.max_captures}")
        if policy.partial_capture == "no" and cmd.amount is not None and cmd.amount < p.capturable:
            problems.append(f"partial capture {cmd.amount} of capturable {p.capturable} where partial_capture = no")
        if cmd.amount is not None and p.currency is not None and cmd.amount < policy.min_amount(p.currency):
            problems.append(f"capture {cmd.amount} below the minimum {policy.min_amount(p.currency)}")
        if p.expires_at is not None and cmd.at >= p.expires_at:
            problems.append(f"capture at {format_instant(cmd.at)}, at or past expiry {format_instant(p.expires_at)}")
    if isinstance(cmd, Refund) and policy.max_refunds is not None and after.refund_count > policy.max_refunds:
        problems.append(f"refund {after.refund_count} of at most {policy.max_refunds}")
    if isinstance(cmd, Refund) and policy.refund_window is not None and p.authorized_at is not None:
        closes = p.authorized_at + policy.refund_window
        if cmd.at >= closes:
            problems.append(f"refund at {format_instant(cmd.at)}, at or past the end of the refund window "
                            f"{format_instant(closes)}")
    if problems:
        out.append(("obeys_own_policy", "; ".join(problems)))
    return out


def _fact(event: Event) -> Callable[[Payment], tuple[Payment | None, _Broken]]:
    def step(p: Payment) -> tuple[Payment | None, _Broken]:
        return apply(p, event), []

    return step


def _broken(p: Payment, q: Payment) -> list[tuple[str, str]]:
    """The invariants the move from `p` to `q` breaks, each with its arithmetic."""
    out: list[tuple[str, str]] = []
    allowance = q.spec.policy.allowance(q.authorized)
    if q.captured > q.authorized + allowance:
        out.append(("captured_within_authorized",
                    f"captured {q.captured} > authorized {q.authorized} + allowance {allowance}"))
    if q.cancelled > max(q.authorized - q.captured, 0):
        out.append(("released_within_authorized",
                    f"captured {q.captured} + cancelled {q.cancelled} > authorized {q.authorized}"))
    if q.captured + q.cancelled + q.pending > q.authorized + allowance:
        out.append(("in_flight_within_authorized",
                    f"captured {q.captured} + cancelled {q.cancelled} + pending {q.pending} > authorized "
                    f"{q.authorized} + allowance {allowance}"))
    if q.refunded > q.captured:
        out.append(("refunded_within_captured", f"refunded {q.refunded} > captured {q.captured}"))
    negative = [n for n in ("authorized", "captured", "cancelled", "refunded", "pending") if getattr(q, n) < 0]
    if negative:
        out.append(("no_negative_amount", "negative: " + ", ".join(f"{n} {getattr(q, n)}" for n in negative)))
    shrunk = [n for n in ("captured", "cancelled", "refunded") if getattr(q, n) < getattr(p, n)]
    if p.authorized_at is not None and q.authorized != p.authorized:
        shrunk.append("authorized")
    if shrunk:
        out.append(("amounts_never_decrease", ", ".join(f"{n} {getattr(p, n)} -> {getattr(q, n)}" for n in shrunk)))
    if p.state in p.spec.terminal:
        settled = [n for n in ("authorized", "captured", "cancelled", "pending") if getattr(q, n) != getattr(p, n)]
        if q.state != p.state:
            out.append(("terminal_absorbs", f"left terminal state {p.state!r} for {q.state!r}"))
        elif settled:
            out.append(("terminal_absorbs", f"in terminal state {p.state!r}: "
                        + ", ".join(f"{n} {getattr(p, n)} -> {getattr(q, n)}" for n in settled)))
    return out
