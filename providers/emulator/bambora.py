"""Bambora api-beta on the emulator: capture, cancel, refund and get (capstate.providers.bambora documents
the wire; research/providers.md §1).

- Authentication: `Authorization: Basic base64(token@merchant:secret)` must carry the emulator's
  credentials (`credentials` below); a missing or unreadable header is the swagger's 401 ("Cannot
  authorize"), a wrong one its 403 ("Forbidden."). `API-Version` is required on every path (swagger).
- A refusal by `decide` is 422 `invalid_payment_state_transition` when the payment's state forbids the
  operation (expired, cancelled, already captured, ...) and 402 `cannot_capture` / `cannot_cancel` /
  `cannot_refund` when the state allows it but the amount does not (_errors.md; research §1.4 expects 402
  or 422 for a second capture: the state is the reason, so 422).
- No idempotency (research §1.7): every request is a new operation; a resend captures again if the spec
  allows it, which Bambora's single capture does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from ..._codes import Code
from ..._errors import RequestError
from ..._values import Cancel, Capture, Decision, EventType, Refund
from .. import bambora as wire
from ._base import Answer, Call, Context, Problem, ProviderEmulator, Route, WireRequest
from ._core import Entry
from ._ops import body_problem, execute, same

# Codes that mean "not from this state": 422 invalid_payment_state_transition; any other refusal is the
# operation's 402 (the amount or the currency is what is wrong).
STATE_CODES = frozenset({Code.NOT_AUTHORIZED, Code.INVALID_STATE, Code.AUTHORIZATION_EXPIRED,
                         Code.REMAINDER_CANCELLED, Code.MULTIPLE_CAPTURES_UNSUPPORTED, Code.CAPTURE_IN_FLIGHT,
                         Code.AUTOMATIC_CAPTURE_FLOW})
_TITLES = {Problem.MALFORMED: "Bad Request", Problem.UNAUTHORIZED: "Cannot authorize", Problem.FORBIDDEN: "Forbidden.",
           Problem.NOT_FOUND: "Payment not found", Problem.NO_ROUTE: "Not Found",
           Problem.METHOD: "Method Not Allowed", Problem.TOO_LARGE: "Request Entity Too Large",
           Problem.SERVER_ERROR: "Internal Server Error", Problem.RATE_LIMITED: "Too Many Requests",
           Problem.IN_FLIGHT: "Payment operation blocked"}
_SLUGS = {Problem.NOT_FOUND: "payment_not_found", Problem.IN_FLIGHT: "payment_operation_blocked"}
_STATUS = {Problem.MALFORMED: 400, Problem.UNAUTHORIZED: 401, Problem.FORBIDDEN: 403, Problem.NOT_FOUND: 404,
           Problem.NO_ROUTE: 404, Problem.METHOD: 405, Problem.TOO_LARGE: 413, Problem.SERVER_ERROR: 500,
           Problem.RATE_LIMITED: 429, Problem.IN_FLIGHT: 409}
_BLOCKED = ("The payment was being modified by another request. The attempted operation could be retried again, "
            "or the payment could be queried to find out if its properties have changed.")


def _answer(status: int, body: Mapping[str, Any]) -> Answer:
    return Answer.json(status, body, content_type="application/problem+json" if status >= 400 else "application/json")


class BamboraEmulator(ProviderEmulator):
    name = "bambora"
    credentials: ClassVar[Mapping[str, str]] = {"access_token": "emulator-token", "merchant_number": "T000000001",
                                                 "secret_token": "emulator-secret"}

    def __init__(self) -> None:
        self.routes = (
            Route("POST", "/payments/{payment}/capture/", "capture", self._parse_capture, self._capture),
            Route("POST", "/payments/{payment}/cancel/", "cancel", self._parse_cancel, self._cancel),
            Route("POST", "/payments/{payment}/refund/", "refund", self._parse_refund, self._refund),
            Route("GET", "/payments/{payment}/", "get", self._parse_get, self._get),
        )

    # -- the generic answers

    def problem(self, kind: Problem, message: str, *, retry_after: int | None = None) -> Answer:
        status = _STATUS[kind]
        detail = _BLOCKED if kind is Problem.IN_FLIGHT else message
        answer = _answer(status, wire.problem(status, _SLUGS.get(kind), _TITLES[kind], detail))
        if retry_after is not None:
            answer = Answer(answer.status, answer.body, (("Retry-After", str(retry_after)),), answer.content_type)
        return answer

    def authenticate(self, ctx: Context, request: WireRequest, route: Route) -> Answer | None:
        try:
            token, merchant, secret = wire.read_authorization(request.headers.get("authorization"))
        except RequestError as exc:
            return self.problem(Problem.UNAUTHORIZED, exc.reason)
        creds = ctx.credentials
        if not (same(token, creds["access_token"]) & same(merchant, creds["merchant_number"])
                & same(secret, creds["secret_token"])):
            return self.problem(Problem.FORBIDDEN, "You are not authorized for this operation with the "
                                                   "authentication you have provided.")
        if request.headers.get("api-version") is None:
            return self.problem(Problem.MALFORMED, "'API-Version' is a required header")
        if request.headers.get("api-version") != wire.API_VERSION:
            return self.problem(Problem.MALFORMED, f"API-Version {request.headers['api-version']!r} is not "
                                                   f"supported; use {wire.API_VERSION}")
        return None

    def refused(self, ctx: Context, call: Call, decision: Decision) -> Answer:
        op = {Capture: "capture", Cancel: "cancel", Refund: "refund"}[type(decision.command)]
        why = "; ".join(v.message for v in decision.violations)
        if set(decision.codes) & STATE_CODES:
            return _answer(422, wire.problem(422, "invalid_payment_state_transition",
                                             "Invalid payment state transition", why))
        return _answer(402, wire.problem(402, f"cannot_{op}", f"Cannot {op}", why))

    def view(self, entry: Entry) -> Mapping[str, Any]:
        return {"provider_state": self._body(entry, "T")["state"]}

    # -- parsing

    def _reference(self, ctx: Context, request: WireRequest) -> str | Answer:
        reference = request.params["payment"]
        problem = wire.REFERENCE.problem(reference)
        if problem:
            return self.problem(Problem.MALFORMED, f"payment: {problem}")
        return reference

    def _parse_amount(self, ctx: Context, request: WireRequest, minimum: int) -> Call | Answer:
        reference = self._reference(ctx, request)
        if isinstance(reference, Answer):
            return reference
        try:
            amount, comment = wire.read_amount_body(request.body, minimum=minimum)
        except RequestError as exc:
            return self.problem(Problem.MALFORMED, exc.reason)
        return Call(reference, None, amount, {"comment": comment})

    def _parse_capture(self, ctx: Context, request: WireRequest) -> Call | Answer:
        return self._parse_amount(ctx, request, 0)

    def _parse_refund(self, ctx: Context, request: WireRequest) -> Call | Answer:
        return self._parse_amount(ctx, request, 1)

    def _parse_cancel(self, ctx: Context, request: WireRequest) -> Call | Answer:
        reference = self._reference(ctx, request)
        if isinstance(reference, Answer):
            return reference
        problem = body_problem(request)  # api-beta cancel takes no body (_cancel.md)
        if problem:
            return self.problem(Problem.MALFORMED, problem)
        return Call(reference)

    def _parse_get(self, ctx: Context, request: WireRequest) -> Call | Answer:
        reference = self._reference(ctx, request)
        if isinstance(reference, Answer):
            return reference
        merchant = request.query.get("merchant")
        if merchant is not None and not same(merchant, ctx.credentials["merchant_number"]):
            return self.problem(Problem.FORBIDDEN, f"merchant {merchant!r} is not in this corporate hierarchy")
        return Call(reference)

    # -- executing

    def _entry(self, ctx: Context, call: Call) -> Entry | Answer:
        assert call.reference is not None
        entry = ctx.entry(call.reference)
        if entry is None:
            return self.problem(Problem.NOT_FOUND, f"No payment {call.reference!r} was found.")
        return entry

    def _body(self, entry: Entry, merchant: str) -> dict[str, Any]:
        p = entry.payment
        operations: list[str] = []
        if p.state == "authorized":
            operations = ["Cancel", "Capture"]
        elif p.state == "captured" and p.refundable > 0 and p.refund_count < _max_refunds(entry):
            operations = ["Refund"]
        captures = [e.amount or 0 for e in entry.events if e.type is EventType.CAPTURED]
        refunds = [e.amount or 0 for e in entry.events if e.type is EventType.REFUNDED]
        return wire.payment_response(entry.reference, p.state, p.currency, p.authorized, merchant=merchant,
                                     captures=captures, refunds=refunds, operations=operations)

    def _run(self, ctx: Context, call: Call, command: Capture | Cancel | Refund, status: int) -> Answer:
        entry = self._entry(ctx, call)
        if isinstance(entry, Answer):
            return entry
        decision = execute(ctx, entry, command)
        if not decision.allowed:
            return self.refused(ctx, call, decision)
        return Answer.json(status, self._body(entry, ctx.credentials["merchant_number"]))

    def _capture(self, ctx: Context, call: Call) -> Answer:
        return self._run(ctx, call, Capture(at=ctx.now, amount=call.amount), 201)

    def _refund(self, ctx: Context, call: Call) -> Answer:
        assert call.amount is not None
        return self._run(ctx, call, Refund(amount=call.amount, at=ctx.now), 201)

    def _cancel(self, ctx: Context, call: Call) -> Answer:
        return self._run(ctx, call, Cancel(at=ctx.now), 200)

    def _get(self, ctx: Context, call: Call) -> Answer:
        entry = self._entry(ctx, call)
        if isinstance(entry, Answer):
            return entry
        return Answer.json(200, self._body(entry, ctx.credentials["merchant_number"]))


def _max_refunds(entry: Entry) -> float:
    limit = entry.payment.spec.policy.max_refunds
    return float("inf") if limit is None else limit


EMULATOR = BamboraEmulator()
__all__: Sequence[str] = ("EMULATOR", "BamboraEmulator")
