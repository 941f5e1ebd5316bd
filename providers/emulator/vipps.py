"""Vipps MobilePay ePayment v1 on the emulator: access token, create, force approve, get, events, capture, cancel
and refund, with Vipps's authentication, idempotency, problems and signed webhooks. The wire (both directions)
is in `capstate.providers.vipps` (`inbound`, `answers`, `webhooks`); docs/emulator.md has the Vipps section.

- Authentication (research/providers.md §2.3): `POST /accesstoken/get` takes `client_id`, `client_secret` and
  `Ocp-Apim-Subscription-Key` headers and answers a bearer token valid `token_lifetime` (1 h, "valid for 1 hour
  in the test environment", access-token-api) of virtual time. Every ePayment call needs that token, the
  subscription key and the `Merchant-Serial-Number`: a missing or unknown token or key is 401, a serial number
  that is not the merchant's is 403.
- State: every create, approve, capture, cancel and refund is `decide`d on the vipps spec and committed with
  `apply` (`Context.commit`). Vipps's own view is projected from the payment: `state` stays AUTHORIZED through
  captures, cancels and refunds, which live in the aggregate (research §2.2); a cancel before approval is
  TERMINATED. A lapsed authorization is cancelled automatically ("After that payments are automatically
  cancelled", knowledge-base/payment-rules): the log and the webhook say CANCELLED, with no idempotency key. A
  payment never approved expires after 10 minutes, or at its `expiresAt` (CreatePaymentRequest): EXPIRED.
- Idempotency (research §2.7): keys are scoped per (merchant serial number, payment reference); creates, which
  have no reference yet, per merchant serial number. Under one key the identical request (same operation,
  same JSON body) gets the stored answer again, byte for byte, refusals included ("a 4xx is returned again",
  common-topics/idempotency.md); the same operation with another body is 409 "<Op> idempotency conflict"
  (faq.md: "The capture request in an idempotent retry must be identical to the previous request(s)"); another
  operation under a used key is 409 "Idempotency error" (faq.md: "Idempotency-Key ... already exists").
- The event log records every attempt, refused ones with `success: false` (research §2.5).
- Webhooks: with `--set vipps.webhook_url=... --set vipps.webhook_secret=...`, every logged event is POSTed as a
  WebhookEvent signed as request-authentication.md says (capstate.providers.vipps.webhooks.signed_headers),
  after the answer that caused it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson

from ..._codes import Code
from ..._engine import decide
from ..._time import format_instant, parse_duration, parse_instant
from ..._values import Authorize, Cancel, Capture, Command, Decision, Event, EventType, Payment, Refund
from ..vipps import answers, inbound
from ..vipps.answers import JSON, PROBLEM_JSON, LogEntry, PaymentView
from ..vipps.inbound import Problem as VippsProblem
from ..vipps.webhooks import signed_headers
from ._base import Answer, Call, Context, Problem, ProviderEmulator, Route, WireRequest
from ._core import Entry
from ._ops import execute, same

TOKEN_LIFETIME = timedelta(hours=1)
CREATED_LIFETIME = timedelta(minutes=10)  # research §2.2: "the user has 10 minutes by default"
WEBHOOK_TIMEOUT = 10.0
MAX_TOKENS = 10_000
EPAYMENT = "/epayment/v1/payments"
_OPS = {Capture: "capture", Cancel: "cancel", Refund: "refund"}
_WORDS = {"capture": "Capture", "cancel": "Cancel", "refund": "Refund"}

# The generic problems, with the FAQ's titles where it has one (faq.md; knowledge-base/errors: 409 "Order
# processing": "Too many concurrent requests. The payment is being processed.").
_GENERIC: dict[Problem, tuple[int, str, str]] = {
    Problem.MALFORMED: (400, "Bad Request", "validation-error"),
    Problem.UNAUTHORIZED: (401, "Unauthorized", "unauthorized"),
    Problem.FORBIDDEN: (403, "Forbidden", "forbidden"),
    Problem.NOT_FOUND: (404, "Reference not found", "reference-not-found"),
    Problem.NO_ROUTE: (404, "Not Found", "not-found"),
    Problem.METHOD: (405, "Method Not Allowed", "method-not-allowed"),
    Problem.TOO_LARGE: (413, "Payload Too Large", "payload-too-large"),
    Problem.SERVER_ERROR: (500, "Internal error", "internal-error"),
    Problem.RATE_LIMITED: (429, "Too Many Requests", "too-many-requests"),
    Problem.IN_FLIGHT: (409, "Order processing", "order-processing"),
}


def _url(value: Any) -> str:
    text = str(value)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text[:60]!r} is not an http(s) URL")
    return text


def _secret(value: Any) -> str:
    text = str(value)
    if not text:
        raise ValueError("the webhook secret must not be empty")
    return text


def _duration(value: Any) -> timedelta:
    return value if isinstance(value, timedelta) else parse_duration(str(value))


def problem_answer(p: VippsProblem, *, retry_after: int | None = None) -> Answer:
    headers = (("Retry-After", str(retry_after)),) if retry_after is not None else ()
    return Answer.json(p.status, answers.problem(p, secrets.token_hex(16)), content_type=PROBLEM_JSON,
                       headers=headers)


_ParseMethod = Callable[["VippsEmulator", Context, WireRequest], "Call | Answer"]


def _answers_problems(parse: _ParseMethod) -> _ParseMethod:
    """A route's parse, with any Vipps problem its reading raises answered as that problem."""

    def wrapped(self: VippsEmulator, ctx: Context, request: WireRequest) -> Call | Answer:
        try:
            return parse(self, ctx, request)
        except VippsProblem as p:
            return problem_answer(p)

    return wrapped


