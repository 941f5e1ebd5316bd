"""Pipwave payment API: request builders, response parsers and IPN signature verification. Pure: the
`timestamp` of a request and the `now` of a verification are arguments, never read from a clock.

Sources (research/providers.md §4; chechintang/pipwave-Documentation-2@b59e2e5 = https://docs.pipwave.com:
api_list/capture_payment.md, cancel-payment.md, refund.md, requery.md, instant_payment_notification.md,
appendix/api_status_code.md, sample-codes.md, security/*.md; dpodium/pipwave_Magento2_Plugin@66e8928):

- ONE URL for every action, `https://api.pipwave.com/payment` (staging `https://staging-api.pipwave.com/payment`,
  url.md); the `action` field selects the operation.
- The sample code and the official plugin send `json_encode($data)` with header `x-api-key` (sample-codes.md,
  security/api_key.md), so the body is JSON.
- Capture fields: `action=capture-payment`, `timestamp` (UNIX seconds), `api_key`, `pw_id` or `txn_id`
  ("either this or txn_id must be sent"), `capture_amount` decimal(11,2) in MAJOR units, `signature`.
- Signature: `sha1(concat(key + ":" + value for key in ksort(fields + api_secret)))` - `generate_pw_signature`
  in sample-codes.md does `ksort` then `$key . ':' . $value`. `api_secret` is hashed but NEVER sent.
  Fields for capture: "timestamp, action, api_key, pw_id, txn_id, if provided, capture_amount, if provided,
  api_secret" (capture_payment.md#signature).
- Response `{"status": string(5), "message"}`; status codes from appendix/api_status_code.md. The capture
  page's sample shows "0", which the appendix does not define: treat only "200" as success [INF].
- No idempotency exists; after a timeout or 500, `requery` before any retry (research §4.7).

Any exception other than ProviderError, SignatureError or RequestError from these functions is a bug.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from attrs import field, frozen

from .._errors import CommandError, ProviderError, RequestError, SignatureError
from .._money import CurrencyError, fits_decimal, from_major_string, to_major_string
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
    header_value,
    json_body,
    malformed,
    request_object,
    to_secret,
)

NAME = "pipwave"
PRODUCTION = "https://api.pipwave.com/payment"
STAGING = "https://staging-api.pipwave.com/payment"

PW_ID = IdentifierRule(1, 32)  # "pw_id: string (32)"
TXN_ID = IdentifierRule(1, 255)  # "txn_id: string (255)"
API_KEY = IdentifierRule(1, 32, r"[!-~]+")  # "api_key: string (32)"; it also travels in the x-api-key header
SHORT_TEXT = IdentifierRule(1, 32)  # cancel-payment `reason`, `ref_tag`: string (32)
DECIMAL = (11, 2)  # capture_amount / refund_amount: decimal(11, 2)

# appendix/api_status_code.md (2019 gitbook), with the 2017 docx numbering of refund codes (3001-3006, 3501).
STATUS_CODES: Mapping[str, str] = {
    "200": "OK",
    "400": "Failed to fulfill request, see message",
    "401": "Invalid API signature",
    "403": "Invalid API key",
    "404": "Invalid action",
    "500": "Generic server error, see message",
    "1001": "Currency not offered by Merchant",
    "1002": "Transaction ID (txn_id) duplicate",
    "2001": "Unsupported payment method, see message",
    "2002": "Token has expired",
    "3001": "Notification with warning (see pw_reason data)",
    "4001": "Payment is already fully refunded",
    "4002": "Payment not finalized yet",
    "4003": "Refunded amount is more than current amount",
    "4004": "Refund not supported",
    "4005": "Partial refund not supported",
    "4006": "The transaction already has a reversal in process. You must wait for the process to complete first.",
    "4501": "No disputed chargeback transaction to reversed",
    "9001": "Parameter error, see message",
}
# 500 "Generic server error": the operation may or may not have happened -> requery, then maybe retry.
# 4006 "already has a reversal in process. You must wait": retry later, after a requery.
RETRYABLE = frozenset({"500", "4006"})

# appendix/payment_status_code.md: transaction_status codes.
TRANSACTION_STATUS: Mapping[str, str] = {
    "0": "Pending", "1": "Failed", "2": "Cancelled", "5": "Processing", "10": "Paid", "13": "Disputed",
    "15": "Chargeback", "20": "Full refund", "25": "Partial refund",
}
# requery.md: amounts beside the checkout `amount` that `total_amount` (and so `final_amount`) may include.
_ON_TOP = ("processing_fee_amount", "shipping_amount", "handling_amount", "tax_amount")
IPN_FIELDS = ("timestamp", "api_key", "pw_id", "txn_id", "amount", "currency_code", "transaction_status")



@frozen
class Credentials:
    """The merchant's API key and API secret (neither ever shown) and the one API URL."""

    api_key: Secret = field(converter=to_secret, repr=False)
    api_secret: Secret = field(converter=to_secret, repr=False)
    url: str = field(default=PRODUCTION, converter=base_url)


