"""When the executor sends again, how long it waits, and what each provider lets a retry do.

Two separate things:

- `RetryPolicy`: how many sends one logical operation may take, and the back-off between them
  (exponential, capped, with jitter; a provider's Retry-After is honoured). `random` and `sleep` are
  injectable so tests neither sleep nor depend on chance.
- `ProviderRule`: what is SAFE before a retry. A provider that deduplicates by idempotency key lets the
  identical request be resent; one without a key must be read back first (GET, requery), because a
  timed-out or blocked request may have moved the money, and resending it blindly could capture twice.

Which responses are retryable at all is the provider module's call (`ProviderError.retryable`,
`.reconcile`), made from the provider's own error ids.
"""

from __future__ import annotations

import math
import random as _random
import time as _time
from collections.abc import Callable, Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from types import MappingProxyType

from attrs import field, frozen


class Recovery(StrEnum):
    """What a retry may do after an answer that leaves the outcome open."""

    # The provider deduplicates by key: resend the IDENTICAL request (same key, same body).
    RESEND = "resend"
    # No usable idempotency: read the payment back first; resend only if the operation did not happen.
    RECONCILE = "reconcile"


@frozen
class ProviderRule:
    """One provider's retry rule, with the documentation it comes from."""

    recovery: Recovery
    doc: str
    # An asynchronous provider answers "in progress". A capture is returned in that state (`capturing`) and
    # `refresh()` polls it; a refund or void is polled at once (`polls` reads) and raises client.Unsettled if
    # it does not settle. A read-back that shows no refund proves nothing: it may still be processing.
    asynchronous: bool = False
    # The success answer carries no amounts: read the payment back after it and record what the provider
    # actually moved (which can differ from what was asked).
    confirm: bool = False


RULES: Mapping[str, ProviderRule] = MappingProxyType({
    # "For 423 and 429 the solution is to retry, using the Idempotency-Key header"; 409 "Order processing":
    # "Too many concurrent requests"; a retry with the same key "will not cause a duplicate".
    "vipps": ProviderRule(Recovery.RESEND,
                          "https://developer.vippsmobilepay.com/docs/knowledge-base/errors; "
                          "vippsas/vipps-developers knowledge-base/http-headers.md (Idempotency-Key)"),
    # 409 payment_operation_blocked: "being modified by another request ... could be retried ... or
    # queried"; no idempotency key exists, so GET /payments/{payment}/ decides whether to resend.
    "bambora": ProviderRule(Recovery.RECONCILE,
                            "bambora/dev.bambora.com@94ce786:source/includes/api/_errors.md; "
                            "research/providers.md 1.7 (no idempotency: GET before retrying)"),
    # No idempotency; "the PG may have captured even without a clear response": requery first. The capture
    # answer is only {status, message}, and "If PG not supporting partial capture, full capture will be
    # done" (capture_payment.md), so a success is confirmed by requery too.
    "pipwave": ProviderRule(Recovery.RECONCILE,
                            "https://docs.pipwave.com/api_list/requery.html; "
                            "https://docs.pipwave.com/api_list/capture_payment.html; research/providers.md 4.3, 4.7",
                            confirm=True),
    # X-Idempotency-Key exists but its replay semantics are undocumented, so never rely on it; the
    # capture is asynchronous: "the result will be communicated via a notification".
    "hellgate": ProviderRule(Recovery.RECONCILE,
                             "https://developer.hellgate.io/payments/management/capture; "
                             "https://developer.hellgate.io/products/commerce/v1/getting-started (X-Idempotency-Key)",
                             asynchronous=True),
})

# A provider capstate has no rule for is treated as having no idempotency: the safe assumption.
DEFAULT_RULE = ProviderRule(Recovery.RECONCILE, "no documented idempotency: reconcile before any retry")


def _positive(instance: object, attribute: object, value: float) -> None:
    # Finite too: an infinite wait would block forever, or overflow time.sleep.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValueError(f"{getattr(attribute, 'name', 'value')} must be a finite number > 0, got {value!r}")


def _at_least_one(instance: object, attribute: object, value: int) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{getattr(attribute, 'name', 'value')} must be an int >= 1, got {value!r}")


@frozen(kw_only=True)
class RetryPolicy:
    """How often and how patiently the executor retries. All durations are seconds.

    - `attempts`: sends of one logical operation, the first included (1 = never retry).
    - `base`, `cap`: the n-th retry waits about `min(cap, base * 2**(n-1))`.
    - `jitter`: wait a random amount between half and all of that, so clients that failed together do not
      retry together ("equal jitter": never zero, so a lock has time to clear).
    - `max_retry_after`: a Retry-After longer than this ends the retries instead of blocking the caller.
    - `polls`, `poll_interval`: how often and how far apart `refresh()` reads an asynchronous payment.
    - `rules`: per-provider recovery; defaults to `RULES`.
    """

    attempts: int = field(default=4, validator=_at_least_one)
    base: float = field(default=0.5, validator=_positive)
    cap: float = field(default=8.0, validator=_positive)
    jitter: bool = True
    max_retry_after: float = field(default=30.0, validator=_positive)
    polls: int = field(default=10, validator=_at_least_one)
    poll_interval: float = field(default=2.0, validator=_positive)
    rules: Mapping[str, ProviderRule] = RULES
    random: Callable[[], float] = field(default=_random.random, repr=False, eq=False)
    sleep: Callable[[float], None] = field(default=_time.sleep, repr=False, eq=False)

    def rule(self, provider: str) -> ProviderRule:
        return self.rules.get(provider, DEFAULT_RULE)

    def backoff(self, retry: int) -> float:
        """Seconds before retry number `retry` (1 = the first retry), jittered."""
        if retry < 1:
            raise ValueError(f"retry numbers start at 1, got {retry}")
        # min() before the power would overflow on a large retry number.
        ceiling = self.cap if retry > 60 else min(self.cap, self.base * 2 ** (retry - 1))
        if not self.jitter:
            return ceiling
        return ceiling / 2 + self.random() * ceiling / 2

    def delay(self, retry: int, retry_after: float | None = None) -> float | None:
        """Seconds before retry `retry`, honouring the provider's Retry-After; None: do not retry
        (the provider asked for a longer pause than `max_retry_after`)."""
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        wait = self.backoff(retry)
        return max(wait, retry_after) if retry_after is not None else wait


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """A Retry-After header as seconds from `now` (RFC 9110 10.2.3: delay-seconds or an HTTP-date).

    None when absent or unreadable: a malformed header must not stop a retry, nor make one wait forever.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        try:
            return float(int(text))
        except (OverflowError, ValueError):
            # Past 10**308 float() overflows, past 4300 digits int() refuses: "wait longer than anyone
            # will", which RetryPolicy.delay turns into "stop retrying", as for any value past max_retry_after.
            return math.inf
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max((when - now).total_seconds(), 0.0)