def fingerprint(op: str, body: Mapping[str, Any]) -> str:
    """What makes two requests under one key "identical": the operation and the JSON body, whatever its
    spacing and key order."""
    return hashlib.sha256(op.encode() + b"\x00" + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


class VippsEmulator(ProviderEmulator):
    name = "vipps"
    credentials: ClassVar[Mapping[str, str]] = {
        "client_id": "emulator-client-id", "client_secret": "emulator-client-secret",
        "subscription_key": "emulator-subscription-key", "merchant_serial_number": "123456"}
    settings: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "webhook_url": _url, "webhook_secret": _secret, "token_lifetime": _duration}

    def __init__(self) -> None:
        self.routes = (
            Route("POST", "/accesstoken/get", "token", self._parse_token, self._token),
            Route("POST", EPAYMENT, "create", self._parse_create, self._create),
            Route("GET", EPAYMENT + "/{reference}", "get", self._parse_read, self._get),
            Route("GET", EPAYMENT + "/{reference}/events", "events", self._parse_read, self._events),
            Route("POST", EPAYMENT + "/{reference}/capture", "capture", self._parse_modification, self._capture),
            Route("POST", EPAYMENT + "/{reference}/refund", "refund", self._parse_modification, self._refund),
            Route("POST", EPAYMENT + "/{reference}/cancel", "cancel", self._parse_cancel, self._cancel),
            Route("POST", "/epayment/v1/test/payments/{reference}/approve", "approve", self._parse_approve,
                  self._approve),
        )

    # -- the generic answers

    def problem(self, kind: Problem, message: str, *, retry_after: int | None = None) -> Answer:
        status, title, slug = _GENERIC[kind]
        if kind is Problem.IN_FLIGHT:
            message = "Too many concurrent requests. The payment is being processed."
        return problem_answer(VippsProblem(status, title, message, slug=slug), retry_after=retry_after)

    def authenticate(self, ctx: Context, request: WireRequest, route: Route) -> Answer | None:
        creds = ctx.credentials
        if route.op == "token":
            try:
                asked = inbound.token_request(request.headers)
            except VippsProblem as p:
                return problem_answer(VippsProblem(401, "Unauthorized", p.detail, slug="unauthorized",
                                                   extra=p.extra))
            if not (same(asked.client_id, creds["client_id"]) & same(asked.client_secret, creds["client_secret"])
                    & same(asked.subscription_key, creds["subscription_key"])):
                return self.problem(Problem.UNAUTHORIZED, "client_id, client_secret or Ocp-Apim-Subscription-Key "
                                                          "is wrong")
            return None
        try:
            who = inbound.caller(request.headers)
        except VippsProblem as p:
            return problem_answer(p)
        if not same(who.subscription_key, creds["subscription_key"]):
            return self.problem(Problem.UNAUTHORIZED, "Access denied due to invalid subscription key")
        expires = ctx.data.get("tokens", {}).get(_token_id(who.token))
        if expires is None or parse_instant(expires) <= ctx.now:
            return self.problem(Problem.UNAUTHORIZED, "the access token is unknown or has expired; get a new one "
                                                      "from POST /accesstoken/get")
        if not same(who.msn, creds["merchant_serial_number"]):
            return self.problem(Problem.FORBIDDEN, f"Merchant-Serial-Number {who.msn} is not a sales unit of this "
                                                   f"client")
        return None

    def refused(self, ctx: Context, call: Call, decision: Decision) -> Answer:
        entry = ctx.entry(call.reference) if call.reference is not None else None
        return problem_answer(refusal(decision, entry))

    def view(self, entry: Entry) -> Mapping[str, Any]:
        extra = entry.extra
        return {"provider_state": extra.get("state"), "psp_reference": extra.get("psp"),
                "log": [answers.payment_event(_entry_of(e)) for e in extra.get("log", [])]}

    # -- parsing

    def _parse_token(self, ctx: Context, request: WireRequest) -> Call | Answer:
        return Call(None)

    @_answers_problems
    def _parse_create(self, ctx: Context, request: WireRequest) -> Call | Answer:
        key = inbound.idempotency_key(request.headers)
        made = inbound.create_payment(request.body, now=ctx.now)
        body = inbound.json_object(request.body)
        return Call(made.reference, key, made.amount.value, {"create": made, "fingerprint": fingerprint("create",
                                                                                                          body)})

    def _reference(self, request: WireRequest) -> str:
        return inbound.reference(request.params["reference"])

    @_answers_problems
    def _parse_read(self, ctx: Context, request: WireRequest) -> Call | Answer:
        return Call(self._reference(request))

    @_answers_problems
    def _parse_modification(self, ctx: Context, request: WireRequest) -> Call | Answer:
        op = "capture" if request.path.endswith("/capture") else "refund"
        reference = self._reference(request)
        key = inbound.idempotency_key(request.headers)
        money = inbound.modification(request.body)
        return Call(reference, key, money.value, {"money": money, "fingerprint": fingerprint(
            op, {"modificationAmount": {"currency": money.currency, "value": money.value}})})

    @_answers_problems
    def _parse_cancel(self, ctx: Context, request: WireRequest) -> Call | Answer:
        reference = self._reference(request)
        key = inbound.idempotency_key(request.headers)
        only = inbound.cancel(request.body)
        # No body and {"cancelTransactionOnly": false} are one request (rule 4 of inbound).
        return Call(reference, key, None, {"only": only, "fingerprint": fingerprint(
            "cancel", {"cancelTransactionOnly": only})})

    @_answers_problems
    def _parse_approve(self, ctx: Context, request: WireRequest) -> Call | Answer:
        return Call(self._reference(request), None, None, {"approve": inbound.force_approve(request.body)})

    # -- the token

    def _token(self, ctx: Context, call: Call) -> Answer:
        lifetime = ctx.settings.get("token_lifetime", TOKEN_LIFETIME)
        tokens: dict[str, str] = ctx.data.setdefault("tokens", {})
        for tid, expires in list(tokens.items()):
            if parse_instant(expires) <= ctx.now or len(tokens) >= MAX_TOKENS:
                del tokens[tid]
        token = "emu." + secrets.token_urlsafe(32)
        # Only a digest is kept (and persisted with --state): a state file never holds a usable token.
        tokens[_token_id(token)] = format_instant(ctx.now + lifetime)
        return Answer.json(200, answers.access_token(token, ctx.now, lifetime))

    # -- create and approve

    def _create(self, ctx: Context, call: Call) -> Answer:
        made: inbound.CreatePayment = call.data["create"]
        key = call.key
        assert key is not None
        keys: dict[str, Any] = ctx.data.setdefault("create_keys", {})
        stored = keys.get(key)
        if stored is not None:
            if stored["fingerprint"] != call.data["fingerprint"]:
                return problem_answer(VippsProblem(409, "Idempotency error", f"Idempotency-Key {call.key!r} already "
                                                   f"exists for another create request", slug="idempotency-error"))
            return _stored(stored)
        if ctx.entry(made.reference) is not None:
            return problem_answer(VippsProblem(409, "Duplicate reference", f"a payment {made.reference!r} exists "
                                               "for this Merchant-Serial-Number; references are unique per MSN",
                                               slug="duplicate-reference"))
        checked = decide(Payment.new(ctx.spec, made.reference), Authorize(
            amount=made.amount.value, currency=made.amount.currency, at=ctx.now, key=call.key))
        if not checked.allowed:
            # What the spec would refuse at approval is refused at creation, as Vipps refuses "Amount too small".
            return problem_answer(_create_refusal(checked))
        entry = ctx.new_entry(made.reference)
        token = secrets.token_urlsafe(16)
        psp = str(10_000_000_000 + int.from_bytes(secrets.token_bytes(5), "big"))
        expires = made.expires_at or ctx.now + CREATED_LIFETIME
        entry.extra.update({
            "state": "CREATED", "psp": psp, "amount": made.amount.value, "currency": made.amount.currency,
            "method": made.payment_method, "flow": made.user_flow, "token": token,
            "redirect": _redirect(made, token), "metadata": dict(made.metadata) if made.metadata else None,
            "scope": made.scope, "created_expires": format_instant(expires), "create_key": call.key, "log": [],
            "keys": {}})
        self._log(ctx, entry, "CREATED", made.amount.value, key=call.key, success=True, at=ctx.now)
        answer = Answer.json(201, answers.created(made.reference, entry.extra["redirect"]))
        keys[key] = _store("create", call.data["fingerprint"], answer)
        return answer

    def _approve(self, ctx: Context, call: Call) -> Answer:
        entry = self._payment(ctx, call)
        if isinstance(entry, Answer):
            return entry
        approve: inbound.ForceApprove = call.data["approve"]
        state = entry.extra["state"]
        if state != "CREATED":
            return problem_answer(VippsProblem(400, "Payment cannot be approved", f"the payment is {state}, not "
                                               "CREATED", slug="payment-cannot-be-approved"))
        if approve.token is not None and not same(approve.token, entry.extra["token"]):
            return problem_answer(inbound.bad_request("token", "is not the token of this payment's redirectUrl"))
        money = entry.extra["amount"], entry.extra["currency"]
        decision = execute(ctx, entry, Authorize(amount=money[0], currency=money[1], at=ctx.now,
                                                 key=entry.extra.get("create_key")))
        if not decision.allowed:
            return problem_answer(VippsProblem(400, "Payment cannot be approved", _why(decision),
                                               slug="payment-cannot-be-approved"))
        return Answer(200, b"", (), JSON)

    # -- capture, cancel, refund

    def _capture(self, ctx: Context, call: Call) -> Answer:
        money: inbound.Money = call.data["money"]
        return self._modify(ctx, call, "capture", Capture(at=ctx.now, amount=money.value, currency=money.currency,
                                                          key=call.key))

    def _refund(self, ctx: Context, call: Call) -> Answer:
        money: inbound.Money = call.data["money"]
        return self._modify(ctx, call, "refund", Refund(amount=money.value, at=ctx.now, currency=money.currency,
                                                        key=call.key))

    def _cancel(self, ctx: Context, call: Call) -> Answer:
        return self._modify(ctx, call, "cancel", Cancel(at=ctx.now, key=call.key))

    def _modify(self, ctx: Context, call: Call, op: str, command: Command) -> Answer:
        entry = self._payment(ctx, call)
        if isinstance(entry, Answer):
            return entry
        assert call.key is not None
        stored: dict[str, Any] | None = entry.extra["keys"].get(call.key)
        if stored is not None:
            if stored["op"] != op:
                return problem_answer(VippsProblem(409, "Idempotency error", f"Idempotency-Key {call.key!r} already "
                                                   f"exists (it was used for a {stored['op']} of this payment)",
                                                   slug="idempotency-error"))
            if stored["fingerprint"] != call.data["fingerprint"]:
                return problem_answer(VippsProblem(
                    409, f"{_WORDS[op]} idempotency conflict", f"The {op} request in an idempotent retry must be "
                    f"identical to the previous request(s) under Idempotency-Key {call.key!r}",
                    slug=f"{op}-idempotency-conflict"))
            return _stored(stored)
        if op == "cancel" and call.data["only"] and entry.payment.authorized > 0:
            # cancelTransactionOnly: "If this flag is set and the transaction has been authorized, the reserved
            # amount will not be canceled" (deno-sdk CancelModificationRequest).
            answer = Answer.json(200, answers.modification(self._view(entry)), content_type=PROBLEM_JSON)
        else:
            decision = execute(ctx, entry, command)
            if decision.allowed:
                answer = Answer.json(200, answers.modification(self._view(entry)), content_type=PROBLEM_JSON)
            else:
                answer = problem_answer(refusal(decision, entry))
                amount = decision.command.amount if not isinstance(decision.command, Cancel) else None
                name = {"capture": "CAPTURED", "refund": "REFUNDED", "cancel": "CANCELLED"}[op]
                value = amount if amount is not None else max(entry.payment.remainder, 0)
                self._log(ctx, entry, name, value, key=call.key, success=False, at=ctx.now)
        entry.extra["keys"][call.key] = _store(op, call.data["fingerprint"], answer)
        return answer

    # -- reading

    def _get(self, ctx: Context, call: Call) -> Answer:
        entry = self._payment(ctx, call)
        if isinstance(entry, Answer):
            return entry
        return Answer.json(200, answers.get_payment(self._view(entry)))

    def _events(self, ctx: Context, call: Call) -> Answer:
        entry = self._payment(ctx, call)
        if isinstance(entry, Answer):
            return entry
        return Answer.json(200, [answers.payment_event(_entry_of(e)) for e in entry.extra["log"]])

    def _payment(self, ctx: Context, call: Call) -> Entry | Answer:
        assert call.reference is not None
        entry = ctx.entry(call.reference)
        if entry is None:
            return problem_answer(inbound.not_found(call.reference))
        if not entry.extra:
            _adopt(ctx, entry)
        return entry

    def due(self, ctx: Context, entry: Entry, now: datetime) -> None:
        if entry.extra:
            self._lapse_created(ctx, entry)

    def _lapse_created(self, ctx: Context, entry: Entry) -> None:
        """A payment never approved expires (State EXPIRED: "The user did not act on the payment within the
        payment expiration time"): the spec has no such move before authorization, so only Vipps's view and
        log change."""
        extra = entry.extra
        if extra.get("state") == "CREATED" and extra.get("created_expires"):
            at = parse_instant(extra["created_expires"])
            if ctx.now >= at:
                extra["state"] = "EXPIRED"
                self._log(ctx, entry, "EXPIRED", extra["amount"], key=None, success=True, at=at)

    def _view(self, entry: Entry) -> PaymentView:
        p, extra = entry.payment, entry.extra
        sub = None
        if extra.get("scope") and p.authorized:
            sub = hashlib.sha256(f"sub:{entry.reference}".encode()).hexdigest()[:32]
        return PaymentView(entry.reference, extra["psp"], extra["state"], extra["currency"], extra["amount"],
                           p.authorized, p.captured, p.cancelled, p.refunded, extra["method"],
                           extra.get("redirect") if extra["state"] == "CREATED" else None,
                           tuple(extra["metadata"].items()) if extra.get("metadata") else None, sub)

    # -- commits: Vipps's state, the event log and the webhooks

    def observe(self, ctx: Context, entry: Entry, events: Sequence[Event]) -> None:
        if not entry.extra:
            _adopt(ctx, entry)
        for event in events:
            name, value = _logged(entry, event)
            if event.type is EventType.AUTHORIZED:
                entry.extra["state"] = "AUTHORIZED"
            elif event.type is EventType.CANCELLED and entry.payment.authorized == 0:
                entry.extra["state"] = "TERMINATED"
            self._log(ctx, entry, name, value, key=event.key, success=True, at=event.at)

    def _log(self, ctx: Context, entry: Entry, name: str, value: int, *, key: str | None, success: bool,
             at: datetime) -> None:
        record = {"name": name, "value": value, "key": key, "success": success, "at": format_instant(at),
                  "reference": entry.reference, "psp": entry.extra["psp"], "currency": entry.extra["currency"]}
        entry.extra["log"].append(record)
        url, secret = ctx.settings.get("webhook_url"), ctx.settings.get("webhook_secret")
        if success and url and secret:
            body = orjson.dumps(answers.webhook_event(ctx.credentials["merchant_serial_number"], _entry_of(record)))
            ctx.defer(_sender(url, secret, body))


