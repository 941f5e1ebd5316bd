"""The executor: decide, build, send, parse, apply, with each provider's retry rules.

    client = CaptureClient("vipps", vipps.Credentials(...))
    outcome = client.capture(payment, Capture(at=now, amount=25000))
    outcome.payment, outcome.response        # the new payment, the provider's answer

Guarantees:

- A command `decide` refuses raises `Refused` before anything is built or sent.
- One logical operation keeps ONE idempotency key across all its sends. When the caller gives none and
  the provider takes one, a key is derived from the payment's own history (reference, operation, how
  many of them came before, amount), so a process that crashes and replays its history derives the
  same key again and the provider deduplicates the resend.
- Retries follow `RetryPolicy.rule(provider)`: Vipps resends the identical request; Bambora, Pipwave
  and Hellgate read the payment back (GET / requery) before any resend, and resend only when the
  operation did not happen. If it did, the observed fact is applied and nothing is resent. A timeout
  whose outcome is unknown is never blindly resent to a provider without idempotency.
- Hellgate captures asynchronously: `capture` returns the payment in `capturing`; `refresh` polls
  until it is captured or failed (bounded by `RetryPolicy.polls`). Its refunds (`processing`) and voids
  (`voiding`) are polled at once, and still in progress after `polls` reads they raise `Unsettled` (a
  `reconcile` ProviderError): never a payment silently left as if nothing had been accepted.
- An answer whose body cannot be read (a false Content-Encoding, more than MAX_RESPONSE_BYTES) is
  treated like a timeout: the request left, so the outcome is unknown.
- Credentials never reach a log record or an exception message: requests are logged by method and
  URL only, and errors are built from the provider's error fields.

The retry logic is written once, as a generator of `_Send`/`_Wait` steps (no I/O of its own), and
driven by `CaptureClient` (httpx.Client) or `AsyncCaptureClient` (httpx.AsyncClient).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, TypeAlias, TypeVar

import httpx
from attrs import evolve, frozen

from .._engine import apply, decide
from .._errors import CapstateError, CommandError, InvalidTransition, ProviderError
from .._keys import Operation, op_of, with_derived_key
from .._keys import derive_key as derive_key  # noqa: PLC0414 - re-exported, its public home since 0.1
from .._values import Cancel, Capture, Decision, Event, EventType, Payment, Refund
from ._http import HttpRequest, HttpResponse, RemoteStatus
from ._redact import Redactor
from .retry import Recovery, RetryPolicy, parse_retry_after

log = logging.getLogger("capstate.providers")
# A library logs; the application decides where to. Without this, Python's last-resort handler would
# print warnings on stderr of every program that embeds capstate.
log.addHandler(logging.NullHandler())

T = TypeVar("T")

# Connect 5 s; a capture answer may take a while at the acquirer, so reads get 30 s.
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)
# Every documented answer (a payment, a problem, a requery) is a few kilobytes; a body past this is not one.
MAX_RESPONSE_BYTES = 1 << 20
MAX_TIMEOUT_SECONDS = 86_400.0


class Refused(CapstateError):
    """`decide` refused the command; nothing was built or sent. `decision` holds the violations."""

    def __init__(self, decision: Decision):
        self.decision = decision
        op = type(decision.command).__name__.lower()
        why = "; ".join(f"{v.code.value}: {v.message}" for v in decision.violations)
        super().__init__(f"{op} refused: {why}")

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(c.value for c in self.decision.codes)


@frozen
class Outcome:
    """What one executor call did.

    - `payment`: the payment after the facts the provider proved were applied.
    - `response`: the provider's answer those facts come from (a GET's, when reconciled); None when
      nothing was sent (an idempotent replay already in the history).
    - `events`: the canonical events applied, in order: append them to the payment's history.
    - `decision`: the engine's decision (None for `refresh`).
    - `sends`: how many requests went out, reads included.
    - `reconciled`: the facts were observed by reading the payment back, not from the operation's answer.
    - `release_error`: a final Vipps capture releases its remainder with a separate cancel; if that cancel
      failed, the capture still happened and this says why the remainder is still held.
    """

    payment: Payment
    response: HttpResponse | None
    events: tuple[Event, ...] = ()
    decision: Decision | None = None
    sends: int = 0
    reconciled: bool = False
    release_error: ProviderError | None = None

    @property
    def settled(self) -> bool:
        """False while a capture is still in flight at the provider (Hellgate `capturing`)."""
        return self.payment.pending == 0

    @property
    def excess(self) -> int:
        """How much MORE the provider captured (or refunded) than the command asked; 0 when it moved what was
        asked, or less. The events record what the provider did; this says that it differs from the ask: a
        Pipwave gateway without partial capture captures in full ("If PG not supporting partial capture, full
        capture will be done", api_list/capture_payment.md), and a read-back after a timeout can show more."""
        cmd = self.decision.command if self.decision is not None else None
        if not isinstance(cmd, Capture | Refund) or cmd.amount is None:
            return 0
        etype = EventType.CAPTURED if isinstance(cmd, Capture) else EventType.REFUNDED
        moved = sum(e.amount or 0 for e in self.events if e.type is etype)
        return max(0, moved - cmd.amount)


class Unsettled(ProviderError):
    """An asynchronous provider ACCEPTED a refund or a void but had not finished it after `RetryPolicy.polls`
    reads (Hellgate: a refund stays `processing` until `completed` or `failed`, a void `voiding` until
    `voided`). The money may still move: never resend; read the payment back later (GET, and for a refund
    v2's `GET /payments/{id}/refunds`) and record what happened. `op` ("refund", "cancel"), `amount` (None
    for a void) and `state` (the provider's last word) say what is outstanding."""

    def __init__(self, message: str, *, provider: str, op: str, amount: int | None, state: str | None,
                 status: int | None = None):
        super().__init__(message, provider=provider, status=status, reconcile=True)
        self.op = op
        self.amount = amount
        self.state = state


class Unattributed(ProviderError):
    """A read-back after an unanswered request shows money moved, but not exactly as this operation would
    have moved it (someone else's capture, or several at once): nothing proves it was this operation's, so
    it is not credited to it, and the outcome stays unknown. `observed` holds the unattributed facts
    (without this operation's key) for a journal to record as out-of-band events."""

    def __init__(self, message: str, *, provider: str, observed: tuple[Event, ...]):
        super().__init__(message, provider=provider, reconcile=True)
        self.observed = observed


@frozen
class TransportFailure:
    """No HTTP answer. `sent` is False only when the request surely never left (connect failures)."""

    kind: str
    message: str
    sent: bool


@frozen
class _Send:
    request: HttpRequest
    op: str


@frozen
class _Wait:
    seconds: float


_Step: TypeAlias = _Send | _Wait
_Answer: TypeAlias = HttpResponse | TransportFailure | None
_Flow: TypeAlias = Generator[_Step, _Answer, T]


# ------------------------------------------------------------------------------------------ provider


def provider_module(name: str) -> ModuleType:
    """The provider module `capstate.providers.<name>`. Raises CommandError for an unknown name."""
    if not name.isidentifier() or name.startswith("_") or name in {"client", "retry", "cli_capture"}:
        raise CommandError(f"unknown provider {name!r}")
    try:
        module = importlib.import_module(f"{__package__}.{name}")
    except ModuleNotFoundError:
        raise CommandError(f"no provider module for {name!r}") from None
    if not hasattr(module, "build_capture") or not hasattr(module, "Credentials"):
        raise CommandError(f"{name!r} is not a provider module")
    return module


class _Provider:
    """A provider module behind one typed interface. Pipwave reads back with `build_requery` and signs
    every request with a timestamp; the adapter passes the time to any builder that takes one."""

    def __init__(self, module: ModuleType, credentials: Any):
        self.module = module
        self.name: str = module.NAME
        self.credentials = credentials
        if not isinstance(credentials, module.Credentials):
            raise CommandError(f"{self.name} needs {module.__name__}.Credentials, got {type(credentials).__name__}")
        # Every provider text (errors, failure reasons, states) leaves the adapter through this: a server or
        # proxy that echoes the request's headers must not put the credentials on a screen or in a log.
        self.redactor = Redactor.of(credentials)

    def _learn(self, request: HttpRequest) -> HttpRequest:
        self.redactor = self.redactor.learn(request)
        return request

    def _events(self, parse: Callable[[], Iterable[Event]]) -> tuple[Event, ...]:
        try:
            return tuple(self.redactor.event(e) for e in parse())
        except ProviderError as exc:
            raise self.redactor.error(exc) from None

    def _call(self, fn: Callable[..., T], *args: Any, now: datetime) -> T:
        stamp = _timestamp_param(fn)
        if stamp is not None:
            return fn(*args, self.credentials, timestamp=_timestamp_for(stamp, now))
        return fn(*args, self.credentials)

    def build(self, op: str, payment: Payment, command: Operation, now: datetime) -> HttpRequest:
        built: HttpRequest = self._call(getattr(self.module, f"build_{op}"), payment, command, now=now)
        return self._learn(built)

    def build_read(self, payment: Payment, now: datetime) -> HttpRequest:
        fn = getattr(self.module, "build_get", None) or self.module.build_requery
        built: HttpRequest = self._call(fn, payment, now=now)
        return self._learn(built)

    def received(self, answer: HttpResponse | TransportFailure) -> HttpResponse | TransportFailure:
        """An answer as the flow sees it: a response that masks credentials when shown, a failure without them."""
        if isinstance(answer, HttpResponse):
            return evolve(answer, mask=self.redactor.text)
        return evolve(answer, message=self.redactor.text(answer.message))

    def parse(self, op: str, response: HttpResponse, payment: Payment, command: Operation) -> tuple[Event, ...]:
        return self._events(lambda: getattr(self.module, f"parse_{op}")(response, payment, command))

    def parse_read(self, response: HttpResponse, payment: Payment) -> RemoteStatus:
        fn = getattr(self.module, "parse_get", None) or self.module.parse_requery
        try:
            status: RemoteStatus = fn(response, payment)
        except ProviderError as exc:
            raise self.redactor.error(exc) from None
        return self.redactor.remote(status)

    def parse_error(self, response: HttpResponse) -> ProviderError:
        err: ProviderError = self.module.parse_error(response)
        return self.redactor.error(err)

    def parse_refresh(self, response: HttpResponse, payment: Payment, now: datetime,
                      remote: RemoteStatus) -> tuple[Event, ...]:
        """What a read-back proves about a capture in flight: () while it still is. The module's own
        `parse_refresh` when it has one (Hellgate), else judged from the RemoteStatus."""
        fn = getattr(self.module, "parse_refresh", None)
        if fn is not None:
            return self._events(lambda: fn(response, payment, at=now))
        if remote.captured is not None and remote.captured > payment.captured:
            return (Event(payment.reference, EventType.CAPTURED, now, remote.captured - payment.captured,
                          payment.currency, provider=self.name),)
        if not remote.in_flight and remote.state.lower() == "failed":
            return (Event(payment.reference, EventType.CAPTURE_FAILED, now, payment.pending, payment.currency,
                          provider=self.name, reason=f"{self.name} reports status {remote.state!r}"),)
        return ()


@functools.cache
def _timestamp_param(fn: Callable[..., Any]) -> inspect.Parameter | None:
    """The builder's `timestamp` parameter, if it takes one: read once per builder (inspect.signature
    costs ~30 us, a twentieth of a whole capture against the emulator on loopback)."""
    return inspect.signature(fn).parameters.get("timestamp")


def _timestamp_for(param: inspect.Parameter, now: datetime) -> Any:
    # Pipwave's timestamp is UNIX seconds (security/timestamping.md); a builder typed for datetime gets one.
    annotation = str(param.annotation)
    return now if "datetime" in annotation else int(now.timestamp())


def _operation(decision: Decision) -> Operation:
    # decide() normalizes a command into one of its own kind.
    cmd = decision.command
    assert isinstance(cmd, Capture | Cancel | Refund)
    return cmd


def prepare(payment: Payment, command: Operation, *, derive_keys: bool = True) -> Decision:
    """decide(), with a derived key when the provider takes keys and none was given. Raises Refused.

    Needs no credentials: a refusal is known before anyone has to hold a secret."""
    if derive_keys:
        command = with_derived_key(payment, command)
    decision = decide(payment, command)
    if not decision.allowed:
        raise Refused(decision)
    return decision


# ------------------------------------------------------------------------------------------ the flow


class _Core:
    """The provider-independent executor logic. Methods ending in `_flow` are generators of steps."""

    def __init__(self, provider: str | ModuleType, credentials: Any, *, retry: RetryPolicy | None,
                 clock: Callable[[], datetime] | None, derive_keys: bool):
        module = provider_module(provider) if isinstance(provider, str) else provider
        self.provider = _Provider(module, credentials)
        self.retry = retry if retry is not None else RetryPolicy()
        self.rule = self.retry.rule(self.provider.name)
        self._clock = clock if clock is not None else (lambda: datetime.now(UTC))
        self.derive_keys = derive_keys

    def clock(self) -> datetime:
        """The injected "now", which must be timezone-aware: it is compared with Retry-After dates and
        becomes Pipwave's UNIX timestamp, where a naive time would silently mean the host's local zone."""
        now = self._clock()
        if not isinstance(now, datetime) or now.utcoffset() is None:
            raise CommandError(f"the clock must return a timezone-aware datetime, got {now!r}")
        return now

    # -- decide

    def prepare(self, payment: Payment, command: Operation) -> Decision:
        if payment.spec.name != self.provider.name:
            raise CommandError(f"payment is under the {payment.spec.name!r} spec, this client sends to "
                               f"{self.provider.name!r}")
        return prepare(payment, command, derive_keys=self.derive_keys)

    def operation_flow(self, payment: Payment, command: Operation) -> _Flow[Outcome]:
        decision = self.prepare(payment, command)
        op = op_of(command)
        if decision.event is None:
            # An identical retry of an operation the history already records: the provider would replay
            # its answer and move no money, so there is nothing to send.
            log.info("%s %s of %s: key %r already succeeded; nothing sent", self.provider.name, op,
                     payment.reference, decision.command.key)
            return Outcome(payment, None, (), decision)
        cmd = _operation(decision)
        outcome = yield from self._send_flow(payment, cmd, op)
        outcome = evolve(outcome, decision=decision)
        if isinstance(cmd, Capture) and cmd.final and self._releases_by_cancel(outcome.payment):
            outcome = yield from self._release_flow(outcome, cmd)
        return outcome

    @staticmethod
    def _releases_by_cancel(after: Payment) -> bool:
        return after.spec.policy.remainder == "reserved_until_cancel" and after.capturable > 0

    def _release_flow(self, captured: Outcome, cmd: Capture) -> _Flow[Outcome]:
        # decide() promised REMAINDER_RELEASED for this final capture: Vipps releases only by cancel.
        payment = captured.payment
        try:
            released = yield from self.operation_flow(payment, Cancel(at=cmd.at))
        except (ProviderError, Refused) as exc:
            err = exc if isinstance(exc, ProviderError) else ProviderError(str(exc), provider=self.provider.name)
            log.warning("%s capture of %s succeeded but releasing the remainder failed: %s", self.provider.name,
                        payment.reference, err)
            return evolve(captured, release_error=err)
        return evolve(captured, payment=released.payment, response=released.response,
                      events=captured.events + released.events, sends=captured.sends + released.sends)

    def _send_flow(self, payment: Payment, cmd: Operation, op: str) -> _Flow[Outcome]:
        name = self.provider.name
        policy = self.retry
        sends = 0
        attempt = 0
        # Whether ANY attempt so far may have moved the money unseen (a timeout, a 5xx, an unreadable 2xx)
        # and no read-back has settled it since: a later answer about a LATER attempt cannot clear that.
        doubt = False
        while True:
            attempt += 1
            request = self.provider.build(op, payment, cmd, self.clock())
            sends += 1
            answer = yield _Send(request, op)
            err, unknown, retry_after = self._judge(answer)
            answered_ok = isinstance(answer, HttpResponse) and 200 <= answer.status < 300
            if err is None:
                assert isinstance(answer, HttpResponse)
                try:
                    events = self.provider.parse(op, answer, payment, cmd)
                except ProviderError as exc:
                    if not exc.reconcile:
                        raise
                    err, unknown = exc, True
                else:
                    if not events and self.rule.asynchronous and op in ("refund", "cancel"):
                        # Accepted, still running at the provider: an unchanged payment would say nothing.
                        settled = yield from self._settle_flow(payment, cmd, op, answer)
                        return evolve(settled, sends=sends + settled.sends)
                    done = Outcome(self._apply(payment, events), answer, events, sends=sends)
                    if self.rule.confirm and events and op != "cancel":
                        done = yield from self._confirm_flow(payment, cmd, op, done)
                    return done
            doubt = doubt or unknown
            final = not (err.retryable or unknown)
            if final and not doubt:
                raise err
            log.warning("%s %s of %s: attempt %d/%d failed: %s", name, op, payment.reference, attempt,
                        policy.attempts, err)
            last = attempt >= policy.attempts
            delay = None if final or last else policy.delay(attempt, retry_after)
            giving_up = final or last or delay is None
            reached = not (isinstance(answer, TransportFailure) and not answer.sent)
            # Without idempotency only the provider's own view says whether the operation happened, and
            # resending without it could move the money twice. With idempotency, resending is safe, so
            # read back only when a success answer could not be understood, or before giving up (or
            # reporting a refusal) while an earlier attempt may have done it.
            if ((reached and (self.rule.recovery is Recovery.RECONCILE or (unknown and answered_ok)))
                    or (doubt and giving_up)):
                observed = yield from self._verify_flow(payment, cmd, op, err)
                sends += observed.sends
                if observed.events:
                    return evolve(observed, sends=sends)
                # It surely did not happen: the outcome is known again, and a resend is safe.
                unknown = doubt = False
            if final:
                raise err
            if giving_up:
                raise _exhausted(err, attempt, reconcile=doubt, why=None if last else
                                 f"it asked to wait longer than {policy.max_retry_after:g} s")
            assert delay is not None
            yield _Wait(delay)

    def _judge(self, answer: _Answer) -> tuple[ProviderError | None, bool, float | None]:
        """(error or None for a 2xx, whether the outcome is unknown, the Retry-After in seconds)."""
        name = self.provider.name
        if isinstance(answer, TransportFailure):
            # Not sent: safe to resend anywhere. Sent without an answer: the money may have moved.
            err = ProviderError(f"{answer.kind}: {answer.message}", provider=name, retryable=True,
                                reconcile=answer.sent)
            return err, answer.sent, None
        assert isinstance(answer, HttpResponse)
        if 200 <= answer.status < 300:
            return None, False, None
        err = self.provider.parse_error(answer)
        return err, err.reconcile, parse_retry_after(answer.headers.get("retry-after"), self.clock())

    def _apply(self, payment: Payment, events: Sequence[Event]) -> Payment:
        for event in events:
            try:
                payment = apply(payment, event)
            except InvalidTransition as exc:
                # The provider reports a fact the spec says cannot happen: never guess, surface it.
                raise ProviderError(f"the provider reports {event.type.value} {event.amount}, which the spec "
                                    f"refuses: {exc}", provider=self.provider.name, reconcile=True) from None
        return payment

    # -- reading back

    def read_flow(self, payment: Payment) -> _Flow[tuple[RemoteStatus, HttpResponse, int]]:
        """GET (or requery) the payment; a read is safe to repeat, so transient failures are retried."""
        attempt = 0
        while True:
            attempt += 1
            answer = yield _Send(self.provider.build_read(payment, self.clock()), "get")
            err, _, retry_after = self._judge(answer)
            if err is None:
                assert isinstance(answer, HttpResponse)
                return self.provider.parse_read(answer, payment), answer, attempt
            if not (err.retryable or isinstance(answer, TransportFailure)) or attempt >= self.retry.attempts:
                raise err
            delay = self.retry.delay(attempt, retry_after)
            if delay is None:
                raise err
            yield _Wait(delay)

    def _verify_flow(self, payment: Payment, cmd: Operation, op: str, cause: ProviderError) -> _Flow[Outcome]:
        """Read the payment back after `cause`. Returns an Outcome with the observed events when the
        operation happened, or one with no events when it surely did not (safe to resend). Raises a
        `reconcile` ProviderError when it cannot tell."""
        name = self.provider.name
        sends = 0
        for poll in range(1, self.retry.attempts + 1):
            try:
                remote, response, reads = yield from self.read_flow(payment)
            except ProviderError as exc:
                raise ProviderError(f"{op} outcome unknown after '{cause}', and reading the payment back failed: "
                                    f"{exc}; reconcile before sending again", provider=name, status=exc.status,
                                    error_id=cause.error_id, reconcile=True) from None
            sends += reads
            events = self._observed(payment, cmd, op, remote, cause)
            if events is None:
                raise ProviderError(f"{op} outcome unknown after '{cause}': the provider's view ({remote.state}) "
                                    f"does not show whether it happened; reconcile before sending again",
                                    provider=name, error_id=cause.error_id, reconcile=True)
            if events:
                log.info("%s %s of %s: the read-back shows it happened (%s); not resent", name, op,
                         payment.reference, remote.state)
                return Outcome(self._apply(payment, events), response, events, sends=sends, reconciled=True)
            if not remote.in_flight:
                log.info("%s %s of %s: the read-back shows it did not happen (%s)", name, op, payment.reference,
                         remote.state)
                return Outcome(payment, response, (), sends=sends)
            # Another operation is running at the provider (possibly ours): wait for it, never resend over it.
            if poll < self.retry.attempts:
                yield _Wait(self.retry.backoff(poll))
        raise ProviderError(f"{op} outcome unknown after '{cause}': an operation is still in progress at the "
                            f"provider; reconcile before sending again", provider=name, error_id=cause.error_id,
                            reconcile=True)

    def _confirm_flow(self, payment: Payment, cmd: Operation, op: str, done: Outcome) -> _Flow[Outcome]:
        """Read the payment back after a success whose answer carries no amounts, and record what the
        provider moved if it differs from what was asked (a gateway that turns a partial capture into a
        full one). A read-back that fails or does not show the operation yet leaves the answer's facts."""
        name = self.provider.name
        try:
            remote, response, reads = yield from self.read_flow(payment)
        except ProviderError as exc:
            log.warning("%s %s of %s succeeded; confirming it by a read-back failed: %s", name, op,
                        payment.reference, exc)
            return done
        done = evolve(done, sends=done.sends + reads)
        now, before = (remote.captured, payment.captured) if op == "capture" else (remote.refunded, payment.refunded)
        asked = sum(e.amount or 0 for e in done.events)
        if now is None or now <= before or now - before == asked:
            return done
        moved = now - before
        etype = EventType.CAPTURED if op == "capture" else EventType.REFUNDED
        log.warning("%s %s of %s: asked for %d, the read-back shows %d", name, op, payment.reference, asked, moved)
        event = Event(payment.reference, etype, cmd.at, moved, payment.currency, provider=name, key=cmd.key,
                      reason=f"{name} answered success for {op} {asked}; the read-back shows {moved}")
        return evolve(done, payment=self._apply(payment, (event,)), response=response, events=(event,),
                      reconciled=True)

    def _settle_flow(self, payment: Payment, cmd: Operation, op: str, accepted: HttpResponse) -> _Flow[Outcome]:
        """Poll an accepted asynchronous refund or void (at most `polls` reads, `poll_interval` apart) until
        the payment shows it; raise `Unsettled` if it never does. Hellgate: "the refund goes processing ->
        completed | failed, and payment.amount.refunded is updated" (https://developer.hellgate.io/payments/
        management/refund); void answers `voiding`, then the payment is `voided` (v2 void page)."""
        name = self.provider.name
        amount = cmd.amount if op == "refund" else None
        state: str | None = None
        sends = 0
        for poll in range(1, self.retry.polls + 1):
            try:
                remote, response, reads = yield from self.read_flow(payment)
            except ProviderError as exc:
                raise Unsettled(f"{op} accepted, but reading the payment back failed: {exc}; do not resend, "
                                f"reconcile later", provider=name, op=op, amount=amount, state=state,
                                status=exc.status) from None
            sends += reads
            state = remote.state
            events = self._settled(payment, cmd, op, remote)
            if events:
                log.info("%s %s of %s settled: %s", name, op, payment.reference, remote.state)
                return Outcome(self._apply(payment, events), response, events, sends=sends, reconciled=True)
            log.info("%s %s of %s still in progress (%s, poll %d/%d)", name, op, payment.reference, remote.state,
                     poll, self.retry.polls)
            if poll < self.retry.polls:
                yield _Wait(self.retry.poll_interval)
        what = f"{op} of {amount}" if amount is not None else op
        raise Unsettled(f"{what} accepted (processing), not settled after {self.retry.polls} read(s) (status "
                        f"{state!r}); do not resend: reconcile later", provider=name, op=op, amount=amount,
                        state=state, status=accepted.status)

    def _settled(self, payment: Payment, cmd: Operation, op: str, remote: RemoteStatus) -> tuple[Event, ...]:
        """The fact a read-back proves about an accepted refund or void: () while it is not visible yet."""
        name = self.provider.name
        if remote.currency is not None and payment.currency is not None and remote.currency != payment.currency:
            raise ProviderError(f"the read-back is in {remote.currency}, the payment in {payment.currency}",
                                provider=name, reconcile=True)
        reason = f"{op} accepted as in progress; settled on a read-back ({remote.state})"
        if op == "cancel":
            if remote.state.lower() != "voided":
                return ()
            return (Event(payment.reference, EventType.CANCELLED, cmd.at, payment.remainder, payment.currency,
                          provider=name, key=cmd.key, reason=reason),)
        grown = (remote.refunded or 0) - payment.refunded
        if grown <= 0:
            return ()
        if grown != cmd.amount:
            # Another refund moved too (or instead): which one is ours cannot be told from the total.
            raise ProviderError(f"refunded grew by {grown}, not by this refund's {cmd.amount}; reconcile",
                                provider=name, reconcile=True)
        return (Event(payment.reference, EventType.REFUNDED, cmd.at, grown, payment.currency, provider=name,
                      key=cmd.key, reason=reason),)

    def _observed(self, payment: Payment, cmd: Operation, op: str, remote: RemoteStatus,
                  cause: ProviderError) -> tuple[Event, ...] | None:
        """The facts a read-back proves about `op`: () when it did not happen, None when it cannot tell."""
        reason = f"observed by reading the payment back after: {cause}"
        field_, before, etype = {
            "capture": (remote.captured, payment.captured, EventType.CAPTURED),
            "cancel": (remote.cancelled, payment.cancelled, EventType.CANCELLED),
            "refund": (remote.refunded, payment.refunded, EventType.REFUNDED),
        }[op]
        if remote.currency is not None and payment.currency is not None and remote.currency != payment.currency:
            return None
        if field_ is not None and field_ > before:
            grown = field_ - before
            if op != "cancel" and grown != cmd.amount:
                # Credited only on evidence: a total that grew by another amount is not this operation's
                # (an out-of-band capture, or ours plus someone else's); booking it as ours was the bug.
                raise Unattributed(f"{op} outcome unknown after '{cause}': the provider's {op}d total grew by "
                                   f"{grown}, not by this {op}'s {cmd.amount}; not credited to it",
                                   provider=self.provider.name,
                                   observed=(Event(payment.reference, etype, cmd.at, grown, payment.currency,
                                                   provider=self.provider.name, reason=reason),))
            return (Event(payment.reference, etype, cmd.at, grown, payment.currency,
                          provider=self.provider.name, key=cmd.key, reason=reason),)
        if op == "refund" and self.rule.asynchronous:
            # An accepted Hellgate refund is `processing` and shows in amount.refunded only once completed
            # (refund page): an unchanged amount does not prove it was not accepted, so never resend on it.
            return None
        if op == "capture" and self.rule.asynchronous and remote.state.lower() == "capturing":
            # Hellgate accepted the capture and is working on it: the request is what happened. Only
            # `capturing` says so: `voiding` is a void at work, `processing` an automatic-capture flow.
            return (Event(payment.reference, EventType.CAPTURE_REQUESTED, cmd.at, cmd.amount, payment.currency,
                          provider=self.provider.name, key=cmd.key, reason=reason),)
        if op == "capture" and self.rule.asynchronous and remote.state.lower() == "failed":
            # Our capture reached Hellgate and failed there (one capture only, so it was ours): record the
            # attempt and its failure. Resending to a failed payment could only be refused.
            return (Event(payment.reference, EventType.CAPTURE_REQUESTED, cmd.at, cmd.amount, payment.currency,
                          provider=self.provider.name, key=cmd.key, reason=reason),
                    Event(payment.reference, EventType.CAPTURE_FAILED, cmd.at, cmd.amount, payment.currency,
                          provider=self.provider.name, reason=f"{self.provider.name} reports status "
                                                              f"{remote.state!r}"))
        if field_ is None:
            return None
        return ()

    def refresh_flow(self, payment: Payment) -> _Flow[Outcome]:
        """Poll an in-flight capture until the provider settles it, at most `polls` reads."""
        name = self.provider.name
        if payment.spec.name != name:
            raise CommandError(f"payment is under the {payment.spec.name!r} spec, this client reads {name!r}")
        if payment.pending == 0:
            raise CommandError(f"payment {payment.reference!r} has no capture in flight (state {payment.state!r})")
        sends = 0
        response: HttpResponse | None = None
        for poll in range(1, self.retry.polls + 1):
            remote, response, reads = yield from self.read_flow(payment)
            sends += reads
            events = self.provider.parse_refresh(response, payment, self.clock(), remote)
            if events:
                log.info("%s capture of %s settled: %s", name, payment.reference, remote.state)
                return Outcome(self._apply(payment, events), response, events, sends=sends, reconciled=True)
            log.info("%s capture of %s still %s (poll %d/%d)", name, payment.reference, remote.state, poll,
                     self.retry.polls)
            if poll < self.retry.polls:
                yield _Wait(self.retry.poll_interval)
        return Outcome(payment, response, (), sends=sends, reconciled=True)


def _exhausted(err: ProviderError, attempts: int, *, reconcile: bool, why: str | None = None) -> ProviderError:
    tail = f" ({why})" if why else ""
    return ProviderError(f"{err.reason} [gave up after {attempts} attempt{'s' if attempts > 1 else ''}{tail}]",
                         provider=err.provider, status=err.status, error_id=err.error_id, title=err.title,
                         detail=err.detail, retryable=err.retryable, reconcile=reconcile)


# ------------------------------------------------------------------------------------------- drivers


def _to_httpx(request: HttpRequest, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
    return client.build_request(request.method, request.url, headers=list(request.headers),
                                content=request.body or None)


class ResponseTooLarge(Exception):
    """A response body past MAX_RESPONSE_BYTES: reading stopped there (internal; becomes a TransportFailure)."""


def _failure(exc: Exception) -> TransportFailure:
    """The flow's view of a send that produced no usable answer.

    Connect failures and an exhausted pool happen before a byte of the request is written. Everything else
    (a timeout, a dropped connection, and a status line whose body cannot be read: a false
    Content-Encoding raises httpx.DecodingError, a body past MAX_RESPONSE_BYTES) came after the request
    left, so the operation may have happened."""
    sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    if isinstance(exc, httpx.TimeoutException):
        kind = "timeout"
    elif not sent:
        kind = "connection failed"
    elif isinstance(exc, httpx.DecodingError | ResponseTooLarge):
        kind = "undecodable response" if isinstance(exc, httpx.DecodingError) else "response too large"
    else:
        kind = "transport"
    return TransportFailure(kind, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, sent)


def _answer(provider: str, step: _Send, result: HttpResponse | Exception) -> HttpResponse | TransportFailure:
    """The flow's view of one send, logged by method and URL only (headers and bodies carry secrets)."""
    where = f"{step.request.method} {step.request.url}"
    if isinstance(result, Exception):
        failure = _failure(result)
        log.warning("%s %s %s -> %s", provider, step.op, where, failure.kind)
        return failure
    log.info("%s %s %s -> HTTP %d", provider, step.op, where, result.status)
    return result


def _capped(chunks: Iterable[bytes], limit: int) -> bytes:
    """The (decoded) body, refused past `limit` bytes: a proxy's endless page or a gzip bomb must not be read
    whole into memory. Every documented answer is a few kilobytes."""
    out = bytearray()
    for chunk in chunks:
        out += chunk
        if len(out) > limit:
            raise ResponseTooLarge(f"the response body is more than {limit} bytes; reading stopped there")
    return bytes(out)


def _response(result: httpx.Response, body: bytes) -> HttpResponse:
    return HttpResponse(result.status_code, list(result.headers.multi_items()), body)


def _timeout(value: httpx.Timeout | float) -> httpx.Timeout | float:
    """A timeout the socket layer accepts: finite, positive seconds (inf or 1e12 raised OverflowError at the
    first send, outside every typed error). None parts of an httpx.Timeout (no limit) are the caller's call."""
    parts = (value.connect, value.read, value.write, value.pool) if isinstance(value, httpx.Timeout) else (value,)
    for part in parts:
        if part is not None and (isinstance(part, bool) or not isinstance(part, int | float)
                                 or not 0 < part <= MAX_TIMEOUT_SECONDS):
            raise CommandError(f"timeout {part!r}: must be > 0 and at most {MAX_TIMEOUT_SECONDS} seconds")
    return value


class CaptureClient:
    """The synchronous executor over `httpx.Client`.

    `provider` is a provider name ("vipps") or module; `credentials` that module's `Credentials`.
    Inject `client` (an httpx.Client, e.g. with a MockTransport) or `transport`; otherwise one is made
    with `timeout` and closed by `close()` / the context manager. `retry` configures attempts, back-off
    and per-provider rules; `clock` gives "now" (Pipwave timestamps, Hellgate settle times).
    """

    def __init__(self, provider: str | ModuleType, credentials: Any, *, client: httpx.Client | None = None,
                 transport: httpx.BaseTransport | None = None, timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
                 retry: RetryPolicy | None = None, clock: Callable[[], datetime] | None = None,
                 derive_keys: bool = True):
        self._core = _Core(provider, credentials, retry=retry, clock=clock, derive_keys=derive_keys)
        self._owned = client is None
        self._http = client if client is not None else httpx.Client(transport=transport, timeout=_timeout(timeout),
                                                                    follow_redirects=False)

    @property
    def provider(self) -> str:
        return self._core.provider.name

    @property
    def retry(self) -> RetryPolicy:
        return self._core.retry

    def capture(self, payment: Payment, command: Capture) -> Outcome:
        return self._drive(self._core.operation_flow(payment, command))

    def cancel(self, payment: Payment, command: Cancel) -> Outcome:
        return self._drive(self._core.operation_flow(payment, command))

    def refund(self, payment: Payment, command: Refund) -> Outcome:
        return self._drive(self._core.operation_flow(payment, command))

    def fetch(self, payment: Payment) -> RemoteStatus:
        """The provider's current view of the payment (GET / requery); nothing is applied."""
        remote, _, _ = self._drive(self._core.read_flow(payment))
        return remote

    def refresh(self, payment: Payment) -> Outcome:
        """Poll a capture in flight (Hellgate `capturing`) until captured or failed, at most `polls` reads.
        `outcome.settled` is False when it is still in flight after the last one."""
        return self._drive(self._core.refresh_flow(payment))

    def prepare(self, payment: Payment, command: Operation) -> tuple[Decision, HttpRequest]:
        """The decision and the exact first request, without sending anything (the CLI's --dry-run)."""
        decision = self._core.prepare(payment, command)
        cmd = _operation(decision)
        return decision, self._core.provider.build(op_of(cmd), payment, cmd, self._core.clock())

    def _drive(self, flow: _Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, _Wait):
                    self._core.retry.sleep(step.seconds)
                    step = flow.send(None)
                else:
                    step = flow.send(self._send(step))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _send(self, step: _Send) -> HttpResponse | TransportFailure:
        request = _to_httpx(step.request, self._http)
        try:
            # Never follow a redirect, whatever an injected client is set to: httpx would re-send the capture
            # to the new origin, stripping Authorization but not X-API-Key or Ocp-Apim-Subscription-Key.
            response = self._http.send(request, stream=True, follow_redirects=False)
            try:
                answer = _response(response, _capped(response.iter_bytes(), MAX_RESPONSE_BYTES))
            finally:
                response.close()
        except (httpx.HTTPError, ResponseTooLarge) as exc:
            # Every httpx failure, not only TransportError: DecodingError comes from the body, after the request.
            return self._core.provider.received(_answer(self.provider, step, exc))
        return self._core.provider.received(_answer(self.provider, step, answer))

    def close(self) -> None:
        if self._owned:
            self._http.close()

    def __enter__(self) -> CaptureClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCaptureClient:
    """`CaptureClient` over `httpx.AsyncClient`: the same flow and rules, awaited. `sleep` defaults to
    asyncio.sleep (the RetryPolicy's `sleep` is for the synchronous client)."""

    def __init__(self, provider: str | ModuleType, credentials: Any, *, client: httpx.AsyncClient | None = None,
                 transport: httpx.AsyncBaseTransport | None = None,
                 timeout: httpx.Timeout | float = DEFAULT_TIMEOUT, retry: RetryPolicy | None = None,
                 clock: Callable[[], datetime] | None = None, derive_keys: bool = True,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self._core = _Core(provider, credentials, retry=retry, clock=clock, derive_keys=derive_keys)
        self._owned = client is None
        self._sleep = sleep
        self._http = client if client is not None else httpx.AsyncClient(transport=transport,
                                                                         timeout=_timeout(timeout),
                                                                         follow_redirects=False)

    @property
    def provider(self) -> str:
        return self._core.provider.name

    async def capture(self, payment: Payment, command: Capture) -> Outcome:
        return await self._drive(self._core.operation_flow(payment, command))

    async def cancel(self, payment: Payment, command: Cancel) -> Outcome:
        return await self._drive(self._core.operation_flow(payment, command))

    async def refund(self, payment: Payment, command: Refund) -> Outcome:
        return await self._drive(self._core.operation_flow(payment, command))

    async def fetch(self, payment: Payment) -> RemoteStatus:
        remote, _, _ = await self._drive(self._core.read_flow(payment))
        return remote

    async def refresh(self, payment: Payment) -> Outcome:
        return await self._drive(self._core.refresh_flow(payment))

    async def _drive(self, flow: _Flow[T]) -> T:
        try:
            step = next(flow)
            while True:
                if isinstance(step, _Wait):
                    await self._sleep(step.seconds)
                    step = flow.send(None)
                else:
                    step = flow.send(await self._send(step))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _send(self, step: _Send) -> HttpResponse | TransportFailure:
        request = _to_httpx(step.request, self._http)
        try:
            response = await self._http.send(request, stream=True, follow_redirects=False)  # as CaptureClient
            try:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise ResponseTooLarge(f"the response body is more than {MAX_RESPONSE_BYTES} bytes; "
                                               f"reading stopped there")
            finally:
                await response.aclose()
        except (httpx.HTTPError, ResponseTooLarge) as exc:
            return self._core.provider.received(_answer(self.provider, step, exc))
        return self._core.provider.received(_answer(self.provider, step, _response(response, bytes(body))))

    async def aclose(self) -> None:
        if self._owned:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncCaptureClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
