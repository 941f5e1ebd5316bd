"""The idempotency key capstate derives when the caller gives none: one function, used by every decider.

`capstate validate`, `capstate capture` and `capstate.providers.client.CaptureClient` all derive through
`with_derived_key`, so what `validate` shows is exactly the key `capture` would send. Pure: a hash of
the payment's own history, no clock, no randomness.
"""

from __future__ import annotations

import hashlib
from typing import TypeAlias

from attrs import evolve

from ._values import Cancel, Capture, Payment, Refund

Operation: TypeAlias = Capture | Cancel | Refund


def derive_key(payment: Payment, op: str, amount: int) -> str:
    """A deterministic idempotency key for the next `op` of `amount` on `payment`.

    It depends only on the payment's history (how many operations of this kind succeeded before) and
    on the amount, so a retry after a crash derives the same key and the provider deduplicates it,
    while the next distinct capture gets a fresh one (Vipps: "a new key per distinct capture"). The
    reference is hashed in because Vipps may scope keys wider than one payment ("Idempotency-Key ...
    already exists"). 35 printable ASCII characters: within Vipps's 50 and Hellgate's 255.
    """
    count = {"capture": payment.capture_count, "refund": payment.refund_count,
             "cancel": sum(1 for u in payment.keys if u.op == "cancel")}[op]
    digest = hashlib.sha256(f"{payment.reference}\x1f{op}\x1f{count + 1}\x1f{amount}".encode()).hexdigest()
    return f"cs-{digest[:32]}"


def op_of(command: Operation) -> str:
    return {Capture: "capture", Cancel: "cancel", Refund: "refund"}[type(command)]


def _planned_amount(payment: Payment, command: Operation) -> int:
    if command.amount is not None:
        return command.amount
    return payment.capturable if isinstance(command, Capture) else payment.remainder


def with_derived_key(payment: Payment, command: Operation) -> Operation:
    """`command` with a derived key when it has none and the provider takes keys; else unchanged."""
    if command.key is not None or payment.spec.policy.idempotency == "none":
        return command
    return evolve(command, key=derive_key(payment, op_of(command), _planned_amount(payment, command)))