# ---------------------------------------------------------------------------------------- signatures


def _php_string(value: object) -> str:
    """A value as PHP's string conversion writes it, which is what Pipwave hashes: true -> "1", false and
    null -> "", integral floats without ".0"."""
    if value is None or value is False:
        return ""
    if value is True:
        return "1"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def signature(fields: Mapping[str, object], api_secret: str | Secret) -> str:
    """sha1 over `key:value` pairs sorted by key (byte order), `api_secret` included (sample-codes.md)."""
    params = {k: _php_string(v) for k, v in fields.items() if k != "signature"}
    params["api_secret"] = api_secret.reveal() if isinstance(api_secret, Secret) else api_secret
    text = "".join(f"{k}:{params[k]}" for k in sorted(params, key=lambda k: k.encode()))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def verify_ipn(payload: Mapping[str, Any], creds: Credentials, *, now: datetime | None = None,
               tolerance: timedelta | None = None) -> None:
    """Accept an Instant Payment Notification only if its signature (over timestamp, api_key, pw_id, txn_id,
    amount, currency_code, transaction_status and the secret; instant_payment_notification.md#signature)
    matches and it is for our API key. With `now` and `tolerance`, its timestamp must also be that close
    (the accepted skew is undocumented [UNK], and a retried IPN may carry an old timestamp, so the check is
    opt-in). Missing fields hash as "" as the official plugin does. Raises SignatureError."""
    if not isinstance(payload, Mapping):
        raise SignatureError("an IPN is a JSON object", provider=NAME)
    claimed = payload.get("signature")
    if not isinstance(claimed, str) or not claimed:
        raise SignatureError("the IPN has no signature", provider=NAME)
    if payload.get("timestamp") in (None, ""):
        raise SignatureError("the IPN has no timestamp", provider=NAME)
    fields = {k: payload.get(k) for k in IPN_FIELDS}
    expected = signature(fields, creds.api_secret)
    if not hmac.compare_digest(expected.encode(), claimed.lower().encode("utf-8", "replace")):
        raise SignatureError("the IPN signature does not match", provider=NAME)
    if not hmac.compare_digest(_php_string(payload.get("api_key")).encode("utf-8", "replace"),
                               creds.api_key.reveal().encode()):
        raise SignatureError("the IPN is for another API key", provider=NAME)
    if tolerance is not None:
        if now is None or now.utcoffset() is None:
            raise CommandError("a timestamp check needs a timezone-aware `now`")
        try:
            sent = int(_php_string(payload["timestamp"]))
        except ValueError:
            raise SignatureError("the IPN timestamp is not UNIX seconds", provider=NAME) from None
        skew = abs(now.timestamp() - sent)
        if skew > tolerance.total_seconds():
            raise SignatureError(f"the IPN timestamp is {int(skew)} s from now, beyond {tolerance}", provider=NAME)


# ------------------------------------------------------------------------------------------ builders


def _timestamp(value: object) -> int:
    if type(value) is not int or value <= 0:
        raise RequestError(f"must be positive UNIX seconds (an int), got {value!r}", field="timestamp")
    return value


def _ids(payment: Payment, pw_id: str | None, txn_id: str | None) -> dict[str, str]:
    """`pw_id` and/or `txn_id`; with neither, the payment's reference is the merchant's `txn_id` (the spec's
    reference rule is txn_id's: string(255))."""
    if pw_id is None and txn_id is None:
        txn_id = payment.reference
    out: dict[str, str] = {}
    for name, value, rule in (("pw_id", pw_id, PW_ID), ("txn_id", txn_id, TXN_ID)):
        if value is not None:
            problem = rule.problem(value)
            if problem:
                raise RequestError(problem, field=name)
            out[name] = value
    return out


def _major(amount: int, currency: str, what: str) -> str:
    """Minor units as Pipwave's decimal(11,2) string in major units: exact, from the ISO 4217 exponent."""
    try:
        problem = fits_decimal(amount, currency, *DECIMAL)
        text = None if problem else to_major_string(amount, currency, places=DECIMAL[1])
    except (ValueError, CurrencyError) as exc:
        raise RequestError(str(exc), field=what) from None
    if text is None:
        raise RequestError(str(problem), field=what)
    return text


