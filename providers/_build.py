"""Helpers every provider module shares: the money a command moves, and the events an answer records.

A builder refuses (RequestError) what it cannot send exactly: a float, a zero, a currency that is not
the payment's. `decide` has normally refused these already; the builder checks again because it is
the last code before the network, and a builder can be called without a decision.
"""

from __future__ import annotations

from .._errors import RequestError
from .._keys import key_for as key_for  # noqa: PLC0414 - the journal derives keys through the same rule
from .._money import INT64_MAX, Money
from .._values import Cancel, Capture, Event, EventType, Payment, Refund


def command_money(payment: Payment, command: Capture | Refund, *, maximum: int | None = None) -> Money:
    """The exact money (integer minor units) of a normalized capture or refund. Raises RequestError."""
    amount = command.amount
    if amount is None:
        raise RequestError("the amount is unresolved; pass the command from decide(...).command", field="amount")
    if type(amount) is not int or amount <= 0:
        raise RequestError(f"must be a positive integer of minor units, got {amount!r}", field="amount")
    if amount > INT64_MAX:
        # Every provider types the amount int64 (Bambora swagger, Vipps openapi); past 2**64 the JSON
        # encoder itself would fail with an untyped TypeError.
        raise RequestError(f"{amount} is beyond int64, which no provider's amount can hold", field="amount")
    if maximum is not None and amount > maximum:
        raise RequestError(f"{amount} is above the provider's maximum {maximum}", field="amount")
    if payment.currency is None:
        raise RequestError(f"payment {payment.reference!r} has no authorized currency", field="currency")
    currency = command.currency or payment.currency
    if currency != payment.currency:
        raise RequestError(f"{currency} differs from the authorized currency {payment.currency}", field="currency")
    return Money(amount, currency)


def require_key(command: Capture | Cancel | Refund, provider: str) -> str:
    if command.key is None:
        raise RequestError(f"{provider} requires an idempotency key on every modification", field="key")
    return command.key


def fact(payment: Payment, command: Capture | Cancel | Refund, etype: EventType, provider: str,
         amount: int | None, *, reason: str | None = None) -> Event:
    """The canonical event an answer proves, timed at the command (parsers never read a clock)."""
    currency = payment.currency if amount is not None else None
    return Event(payment.reference, etype, command.at, amount, currency, provider=provider, key=command.key,
                 reason=reason)


def is_replay(payment: Payment, command: Capture | Cancel | Refund, op: str, amount: int | None) -> bool:
    """Whether `command` repeats a key that already succeeded for the same operation and amount."""
    return command.key is not None and any(
        u.key == command.key and u.succeeded and u.op == op and (amount is None or u.amount == amount)
        for u in payment.keys)

