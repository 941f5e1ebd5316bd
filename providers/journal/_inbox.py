"""The inbox's rule for Pipwave IPNs, pure: what a verified IPN proves, and what it only says.

Pipwave POSTs an IPN whenever a payment's status changes, and again every 5 minutes until it is answered
"OK" (instant_payment_notification.md; research §4.7). Only seven fields are signed: timestamp, api_key,
pw_id, txn_id, amount, currency_code, transaction_status (`pipwave.verify_ipn` returns them as an `Ipn`;
everything else in the body, `type`, `final_amount`, `require_capture`, could have been written by anyone).

What that proves, and so what the journal records:

- The payment is `txn_id` (capstate's Pipwave reference is the merchant's txn_id). An IPN naming only a
  pw_id, or a payment the journal does not hold, is kept with OUT_OF_BAND: not matched.
- `amount` is the CHECKOUT amount ("The payment checkout amount", requery.md), not what an operation
  moved: a partial capture, a partial refund or a refund "in full" of a partial capture are all sent with
  the same `amount`. So no capture or refund amount is ever read from an IPN.
- One status proves a whole fact with an exact amount: 2 Cancelled. cancel-payment works only "in pending
  or processing state", before any capture (cancel-payment.md), so the whole checkout amount was released:
  a `cancelled` event of `amount`, once per payment (a redelivery is the same fact), unless the journal
  already records the cancellation or an operation of its own is still open (recovery settles that one from
  a read-back, which attributes it; an IPN cannot).
- 10 Paid, 20 Full refund, 25 Partial refund, 13 Disputed, 15 Chargeback, 1 Failed say money moved but
  not how much: the delivery is kept in the inbox with what it says, and with OUT_OF_BAND when the journal
  does not already account for it (e.g. Paid while the journal holds no capture), never turned into a
  guessed event. `capstate reconcile` (requery) or an operator settles it.
- 0 Pending and 5 Processing prove nothing about money; after a capture, refund or cancel they are late.

Every delivery is kept once (its signed fields, timestamp included, are its identity: a redelivery of the
same notification is a duplicate; a later notification of the same status is another delivery). One sent
before a delivery already kept for the payment is recorded with OUT_OF_ORDER (unless a finding above says
more). Nothing verified is dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

import orjson
from attrs import frozen

from ..._codes import Code
from ..._values import Event, EventType
from ..pipwave import NAME, Ipn
from ._lifecycle import State

CANCELLED, PAID, FULL_REFUND, PARTIAL_REFUND = "2", "10", "20", "25"
_NO_MONEY = frozenset({"0", "5"})  # Pending, Processing


@frozen
class Delivery:
    """One verified notification as the inbox keeps it: `event` is the canonical fact it proves (None when
    it proves none), `finding` and `note` what it says that the journal does not account for."""

    provider: str
    dedup: str
    payment: str | None
    status: str
    sent_at: datetime
    body: str
    event: Event | None = None
    finding: Code | None = None
    note: str | None = None


def ipn_body(ipn: Ipn) -> str:
    """The signed fields, as kept (never the api_key: a credential, checked to be ours by verify_ipn)."""
    return orjson.dumps({"timestamp": ipn.timestamp, "pw_id": ipn.pw_id, "txn_id": ipn.txn_id,
                         "amount": ipn.amount, "currency": ipn.currency,
                         "transaction_status": ipn.transaction_status}, option=orjson.OPT_SORT_KEYS).decode()


def ipn_dedup(ipn: Ipn) -> str:
    return "ipn|" + hashlib.sha256(ipn_body(ipn).encode()).hexdigest()[:40]


def cancelled_dedup(reference: str) -> str:
    """The identity of a cancellation an IPN proves: one per payment, however often it is delivered."""
    return f"cancelled|pipwave-ipn|{reference}"


def _status(ipn: Ipn) -> str:
    return f"{ipn.transaction_status} {ipn.status_name or 'undocumented'}"


def map_ipn(ipn: Ipn, state: State | None, latest_sent: datetime | None) -> Delivery:
    """What `ipn` proves against the journal's `state` of its payment (None: not in the journal);
    `latest_sent` is when the latest delivery already kept for that payment was sent."""
    base = Delivery(NAME, ipn_dedup(ipn), ipn.txn_id, _status(ipn), ipn.sent_at, ipn_body(ipn))
    if ipn.txn_id is None:
        return _with(base, Code.OUT_OF_BAND, f"IPN {_status(ipn)} names no txn_id (pw_id {ipn.pw_id!r}): not "
                                             f"matched to a journal payment")
    if state is None:
        return _with(base, Code.OUT_OF_BAND, f"IPN {_status(ipn)} for {ipn.txn_id!r}, a payment the journal does "
                                             f"not hold (import its authorization)")
    p = state.base
    if p.currency is not None and ipn.currency != p.currency:
        return _with(base, Code.CURRENCY_MISMATCH, f"IPN {_status(ipn)} in {ipn.currency}; the journal's payment "
                                                   f"is in {p.currency}")
    if p.authorized and ipn.amount != p.authorized:
        return _with(base, Code.OUT_OF_BAND, f"IPN {_status(ipn)} with checkout amount {ipn.amount}; the journal "
                                             f"authorized {p.authorized}")
    code, note, event = _judge(ipn, state)
    if code is None and latest_sent is not None and ipn.sent_at < latest_sent:
        code, note = Code.OUT_OF_ORDER, f"IPN {_status(ipn)} sent before a delivery already kept " \
                                        f"({latest_sent.isoformat()})"
    return Delivery(NAME, base.dedup, base.payment, base.status, base.sent_at, base.body, event, code, note)


def _with(d: Delivery, code: Code, note: str) -> Delivery:
    return Delivery(d.provider, d.dedup, d.payment, d.status, d.sent_at, d.body, None, code, note)


def _judge(ipn: Ipn, state: State) -> tuple[Code | None, str | None, Event | None]:
    p, status = state.base, ipn.transaction_status
    opened: Sequence[str] = [f"#{i.seq} {i.op} {i.amount}" for i in state.open_intents()]
    pending_note = f"; intent(s) {', '.join(opened)} still open: `capstate reconcile` settles them" if opened else ""
    if status == CANCELLED:
        if p.cancelled > 0:
            return None, "cancellation already recorded", None
        if opened:
            return None, f"IPN Cancelled{pending_note}", None
        event = Event(p.reference, EventType.CANCELLED, ipn.sent_at, ipn.amount, ipn.currency, provider=NAME,
                      reason="pipwave IPN: transaction_status 2 Cancelled")
        return None, None, event
    if status in _NO_MONEY:
        if p.captured or p.cancelled or p.refunded or p.pending:
            return Code.OUT_OF_ORDER, f"IPN {_status(ipn)} after the journal recorded money moving (captured " \
                                      f"{p.captured}, cancelled {p.cancelled}, refunded {p.refunded})", None
        return None, None, None
    if status == PAID:
        if p.captured or p.pending:
            return None, f"IPN Paid: the journal records captured {p.captured}", None
        if opened:
            return None, f"IPN Paid; its amount is the checkout amount, not what was captured{pending_note}", None
        return Code.OUT_OF_BAND, ("IPN Paid, but the journal records no capture: a capture outside the journal, of an "
                                  "amount the IPN does not say (requery it)"), None
    if status in (FULL_REFUND, PARTIAL_REFUND):
        full = status == FULL_REFUND
        accounted = (p.refunded == p.captured > 0) if full else (0 < p.refunded < p.captured)
        if accounted:
            return None, f"IPN {_status(ipn)}: the journal records refunded {p.refunded} of {p.captured}", None
        if opened:
            return None, f"IPN {_status(ipn)}{pending_note}", None
        return Code.OUT_OF_BAND, (f"IPN {_status(ipn)}, but the journal records refunded {p.refunded} of captured "
                                  f"{p.captured}; the IPN does not say the amount (requery it)"), None
    return Code.OUT_OF_BAND, (f"IPN {_status(ipn)}: money may have moved in a way no canonical event records "
                              f"(journal: captured {p.captured}, refunded {p.refunded})"), None
