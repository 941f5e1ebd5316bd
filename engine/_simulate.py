"""Offline simulation: run a capture plan through one provider's spec on a virtual clock.

Theory of operation. The plan's authorization, then each step, is a command judged by `decide`; what
the provider would answer is then recorded with `apply`, exactly as a payment service would:

1. A refused step changes nothing, and the run goes on.
2. An allowed step that succeeds records the decision's fact. On an asynchronous spec (Hellgate:
   capture_requested -> capturing) the provider's `captured` outcome follows at the same instant, so
   every step ends settled. A final capture that releases the rest records that cancel too.
3. An allowed step with `outcome = "failed"` records the failure the spec models: capture_failed (after
   the request on an asynchronous spec). A spec without such a transition, and a failed cancel or
   refund (the vocabulary has no event for them), leave the payment as it was, and the step says so.
4. The clock: before each step, once its `at` is at or past the authorization's expiry, the spec's
   `expired` event fires at the expiry instant (the provider's lapse or auto-cancel), so later steps
   see it. Unknown validity never expires. Where the spec has no lapse from the payment's state (a
   terminal `captured` after a partial capture, Hellgate's `failed` after a failed capture) but its
   remainder policy is "lapses", the uncaptured remainder lapses all the same: the step says so, and
   the verdict counts it released, not held.

Pure: no I/O, no clock, no randomness. Keys a plan leaves out are derived from it (`derive_key`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from attrs import frozen

from ._engine import apply, decide
from ._errors import InvalidTransition
from ._money import to_major_string
from ._plan import Op, Outcome, Plan, PlanStep, derive_key, derive_reference
from ._spec import Spec, load_spec
from ._time import format_instant
from ._values import (
    Authorize,
    Cancel,
    Capture,
    Command,
    Decision,
    Event,
    EventType,
    Flow,
    Payment,
    PolicyWarning,
    Refund,
    Violation,
)


class NoteCode(StrEnum):
    """What the simulation itself reports on a step, beside the engine's warnings."""

    AUTHORIZATION_LAPSED = "AUTHORIZATION_LAPSED"
    """The virtual clock passed the authorization's expiry; the spec's lapse was applied."""
    OUTCOME_FAILED = "OUTCOME_FAILED"
    """The plan rehearsed a provider failure for this step, and the spec's failure was applied."""
    FAILURE_NOT_MODELLED = "FAILURE_NOT_MODELLED"
    """The spec has no transition for the rehearsed failure; the payment is left as it was."""
    KEY_REUSED_AFTER_FAILURE = "KEY_REUSED_AFTER_FAILURE"
    """A retry under the idempotency key of a failed attempt: the provider may answer it with the
    stored failure (Vipps replays a 4xx for the same key), so it only helps after a timeout or 5xx."""


@frozen
class SimulationNote:
    code: NoteCode
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


StepWarning = PolicyWarning | SimulationNote


@frozen
class StepResult:
    """One step as one provider would answer it.

    `index` is the plan's 1-based step number (0 for the authorization). `amount` is the resolved amount
    of the command (a capture without an amount shows what it would take). `events` are the facts
    recorded in the step, the lapse first; replayed in order after the previous steps' they give `after`.
    `surprise` marks a rehearsed failure the plan cannot recover from on this provider.
    """

    index: int
    op: str
    at: datetime
    allowed: bool
    after: Payment
    amount: int | None = None
    key: str | None = None
    outcome: Outcome | None = None
    violations: tuple[Violation, ...] = ()
    warnings: tuple[StepWarning, ...] = ()
    events: tuple[Event, ...] = ()
    lapsed_at: datetime | None = None
    surprise: bool = False

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(v.code.value for v in self.violations)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "index": self.index,
            "op": self.op,
            "allowed": self.allowed,
            "violations": [v.to_dict() for v in self.violations],
            "warnings": [w.to_dict() for w in self.warnings],
            "after": self.after.summary(),
            "at": format_instant(self.at),
            "amount": self.amount,
            "key": self.key,
            "outcome": self.outcome.value if self.outcome is not None else None,
            "events": [e.to_dict() for e in self.events],
        }
        if self.lapsed_at is not None:
            out["lapsed_at"] = format_instant(self.lapsed_at)
        if self.surprise:
            out["surprise"] = True
        return out


