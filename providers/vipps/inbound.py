"""Vipps MobilePay ePayment requests read from the server side: what capstate's own builders and the official
SDK (`@vippsmobilepay/sdk`) send, turned into typed values, or into the RFC 7807 problem Vipps would answer.

Pure: headers and body bytes in, a value or a `Problem` out; no sockets, no clock (a `now` is passed where a
rule needs one). The emulator (`capstate.providers.emulator.vipps`) decides what to do with the values.

Rules, from vippsas/vipps-epayment-api@e7a5c6e:docs/epayment.v1.yml (shared/provider-specs/
vipps-epayment-openapi.yaml) unless marked otherwise:

1. Every ePayment call carries `Authorization: Bearer <token>`, `Ocp-Apim-Subscription-Key` and
   `Merchant-Serial-Number` (`^[0-9]{4,6}$`, #/components/schemas/MSN); create, capture, cancel and refund also
   `Idempotency-Key` (at most 50 characters, #/components/parameters/Idempotency-Key). The SDK sends empty
   `Vipps-System-*` headers when unconfigured, so an empty optional header is absent, not an error.
2. `reference` matches `^[a-zA-Z0-9-]{8,50}$` (#/components/schemas/Reference).
3. Amounts are `{"currency": NOK|DKK|EUR, "value": int64 0..65000000}` in minor units (#/components/schemas/
   Amount); a float is "Amount invalid" (faq.md), a string or a bool is not an integer.
4. Cancel takes no body in v1.4.1, and `{"cancelTransactionOnly": bool}` in newer versions (research/providers.md
   §2.5; deno-sdk types.gen.ts `CancelModificationRequest`). The SDK sends none; capstate sends
   `{"cancelTransactionOnly": false}`. Both are read.
5. `POST /accesstoken/get` carries `client_id`, `client_secret` and `Ocp-Apim-Subscription-Key` headers and no
   body (https://developer.vippsmobilepay.com/docs/APIs/access-token-api/; the SDK's `auth.getToken`).
6. A body is read as JSON only up to `MAX_BODY` bytes; anything else (not JSON, not an object, a field of the
   wrong type) is a 400 problem naming the field in `extraDetails` (deno-sdk types.gen.ts `Problem.extraDetails`).

Any exception other than `Problem` from these functions is a bug.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson
from attrs import frozen

from ..._time import parse_instant
from .._http import Headers

MAX_BODY = 64 * 1024  # a CreatePaymentRequest with a full receipt is a few kilobytes
MAX_AMOUNT = 65_000_000
CURRENCIES = ("NOK", "DKK", "EUR")
USER_FLOWS = ("PUSH_MESSAGE", "NATIVE_REDIRECT", "WEB_REDIRECT", "QR")
PAYMENT_METHODS = ("WALLET", "CARD")
CUSTOMER_INTERACTIONS = ("CUSTOMER_PRESENT", "CUSTOMER_NOT_PRESENT")
QR_FORMATS = ("TEXT/TARGETURL", "IMAGE/SVG+XML", "IMAGE/PNG")

_REFERENCE = re.compile(r"[a-zA-Z0-9-]{8,50}")
_MSN = re.compile(r"[0-9]{4,6}")
_PHONE = re.compile(r"\d{10,15}")
_KEY = re.compile(r"[!-~]{1,50}")  # printable ASCII: the key travels in a header
# CreatePaymentRequest.expiresAt's own pattern (RFC 3339).
_EXPIRES_AT = re.compile(r"((?:(\d{4}-\d{2}-\d{2})(T|t)(\d{2}:\d{2}:\d{2}(?:\.\d+)?))(Z|z|([+-](?:2[0-3]|[01][0-9])"
                         r":[0-5][0-9])))")
# "The value must be more than 10 minutes and less than 28 days in the future" (CreatePaymentRequest.expiresAt).
EXPIRES_MIN = timedelta(minutes=10)
EXPIRES_MAX = timedelta(days=28)


class Problem(Exception):  # Vipps calls an error answer a problem (RFC 7807)
    """An RFC 7807 problem Vipps answers with: HTTP `status`, the FAQ's `title`, this occurrence's `detail`,
    and `extra` (name, reason) pairs for `extraDetails`.

    `slug` names the problem type; the emulator's `type` URI is built from it (`answers.problem_type`),
    because Vipps publishes titles, not type URIs (research/providers.md §2.6).
    """

    def __init__(self, status: int, title: str, detail: str, *, slug: str | None = None,
                 extra: Iterable[tuple[str, str]] = ()):
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.slug = slug or re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
        self.extra = tuple(extra)


def bad_request(name: str, reason: str) -> Problem:
    """A 400 for one field: `name` is the JSON path or header, `reason` why."""
    return Problem(400, "Bad Request", f"{name}: {reason}", slug="validation-error", extra=((name, reason),))


def not_found(reference: str) -> Problem:
    # faq.md "Reference not found": "unknown reference for this MSN" (research/providers.md §2.6).
    return Problem(404, "Reference not found", f"no payment {reference!r} for this Merchant-Serial-Number")


# ----------------------------------------------------------------------------------------------- headers


@frozen
class Caller:
    """The credentials an ePayment call presents (rule 1). Compared by the emulator, never shown."""

    token: str
    subscription_key: str
    msn: str

    def __repr__(self) -> str:
        return f"Caller(msn={self.msn!r})"


@frozen
class TokenRequest:
    """`POST /accesstoken/get` (rule 5)."""

    client_id: str
    client_secret: str
    subscription_key: str
    msn: str | None

    def __repr__(self) -> str:
        return f"TokenRequest(client_id={self.client_id!r}, msn={self.msn!r})"


def headers_of(raw: Headers | Mapping[str, str] | Iterable[tuple[str, str]]) -> Headers:
    return raw if isinstance(raw, Headers) else Headers(raw)


def _header(h: Headers, name: str) -> str | None:
    value = h.get(name)
    return value.strip() if value is not None and value.strip() else None


def _msn(h: Headers, *, required: bool) -> str | None:
    msn = _header(h, "Merchant-Serial-Number")
    if msn is None:
        if required:
            raise bad_request("Merchant-Serial-Number", "the header is required")
        return None
    if not _MSN.fullmatch(msn):
        raise bad_request("Merchant-Serial-Number", "must match ^[0-9]{4,6}$")
    return msn


def caller(raw: Headers | Mapping[str, str] | Iterable[tuple[str, str]]) -> Caller:
    """The Caller of an ePayment request. Raises Problem: 401 without a bearer token or subscription key
    (Azure API Management refuses before the API sees the call), 400 for a missing or malformed MSN."""
    h = headers_of(raw)
    key = _header(h, "Ocp-Apim-Subscription-Key")
    if key is None:
        raise Problem(401, "Unauthorized", "the Ocp-Apim-Subscription-Key header is missing", slug="unauthorized")
    auth = _header(h, "Authorization")
    scheme, _, token = (auth or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "Unauthorized", "a Bearer access token from POST /accesstoken/get is required",
                      slug="unauthorized")
    msn = _msn(h, required=True)
    assert msn is not None
    return Caller(token.strip(), key, msn)


def token_request(raw: Headers | Mapping[str, str] | Iterable[tuple[str, str]]) -> TokenRequest:
    """The credentials of `POST /accesstoken/get`. Raises Problem 400 for a missing header."""
    h = headers_of(raw)
    values = {}
    for name in ("client_id", "client_secret", "Ocp-Apim-Subscription-Key"):
        value = _header(h, name)
        if value is None:
            raise bad_request(name, "the header is required")
        values[name] = value
    return TokenRequest(values["client_id"], values["client_secret"], values["Ocp-Apim-Subscription-Key"],
                        _msn(h, required=False))


def idempotency_key(raw: Headers | Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """The `Idempotency-Key` of a create, capture, cancel or refund. Raises Problem 400."""
    key = _header(headers_of(raw), "Idempotency-Key")
    if key is None:
        raise bad_request("Idempotency-Key", "the header is required")
    if not _KEY.fullmatch(key):
        raise bad_request("Idempotency-Key", "at most 50 printable ASCII characters")
    return key


def reference(value: str) -> str:
    """A path `reference` (rule 2). Raises Problem 400."""
    if not _REFERENCE.fullmatch(value):
        raise bad_request("reference", "must match ^[a-zA-Z0-9-]{8,50}$")
    return value


# ------------------------------------------------------------------------------------------------ bodies


def json_object(body: bytes, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object. An empty body is `{}` when `optional`. Raises Problem 400 (413 past MAX_BODY)."""
    if len(body) > MAX_BODY:
        raise Problem(413, "Payload Too Large", f"the body is {len(body)} bytes; at most {MAX_BODY} are read",
                      slug="payload-too-large")
    if not body.strip():
        if optional:
            return {}
        raise bad_request("body", "a JSON object is required")
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request("body", f"not valid JSON ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(value, dict):
        raise bad_request("body", f"must be a JSON object, got {_kind(value)}")
    return value


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _string(obj: Mapping[str, Any], name: str, path: str, *, required: bool = False, low: int = 0,
            high: int | None = None) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise bad_request(path, "is required")
        return None
    if not isinstance(value, str):
        raise bad_request(path, f"must be a string, got {_kind(value)}")
    if len(value) < low or (high is not None and len(value) > high):
        raise bad_request(path, f"must be {low} to {high} characters" if high else f"at least {low} characters")
    return value


def _enum(obj: Mapping[str, Any], name: str, path: str, allowed: tuple[str, ...], *, required: bool) -> str | None:
    value = _string(obj, name, path, required=required)
    if value is not None and value not in allowed:
        raise bad_request(path, f"must be one of {', '.join(allowed)}")
    return value


def _object(obj: Mapping[str, Any], name: str, path: str, *, required: bool) -> dict[str, Any] | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise bad_request(path, "is required")
        return None
    if not isinstance(value, dict):
        raise bad_request(path, f"must be an object, got {_kind(value)}")
    return value


@frozen
class Money:
    """An `Amount` (rule 3): integer minor units of a supported currency."""

    currency: str
    value: int


def amount(obj: Mapping[str, Any], name: str) -> Money:
    """The required Amount `obj[name]`. Raises Problem 400 ("Amount invalid" for a fraction, faq.md)."""
    a = _object(obj, name, name, required=True)
    assert a is not None
    currency = _enum(a, "currency", f"{name}.currency", CURRENCIES, required=True)
    assert currency is not None
    value = a.get("value")
    if value is None:
        raise bad_request(f"{name}.value", "is required")
    if isinstance(value, float):
        raise Problem(400, "Amount invalid", f"{name}.value {value!r}: amounts are integers of minor units",
                      extra=((f"{name}.value", "must be an integer of minor units"),))
    if type(value) is not int:
        raise bad_request(f"{name}.value", f"must be an integer, got {_kind(value)}")
    if not 0 <= value <= MAX_AMOUNT:
        raise bad_request(f"{name}.value", f"must be between 0 and {MAX_AMOUNT}")
    return Money(currency, value)


def modification(body: bytes) -> Money:
    """`CaptureModificationRequest` / `RefundModificationRequest`: `{"modificationAmount": Amount}`."""
    return amount(json_object(body), "modificationAmount")


def cancel(body: bytes) -> bool:
    """`cancelTransactionOnly` of a cancel (rule 4): False when there is no body."""
    obj = json_object(body, optional=True)
    only = obj.get("cancelTransactionOnly", False)
    if type(only) is not bool:
        raise bad_request("cancelTransactionOnly", f"must be a boolean, got {_kind(only)}")
    return only


@frozen
class Customer:
    """#/components/schemas/Customer: exactly one of the three identifications."""

    phone_number: str | None = None
    personal_qr: str | None = None
    customer_token: str | None = None


def _customer(obj: Mapping[str, Any], path: str) -> Customer | None:
    c = _object(obj, "customer", path, required=False)
    if c is None:
        return None
    given = [k for k in ("phoneNumber", "personalQr", "customerToken") if c.get(k) is not None]
    if len(given) != 1:
        # "Specifying more than one of these will result in an error."
        raise bad_request(path, "exactly one of phoneNumber, personalQr or customerToken")
    phone = _string(c, "phoneNumber", f"{path}.phoneNumber")
    if phone is not None and not _PHONE.fullmatch(phone):
        raise bad_request(f"{path}.phoneNumber", "MSISDN: 10 to 15 digits, no prefix")
    return Customer(phone, _string(c, "personalQr", f"{path}.personalQr", low=5, high=255),
                    _string(c, "customerToken", f"{path}.customerToken", low=1))


@frozen
class CreatePayment:
    """`POST /epayment/v1/payments` (#/components/schemas/CreatePaymentRequest), the fields the emulator keeps."""

    reference: str
    amount: Money
    user_flow: str
    payment_method: str
    customer: Customer | None = None
    customer_interaction: str = "CUSTOMER_NOT_PRESENT"
    return_url: str | None = None
    description: str | None = None
    expires_at: datetime | None = None
    metadata: tuple[tuple[str, str], ...] | None = None
    scope: str | None = None
    qr_format: str | None = None


def create_payment(body: bytes, *, now: datetime) -> CreatePayment:
    """A CreatePaymentRequest, with the cross-field rules the schema's descriptions state. Raises Problem 400."""
    obj = json_object(body)
    ref = _string(obj, "reference", "reference", required=True)
    assert ref is not None
    if not _REFERENCE.fullmatch(ref):
        raise bad_request("reference", "must match ^[a-zA-Z0-9-]{8,50}$")
    money = amount(obj, "amount")
    flow = _enum(obj, "userFlow", "userFlow", USER_FLOWS, required=True)
    method_obj = _object(obj, "paymentMethod", "paymentMethod", required=True)
    assert method_obj is not None and flow is not None
    method = _enum(method_obj, "type", "paymentMethod.type", PAYMENT_METHODS, required=True)
    assert method is not None
    interaction = _enum(obj, "customerInteraction", "customerInteraction", CUSTOMER_INTERACTIONS,
                        required=False) or "CUSTOMER_NOT_PRESENT"
    customer = _customer(obj, "customer")
    return_url = _string(obj, "returnUrl", "returnUrl")
    description = _string(obj, "paymentDescription", "paymentDescription", low=3, high=100)
    # userFlow: "If `userFlow` is `PUSH_MESSAGE`, a valid value for `customer` is required. If `userFlow` is
    # `WEB_REDIRECT`, a valid value for `returnUrl` is required." PaymentMethodType: "`CARD` has to be
    # combined with a `userFlow` of `WEB_REDIRECT`".
    if flow == "PUSH_MESSAGE" and customer is None:
        raise bad_request("customer", "is required when userFlow is PUSH_MESSAGE")
    if flow in ("WEB_REDIRECT", "NATIVE_REDIRECT") and return_url is None:
        raise bad_request("returnUrl", f"is required when userFlow is {flow}")
    if method == "CARD" and flow != "WEB_REDIRECT":
        raise bad_request("paymentMethod.type", "CARD has to be combined with userFlow WEB_REDIRECT")
    expires = _expires_at(obj, flow, now)
    scope = None
    profile = _object(obj, "profile", "profile", required=False)
    if profile is not None:
        scope = _string(profile, "scope", "profile.scope")
    qr = _object(obj, "qrFormat", "qrFormat", required=False)
    qr_format = _enum(qr, "format", "qrFormat.format", QR_FORMATS, required=True) if qr is not None else None
    return CreatePayment(ref, money, flow, method, customer, interaction, return_url, description, expires,
                         _metadata(obj), scope, qr_format)


def _expires_at(obj: Mapping[str, Any], flow: str, now: datetime) -> datetime | None:
    text = _string(obj, "expiresAt", "expiresAt")
    if text is None:
        return None
    if not _EXPIRES_AT.fullmatch(text):
        raise bad_request("expiresAt", "must be an RFC 3339 date-time")
    try:
        when = parse_instant(text)
    except ValueError:
        raise bad_request("expiresAt", "must be an RFC 3339 date-time") from None
    # "Can only be combined with `userFlow: PUSH_MESSAGE` or `userFlow: QR`."
    if flow not in ("PUSH_MESSAGE", "QR"):
        raise bad_request("expiresAt", "can only be combined with userFlow PUSH_MESSAGE or QR")
    if not now + EXPIRES_MIN < when < now + EXPIRES_MAX:
        raise bad_request("expiresAt", "must be more than 10 minutes and less than 28 days in the future")
    return when


def _metadata(obj: Mapping[str, Any]) -> tuple[tuple[str, str], ...] | None:
    meta = _object(obj, "metadata", "metadata", required=False)
    if meta is None:
        return None
    # "Key length is limited to 100 characters, and value length is limited to 500 characters. Max capacity is
    # 5 key-value pairs." (#/components/schemas/Metadata)
    if len(meta) > 5:
        raise bad_request("metadata", "at most 5 key-value pairs")
    for key, value in meta.items():
        if len(key) > 100:
            raise bad_request("metadata", "keys are at most 100 characters")
        if not isinstance(value, str) or len(value) > 500:
            raise bad_request(f"metadata.{key[:40]}", "must be a string of at most 500 characters")
    return tuple(meta.items())


@frozen
class ForceApprove:
    """`POST /epayment/v1/test/payments/{reference}/approve` (#/components/schemas/ForceApprove)."""

    customer: Customer | None = None
    token: str | None = None


def force_approve(body: bytes) -> ForceApprove:
    obj = json_object(body, optional=True)
    return ForceApprove(_customer(obj, "customer"), _string(obj, "token", "token"))


__all__ = [
    "CURRENCIES",
    "MAX_BODY",
    "Caller",
    "CreatePayment",
    "Customer",
    "ForceApprove",
    "Money",
    "Problem",
    "TokenRequest",
    "amount",
    "bad_request",
    "caller",
    "cancel",
    "create_payment",
    "force_approve",
    "headers_of",
    "idempotency_key",
    "json_object",
    "modification",
    "not_found",
    "reference",
    "token_request",
]
