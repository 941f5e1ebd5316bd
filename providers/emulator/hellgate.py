"""Hellgate Commerce on the emulator: capture (asynchronous), void, refund and get
(capstate.providers.hellgate documents the wire; research/providers.md §3).

- Authentication: `X-API-Key` must be the emulator's key; missing is 401, wrong is 403.
- Capture answers the payment in `capturing` ("A 2xx on capture does not mean the capture succeeded"):
  a `capture_requested` event is committed, and the capture settles later, as `captured` or `failed`,
  on the control API's `POST /_emulator/hellgate/settle`, or by itself `settle_after` (a duration on the
  virtual clock, `--set hellgate.settle_after=30s`) after it was requested.
- Void answers `voiding` and refund answers the refund `processing` (v2 void page, refund page); the
  emulator commits both at once, so the next GET shows `voided` or the grown `amount.refunded`.
- `X-Idempotency-Key` goes to `decide` as the command's key: an identical resend of an operation that
  succeeded is answered with the payment as it is (nothing moves), the same key with another amount is
  409. Hellgate documents the header but not these semantics [UNK]; this is the engine's key rule.
- Error bodies are `{code, message}` (the format is undocumented [UNK]); a refusal is 422 ("Unprocessable
  Content", v1 getting-started), an in-flight capture or a key conflict 409.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, ClassVar

from ..._codes import Code
from ..._errors import RequestError
from ..._time import parse_duration
from ..._values import Cancel, Capture, Decision, EventType, Flow, Refund
from .. import hellgate as wire
from ._base import Answer, Call, Context, Problem, ProviderEmulator, Route, WireRequest
from ._core import Entry
from ._ops import body_problem, execute, same

_CODES = {Problem.MALFORMED: (400, "bad_request"), Problem.UNAUTHORIZED: (401, "unauthorized"),
          Problem.FORBIDDEN: (403, "forbidden"), Problem.NOT_FOUND: (404, "payment_not_found"),
          Problem.NO_ROUTE: (404, "not_found"), Problem.METHOD: (405, "method_not_allowed"),
          Problem.TOO_LARGE: (413, "payload_too_large"), Problem.SERVER_ERROR: (500, "internal_error"),
          Problem.RATE_LIMITED: (429, "too_many_requests"), Problem.IN_FLIGHT: (409, "conflict")}
_CONFLICTS = frozenset({Code.CAPTURE_IN_FLIGHT, Code.IDEMPOTENCY_KEY_CONFLICT})
_PAYMENT_ID = re.compile(wire.PAYMENT_ID)


def _settle_after(value: Any) -> timedelta:
    """`--set hellgate.settle_after=30s`: a duration on the virtual clock."""
    if isinstance(value, timedelta):
        return value
    return parse_duration(str(value))


class HellgateEmulator(ProviderEmulator):
    name = "hellgate"
    credentials: ClassVar[Mapping[str, str]] = {"api_key": "emulator-hellgate-key"}
    settings: ClassVar[Mapping[str, Any]] = {"settle_after": _settle_after}

    def __init__(self) -> None:
        self.routes = (
            Route("POST", "/payments/{id}/capture", "capture", self._parse_capture, self._capture),
            Route("POST", "/payments/{id}/void", "cancel", self._parse_void, self._void),
            Route("POST", "/payments/{id}/refund", "refund", self._parse_refund, self._refund),
            Route("GET", "/payments/{id}", "get", self._parse_get, self._get),
        )

    def problem(self, kind: Problem, message: str, *, retry_after: int | None = None) -> Answer:
        status, code = _CODES[kind]
        headers = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
        return Answer.json(status, wire.error(code, message), headers=headers)

    def authenticate(self, ctx: Context, request: WireRequest, route: Route) -> Answer | None:
        key = request.headers.get("x-api-key")
        if key is None or not key.strip():
            return self.problem(Problem.UNAUTHORIZED, "the X-API-Key header is missing")
        if not same(key, ctx.credentials["api_key"]):
            return self.problem(Problem.FORBIDDEN, "the API key is not valid for this account")
        return None

    def refused(self, ctx: Context, call: Call, decision: Decision) -> Answer:
        first = decision.violations[0]
        status = 409 if first.code in _CONFLICTS else 422
        why = "; ".join(v.message for v in decision.violations)
        return Answer.json(status, wire.error(first.code.value.lower(), why))

    def view(self, entry: Entry) -> Mapping[str, Any]:
        return {"provider_state": self._body(entry)["status"]}

    # -- parsing

    def _call(self, request: WireRequest, amount: int | None = None, data: Mapping[str, Any] | None = None
              ) -> Call | Answer:
        pid = request.params["id"]
        if not _PAYMENT_ID.fullmatch(pid):
            return self.problem(Problem.MALFORMED, "payment_id must be a UUID")
        key = request.headers.get("x-idempotency-key")
        if key is not None and wire.IDEMPOTENCY_KEY.problem(key):
            return self.problem(Problem.MALFORMED, f"X-Idempotency-Key: {wire.IDEMPOTENCY_KEY.problem(key)}")
        return Call(pid, key, amount, data or {})

    def _parse_money(self, request: WireRequest, read: Callable[[bytes], tuple[Any, Any, Any]]) -> Call | Answer:
        try:
            amount, code, text = read(request.body)
        except RequestError as exc:
            return self.problem(Problem.MALFORMED, f"{exc.field}: {exc.reason}")
        return self._call(request, amount, {"currency": code, "reference": text})

    def _parse_capture(self, ctx: Context, request: WireRequest) -> Call | Answer:
        return self._parse_money(request, wire.read_capture)

    def _parse_refund(self, ctx: Context, request: WireRequest) -> Call | Answer:
        return self._parse_money(request, wire.read_refund)

    def _parse_void(self, ctx: Context, request: WireRequest) -> Call | Answer:
        problem = body_problem(request)  # void takes no body (v2 void page)
        if problem:
            return self.problem(Problem.MALFORMED, problem)
        return self._call(request)

    def _parse_get(self, ctx: Context, request: WireRequest) -> Call | Answer:
        return self._call(request)

    # -- executing

    def _entry(self, ctx: Context, call: Call) -> Entry | Answer:
        assert call.reference is not None
        entry = ctx.entry(call.reference)
        if entry is None:
            return self.problem(Problem.NOT_FOUND, f"no payment {call.reference}")
        return entry

    def _body(self, entry: Entry) -> dict[str, Any]:
        p = entry.payment
        failure: list[dict[str, str]] = []
        failed = next((e for e in reversed(entry.events) if e.type is EventType.CAPTURE_FAILED), None)
        if p.state == "failed" and failed is not None:
            failure = [{"classifier": "capture_failed", "message": failed.reason or "the capture failed"}]
        elif p.state == "expired":
            failure = [{"classifier": "authorization_expired", "message": "the authorization lapsed"}]
        created = entry.events[0].at if entry.events else entry.payment.authorized_at
        assert created is not None
        return wire.payment_body(entry.reference, p.state, p.currency, requested=p.authorized,
                                 authorized=p.authorized, captured=p.captured, refunded=p.refunded,
                                 created_at=created, automatic=p.flow is Flow.AUTOMATIC, failure=failure)

    def _capture(self, ctx: Context, call: Call) -> Answer:
        entry = self._entry(ctx, call)
        if isinstance(entry, Answer):
            return entry
        # A full capture names no amount: everything capturable ("only requires a reference").
        amount = call.amount if call.amount is not None else entry.payment.capturable
        decision = execute(ctx, entry, Capture(at=ctx.now, amount=amount or None, currency=call.data["currency"],
                                               key=call.key))
        if not decision.allowed:
            return self.refused(ctx, call, decision)
        return Answer.json(200, self._body(entry))

    def _void(self, ctx: Context, call: Call) -> Answer:
        entry = self._entry(ctx, call)
        if isinstance(entry, Answer):
            return entry
        decision = execute(ctx, entry, Cancel(at=ctx.now, key=call.key))
        if not decision.allowed:
            return self.refused(ctx, call, decision)
        body = self._body(entry)
        if decision.event is not None:
            body["status"] = "voiding"  # "Cancel accepted" (v2 void page); the next GET reads `voided`
        return Answer.json(200, body)

    def _refund(self, ctx: Context, call: Call) -> Answer:
        entry = self._entry(ctx, call)
        if isinstance(entry, Answer):
            return entry
        assert call.amount is not None
        decision = execute(ctx, entry, Refund(amount=call.amount, at=ctx.now, currency=call.data["currency"],
                                              key=call.key))
        if not decision.allowed:
            return self.refused(ctx, call, decision)
        count = sum(1 for e in entry.events if e.type is EventType.REFUNDED)
        refund_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"hellgate:{entry.reference}:refund:{count}"))
        currency = entry.payment.currency or call.data["currency"]
        return Answer.json(200, wire.refund_body(refund_id, entry.reference, call.amount, currency,
                                                 reference=call.data["reference"], status="processing",
                                                 created_at=ctx.now))

    def _get(self, ctx: Context, call: Call) -> Answer:
        entry = self._entry(ctx, call)
        if isinstance(entry, Answer):
            return entry
        return Answer.json(200, self._body(entry))


EMULATOR = HellgateEmulator()