@frozen
class SimulationResult:
    """A plan run through one spec: every step, and the verdict.

    - `intended`: what the plan means to capture (`intended_capture`);
    - `captured`, `released` (cancelled, the lapse included), `lapsed` (the part the lapse released)
      and `held` (still reserved on the card at the end), all in minor units of `plan.currency`;
    - `held_until`: the expiry instant, or None with `held_until_text` "until cancel" or "unknown"
      ("until the provider's automatic capture" on an automatic-capture flow, whatever the expiry);
    - `ok`: no step refused (the authorization included) and no rehearsed failure the plan cannot
      recover from.
    """

    spec: Spec
    plan: Plan
    authorization: StepResult
    steps: tuple[StepResult, ...]
    payment: Payment
    intended: int
    lapsed: int
    remainder_lapsed: int = 0
    """The part of `lapsed` that no spec transition records: a remainder lapsing in a terminal state."""

    @property
    def provider(self) -> str:
        return self.spec.name

    @property
    def captured(self) -> int:
        return self.payment.captured

    @property
    def released(self) -> int:
        return self.payment.cancelled + self.remainder_lapsed

    @property
    def held(self) -> int:
        # Within an over-capture allowance nothing is left, and nothing held is ever negative.
        return max(self.payment.remainder - self.remainder_lapsed, 0)

    @property
    def expires_at(self) -> datetime | None:
        """When the authorization lapses on this provider; None when its validity is unknown (or the
        authorization was refused)."""
        return self.payment.expires_at

    @property
    def held_until(self) -> datetime | None:
        return self.payment.expires_at if self.held else None

    @property
    def held_until_text(self) -> str:
        if not self.held:
            return "-"
        if self.automatic:
            return "until the provider's automatic capture"
        if self.held_until is not None:
            return format_instant(self.held_until)
        if self.spec.policy.remainder == "reserved_until_cancel" and self.payment.state not in self.spec.terminal:
            return "until cancel"
        return "unknown"

    @property
    def automatic(self) -> bool:
        """The authorization is in an automatic-capture flow the spec keeps manual captures out of
        (Hellgate: the payment stays `processing` "waiting that the capture completes"): what it holds is
        captured by the provider, not left on the card."""
        return (self.payment.flow is Flow.AUTOMATIC and self.payment.captured == 0
                and any("manual_flow" in t.guards for t in self.spec.transitions))

    @property
    def refused(self) -> tuple[StepResult, ...]:
        return tuple(s for s in (self.authorization, *self.steps) if not s.allowed)

    @property
    def ok(self) -> bool:
        return not self.refused and not any(s.surprise for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        """The `capstate simulate --json` entry of one provider."""
        return {
            "ok": self.ok,
            "captured": self.captured,
            "released": self.released,
            "held": self.held,
            "steps": [s.to_dict() for s in self.steps],
            "intended": self.intended,
            "lapsed": self.lapsed,
            "held_until": self.held_until_text if self.held else None,
            "expires_at": format_instant(self.expires_at) if self.expires_at is not None else None,
            "currency": self.plan.currency,
            "reference": self.payment.reference,
            "authorization": self.authorization.to_dict(),
        }


def intended_capture(plan: Plan) -> int:
    """What the plan means to capture, on a provider that refuses nothing: the capture amounts, a
    capture without one taking what is left; failed attempts and whatever a cancel released (its amount,
    or all that is left) excluded."""
    taken = released = 0
    for step in plan.steps:
        if step.outcome is Outcome.FAILED:
            continue
        left = max(plan.amount - taken - released, 0)
        if step.op is Op.CAPTURE:
            taken += min(step.amount, left) if step.amount is not None else left
        elif step.op is Op.CANCEL:
            released += min(step.amount, left) if step.amount is not None else left
    return taken


def simulate(plan: Plan, spec: Spec | str) -> SimulationResult:
    """Run `plan` through `spec` (a Spec, or a shipped name) on a virtual clock. Pure."""
    s = spec if isinstance(spec, Spec) else load_spec(spec)
    return _Run(plan, s).run()


# ------------------------------------------------------------------------------------------- the run


def _money(amount: int, currency: str | None) -> str:
    return f"{amount} ({to_major_string(amount, currency)} {currency})" if currency else str(amount)


class _Run:
    def __init__(self, plan: Plan, spec: Spec) -> None:
        self.plan = plan
        self.spec = spec
        # A derived reference fits the spec's reference rule (a Hellgate payment id is a UUID); one the plan
        # gives is the merchant's, and a spec that refuses it says so at the authorization.
        reference = derive_reference(plan, spec.policy.reference) if plan.reference_derived else plan.reference
        self.p = Payment.new(spec, reference)
        self.lapsed = 0
        self.remainder_lapsed = 0
        self.failed_keys: set[str] = set()

    def key(self, given: str | None, index: int, op: str) -> str | None:
        if given is not None or self.spec.policy.idempotency == "none":
            return given
        return derive_key(self.plan, index, op, self.spec.policy.idempotency_key)

    def run(self) -> SimulationResult:
        plan = self.plan
        cmd = Authorize(amount=plan.amount, currency=plan.currency, at=plan.authorized_at, flow=plan.flow,
                        key=self.key(None, 0, "authorize"))
        d = decide(self.p, cmd)
        events: tuple[Event, ...] = ()
        if d.allowed and d.event is not None:
            self.p = apply(self.p, d.event)
            events = (d.event,)
        authorization = StepResult(0, "authorize", plan.authorized_at, d.allowed, self.p, plan.amount, cmd.key,
                                   Outcome.SUCCEEDED, d.violations, d.warnings, events)
        steps = tuple(self.step(step) for step in plan.steps)
        return SimulationResult(self.spec, plan, authorization, steps, self.p, intended_capture(plan), self.lapsed,
                                self.remainder_lapsed)

    def lapse(self, at: datetime) -> tuple[Event | None, SimulationNote | None]:
        """Fire the provider's lapse if `at` is at or past expiry and the spec has one from this state."""
        p = self.p
        expires = p.expires_at
        if expires is None or at < expires:
            return None, None
        event = Event(p.reference, EventType.EXPIRED, expires)
        try:
            after = apply(p, event)
        except InvalidTransition:
            # Already lapsed, or a state the spec does not let lapse. A remainder the provider cannot
            # release after a capture (remainder = "lapses") still leaves the card at expiry.
            return None, self.lapse_remainder(expires)
        released = after.cancelled - p.cancelled
        self.p = after
        self.lapsed += released
        note = SimulationNote(NoteCode.AUTHORIZATION_LAPSED,
                              f"the authorization lapsed at {format_instant(expires)} ({self.plan.offset(expires)}, "
                              f"its validity on {self.spec.name}); the provider released "
                              f"{_money(released, p.currency)} and the payment is {after.state!r}")
        return event, note

    def lapse_remainder(self, expires: datetime) -> SimulationNote | None:
        p = self.p
        left = p.remainder - self.remainder_lapsed
        # Nothing captured counts too: Hellgate's `failed` has no lapse, yet its authorization ends at expiry.
        if self.remainder_lapsed or left <= 0 or p.pending or self.spec.policy.remainder != "lapses":
            return None
        self.remainder_lapsed = left
        self.lapsed += left
        return SimulationNote(NoteCode.AUTHORIZATION_LAPSED,
                              f"the authorization lapsed at {format_instant(expires)} ({self.plan.offset(expires)}, "
                              f"its validity on {self.spec.name}); the uncaptured remainder "
                              f"{_money(left, p.currency)} left the card and the payment stays {p.state!r}")

    def step(self, step: PlanStep) -> StepResult:
        lapse_event, lapse_note = self.lapse(step.at)
        lapsed_at = lapse_event.at if lapse_event is not None else (self.p.expires_at if lapse_note else None)
        pre: tuple[Event, ...] = (lapse_event,) if lapse_event is not None else ()
        notes: tuple[StepWarning, ...] = (lapse_note,) if lapse_note is not None else ()
        if step.op is Op.WAIT:
            return StepResult(step.index, step.op.value, step.at, True, self.p, warnings=notes, events=pre,
                              lapsed_at=lapsed_at)

        key = self.key(step.key, step.index, step.op.value)
        cmd: Command
        if step.op is Op.CAPTURE:
            cmd = Capture(at=step.at, amount=step.amount, key=key, final=step.final)
        elif step.op is Op.CANCEL:
            cmd = Cancel(at=step.at, amount=step.amount, key=key)
        else:
            assert step.amount is not None
            cmd = Refund(amount=step.amount, at=step.at, key=key)
        d = decide(self.p, cmd)
        amount = getattr(d.command, "amount", None)

        def result(allowed: bool, events: tuple[Event, ...] = (), extra: tuple[StepWarning, ...] = (),
                   surprise: bool = False) -> StepResult:
            return StepResult(step.index, step.op.value, step.at, allowed, self.p, amount, key, step.outcome,
                              d.violations, (*notes, *d.warnings, *extra), (*pre, *events), lapsed_at, surprise)

        if not d.allowed:
            return result(False)
        if d.event is None:  # an idempotent replay: the provider answers as before, nothing moves
            return result(True)
        retry_note = self.reused_after_failure(key)
        if step.outcome is Outcome.FAILED:
            events, note, surprise = self.fail(step, d)
            if key is not None and self.spec.policy.idempotency != "none":
                self.failed_keys.add(key)
            return result(True, events, (*retry_note, note), surprise)
        return result(True, self.succeed(d), retry_note)

    def reused_after_failure(self, key: str | None) -> tuple[SimulationNote, ...]:
        if key is None or key not in self.failed_keys:
            return ()
        # research/providers.md 2.7: "a 4xx is returned again for the same key" (Vipps common-topics/
        # idempotency.md); what Hellgate does is undocumented. The plan says the retry succeeds; warn.
        return (SimulationNote(NoteCode.KEY_REUSED_AFTER_FAILURE,
                               f"key {key!r} was used by a failed attempt; {self.spec.name} deduplicates by key and "
                               f"may answer with the stored failure (Vipps replays a 4xx for the same key), so "
                               f"retry under it only after a timeout or 5xx, and under a new key after a "
                               f"refusal"),)

    def succeed(self, d: Decision) -> tuple[Event, ...]:
        assert d.event is not None and d.after is not None
        events = [d.event]
        if d.event.type is EventType.CAPTURE_REQUESTED:
            # The provider's answer arrives at the same virtual instant: the step ends settled.
            events.append(Event(d.event.payment, EventType.CAPTURED, d.event.at, d.event.amount, d.event.currency,
                                key=d.event.key))
        p = self.p
        for event in events:
            p = apply(p, event)
        released = d.after.cancelled - p.cancelled
        if released > 0:
            # A final capture's release of the rest (REMAINDER_RELEASED): the cancel that follows it.
            cancel = Event(d.event.payment, EventType.CANCELLED, d.event.at, released)
            p = apply(p, cancel)
            events.append(cancel)
        self.p = p
        return tuple(events)

    def fail(self, step: PlanStep, d: Decision) -> tuple[tuple[Event, ...], SimulationNote, bool]:
        assert d.event is not None
        p = self.p
        name = self.spec.name
        if step.op is not Op.CAPTURE:
            return (), SimulationNote(NoteCode.OUTCOME_FAILED,
                                      f"the provider failed the {step.op.value} (rehearsed); nothing moved and the "
                                      f"payment stays {p.state!r}"), False
        events: list[Event] = []
        if d.event.type is EventType.CAPTURE_REQUESTED:
            events.append(d.event)
        events.append(Event(d.event.payment, EventType.CAPTURE_FAILED, d.event.at, d.event.amount, d.event.currency,
                            key=d.event.key, reason="rehearsed failure (plan outcome = failed)"))
        try:
            for event in events:
                p = apply(p, event)
        except InvalidTransition as exc:
            return (), SimulationNote(NoteCode.FAILURE_NOT_MODELLED,
                                      f"{name} has no transition for a failed capture from {self.p.state!r} "
                                      f"({exc.violations[0].message if exc.violations else exc}); the simulation "
                                      f"leaves the payment as it was, which the provider may not"), True
        self.p = p
        terminal = p.state in self.spec.terminal
        tail = (f"; {p.state!r} is terminal on {name}, so the capture cannot be retried" if terminal
                else "; a retry may follow")
        return tuple(events), SimulationNote(NoteCode.OUTCOME_FAILED,
                                             f"the provider failed the capture (rehearsed); nothing was captured "
                                             f"and the payment is {p.state!r}{tail}"), terminal
