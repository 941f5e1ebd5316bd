"""Vipps MobilePay ePayment answers as the server side writes them: the documented JSON shapes of a payment,
a modification, the event log, a webhook, an access token and an RFC 7807 problem. Pure: values in, dicts out.

Shapes (vippsas/vipps-epayment-api@e7a5c6e:docs/epayment.v1.yml, shared/provider-specs/
vipps-epayment-openapi.yaml; research/providers.md §2):

- `GetPaymentResponse` {aggregate, amount, state, paymentMethod, profile, pspReference, reference,
  redirectUrl?, metadata?}: every field the schema requires, always.
- `ModificationResponse` {amount, state, aggregate, pspReference, reference} for capture, cancel and refund,
  declared as `application/problem+json` (research §2.9 item 1): the emulator answers with the media type the
  document declares, so a validator of the document accepts it; every client decodes it whatever its type.
- `PaymentEvent` {reference, pspReference, name, amount, timestamp, idempotencyKey, success}; the document
  still lists the removed `paymentAction` as required (research §2.9 item 2), which no real payload carries.
- `WebhookEvent` = PaymentEvent + `msn` (webhooks-api events.md; #/components/schemas/WebhookEvent).
- `AuthorizationTokenResponse` for `POST /accesstoken/get`: every field a string, `expires_in` in seconds,
  `expires_on`/`not_before` in epoch seconds (deno-sdk generated_types/access_token AuthorizationTokenResponse).
- `Problem` {type, title, detail, status, traceId} (required: type, title, status, traceId) plus the newer
  `extraDetails` [{name, reason}] (deno-sdk types.gen.ts).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from attrs import frozen

from .inbound import Problem

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
# Vipps publishes problem titles, not type URIs (faq.md; research §2.6), so the emulator's types are its own,
# in a namespace nobody can mistake for a URL Vipps serves. Clients match on them as they would on Vipps's.
PROBLEM_TYPE = "urn:capstate:emulator:vipps:"

# webhooks-api events.md: one event type per PaymentEventName.
WEBHOOK_EVENTS = {name: f"epayments.payment.{name.lower()}.v1" for name in
                  ("CREATED", "ABORTED", "EXPIRED", "CANCELLED", "CAPTURED", "REFUNDED", "AUTHORIZED", "TERMINATED")}


def timestamp(at: datetime) -> str:
    """RFC 3339 in UTC with a Z, as Vipps writes `timestamp`."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def money(currency: str, value: int) -> dict[str, Any]:
    return {"currency": currency, "value": value}


@frozen
class PaymentView:
    """One payment as Vipps reports it. `state` is Vipps's State (CREATED, ABORTED, EXPIRED, AUTHORIZED,
    TERMINATED); captured, cancelled and refunded live in the aggregate, not in the state (research §2.2)."""

    reference: str
    psp_reference: str
    state: str
    currency: str
    amount: int
    authorized: int = 0
    captured: int = 0
    cancelled: int = 0
    refunded: int = 0
    payment_method: str = "WALLET"
    redirect_url: str | None = None
    metadata: tuple[tuple[str, str], ...] | None = None
    profile_sub: str | None = None

    def aggregate(self) -> dict[str, Any]:
        c = self.currency
        return {"authorizedAmount": money(c, self.authorized), "cancelledAmount": money(c, self.cancelled),
                "capturedAmount": money(c, self.captured), "refundedAmount": money(c, self.refunded)}


def get_payment(view: PaymentView) -> dict[str, Any]:
    """GetPaymentResponse."""
    out: dict[str, Any] = {
        "aggregate": view.aggregate(),
        "amount": money(view.currency, view.amount),
        "state": view.state,
        "paymentMethod": {"type": view.payment_method},
        # ProfileResponse.sub: "populated once `state` is `AUTHORIZED`" when a scope was requested.
        "profile": {"sub": view.profile_sub} if view.profile_sub is not None else {},
        "pspReference": view.psp_reference,
        "reference": view.reference,
    }
    if view.redirect_url is not None:
        out["redirectUrl"] = view.redirect_url
    if view.metadata is not None:
        out["metadata"] = dict(view.metadata)
    return out


def modification(view: PaymentView) -> dict[str, Any]:
    """ModificationResponse: the aggregate already updated by the operation (operations/capture.md)."""
    return {"amount": money(view.currency, view.amount), "state": view.state, "aggregate": view.aggregate(),
            "pspReference": view.psp_reference, "reference": view.reference}


def created(reference: str, redirect_url: str | None) -> dict[str, Any]:
    """CreatePaymentResponse: no `redirectUrl` for PUSH_MESSAGE ("Nothing will be returned")."""
    return {"reference": reference} if redirect_url is None else {"redirectUrl": redirect_url, "reference": reference}


@frozen
class LogEntry:
    """One line of the payment's event log: every operation attempted, `success` false when refused
    (research §2.5: "a failed capture attempt is still logged")."""

    reference: str
    psp_reference: str
    name: str
    currency: str
    value: int
    at: datetime
    key: str | None
    success: bool


def payment_event(entry: LogEntry) -> dict[str, Any]:
    """PaymentEvent."""
    return {"reference": entry.reference, "pspReference": entry.psp_reference, "name": entry.name,
            "amount": money(entry.currency, entry.value), "timestamp": timestamp(entry.at),
            "idempotencyKey": entry.key, "success": entry.success}


def webhook_event(msn: str, entry: LogEntry) -> dict[str, Any]:
    """WebhookEvent: a PaymentEvent with the merchant's serial number."""
    return {"msn": msn, **payment_event(entry)}


def access_token(token: str, issued: datetime, lifetime: timedelta) -> dict[str, Any]:
    """AuthorizationTokenResponse: "valid for 1 hour in the test environment" (access-token-api)."""
    start = int(issued.timestamp())
    seconds = int(lifetime.total_seconds())
    return {"token_type": "Bearer", "expires_in": str(seconds), "ext_expires_in": "0",
            "expires_on": str(start + seconds), "not_before": str(start),
            "resource": "00000002-0000-0000-c000-000000000000", "access_token": token}


def problem_type(slug: str) -> str:
    return PROBLEM_TYPE + slug


def problem(p: Problem, trace_id: str) -> dict[str, Any]:
    """The Problem body of `p`."""
    out: dict[str, Any] = {"type": problem_type(p.slug), "title": p.title, "detail": p.detail,
                           "status": p.status, "traceId": trace_id}
    if p.extra:
        out["extraDetails"] = [{"name": name, "reason": reason} for name, reason in p.extra]
    return out


__all__ = [
    "JSON",
    "PROBLEM_JSON",
    "PROBLEM_TYPE",
    "WEBHOOK_EVENTS",
    "LogEntry",
    "PaymentView",
    "access_token",
    "created",
    "get_payment",
    "modification",
    "money",
    "payment_event",
    "problem",
    "problem_type",
    "timestamp",
    "webhook_event",
]