def _request(creds: Credentials, fields: dict[str, Any]) -> HttpRequest:
    api_key = header_value(creds.api_key.reveal(), what="api_key", secret=True)
    if API_KEY.problem(api_key):
        raise RequestError(f"breaks the format {API_KEY.describe()}", field="api_key")
    body = {**fields, "api_key": api_key}
    body["signature"] = signature(body, creds.api_secret)
    headers = (("x-api-key", api_key), ("Content-Type", "application/json"))
    return HttpRequest("POST", creds.url, headers, json_body(body), secret_fields=("api_key",))


def build_capture(payment: Payment, command: Capture, creds: Credentials, *, timestamp: int,
                  pw_id: str | None = None, txn_id: str | None = None) -> HttpRequest:
    """`action=capture-payment` with `capture_amount` always given (exact, major units, 2 decimals)."""
    money = command_money(payment, command)
    fields: dict[str, Any] = {"action": "capture-payment", "timestamp": _timestamp(timestamp),
                              **_ids(payment, pw_id, txn_id),
                              "capture_amount": _major(money.minor, money.currency, "amount")}
    return _request(creds, fields)


def build_refund(payment: Payment, command: Refund, creds: Credentials, *, timestamp: int,
                 pw_id: str | None = None, txn_id: str | None = None, op: str = "submit") -> HttpRequest:
    """`action=refund`, `op` = `submit` (default) or `initiate`, `refund_amount` exact (refund.md).

    refund.md names both ops without saying which one moves money; `initiate` answers with
    `supports_refund`/`supports_partial_refund`/`extra_params`, so `submit` is taken to be the refund [INF].
    """
    if op not in {"initiate", "submit"}:
        raise RequestError(f"must be 'initiate' or 'submit', got {op!r}", field="op")
    money = command_money(payment, command)
    fields: dict[str, Any] = {"action": "refund", "timestamp": _timestamp(timestamp), "op": op,
                              **_ids(payment, pw_id, txn_id),
                              "refund_amount": _major(money.minor, money.currency, "amount")}
    return _request(creds, fields)


def build_cancel(payment: Payment, command: Cancel, creds: Credentials, *, timestamp: int,
                 pw_id: str | None = None, txn_id: str | None = None, reason: str | None = None,
                 ref_tag: str | None = None) -> HttpRequest:
    """`action=cancel-payment` ("manually cancel a payment that is currently in pending or processing
    state", cancel-payment.md); optional `reason` and `ref_tag`, string(32) each."""
    fields: dict[str, Any] = {"action": "cancel-payment", "timestamp": _timestamp(timestamp),
                              **_ids(payment, pw_id, txn_id)}
    for name, value in (("reason", reason), ("ref_tag", ref_tag)):
        if value is not None:
            problem = SHORT_TEXT.problem(value)
            if problem:
                raise RequestError(problem, field=name)
            fields[name] = value
    return _request(creds, fields)


def build_requery(payment: Payment, creds: Credentials, *, timestamp: int, pw_id: str | None = None,
                  txn_id: str | None = None) -> HttpRequest:
    """`action=requery`: "Used to get the latest status of the payment" (requery.md). Signed over
    timestamp, action, api_key, pw_id OR txn_id and the secret."""
    ids = _ids(payment, pw_id, txn_id)
    if len(ids) == 2:
        del ids["txn_id"]  # requery signs "pw_id OR txn_id": send exactly one
    return _request(creds, {"action": "requery", "timestamp": _timestamp(timestamp), **ids})


build_get = build_requery


# ------------------------------------------------------------------------------------------- parsers


def _status(body: Mapping[str, Any]) -> str | None:
    value = body.get("status")
    if isinstance(value, bool):
        return None
    return str(value) if isinstance(value, str | int) else None


