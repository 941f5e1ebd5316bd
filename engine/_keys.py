"""The idempotency key capstate derives when the caller gives none: one function, used by every decider.

`capstate validate`, `capstate capture` and `capstate.providers.client.CaptureClient` all derive through
`with_derived_key`, so what `validate` shows is exactly the key `capture` would send. Pure: a hash of
the operation's identity in the payment's own history (reference, op, sequence), never its amount; no
clock, no randomness.
"""

from __future__ import annotations

import hashlib
from typing import TypeAlias

from attrs import evolve

from ._values import Cancel, Capture, Payment, Refund

Operation: TypeAlias = Capture | Cancel | Refund


def key_for(reference: str, op: str, seq: int) -> str:
    """The derived idempotency key of operation number `seq` of kind `op` on `reference`: its identity,
    never its amount. The reference is hashed in because Vipps may scope keys wider than one payment; 35
    printable ASCII characters, within Vipps's 50 and Hellgate's 255."""
    digest = hashlib.sha256(f"{reference}\x1f{op}\x1f{seq}".encode()).hexdigest()
    return f"cs-{digest[:32]}"


def derive_key(payment: Payment, op: str) -> str:
    """A deterministic idempotency key for the next `op` on `payment`.

    It comes from the operation's identity, (reference, op, sequence), never from its amount: two parcels
    of one price decided from one stale history get ONE key, so the provider deduplicates the second
    (Vipps) and it can never become a second capture; two parcels of different prices get one key too,
    and the second is refused (Vipps answers 409 to another request under a used key) instead of
    capturing more than the history allowed. Without a journal the sequence is how many operations of the
    kind the history records, so a crash and a replay derive the same key again; a service that runs
    several workers should execute through `capstate.providers.Journal`, whose intents number every
    operation, attempted or not.
    """
    count = {"capture": payment.capture_count, "refund": payment.refund_count,
             "cancel": sum(1 for u in payment.keys if u.op == "cancel")}[op]
    return key_for(payment.reference, op, count + 1)


def op_of(command: Operation) -> str:
    return {Capture: "capture", Cancel: "cancel", Refund: "refund"}[type(command)]


def with_derived_key(payment: Payment, command: Operation) -> Operation:
    """`command` with a derived key when it has none and the provider takes keys; else unchanged."""
    if command.key is not None or payment.spec.policy.idempotency == "none":
        return command
    return evolve(command, key=derive_key(payment, op_of(command)))