# ------------------------------------------------------------------------------------------- refusals


def refusal(decision: Decision, entry: Entry | None) -> VippsProblem:
    """A refusal by `decide` as the problem Vipps answers, titled as faq.md titles it (research §2.6)."""
    op = _OPS.get(type(decision.command), "capture")
    codes = set(decision.codes)
    why = _why(decision)
    p = entry.payment if entry is not None else decision.before
    state = entry.extra.get("state", "AUTHORIZED") if entry is not None else "AUTHORIZED"
    lapsed = p.state == "expired" or (entry is not None and any(e.type is EventType.EXPIRED for e in entry.events))

    def bad(title: str) -> VippsProblem:
        return VippsProblem(400, title, why)

    if Code.IDEMPOTENCY_KEY_CONFLICT in codes or Code.DUPLICATE_CAPTURE in codes:
        return VippsProblem(409, f"{_WORDS[op]} idempotency conflict", why, slug=f"{op}-idempotency-conflict")
    if Code.IDEMPOTENCY_KEY_REQUIRED in codes:
        return inbound.bad_request("Idempotency-Key", why)
    if op == "capture":
        if state == "TERMINATED":
            return bad("Cannot capture a cancelled payment")
        if state in ("CREATED", "EXPIRED", "ABORTED") or (Code.NOT_AUTHORIZED in codes and p.authorized == 0):
            return bad("Cannot capture before reservation")
        if Code.AUTHORIZATION_EXPIRED in codes or lapsed:
            return bad("Capture period expired")
        if state == "TERMINATED" or p.cancelled > 0 or Code.REMAINDER_CANCELLED in codes:
            return bad("Cannot capture a cancelled payment")
        if Code.EXCEEDS_CAPTURABLE in codes or p.captured >= p.authorized:
            return bad("Capture amount too high")
        if Code.AMOUNT_INVALID in codes:
            return bad("Amount too small")
        return bad("Payment cannot be captured")
    if op == "cancel":
        if Code.AUTHORIZATION_EXPIRED in codes or lapsed:
            return bad("Cancel period expired")
        if p.authorized and p.captured >= p.authorized:
            return bad("Cannot cancel a captured payment")
        if state != "CREATED" and p.authorized == 0:
            return bad("Cannot cancel a non-reserved payment")
        return bad("Payment cannot be cancelled")
    if state in ("CREATED", "EXPIRED", "ABORTED", "TERMINATED") and p.authorized == 0:
        return bad("Attempted refund before reservation")
    if Code.REFUND_WINDOW_EXPIRED in codes:
        return bad("Refund period expired")
    if Code.REFUND_EXCEEDS_CAPTURED in codes:
        return bad("Payment already refunded" if p.captured and p.refunded >= p.captured else "Not enough refundable")
    if Code.AMOUNT_INVALID in codes:
        return bad("Amount too small")
    return bad("Payment cannot be refunded")


