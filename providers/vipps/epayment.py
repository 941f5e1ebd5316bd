"""Vipps MobilePay ePayment API v1: request builders and response parsers. Pure: no sockets, no clock.

Sources (research/providers.md §2; spec: vippsas/vipps-epayment-api@e7a5c6e:docs/epayment.v1.yml, copied to
shared/provider-specs/vipps-epayment-openapi.yaml):

- Capture, cancel, refund: `POST {base}/epayment/v1/payments/{reference}/{capture|cancel|refund}` with
  `Authorization: Bearer`, `Ocp-Apim-Subscription-Key`, `Merchant-Serial-Number` and `Idempotency-Key`
  (all required, epayment.v1.yml#/components/parameters).
- `reference` matches `^[a-zA-Z0-9-]{8,50}$` (epayment.v1.yml#/components/schemas/Reference);
  `Merchant-Serial-Number` matches `^[0-9]{4,6}$` (#/components/schemas/MSN); `Idempotency-Key` is at most 50
  characters (#/components/parameters/Idempotency-Key).
- Amounts are `{"currency", "value"}` in minor units, `value` at most 65,000,000 (#/components/schemas/Amount).
- Cancel always sends `{"cancelTransactionOnly": false}`: v1.4.1 declares no body, newer servers accept this
  one, and the Vipps WooCommerce plugin sends it "or we get type errors" (research §2.9 item 5;
  https://developer.vippsmobilepay.com/docs/APIs/epayment-api/operations/cancel).
- "The capture is only successful when the response is HTTP 200 OK" (knowledge-base/reserve-and-capture.md).
  Success bodies are declared as `application/problem+json` (research §2.9 item 1), so a parser decodes the
  body whatever its media type says and decides on the status code.
- Errors are RFC 7807 problems; "The unique identifier of an error is the `type`" and titles may change
  (https://developer.vippsmobilepay.com/docs/knowledge-base/errors). The FAQ publishes titles only, so
  `error_id` is the `type`, with the `title` kept beside it.
- 409 "Order processing", 423 and 429: "the solution is to retry, using the Idempotency-Key header"
  (knowledge-base/errors); 5xx: retry with the same key, then reconcile (research §2.6).

Any exception other than ProviderError or RequestError from these functions is a bug.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from attrs import field, frozen

from ..._errors import ProviderError, RequestError
from ..._policy import IdentifierRule
from ..._values import Cancel, Capture, Event, EventType, Payment, Refund
from .._build import command_money, fact, is_replay, require_key
from .._http import (
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
    to_secret,
)

NAME = "vipps"
PRODUCTION = "https://api.vipps.no"
TEST = "https://apitest.vipps.no"

# The API's own formats (epayment.v1.yml); enforced whatever a user's spec override says.
REFERENCE = IdentifierRule(8, 50, r"[a-zA-Z0-9-]{8,50}")
MSN = IdentifierRule(4, 6, r"[0-9]{4,6}")
IDEMPOTENCY_KEY = IdentifierRule(1, 50, r"[!-~]+")
SYSTEM_HEADER = IdentifierRule(1, 30, r"[ -~]+")
MAX_AMOUNT = 65_000_000

# Problems worth sending again with the same Idempotency-Key (knowledge-base/errors; FAQ "Order processing":
# "Too many concurrent requests. The payment is being processed.").
RETRY_STATUSES = frozenset({423, 429})
RETRY_TITLES = frozenset({"order processing"})


def _msn(instance: object, attribute: Any, value: Any) -> None:
    header_value(value, what="merchant_serial_number", rule=MSN)


def _system(instance: object, attribute: Any, value: Any) -> None:
    if value is not None:
        header_value(value, what=attribute.name, rule=SYSTEM_HEADER)



@frozen
class Credentials:
    """What every ePayment call needs. The token and the subscription key never show in repr or str.

    `access_token` comes from `POST /accesstoken/get` (valid 1 h in test, 24 h in production). The
    optional system headers (`Vipps-System-Name`, ...) are at most 30 characters each.
    """

    access_token: Secret = field(converter=to_secret, repr=False)
    subscription_key: Secret = field(converter=to_secret, repr=False)
    merchant_serial_number: str = field(validator=_msn)
    base_url: str = field(default=PRODUCTION, converter=base_url)
    system_name: str | None = field(default=None, validator=_system)
    system_version: str | None = field(default=None, validator=_system)
    plugin_name: str | None = field(default=None, validator=_system)
    plugin_version: str | None = field(default=None, validator=_system)


# ------------------------------------------------------------------------------------------ builders


def _reference(payment: Payment) -> str:
    # The spec's reference rule, the one decide applies (in_path: the path rule too), and the API's own
    # format whatever a user's override of that rule says.
    return path_segment(payment.reference, what="reference", rule=payment.spec.policy.reference,
                        pattern=REFERENCE.pattern)


def _headers(creds: Credentials, key: str | None, *, body: bool) -> tuple[tuple[str, str], ...]:
    out = [
        ("Authorization", "Bearer " + header_value(creds.access_token.reveal(), what="access_token", secret=True)),
        ("Ocp-Apim-Subscription-Key", header_value(creds.subscription_key.reveal(), what="subscription_key",
                                                   secret=True)),
        ("Merchant-Serial-Number", creds.merchant_serial_number),
    ]
    if key is not None:
        out.append(("Idempotency-Key", header_value(key, what="key", rule=IDEMPOTENCY_KEY)))
    if body:
        out.append(("Content-Type", "application/json"))
    for name, value in (("Vipps-System-Name", creds.system_name), ("Vipps-System-Version", creds.system_version),
                        ("Vipps-System-Plugin-Name", creds.plugin_name),
                        ("Vipps-System-Plugin-Version", creds.plugin_version)):
        if value is not None:
            out.append((name, value))
    return tuple(out)


def _url(creds: Credentials, payment: Payment, op: str | None) -> str:
    tail = f"/{op}" if op else ""
    return f"{creds.base_url}/epayment/v1/payments/{_reference(payment)}{tail}"


def _modification(payment: Payment, command: Capture | Refund, creds: Credentials, op: str) -> HttpRequest:
    money = command_money(payment, command, maximum=MAX_AMOUNT)
    key = require_key(command, NAME)
    body = json_body({"modificationAmount": {"currency": money.currency, "value": money.minor}})
    return HttpRequest("POST", _url(creds, payment, op), _headers(creds, key, body=True), body)


def build_capture(payment: Payment, command: Capture, creds: Credentials) -> HttpRequest:
    """`POST .../payments/{reference}/capture` with `{"modificationAmount": {currency, value}}`.

    `command` is `decide(...).command` (amount and currency resolved). Raises RequestError.
    """
    return _modification(payment, command, creds, "capture")


def build_refund(payment: Payment, command: Refund, creds: Credentials) -> HttpRequest:
    """`POST .../payments/{reference}/refund` with `{"modificationAmount": {currency, value}}`."""
    return _modification(payment, command, creds, "refund")


def build_cancel(payment: Payment, command: Cancel, creds: Credentials) -> HttpRequest:
    """`POST .../payments/{reference}/cancel` with `{"cancelTransactionOnly": false}`: release the whole
    uncaptured remainder ("Cancelling a payment will always cancel the entire remaining not-captured
    amount, this is irreversible", operations/cancel.md)."""
    key = require_key(command, NAME)
    body = json_body({"cancelTransactionOnly": False})
    return HttpRequest("POST", _url(creds, payment, "cancel"), _headers(creds, key, body=True), body)


def build_get(payment: Payment, creds: Credentials) -> HttpRequest:
    """`GET .../payments/{reference}`: the current view Vipps recommends polling (operations/get_info.md)."""
    return HttpRequest("GET", _url(creds, payment, None), _headers(creds, None, body=False))


# ------------------------------------------------------------------------------------------- parsers


def parse_error(response: HttpResponse) -> ProviderError:
    """The problem in a non-200 answer, as a ProviderError keeping Vipps's own `type` and `title`."""
    status = response.status
    problem = error_body(response, provider=NAME)
    ptype = _text(problem.get("type"))
    title = _text(problem.get("title"))
    detail = _text(problem.get("detail"))
    trace = _text(problem.get("traceId")) or _text(problem.get("instance"))
    error_id = ptype if ptype and ptype != "about:blank" else title
    transient = status >= 500 or status in RETRY_STATUSES or (
        status == 409 and (title or "").strip().lower() in RETRY_TITLES)
    if 200 <= status < 300:
        # "The capture is only successful when the response is HTTP 200 OK": any other 2xx is unexplained.
        message = f"HTTP {status} is not the documented 200 success"
        return ProviderError(message, provider=NAME, status=status, error_id=error_id, title=title, detail=detail,
                             reconcile=True)
    message = "; ".join(p for p in (title, detail, f"traceId {trace}" if trace else None) if p) or "no problem body"
    return ProviderError(message, provider=NAME, status=status, error_id=error_id, title=title, detail=detail,
                         retryable=transient, reconcile=status >= 500)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _success(response: HttpResponse, payment: Payment) -> Mapping[str, Any]:
    if response.status != 200:
        raise parse_error(response)
    # Declared as application/problem+json in v1.4.1 (research §2.9 item 1): decode whatever the media type.
    body = decode_json(response, provider=NAME)
    if not isinstance(body, dict):
        raise malformed(NAME, response, "the body is not a JSON object")
    ref = body.get("reference")
    if ref is not None and ref != payment.reference:
        raise malformed(NAME, response, f"reference {ref!r} is not {payment.reference!r}")
    return body


def _amount(obj: object, what: str, response: HttpResponse, currency: str | None) -> int:
    if not isinstance(obj, dict):
        raise malformed(NAME, response, f"{what} is missing")
    value = obj.get("value")
    if not is_minor_units(value):
        raise malformed(NAME, response, f"{what}.value is {value!r}, not a non-negative int64")
    if currency is not None and obj.get("currency") != currency:
        raise malformed(NAME, response, f"{what}.currency is {obj.get('currency')!r}, not {currency}")
    return value


def _aggregate(body: Mapping[str, Any], response: HttpResponse, currency: str | None) -> dict[str, int]:
    agg = body.get("aggregate")
    if not isinstance(agg, dict):
        raise malformed(NAME, response, "aggregate is missing")
    return {name: _amount(agg.get(f"{name}Amount"), f"aggregate.{name}Amount", response, currency)
            for name in ("authorized", "captured", "cancelled", "refunded")}


def _moved(response: HttpResponse, payment: Payment, command: Capture | Refund, *, op: str, field_: str,
           before: int, etype: EventType) -> tuple[Event, ...]:
    body = _success(response, payment)
    money = command_money(payment, command, maximum=MAX_AMOUNT)
    now = _aggregate(body, response, money.currency)[field_]
    delta = now - before
    if delta == money.minor:
        return (fact(payment, command, etype, NAME, money.minor),)
    if delta == 0 and is_replay(payment, command, op, money.minor):
        return ()  # an identical retry of a capture already recorded: Vipps moved no money
    raise malformed(NAME, response, f"aggregate.{field_}Amount went from {before} to {now}, "
                                    f"not by the {op} of {money.minor}; reconcile with GET")


def parse_capture(response: HttpResponse, payment: Payment, command: Capture) -> tuple[Event, ...]:
    """The `captured` event a 200 proves (aggregate.capturedAmount grew by the amount), or () for an identical
    replay already recorded. Raises ProviderError (with `reconcile` when the aggregate disagrees)."""
    return _moved(response, payment, command, op="capture", field_="captured", before=payment.captured,
                  etype=EventType.CAPTURED)


def parse_refund(response: HttpResponse, payment: Payment, command: Refund) -> tuple[Event, ...]:
    """The `refunded` event a 200 proves (aggregate.refundedAmount grew by the amount)."""
    return _moved(response, payment, command, op="refund", field_="refunded", before=payment.refunded,
                  etype=EventType.REFUNDED)


def parse_cancel(response: HttpResponse, payment: Payment, command: Cancel) -> tuple[Event, ...]:
    """The `cancelled` event a 200 proves.

    Before authorization the payment becomes TERMINATED (no amount moves). After it, the state stays
    AUTHORIZED ("request will not change the state") and aggregate.cancelledAmount grows by the whole
    remainder (operations/cancel.md). The state tells these two outcomes apart, so any other state is an
    answer nothing documents: ProviderError with `reconcile` (read the payment back).
    """
    body = _success(response, payment)
    state = body.get("state")
    if payment.authorized == 0:
        if state == "TERMINATED":
            return (fact(payment, command, EventType.CANCELLED, NAME, None),)
        raise malformed(NAME, response, f"state {state!r} after cancelling a payment not authorized here")
    if state != "AUTHORIZED":
        raise malformed(NAME, response, f"state {state!r} after cancelling an authorized payment")
    agg = _aggregate(body, response, payment.currency)
    delta = agg["cancelled"] - payment.cancelled
    if delta > 0 and delta == payment.remainder:
        return (fact(payment, command, EventType.CANCELLED, NAME, delta),)
    if delta == 0 and is_replay(payment, command, "cancel", None):
        return ()
    raise malformed(NAME, response, f"aggregate.cancelledAmount went from {payment.cancelled} to "
                                    f"{agg['cancelled']}, not by the remainder {payment.remainder}; reconcile")


def parse_get(response: HttpResponse, payment: Payment) -> RemoteStatus:
    """The payment as Vipps reports it: its state and aggregate amounts (captured/refunded/cancelled are
    events reflected in the aggregate, not states: research §2.2)."""
    body = _success(response, payment)
    state = body.get("state")
    if not isinstance(state, str):
        raise malformed(NAME, response, "state is missing")
    amount = body.get("amount")
    currency = amount.get("currency") if isinstance(amount, dict) else None
    if not isinstance(currency, str):
        raise malformed(NAME, response, "amount.currency is missing")
    agg = _aggregate(body, response, currency)
    return RemoteStatus(NAME, payment.reference, state, currency, agg["authorized"], agg["captured"],
                        agg["cancelled"], agg["refunded"])


__all__ = [
    "MAX_AMOUNT",
    "NAME",
    "PRODUCTION",
    "TEST",
    "Credentials",
    "RequestError",
    "build_cancel",
    "build_capture",
    "build_get",
    "build_refund",
    "parse_cancel",
    "parse_capture",
    "parse_error",
    "parse_get",
    "parse_refund",
]
