"""Pipwave on the emulator: `capture-payment`, `requery`, `refund` (op `submit`) and `cancel-payment`,
all at the one URL `/pipwave` with the `action` field choosing (capstate.providers.pipwave documents the
wire; research/providers.md §4).

- Authentication: the `x-api-key` header and the body's `api_key` must both be the emulator's key
  (else status "403" Invalid API key), and `signature` must be the SHA-1 of every other field sent plus
  the secret, sorted by key (sample-codes.md `generate_pw_signature`; else "401" Invalid API signature).
- Answers are HTTP 200 with `{"status", "message"}` and the status codes of appendix/api_status_code.md:
  an unknown action "404", a bad field "9001", a refused capture or cancel "400" ("see message"; a capture
  outside AUTHORISATION is expected to give 400, research §4.5), a refund refused on the amount "4003",
  before the payment is paid "4002", once fully refunded "4001". An unknown payment is "9001" (Pipwave
  documents no not-found code [UNK]).
- The payment shows in requery as `transaction_status` 5 Processing with `require_capture: true` while
  authorized, 10 Paid once captured (`final_amount` = captured), 25/20 after a partial/full refund, 2 once
  cancelled. Pipwave documents no expiry status [UNK]: a lapsed authorization reads 1 Failed.
- No idempotency (research §4.7): a resend is a new operation, and the spec's single capture refuses it.
- Injected faults: a 500 is HTTP 500, a 429 HTTP 429 with Retry-After, 409_in_flight the documented
  "4006" ("already has a reversal in process. You must wait").
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

from ..._codes import Code
from ..._errors import RequestError
from ..._values import Cancel, Capture, Decision, Refund
from .. import pipwave as wire
from ._base import Answer, Call, Context, Problem, ProviderEmulator, Route, WireRequest
from ._core import Entry
from ._ops import execute, same

_OPS = {"capture-payment": "capture", "requery": "get", "refund": "refund", "cancel-payment": "cancel"}
# Generic problems: (HTTP status, Pipwave status code). Pipwave answers its own codes inside HTTP 200;
# only what never reached the API proper (a body too large, a wrong path or method) or an injected server
# fault is another HTTP status.
_CODES = {Problem.MALFORMED: (200, "9001"), Problem.UNAUTHORIZED: (200, "403"), Problem.FORBIDDEN: (200, "403"),
          Problem.NOT_FOUND: (200, "9001"), Problem.NO_ROUTE: (404, "404"), Problem.METHOD: (405, "404"),
          Problem.TOO_LARGE: (413, "400"), Problem.SERVER_ERROR: (500, "500"), Problem.RATE_LIMITED: (429, "500"),
          Problem.IN_FLIGHT: (200, "4006")}
_AMOUNTS = {"capture": "capture_amount", "refund": "refund_amount"}
_NOT_PAID = frozenset({Code.INVALID_STATE, Code.NOT_AUTHORIZED})


def pw_id(reference: str) -> str:
    """The Pipwave transaction reference the emulator gives a payment: derived, so it survives restarts."""
    return "PW" + hashlib.sha1(reference.encode()).hexdigest()[:30]


class PipwaveEmulator(ProviderEmulator):
    name = "pipwave"
    credentials: ClassVar[Mapping[str, str]] = {"api_key": "emulator-key", "api_secret": "emulator-secret"}

    def __init__(self) -> None:
        self.routes = (Route("POST", "/", "payment", self._parse, self._execute),)

    def problem(self, kind: Problem, message: str, *, retry_after: int | None = None) -> Answer:
        status, code = _CODES[kind]
        headers = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
        return Answer.json(status, wire.reply(code, message), headers=headers)

    def _code(self, code: str, message: str = "") -> Answer:
        return Answer.json(200, wire.reply(code, message))

    def authenticate(self, ctx: Context, request: WireRequest, route: Route) -> Answer | None:
        key = request.headers.get("x-api-key")
        if key is None or not same(key, ctx.credentials["api_key"]):
            return self._code("403", "Invalid API key")
        return None

    def refused(self, ctx: Context, call: Call, decision: Decision) -> Answer:
        why = "; ".join(v.message for v in decision.violations)
        codes = set(decision.codes)
        if isinstance(decision.command, Refund):
            if codes & _NOT_PAID:
                return self._code("4002", why)
            if Code.REFUND_EXCEEDS_CAPTURED in codes:
                return self._code("4003", why)
        return self._code("400", why)

    def view(self, entry: Entry) -> Mapping[str, Any]:
        return {"provider_state": wire.TRANSACTION_STATUS[self._status(entry)], "pw_id": pw_id(entry.reference)}

    # -- parsing

    def _parse(self, ctx: Context, request: WireRequest) -> Call | Answer:
        if len(request.body) == 0:
            return self._code("9001", "the body is empty")
        try:
            fields = wire.read_request(request.body)
        except RequestError as exc:
            return self._code("9001", f"{exc.field}: {exc.reason}")
        creds = ctx.credentials
        if not same(wire._php_string(fields.get("api_key")), creds["api_key"]):
            return self._code("403", "Invalid API key")
        if not wire.signature_ok(fields, creds["api_secret"]):
            return self._code("401", "Invalid API signature")
        action = wire._php_string(fields.get("action"))
        if action not in _OPS:
            return self._code("404", f"Invalid action {action[:wire.ACTION_MAX]!r}")
        timestamp = wire._php_string(fields.get("timestamp"))
        if not timestamp.isdigit():
            return self._code("9001", "timestamp must be UNIX seconds")
        try:
            txn_id = wire.read_text(fields, "txn_id", wire.TXN_ID)
            given_pw_id = wire.read_text(fields, "pw_id", wire.PW_ID)
        except RequestError as exc:
            return self._code("9001", f"{exc.field}: {exc.reason}")
        if txn_id is None and given_pw_id is None:
            return self._code("9001", "pw_id or txn_id is required")
        reference = txn_id if txn_id is not None else self._by_pw_id(ctx, given_pw_id or "")
        op = _OPS[action]
        entry = ctx.entry(reference)
        amount = None
        try:
            if op == "refund" and wire._php_string(fields.get("op")) not in ("submit", "initiate"):
                raise RequestError("must be 'initiate' or 'submit'", field="op")
            for name in ("reason", "ref_tag"):
                wire.read_text(fields, name, wire.SHORT_TEXT)
            if entry is not None and op in _AMOUNTS:
                amount = wire.read_major(fields, _AMOUNTS[op], entry.payment.currency or "XXX")
        except RequestError as exc:
            return self._code("9001", f"{exc.field}: {exc.reason}")
        return Call(reference, None, amount, {"fields": fields, "pw_id": given_pw_id}, op=op)

    @staticmethod
    def _by_pw_id(ctx: Context, given: str) -> str:
        for entry in ctx.emulator.ledgers("pipwave"):
            if pw_id(entry.reference) == given:
                return entry.reference
        return "\x00unknown:" + given  # matches no payment: answered as not found

    # -- executing

    def _status(self, entry: Entry) -> str:
        p = entry.payment
        if p.state == "cancelled":
            return "2"
        if p.state in ("expired", "failed"):
            return "1"
        if p.state == "captured" or p.captured:
            if p.refunded:
                return "20" if p.refunded >= p.captured else "25"
            return "10"
        if p.state == "open":
            return "0"
        return "5"

    def _execute(self, ctx: Context, call: Call) -> Answer:
        assert call.reference is not None
        entry = ctx.entry(call.reference)
        given = call.data["pw_id"]
        if entry is None or (given is not None and given != pw_id(entry.reference)):
            return self._code("9001", "no transaction with this pw_id/txn_id")
        fields = call.data["fields"]
        currency = entry.payment.currency or "XXX"
        op, amount = call.op, call.amount
        if op == "get":
            p = entry.payment
            return Answer.json(200, wire.requery_body(
                pw_id=pw_id(entry.reference), txn_id=entry.reference, currency=currency, amount=p.authorized,
                final_amount=p.captured - p.refunded, transaction_status=self._status(entry),
                require_capture=p.state == "authorized"))
        command: Capture | Cancel | Refund
        if op == "capture":
            # "If not provided, full authorised amount will be captured" (capture_payment.md).
            command = Capture(at=ctx.now, amount=amount)
        elif op == "cancel":
            command = Cancel(at=ctx.now)
        else:
            if wire._php_string(fields.get("op")) == "initiate":
                # `initiate` asks what the gateway supports and moves no money (refund.md) [INF].
                return Answer.json(200, {**wire.reply("200"), "supports_refund": True,
                                         "supports_partial_refund": True})
            command = Refund(amount=amount if amount is not None else entry.payment.refundable or 1, at=ctx.now)
        decision = execute(ctx, entry, command)
        if not decision.allowed:
            return self.refused(ctx, call, decision)
        return self._code("200", "OK")


EMULATOR = PipwaveEmulator()
