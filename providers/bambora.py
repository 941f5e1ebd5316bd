"""Bambora Native SDK payments REST API ("api-beta"): request builders and response parsers. Pure.

Sources (research/providers.md §1; bambora/dev.bambora.com@94ce786: source/includes/api/_capture.md,
_cancel.md, _refund.md, _get_payment.md, _errors.md and native-payments/swagger.json, copied to
shared/provider-specs/bambora-payments-api-beta-swagger.json):

- `POST {base}/payments/{payment}/capture/`: the trailing slash is deliberate (commit e507590 "added slash
  at the end of the URL"); cancel `/cancel/`, refund `/refund/`, get `GET /payments/{payment}/`.
- `Authorization: Basic base64("{merchant_token}@{merchant_number}:{merchant_secret}")` and `API-Version: 1`
  (swagger: header API-Version, integer, required on every path).
- Capture body `{"amount": minor}`: the swagger `Capture` schema lists `amount` as required although the
  prose says it may be omitted; the 400 example reads "'amount' is a required property". So ALWAYS send it.
  Refund has `amount` minimum 1 and the same 400 example: always send it too.
- `payment` is the merchant's reference, maxLength 2000, no character set given (swagger path parameter).
- Success: capture 201, cancel 200, refund 201, get 200, each a `PaymentResponse`. The swagger says
  `captures: [Capture]`; the _capture.md example nests `captures: [{"capture": {...}}]`. Both are accepted.
- Errors are `{type, title, detail, status}`; "This is what you should match against" says the swagger of
  `type`. The spec examples use http://, _errors.md https://, so the error id is the trailing slug.
- 409 `payment_operation_blocked`: "The attempted operation could be retried again, or the payment could be
  queried to find out if its properties have changed" (swagger example): retryable, after a GET.
- `GET /payments/{payment}/` alone takes an optional query `merchant`: "Only neccessary if the merchant
  authentication token is for another merchant in the same corporate hierarchy" (swagger). It matters to
  the executor: that GET is the read-back that decides whether a capture is resent, and without it such a
  merchant's read-back fails (every unclear answer would end in "reconcile"). `Credentials.payment_merchant`
  sets it; no other path declares it, so it is sent on the GET only.
- No idempotency mechanism exists in either API generation (research §1.7): after a timeout or 5xx, GET
  before any retry, and judge by `captures`/`state`.

Any exception other than ProviderError or RequestError from these functions is a bug.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import orjson
from attrs import field, frozen

from .._errors import ProviderError, RequestError
from .._money import INT64_MAX
from .._policy import IdentifierRule
from .._values import Cancel, Capture, Event, EventType, Payment, Refund
from ._build import command_money, fact
from ._http import (
    HttpRequest,
    HttpResponse,
    RemoteStatus,
    Secret,
    base_url,
    decode_json,
    error_body,
    header_value,
    is_minor_units,
    json_body,
    malformed,
    path_segment,
    request_object,
    to_secret,
)

NAME = "bambora"
PRODUCTION = "https://api-beta.bambora.com"
API_VERSION = "1"

REFERENCE = IdentifierRule(1, 2000)  # swagger: path parameter `payment`, maxLength 2000
COMMENT_MAX = 256  # swagger: Capture.comment / Refund.comment maxLength 256
# The Basic user part is "token@merchant": a ':' would end the user part early, an '@' would make the
# split between token and merchant ambiguous. Neither appears in real tokens or merchant numbers [INF].
_USER_PART = IdentifierRule(1, 255, r"[!-9;-?A-~]+")  # visible ASCII except ':' and '@'
MERCHANT = IdentifierRule(1, 255, r"[!-~]+")  # query `merchant`: "Merchant identifier" (string, no format given)

# 409 "The payment was being modified by another request. The attempted operation could be retried again,
# or the payment could be queried" (swagger example): the one slug worth retrying, after a GET.
RETRYABLE = frozenset({"payment_operation_blocked"})
# PaymentResponse.state values that hold a capture (swagger enum); a capture answer shows "Captured".
_STATES_CAPTURED = frozenset({"Captured", "Refunded", "Settled"})


def _user_part(instance: object, attribute: Any, value: Any) -> None:
    header_value(value, what=attribute.name, rule=_USER_PART)


def _merchant(instance: object, attribute: Any, value: Any) -> None:
    if value is not None:
        header_value(value, what=attribute.name, rule=MERCHANT)


@frozen
class Credentials:
    """Merchant credentials. `access_token` and `secret_token` never show in repr or str. `payment_merchant`:
    the merchant that owns the payments when the token is another merchant's in the same corporate hierarchy
    (sent as GET's `merchant` query); None for the usual case of a merchant's own token."""

    access_token: Secret = field(converter=to_secret, repr=False)
    merchant_number: str = field(validator=_user_part)
    secret_token: Secret = field(converter=to_secret, repr=False)
    base_url: str = field(default=PRODUCTION, converter=base_url)
    payment_merchant: str | None = field(default=None, validator=_merchant)

    def authorization(self) -> str:
        """`Basic base64(token@merchant:secret)`, on one line: b64encode never wraps (encodebytes would add
        a newline every 76 characters, which would split the header)."""
        token = self.access_token.reveal()
        if _USER_PART.problem(token):
            raise RequestError("must be visible ASCII without ':' or '@'", field="access_token")
        secret = self.secret_token.reveal()
        header_value(secret, what="secret_token", secret=True)
        raw = f"{token}@{self.merchant_number}:{secret}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


# ------------------------------------------------------------------------------------------ builders


def _url(creds: Credentials, payment: Payment, op: str | None) -> str:
    ref = path_segment(payment.reference, what="reference", rule=REFERENCE)
    return f"{creds.base_url}/payments/{ref}/" + (f"{op}/" if op else "")


def _headers(creds: Credentials, *, body: bool) -> tuple[tuple[str, str], ...]:
    out = [("Authorization", creds.authorization()), ("API-Version", API_VERSION)]
    if body:
        out.append(("Content-Type", "application/json"))
    return tuple(out)


def _body(amount: int, comment: str | None) -> bytes:
    obj: dict[str, Any] = {"amount": amount}
    if comment is not None:
        if not isinstance(comment, str) or not comment or len(comment) > COMMENT_MAX:
            raise RequestError(f"must be a non-empty string of at most {COMMENT_MAX} characters", field="comment")
        obj["comment"] = comment
    return json_body(obj)


def build_capture(payment: Payment, command: Capture, creds: Credentials, *, comment: str | None = None
                  ) -> HttpRequest:
    """`POST {base}/payments/{reference}/capture/` with `{"amount": minor}` (always with the amount)."""
    money = command_money(payment, command)
    return HttpRequest("POST", _url(creds, payment, "capture"), _headers(creds, body=True),
                       _body(money.minor, comment))


def build_refund(payment: Payment, command: Refund, creds: Credentials, *, comment: str | None = None
                 ) -> HttpRequest:
    """`POST {base}/payments/{reference}/refund/` with `{"amount": minor}` (swagger Refund, minimum 1)."""
    money = command_money(payment, command)
    return HttpRequest("POST", _url(creds, payment, "refund"), _headers(creds, body=True),
                       _body(money.minor, comment))


def build_cancel(payment: Payment, command: Cancel, creds: Credentials) -> HttpRequest:
    """`POST {base}/payments/{reference}/cancel/`, no body: cancels the whole payment, which "can only be
    used on payments that have the Authorized status" (_cancel.md)."""
    return HttpRequest("POST", _url(creds, payment, "cancel"), _headers(creds, body=False))


def build_get(payment: Payment, creds: Credentials) -> HttpRequest:
    """`GET {base}/payments/{reference}/`: state, captures, `operations` and `operationInProgress`."""
    query = "" if creds.payment_merchant is None else "?merchant=" + quote(creds.payment_merchant, safe="")
    return HttpRequest("GET", _url(creds, payment, None) + query, _headers(creds, body=False))


# ------------------------------------------------------------------------------------------- parsers


def slug(problem_type: str) -> str:
    """The trailing slug of a problem `type` (http:// in the swagger, https:// in _errors.md)."""
    if problem_type == "about:blank":
        return problem_type
    return re.split(r"[/#]", problem_type.rstrip("/"))[-1]


def parse_error(response: HttpResponse) -> ProviderError:
    """A non-success answer as a ProviderError whose `error_id` is Bambora's `type` slug."""
    status = response.status
    problem = error_body(response, provider=NAME)
    ptype = problem.get("type")
    error_id = slug(ptype) if isinstance(ptype, str) and ptype else None
    title = problem.get("title") if isinstance(problem.get("title"), str) else None
    detail = problem.get("detail") if isinstance(problem.get("detail"), str) and problem.get("detail") else None
    server = status >= 500
    # 409 payment_operation_blocked: "could be retried again, or the payment could be queried" -> GET, then
    # retry only if nothing happened; 5xx: the outcome is unknown -> GET first too.
    blocked = error_id in RETRYABLE
    message = "; ".join(p.strip() for p in (title, detail) if p) or f"HTTP {status}"
    if 200 <= status < 300:
        return ProviderError(f"HTTP {status} is not the documented success for this operation", provider=NAME,
                             status=status, error_id=error_id, reconcile=True)
    return ProviderError(message, provider=NAME, status=status, error_id=error_id, title=title, detail=detail,
                         retryable=server or blocked, reconcile=server or blocked)


def _payment_response(response: HttpResponse, payment: Payment, expected: int) -> Mapping[str, Any]:
    if response.status != expected:
        raise parse_error(response)
    body = decode_json(response, provider=NAME)
    if not isinstance(body, dict):
        raise malformed(NAME, response, "the body is not a JSON object")
    if body.get("payment") != payment.reference:
        raise malformed(NAME, response, f"payment {body.get('payment')!r} is not {payment.reference!r}")
    if not isinstance(body.get("state"), str):
        raise malformed(NAME, response, "state is missing")
    currency = body.get("currency")
    if currency is not None and payment.currency is not None and currency != payment.currency:
        raise malformed(NAME, response, f"currency {currency!r} is not {payment.currency}")
    return body


def _total(body: Mapping[str, Any], name: str, inner: str, response: HttpResponse) -> int | None:
    """The sum of a `captures` or `refunds` list, in either documented shape:
    `[{"amount": 1000}]` (swagger) or `[{"capture": {"amount": 1000}}]` (_capture.md example)."""
    items = body.get(name)
    if items is None:
        return None
    if not isinstance(items, list):
        raise malformed(NAME, response, f"{name} is not a list")
    total = 0
    for i, item in enumerate(items):
        entry = item.get(inner) if isinstance(item, dict) and isinstance(item.get(inner), dict) else item
        amount = entry.get("amount") if isinstance(entry, dict) else None
        if not is_minor_units(amount):
            raise malformed(NAME, response, f"{name}[{i}].amount is {amount!r}, not an integer of minor units")
        total += amount
    if not is_minor_units(total):
        raise malformed(NAME, response, f"{name} total {total} is beyond int64")
    return total


def _grown(response: HttpResponse, payment: Payment, command: Capture | Refund, *, items: str, item: str,
           before: int, etype: EventType) -> tuple[Event, ...]:
    """The event a 201 proves when its `items` list totals exactly `before` + the command's amount."""
    money = command_money(payment, command)
    body = _payment_response(response, payment, 201)
    if etype is EventType.CAPTURED and body["state"] not in _STATES_CAPTURED:
        raise malformed(NAME, response, f"state {body['state']!r} after a capture")
    total = _total(body, items, item, response)
    if total is None:
        raise malformed(NAME, response, f"no {items} list to prove the amount")
    if total - before != money.minor:
        raise malformed(NAME, response, f"{items} total {total}, expected {before + money.minor}")
    return (fact(payment, command, etype, NAME, money.minor),)


def parse_capture(response: HttpResponse, payment: Payment, command: Capture) -> tuple[Event, ...]:
    """The `captured` event a 201 proves: state Captured and the captures grew by exactly the amount.

    Raises ProviderError: the 402/409/422/... error with its slug, or `reconcile` when a 201 does not show
    the capture (then GET before deciding anything).
    """
    return _grown(response, payment, command, items="captures", item="capture", before=payment.captured,
                  etype=EventType.CAPTURED)


def parse_refund(response: HttpResponse, payment: Payment, command: Refund) -> tuple[Event, ...]:
    """The `refunded` event a 201 proves (the refunds list grew by the amount, _refund.md example)."""
    return _grown(response, payment, command, items="refunds", item="refund", before=payment.refunded,
                  etype=EventType.REFUNDED)


def parse_cancel(response: HttpResponse, payment: Payment, command: Cancel) -> tuple[Event, ...]:
    """The `cancelled` event a 200 with state "Canceled" proves (api-beta cancel answers 200, _cancel.md):
    the whole uncaptured remainder is released."""
    body = _payment_response(response, payment, 200)
    if body["state"] != "Canceled":
        raise malformed(NAME, response, f"state {body['state']!r} after a cancel")
    return (fact(payment, command, EventType.CANCELLED, NAME, payment.remainder),)


_NOTHING_CAPTURED = frozenset({"Authorized", "Canceled"})


def parse_get(response: HttpResponse, payment: Payment) -> RemoteStatus:
    """The payment as Bambora reports it. `captured`/`refunded` are None when the lists are absent;
    `in_flight` is `operationInProgress` (_get_payment.md)."""
    body = _payment_response(response, payment, 200)
    amount = body.get("amount")
    if amount is not None and not is_minor_units(amount):
        raise malformed(NAME, response, f"amount is {amount!r}, not an integer of minor units")
    authorized: int | None = amount
    captured = _total(body, "captures", "capture", response)
    refunded = _total(body, "refunds", "refund", response)
    state = body["state"]
    in_flight = body.get("operationInProgress") is True
    if captured is None and not in_flight and state in _NOTHING_CAPTURED:
        # One capture, from Authorized only (_capture.md), and cancel only from Authorized (_cancel.md): a
        # payment at rest in Authorized or Canceled has captured nothing, even when the list is omitted.
        captured = 0
    cancelled: int | None = None
    if authorized is not None:
        cancelled = authorized - (captured or 0) if state == "Canceled" else 0
    currency = body.get("currency") if isinstance(body.get("currency"), str) else payment.currency
    return RemoteStatus(NAME, payment.reference, state, currency, authorized, captured, cancelled, refunded,
                        in_flight=in_flight)


# ------------------------------------------------------------------ the provider's side (the emulator)
# The other direction of the same wire format: reading the requests the builders above send, and writing
# the answers the parsers above read. Used by capstate.providers.emulator.bambora; pure like the rest.

PROBLEM_BASE = "http://api.bambora.com/definitions/payments/"  # the swagger examples' form of `type`
# Canonical state -> PaymentResponse.state (swagger enum). A refunded payment reads "Refunded" (_refund.md
# example); Bambora captures synchronously, so `capturing` never rests.
STATE_NAMES: Mapping[str, str] = {"open": "None", "authorized": "Authorized", "captured": "Captured",
                                  "cancelled": "Canceled", "expired": "Authorization Expired",
                                  "capturing": "Authorized"}


def read_authorization(value: str | None) -> tuple[str, str, str]:
    """(token, merchant number, secret) from `Basic base64(token@merchant:secret)`. Raises RequestError
    (field `authorization`) when the header is missing or not of that form; never echoes the secret."""
    if value is None:
        raise RequestError("The Authorization header was not set.", field="authorization")
    scheme, _, encoded = value.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise RequestError("the Authorization header is not Basic credentials", field="authorization")
    try:
        raw = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise RequestError("the Basic credentials are not base64 of UTF-8 text", field="authorization") from None
    user, colon, secret = raw.partition(":")
    token, at, merchant = user.rpartition("@")
    if not colon or not at or not token or not merchant:
        raise RequestError("the Basic credentials are not token@merchant:secret", field="authorization")
    return token, merchant, secret


def read_amount_body(body: bytes, *, minimum: int) -> tuple[int, str | None]:
    """`{"amount", "comment"?}` (swagger Capture: amount required, minimum 0; Refund: minimum 1; comment
    at most 256 characters). Raises RequestError with the swagger 400's own wording."""
    obj = request_object(body)
    if "amount" not in obj:
        raise RequestError("'amount' is a required property", field="amount")
    amount = obj["amount"]
    if type(amount) is not int:
        raise RequestError(f"{_json_text(amount)} is not of type 'integer'", field="amount")
    if amount < minimum or amount > INT64_MAX:
        raise RequestError(f"{amount} is out of range: minimum {minimum}, int64", field="amount")
    comment = obj.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > COMMENT_MAX):
        raise RequestError(f"'comment' must be a string of at most {COMMENT_MAX} characters", field="comment")
    return amount, comment