def _create_refusal(decision: Decision) -> VippsProblem:
    codes = set(decision.codes)
    why = _why(decision)
    if Code.AMOUNT_INVALID in codes:
        return VippsProblem(400, "Amount too small", why, extra=(("amount.value", why),))
    if Code.REFERENCE_INVALID in codes:
        return inbound.bad_request("reference", why)
    if Code.CURRENCY_UNSUPPORTED in codes:
        return inbound.bad_request("amount.currency", why)
    return VippsProblem(400, "Payment cannot be created", why)


def _why(decision: Decision) -> str:
    return "; ".join(f"{v.code.value}: {v.message}" for v in decision.violations) or "refused"


# ---------------------------------------------------------------------------------------------- helpers


def _token_id(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _redirect(made: inbound.CreatePayment, token: str) -> str | None:
    # CreatePaymentResponse.redirectUrl: the landing page for the redirect flows, a QR link for QR, and
    # "Nothing will be returned when userFlow is PUSH_MESSAGE" (the document's own examples).
    if made.user_flow == "PUSH_MESSAGE":
        return None
    if made.user_flow == "QR":
        return f"https://qr-image.vipps.no/v1?token={token}"
    return f"https://landing.vipps.no?token={token}"


def _store(op: str, fp: str, answer: Answer) -> dict[str, Any]:
    return {"op": op, "fingerprint": fp, "status": answer.status, "body": answer.body.decode("utf-8"),
            "content_type": answer.content_type}


def _stored(stored: Mapping[str, Any]) -> Answer:
    return Answer(stored["status"], stored["body"].encode("utf-8"), (), stored["content_type"])


def _entry_of(record: Mapping[str, Any]) -> LogEntry:
    return LogEntry(record["reference"], record["psp"], record["name"], record["currency"], record["value"],
                    parse_instant(record["at"]), record["key"], record["success"])


def _logged(entry: Entry, event: Event) -> tuple[str, int]:
    """The PaymentEventName and amount Vipps logs for a committed canonical event."""
    p = entry.payment
    if event.type is EventType.CANCELLED and not p.authorized:
        return "TERMINATED", entry.extra["amount"]  # State TERMINATED: cancelled before approval
    if event.type is EventType.CANCELLED:
        return "CANCELLED", event.amount or 0
    if event.type is EventType.EXPIRED:
        # The lapse cancels the remainder automatically (knowledge-base/payment-rules): a CANCELLED entry of
        # the amount the expiry released, which `apply` added to `cancelled`.
        released = p.cancelled - sum(e.amount or 0 for e in entry.events
                                     if e.type is EventType.CANCELLED)
        return "CANCELLED", max(released, 0)
    return event.type.value.upper(), event.amount or 0


def _psp_of(reference: str) -> str:
    """A stable pspReference for a seeded payment (Vipps's own id: digits)."""
    return str(int(hashlib.sha256(reference.encode()).hexdigest()[:10], 16))


def _adopt(ctx: Context, entry: Entry) -> None:
    """Vipps's side of a payment seeded through the control API (authorized, never created over the wire)."""
    p = entry.payment
    entry.extra.update({
        "state": "AUTHORIZED" if p.authorized else "CREATED", "psp": _psp_of(entry.reference),
        "amount": p.authorized, "currency": p.currency or "NOK", "method": "WALLET", "flow": "WEB_REDIRECT",
        "token": secrets.token_urlsafe(16), "redirect": None, "metadata": None, "scope": None,
        "created_expires": None, "log": [], "keys": {}})
    for event in entry.events:
        name, value = _logged(entry, event)
        entry.extra["log"].append({"name": name, "value": value, "key": event.key, "success": True,
                                   "at": format_instant(event.at), "reference": entry.reference,
                                   "psp": entry.extra["psp"], "currency": entry.extra["currency"]})


def _sender(url: str, secret: str, body: bytes) -> Callable[[], Awaitable[None]]:
    """A job that POSTs one signed webhook (run after the answer is sent). Vipps retries failed deliveries
    for 7 days; the emulator tries once and logs a failure (the framework's deferred-job log line).

    `x-ms-date` is the wall-clock time of sending, as a receiver checks it against its own clock within a few
    minutes; the WebhookEvent's `timestamp` is the event's time on the virtual clock."""

    async def send() -> None:
        import httpx

        now = datetime.now(UTC)
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        host = parts.netloc.rpartition("@")[2]
        headers = signed_headers(secret, method="POST", path_and_query=target, host=host, body=body, now=now)
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT) as client:
            response = await client.post(url, content=body, headers=[*headers, ("Content-Type", JSON)])
        if response.status_code >= 300:
            raise RuntimeError(f"webhook to {parts.hostname} answered HTTP {response.status_code}")

    return send


EMULATOR = VippsEmulator()
__all__: Sequence[str] = ("EMULATOR", "VippsEmulator", "fingerprint", "refusal")