def parse_error(response: HttpResponse) -> ProviderError:
    """A failed answer as a ProviderError whose `error_id` is Pipwave's status code ("9001", "401", ...).

    An HTTP-level failure (a proxy's 502, a timeout page) leaves the outcome unknown: requery first.
    """
    if not 200 <= response.status < 300:
        server = response.status >= 500
        return ProviderError(f"HTTP {response.status} from the API endpoint", provider=NAME, status=response.status,
                             retryable=server or response.status == 429, reconcile=server)
    body = decode_json(response, provider=NAME)
    if not isinstance(body, dict):
        return malformed(NAME, response, "the body is not a JSON object")
    code = _status(body)
    message = body.get("message") if isinstance(body.get("message"), str) and body.get("message") else None
    known = STATUS_CODES.get(code or "")
    text = "; ".join(p for p in (known, message) if p) or "no status"
    if code is None or code not in STATUS_CODES:
        # "0" (the capture page's sample) and anything else the appendix does not define: outcome unknown.
        return ProviderError(f"undocumented status {code!r}: {message or ''}".rstrip(": "), provider=NAME,
                             status=response.status, error_id=code, reconcile=True)
    return ProviderError(text, provider=NAME, status=response.status, error_id=code, title=known, detail=message,
                         retryable=code in RETRYABLE, reconcile=code in RETRYABLE)


def _ok(response: HttpResponse) -> Mapping[str, Any]:
    if not 200 <= response.status < 300:
        raise parse_error(response)
    body = decode_json(response, provider=NAME)
    if not isinstance(body, dict) or _status(body) != "200":
        raise parse_error(response)
    return body


def parse_capture(response: HttpResponse, payment: Payment, command: Capture) -> tuple[Event, ...]:
    """`status "200"` -> (captured,). The answer carries no amounts, so the event is the amount sent; the
    executor should confirm with `requery` (research §4.3)."""
    money = command_money(payment, command)
    _ok(response)
    return (fact(payment, command, EventType.CAPTURED, NAME, money.minor),)


def parse_refund(response: HttpResponse, payment: Payment, command: Refund) -> tuple[Event, ...]:
    """`status "200"` -> (refunded,) for `op=submit`."""
    money = command_money(payment, command)
    _ok(response)
    return (fact(payment, command, EventType.REFUNDED, NAME, money.minor),)


def parse_cancel(response: HttpResponse, payment: Payment, command: Cancel) -> tuple[Event, ...]:
    """`status "200"` -> (cancelled,) of the whole remainder."""
    _ok(response)
    return (fact(payment, command, EventType.CANCELLED, NAME, payment.remainder),)


def _minor(body: Mapping[str, Any], key: str, currency: str, response: HttpResponse) -> int | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise malformed(NAME, response, f"{key} is {value!r}, not a decimal amount")
    try:
        # A JSON number arrives as int or float; its shortest repr is the decimal Pipwave wrote.
        minor = from_major_string(_php_string(value), currency)
        problem = "it is negative" if minor < 0 else fits_decimal(minor, currency, *DECIMAL)
    except ValueError as exc:
        raise malformed(NAME, response, f"{key}: {exc}") from None
    if problem:
        # Every requery amount is decimal(11,2) (requery.md): anything else is not a Pipwave amount.
        raise malformed(NAME, response, f"{key} {value!r}: {problem}")
    return minor


