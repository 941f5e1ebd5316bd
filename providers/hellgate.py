"""Hellgate Commerce payments: request builders and response parsers. Pure.

Sources (research/providers.md §3; generation (a), https://developer.hellgate.io/payments/management/capture,
with (c) https://developer.hellgate.io/products/commerce/v2/api-reference/payments_modifications/capture.md
where (a) is silent):

- `POST {base}/payments/{payment_id}/capture` with `X-API-Key`; `payment_id` is a UUIDv4.
- Full capture: `{"reference": "..."}` - "It actually only requires a reference in case a full capture is
  intended." Partial: `{"amount", "currency_code", "reference"}` - "In case a partial capture is requested,
  the corresponding amount and currency_code has to be given."
- `reference` is at most 80 characters ("Maximum string length: 80", v2 schema), and Hellgate rejects empty
  strings ("use an explicit null value instead").
- Amounts are integer minor units ("use 700 for 7€"); zero-decimal currencies in full units ("100 for
  100 JPY"), which is what the ISO 4217 exponent 0 gives.
- Capture is ASYNCHRONOUS: the answer is the payment in `capturing`; "A 2xx on capture does not mean the
  capture succeeded" - the final `captured` or `failed` arrives by notification or GET. So a `capturing`
  answer yields `capture_requested`, never `captured`.
- "Hellgate® does not support multiple captures" (capture page).
- Idempotency: header `X-Idempotency-Key` (https://developer.hellgate.io/products/commerce/v1/getting-started);
  replay semantics are undocumented [UNK].
- Void (generation c): `POST /payments/{id}/void`, no body, answers `voiding`; generation (a) documents no
  cancel [UNK].
- Errors: "standard HTTP status codes ... Invalid Requests - HTTP 4xx; Unprocessable Content - HTTP 422"
  (v1 getting-started); the body format is undocumented [UNK]. Policy: 4xx no retry, 5xx retry after GET.

Any exception other than ProviderError or RequestError from these functions is a bug.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from attrs import field, frozen

from .._errors import ProviderError, RequestError
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

NAME = "hellgate"
PRODUCTION = "https://api.hellgate.io"
SANDBOX = "https://sandbox.hellgate.io"

# The payment id is a UUID (capture page: "payment_id (UUIDv4)"); the canonical textual form only.
PAYMENT_ID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
DESCRIPTION = IdentifierRule(1, 80)  # body `reference`: "Maximum string length: 80"; no empty strings
IDEMPOTENCY_KEY = IdentifierRule(1, 255, r"[!-~]+")  # format undocumented [UNK]; visible ASCII for a header
VERSION = IdentifierRule(1, 40, r"[!-~]+")

IN_FLIGHT = frozenset({"capturing", "voiding", "processing"})
# Statuses in which nothing can have been captured, so an absent `amount.captured` means 0. `failed` too:
# Hellgate captures once ("does not support multiple captures"), and a failed capture captured nothing.
_NOTHING_CAPTURED = frozenset({"open", "processing", "authorized", "capturing", "voiding", "voided", "failed"})



def _version(instance: object, attribute: Any, value: Any) -> None:
    if value is not None:
        header_value(value, what="version", rule=VERSION)


@frozen
class Credentials:
    """The account's API key (never shown), the base URL and an optional pinned `x-hellgate-version`
    ("if absent the latest version is used", api-reference intro)."""

    api_key: Secret = field(converter=to_secret, repr=False)
    base_url: str = field(default=PRODUCTION, converter=base_url)
    version: str | None = field(default=None, validator=_version)


# ------------------------------------------------------------------------------------------ builders


def _url(creds: Credentials, payment: Payment, op: str | None) -> str:
    pid = path_segment(payment.reference, what="reference", pattern=PAYMENT_ID)
    return f"{creds.base_url}/payments/{pid}" + (f"/{op}" if op else "")


def _headers(creds: Credentials, key: str | None, *, body: bool) -> tuple[tuple[str, str], ...]:
    out = [("X-API-Key", header_value(creds.api_key.reveal(), what="api_key", secret=True))]
    if body:
        out.append(("Content-Type", "application/json"))
    if key is not None:
        out.append(("X-Idempotency-Key", header_value(key, what="key", rule=IDEMPOTENCY_KEY)))
    if creds.version is not None:
        out.append(("x-hellgate-version", creds.version))
    return tuple(out)


def _description(value: str | None, payment: Payment) -> str:
    text = payment.reference if value is None else value
    problem = DESCRIPTION.problem(text)
    if problem:
        raise RequestError(problem, field="description")
    return text


def build_capture(payment: Payment, command: Capture, creds: Credentials, *, description: str | None = None
                  ) -> HttpRequest:
    """`POST {base}/payments/{id}/capture`: `{"reference"}` when the amount is everything capturable, else
    `{"amount", "currency_code", "reference"}`. `description` is the body's `reference` (a free text of at
    most 80 characters; default: the payment id)."""
    url = _url(creds, payment, "capture")  # the payment id first: an error names what is really wrong
    money = command_money(payment, command)
    text = _description(description, payment)
    full = money.minor == payment.capturable and payment.captured == 0
    obj: dict[str, Any] = {"reference": text} if full else {
        "amount": money.minor, "currency_code": money.currency, "reference": text}
    return HttpRequest("POST", url, _headers(creds, command.key, body=True), json_body(obj))


def build_refund(payment: Payment, command: Refund, creds: Credentials, *, description: str | None = None
                 ) -> HttpRequest:
    """`POST {base}/payments/{id}/refund` with `{"amount", "currency_code", "reference"}` (refund page)."""
    url = _url(creds, payment, "refund")
    money = command_money(payment, command)
    obj = {"amount": money.minor, "currency_code": money.currency,
           "reference": _description(description, payment)}
    return HttpRequest("POST", url, _headers(creds, command.key, body=True), json_body(obj))


def build_cancel(payment: Payment, command: Cancel, creds: Credentials) -> HttpRequest:
    """`POST {base}/payments/{id}/void`, no body (generation c; "authorized but uncaptured" only)."""
    return HttpRequest("POST", _url(creds, payment, "void"), _headers(creds, command.key, body=False))


def build_get(payment: Payment, creds: Credentials) -> HttpRequest:
    """`GET {base}/payments/{id}`: the status to poll until a `capturing` payment is captured or failed."""
    return HttpRequest("GET", _url(creds, payment, None), _headers(creds, None, body=False))


# ------------------------------------------------------------------------------------------- parsers


def parse_error(response: HttpResponse) -> ProviderError:
    """A non-2xx answer. The body format is undocumented [UNK]; the first of `code`, `classifier`, `type`,
    `error` found becomes the error id, `message`/`title`/`detail` the text."""
    status = response.status
    body = error_body(response, provider=NAME)
    error_id = next((str(body[k]) for k in ("code", "classifier", "type", "error")
                     if isinstance(body.get(k), str | int) and not isinstance(body.get(k), bool)), None)
    text = next((body[k] for k in ("message", "title", "detail") if isinstance(body.get(k), str)), None)
    server = status >= 500
    if 200 <= status < 300:
        return ProviderError(f"HTTP {status} with an unexpected body", provider=NAME, status=status,
                             reconcile=True)
    return ProviderError(text or f"HTTP {status}", provider=NAME, status=status, error_id=error_id, title=text,
                         retryable=server or status == 429, reconcile=server)


def _payment(response: HttpResponse, payment: Payment) -> Mapping[str, Any]:
    if not 200 <= response.status < 300:
        raise parse_error(response)
    body = decode_json(response, provider=NAME)
    if not isinstance(body, dict):
        raise malformed(NAME, response, "the body is not a JSON object")
    if body.get("id") is not None and str(body.get("id")).lower() != payment.reference.lower():
        raise malformed(NAME, response, f"id {body.get('id')!r} is not {payment.reference!r}")
    if not isinstance(body.get("status"), str):
        raise malformed(NAME, response, "status is missing")
    code = body.get("currency_code")
    if code is not None and payment.currency is not None and code != payment.currency:
        raise malformed(NAME, response, f"currency_code {code!r} is not {payment.currency}")
    return body


def _amounts(body: Mapping[str, Any], response: HttpResponse) -> dict[str, int | None]:
    amount = body.get("amount")
    out: dict[str, int | None] = {}
    for name in ("requested", "authorized", "captured", "refunded"):
        value = amount.get(name) if isinstance(amount, dict) else None
        if value is not None and not is_minor_units(value):
            raise malformed(NAME, response, f"amount.{name} is {value!r}, not an integer of minor units")
        out[name] = value
    return out


def _failure(body: Mapping[str, Any]) -> str:
    """The failure reasons of a failed payment as one line: `classifier: message; ...`."""
    reasons = body.get("failure_reasons") or body.get("failure_details") or []
    parts = []
    for r in reasons if isinstance(reasons, list) else []:
        if isinstance(r, dict):
            parts.append(": ".join(str(r[k]) for k in ("classifier", "message") if r.get(k)))
    return "; ".join(p for p in parts if p) or "failed"


def _outcome(body: Mapping[str, Any], response: HttpResponse, payment: Payment, command: Capture,
             amount: int) -> tuple[Event, ...]:
    status = body["status"]
    requested = fact(payment, command, EventType.CAPTURE_REQUESTED, NAME, amount)
    if status == "capturing":
        return (requested,)
    if status == "captured":
        captured = _amounts(body, response)["captured"]
        if captured is not None and captured - payment.captured != amount:
            raise malformed(NAME, response, f"amount.captured is {captured}, expected {payment.captured + amount}")
        return (fact(payment, command, EventType.CAPTURED, NAME, amount),)
    if status == "failed":
        return (requested, fact(payment, command, EventType.CAPTURE_FAILED, NAME, None, reason=_failure(body)))
    raise malformed(NAME, response, f"status {status!r} after a capture")


def parse_capture(response: HttpResponse, payment: Payment, command: Capture) -> tuple[Event, ...]:
    """The events a capture answer proves: `capturing` -> (capture_requested,) - NOT a capture;
    `captured` -> (captured,); `failed` -> (capture_requested, capture_failed)."""
    money = command_money(payment, command)
    return _outcome(_payment(response, payment), response, payment, command, money.minor)


def parse_refresh(response: HttpResponse, payment: Payment, *, at: datetime) -> tuple[Event, ...]:
    """The events a GET proves for a payment whose capture is in flight (state `capturing`): () while still
    capturing, (captured,) or (capture_failed,) once decided. `at` times the events (no clock here)."""
    body = _payment(response, payment)
    if payment.state != "capturing":
        return ()
    status = body["status"]
    amount = payment.pending
    command = Capture(at=at, amount=amount, currency=payment.currency)
    if status == "capturing":
        return ()
    if status == "captured":
        captured = _amounts(body, response)["captured"]
        got = amount if captured is None else captured - payment.captured
        if got != amount:
            raise malformed(NAME, response, f"amount.captured is {captured}, expected {payment.captured + amount}")
        return (fact(payment, command, EventType.CAPTURED, NAME, amount),)
    if status == "failed":
        return (fact(payment, command, EventType.CAPTURE_FAILED, NAME, None, reason=_failure(body)),)
    raise malformed(NAME, response, f"status {status!r} while a capture is in flight")


def parse_refund(response: HttpResponse, payment: Payment, command: Refund) -> tuple[Event, ...]:
    """Refunds are asynchronous (`processing` -> `completed` | `failed`, refund page): `completed` ->
    (refunded,); `processing`/`pending` -> () (accepted: the executor polls GET until amount.refunded shows
    it, else raises client.Unsettled); `failed` -> ProviderError."""
    money = command_money(payment, command)
    if not 200 <= response.status < 300:
        raise parse_error(response)
    # The answer is the refund object (its own id, not the payment's), so _payment() does not apply.
    body = decode_json(response, provider=NAME)
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise malformed(NAME, response, "no refund status")
    status = body["status"]
    if status == "completed":
        return (fact(payment, command, EventType.REFUNDED, NAME, money.minor),)
    if status in {"processing", "pending"}:
        return ()
    if status == "failed":
        raise ProviderError(_failure(body), provider=NAME, status=response.status, error_id="refund_failed")
    raise malformed(NAME, response, f"refund status {status!r}")


def parse_cancel(response: HttpResponse, payment: Payment, command: Cancel) -> tuple[Event, ...]:
    """Void answers `voiding` ("Cancel accepted") -> () until a GET shows `voided`; `voided` -> (cancelled,)."""
    body = _payment(response, payment)
    status = body["status"]
    if status == "voided":
        return (fact(payment, command, EventType.CANCELLED, NAME, payment.remainder),)
    if status == "voiding":
        return ()
    raise malformed(NAME, response, f"status {status!r} after a void")


def parse_get(response: HttpResponse, payment: Payment) -> RemoteStatus:
    """The payment as Hellgate reports it: status, currency and `amount.{authorized,captured,refunded}`."""
    body = _payment(response, payment)
    amounts = _amounts(body, response)
    code = body.get("currency_code")
    currency = code if isinstance(code, str) else payment.currency
    status = body["status"]
    captured = amounts["captured"]
    if captured is None and status in _NOTHING_CAPTURED:
        captured = 0
    cancelled = amounts["authorized"] if status == "voided" else None
    return RemoteStatus(NAME, payment.reference, status, currency, amounts["authorized"], captured, cancelled,
                        amounts["refunded"], in_flight=status in IN_FLIGHT)


# ------------------------------------------------------------------ the provider's side (the emulator)
# The other direction of the same wire format: reading the requests the builders above send, and writing
# the answers the parsers above read. Used by capstate.providers.emulator.hellgate; pure like the rest.

# Canonical state -> Hellgate status (generation (a) and the v2 void page). Hellgate documents no
# expiry status [UNK]: a lapsed authorization is reported `failed`, with a failure reason saying so.
STATUS_NAMES: Mapping[str, str] = {"open": "open", "authorized": "authorized", "capturing": "capturing",
                                   "captured": "captured", "failed": "failed", "cancelled": "voided",
                                   "expired": "failed"}


def _read_reference(obj: Mapping[str, Any], *, required: bool) -> str | None:
    text = obj.get("reference")
    if text is None:
        if required:
            raise RequestError("reference is required", field="reference")
        return None
    if not isinstance(text, str):
        raise RequestError("reference must be a string", field="reference")
    problem = DESCRIPTION.problem(text)  # "rejects empty strings": an empty one is a problem too
    if problem:
        raise RequestError(problem, field="reference")
    return text


def _read_money(obj: Mapping[str, Any], *, required: bool) -> tuple[int | None, str | None]:
    amount, code = obj.get("amount"), obj.get("currency_code")
    if amount is None and code is None and not required:
        return None, None
    if amount is None or code is None:
        # "In case a partial capture is requested, the corresponding amount and currency_code has to be given."
        raise RequestError("amount and currency_code must be given together", field="amount")
    if not is_minor_units(amount):
        raise RequestError(f"amount must be an integer of minor units, got {orjson.dumps(amount).decode()[:40]}",
                           field="amount")
    if not isinstance(code, str) or not re.fullmatch(r"[A-Z]{3}", code):
        raise RequestError("currency_code must be an ISO 4217 alpha-3 code", field="currency_code")
    return amount, code


def read_capture(body: bytes) -> tuple[int | None, str | None, str | None]:
    """(amount, currency_code, reference) of a capture body: `{"reference"}` for a full capture (amount
    None), `{"amount", "currency_code", "reference"}` for a partial one. Raises RequestError."""
    obj = request_object(body)
    amount, code = _read_money(obj, required=False)
    return amount, code, _read_reference(obj, required=amount is None)


def read_refund(body: bytes) -> tuple[int, str, str | None]:
    """(amount, currency_code, reference) of a refund body (refund page). Raises RequestError."""
    obj = request_object(body)
    amount, code = _read_money(obj, required=True)
    assert amount is not None and code is not None
    return amount, code, _read_reference(obj, required=False)


def error(code: str, message: str) -> dict[str, Any]:
    """An error body. Hellgate's format is undocumented [UNK]; `{code, message}` is what parse_error reads
    first."""
    return {"code": code, "message": message}


def payment_body(payment_id: str, state: str, currency: str | None, *, requested: int, authorized: int,
                 captured: int, refunded: int, created_at: datetime, automatic: bool = False,
                 failure: Sequence[Mapping[str, str]] = ()) -> dict[str, Any]:
    """The payment object (capture page example: id, amount{requested, authorized, captured, refunded},
    created_at, currency_code, status). An automatic-capture flow still capturing reads `processing`."""
    status = STATUS_NAMES.get(state, state)
    if automatic and state == "authorized":
        status = "processing"
    body: dict[str, Any] = {"id": payment_id, "status": status, "currency_code": currency,
                            "amount": {"requested": requested, "authorized": authorized, "captured": captured,
                                       "refunded": refunded},
                            "created_at": _iso(created_at)}
    if failure:
        body["failure_reasons"] = [dict(f) for f in failure]
    return body


def refund_body(refund_id: str, payment_id: str, amount: int, currency: str, *, reference: str | None, status: str,
                created_at: datetime) -> dict[str, Any]:
    """A refund object (v2 get-refunds: id, amount, currency_code, payment_id, reference, status, created_at)."""
    return {"id": refund_id, "payment_id": payment_id, "amount": amount, "currency_code": currency,
            "reference": reference, "status": status, "created_at": _iso(created_at)}


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")