def _json_text(value: object) -> str:
    return orjson.dumps(value).decode()[:40]


def problem(status: int, slug: str | None, title: str, detail: str = "") -> dict[str, Any]:
    """An `Error` body (swagger: type, title, detail, status, all required); `slug` None is about:blank."""
    return {"type": PROBLEM_BASE + slug if slug else "about:blank", "title": title, "detail": detail,
            "status": status}


def payment_response(reference: str, state: str, currency: str | None, amount: int, *, merchant: str,
                     captures: Sequence[int] = (), refunds: Sequence[int] = (), operations: Sequence[str] = (),
                     in_progress: bool = False) -> dict[str, Any]:
    """A `PaymentResponse` for the canonical `state`, with `captures: [Capture]` in the swagger's shape,
    and the `refunds`, `operations` and `operationInProgress` fields _get_payment.md and _refund.md show."""
    body: dict[str, Any] = {"region": "emea_0", "merchant": merchant, "payment": reference,
                            "state": STATE_NAMES.get(state, "None"), "amount": amount,
                            "captures": [{"amount": a} for a in captures], "operations": list(operations),
                            "operationInProgress": in_progress}
    if refunds:
        body["refunds"] = [{"amount": a} for a in refunds]
        if state == "captured":
            body["state"] = "Refunded"
    if currency is not None:
        body["currency"] = currency
    return body