def parse_requery(response: HttpResponse, payment: Payment) -> RemoteStatus:
    """The payment as requery reports it (requery.md). `state` is the transaction_status NAME ("Processing",
    "Paid", ...) or the raw code when undocumented; `authorized` is `amount` ("The payment checkout amount").

    What the documented fields can and cannot prove:

    - `final_amount` is "Final amount for this transaction (after potential chargeback / refund /
      adjustments)", and the docs' sample shows it equal to `total_amount` (126.6 = amount 123 + processing
      fee 1.2 + tax 2.4). So `captured` is `final_amount` only while Paid (nothing reversed yet) AND no fee,
      tax, shipping or handling sits on top of `amount` (`total_amount` absent or equal to it, every fee field
      absent or zero); otherwise it is None (unknown), never a guess. 0 while `require_capture` is true or
      the payment never got that far (Pending, Failed, Cancelled); Processing alone proves nothing (a
      capture may be running).
    - `refunded` is never inferred: after a refund `final_amount` has lost both the refund and, after a
      partial capture, the uncaptured rest, and fees move it too, so `amount - final_amount` can be wrong
      or negative (and a negative or low figure would read as "the refund did not happen" and invite a
      second refund). It is 0 only where no refund can exist (Pending, Failed, Cancelled, Processing), else
      None: the executor then refuses to guess and asks for reconciliation.
    - `cancelled` is the whole `amount` once Cancelled (2), else None.
    """
    body = _ok(response)
    declared = body.get("currency_code")
    if declared is not None and (not isinstance(declared, str) or not declared):
        raise malformed(NAME, response, f"currency_code is {declared!r}, not an ISO 4217 code")
    currency = declared if declared is not None else payment.currency
    if currency is None:
        raise malformed(NAME, response, "no currency_code")
    if payment.currency is not None and currency != payment.currency:
        raise malformed(NAME, response, f"currency_code {currency!r} is not {payment.currency}")
    raw = body.get("transaction_status")
    code = _php_string(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
    state = TRANSACTION_STATUS.get(code, code or "unknown")
    authorized = _minor(body, "amount", currency, response)
    final = _minor(body, "final_amount", currency, response)
    total = _minor(body, "total_amount", currency, response)
    # Pending, Failed, Cancelled: never captured. Processing is where a capture runs (confirm-payment moves
    # processing -> paid), so only `require_capture: true` proves nothing was captured there.
    uncaptured = code in {"0", "1", "2"} or body.get("require_capture") is True
    fees = [_minor(body, f, currency, response) for f in _ON_TOP]
    on_top = (total is not None and total != authorized) or any(fees)
    captured = 0 if uncaptured else (final if code == "10" and not on_top else None)
    refunded = 0 if code in {"0", "1", "2", "5"} else None  # a refund needs Paid first (payment_status_code.md)
    # 2 "Cancelled": the whole payment is (cancel-payment.md works from Pending/Processing, before capture).
    cancelled = authorized if code == "2" else None
    return RemoteStatus(NAME, payment.reference, state, currency, authorized, captured, cancelled, refunded)


parse_get = parse_requery


# ------------------------------------------------------------------ the provider's side (the emulator)
# The other direction of the same wire format: reading the signed requests the builders above send, and
# writing the answers the parsers above read. Used by capstate.providers.emulator.pipwave; pure.

ACTIONS = ("capture-payment", "requery", "refund", "cancel-payment")
ACTION_MAX = 32  # "action: string (32)"


def read_request(body: bytes) -> dict[str, Any]:
    """The fields of a request body: a JSON object (sample-codes.md's `json_encode($data)`) whose values are
    strings or numbers. Raises RequestError (field `body` or the offending field)."""
    obj = request_object(body)
    for key, value in obj.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, str | int | float)):
            raise RequestError("must be a string or a number", field=key)
    return obj


def signature_ok(fields: Mapping[str, Any], api_secret: str | Secret) -> bool:
    """Whether `fields["signature"]` is the signature of the other fields (every field sent is signed, as
    the builders and sample-codes.md do), compared in constant time."""
    claimed = fields.get("signature")
    if not isinstance(claimed, str):
        return False
    expected = signature(fields, api_secret)
    return hmac.compare_digest(expected.encode(), claimed.lower().encode("utf-8", "replace"))


def read_text(fields: Mapping[str, Any], name: str, rule: IdentifierRule) -> str | None:
    """An optional string field under its length rule. Raises RequestError."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    text = _php_string(value)
    problem = rule.problem(text)
    if problem:
        raise RequestError(problem, field=name)
    return text


def read_major(fields: Mapping[str, Any], name: str, currency: str) -> int | None:
    """An optional decimal(11,2) amount in major units ("10.50") as minor units of `currency`, exactly.
    Raises RequestError."""
    value = fields.get(name)
    if value is None or value == "":
        return None
    try:
        minor = from_major_string(_php_string(value), currency)
        problem = "it must be positive" if minor <= 0 else fits_decimal(minor, currency, *DECIMAL)
    except (ValueError, CurrencyError) as exc:
        raise RequestError(str(exc), field=name) from None
    if problem:
        raise RequestError(f"{value!r}: {problem}", field=name)
    return minor


def reply(code: str, message: str = "") -> dict[str, Any]:
    """`{"status", "message"}`: every answer's envelope (capture_payment.md); `code` from STATUS_CODES."""
    return {"status": code, "message": message or STATUS_CODES.get(code, "")}


def requery_body(*, pw_id: str, txn_id: str, currency: str, amount: int, final_amount: int,
                 transaction_status: str, require_capture: bool) -> dict[str, Any]:
    """A requery answer (requery.md): the amounts in major units, decimal(11,2), as the API writes them."""
    return {**reply("200"), "pw_id": pw_id, "txn_id": txn_id, "currency_code": currency,
            "amount": to_major_string(amount, currency, places=DECIMAL[1]),
            "total_amount": to_major_string(amount, currency, places=DECIMAL[1]),
            "final_amount": to_major_string(final_amount, currency, places=DECIMAL[1]),
            "transaction_status": transaction_status, "require_capture": require_capture}
