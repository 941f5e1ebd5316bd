"""Shared Hypothesis strategies for capstate's property tests.

Everything is built from the public API (plus `Payment`'s own fields): spec names come from
`capstate.shipped_specs()`, payments are authorized with `Payment.authorized_for` and moved with
`capstate.apply` (or `capstate.observe`), so a "reachable" payment is one a real history could produce.

Amounts mix three kinds of values: amounts relative to the payment (exactly what is capturable, one
more, one less), the boundaries of the shipped policies (Vipps' NOK 100 minimum and 65 000 000
maximum, decimal(11,2)'s integer digits), and anything up to 10**13.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

import capstate
from capstate import (
    Authorize,
    Cancel,
    Capture,
    Event,
    EventType,
    Flow,
    InvalidTransition,
    Payment,
    Refund,
    Spec,
)

# ---------------------------------------------------------------------------------------------- specs

SPEC_NAMES: tuple[str, ...] = capstate.shipped_specs()

# Policy overrides a merchant might set for their own contract; each still loads.
OVERRIDES: tuple[tuple[str, Mapping[str, Any]], ...] = (
    ("bambora", {"max_captures": 2}),
    ("bambora", {"partial_capture": "no"}),
    ("bambora", {"max_refunds": "unlimited", "authorization_validity": "30d"}),
    ("hellgate", {"authorization_validity": "1d"}),
    ("hellgate", {"partial_capture": "no", "idempotency": "required"}),
    ("pipwave", {"partial_capture": "becomes_full"}),
    ("pipwave", {"partial_capture": "no", "authorization_validity": "7d"}),
    ("vipps", {"max_captures": 1}),
    ("vipps", {"over_capture_percent": 10, "remainder": "lapses"}),
    ("vipps", {"authorization_validity.NOK": "1d", "idempotency": "optional"}),
)

spec_names = st.sampled_from(SPEC_NAMES)


def specs() -> st.SearchStrategy[Spec]:
    """A shipped spec, as loaded (the loader caches them)."""
    return spec_names.map(capstate.load_spec)


def overridden_specs() -> st.SearchStrategy[Spec]:
    """A shipped spec with one of `OVERRIDES` applied."""
    return st.sampled_from(OVERRIDES).map(lambda pair: capstate.load_spec(pair[0], overrides=pair[1]))


def any_specs() -> st.SearchStrategy[Spec]:
    return st.one_of(specs(), overridden_specs())


# ----------------------------------------------------------------------------------------------- time

FIRST = datetime(2024, 1, 1)
LAST = datetime(2030, 12, 31)
ZONES = (UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=45)))


def instants() -> st.SearchStrategy[datetime]:
    """Timezone-aware datetimes between 2024 and 2030, in a few offsets."""
    return st.datetimes(min_value=FIRST, max_value=LAST, timezones=st.sampled_from(ZONES))


def instants_near(p: Payment, not_before: datetime | None = None) -> st.SearchStrategy[datetime]:
    """Times that matter to `p`: soon after authorization, around its expiry, long after (refund windows)."""
    base = not_before or p.authorized_at or datetime(2026, 1, 5, 12, tzinfo=UTC)
    options: list[st.SearchStrategy[datetime]] = [
        st.integers(0, 3 * 86400).map(lambda s: base + timedelta(seconds=s)),
        st.integers(0, 400 * 86400).map(lambda s: base + timedelta(seconds=s)),
        st.sampled_from(ZONES).map(base.astimezone),
    ]
    expires = p.expires_at
    if expires is not None:
        edges = [expires + timedelta(seconds=d) for d in (-1, 0, 1)]
        options.append(st.sampled_from([t for t in edges if t >= base] or [base]))
    return st.one_of(options)


# -------------------------------------------------------------------------------------------- amounts

AMOUNT_BOUNDARIES = (0, 1, 2, 9, 10, 99, 100, 101, 999, 1000, 1001, 65_000_000, 65_000_001,
                     10**9 - 1, 10**9, 10**11 - 1, 10**11, 10**12 - 1, 10**12)


def amounts() -> st.SearchStrategy[int]:
    """Non-negative minor units: small ones (0 included), policy boundaries, and large ones."""
    return st.one_of(st.integers(0, 20), st.sampled_from(AMOUNT_BOUNDARIES), st.integers(0, 10**7),
                     st.integers(0, 10**13))


def amounts_for(p: Payment, *, none: bool = True) -> st.SearchStrategy[int | None]:
    """Amounts that probe `p`: around what is capturable, pending and refundable, or anything."""
    near = sorted({max(v + d, 0) for v in (p.capturable, p.pending, p.refundable, p.remainder)
                   for d in (-1, 0, 1)})
    options: list[st.SearchStrategy[int | None]] = [
        st.sampled_from(near),
        st.integers(0, max(p.capturable, 1)),
        st.integers(0, max(p.refundable, 1)),
        amounts(),
    ]
    if none:
        options.append(st.none())
    return st.one_of(options)


EXTRA_CURRENCIES = ("NOK", "EUR", "JPY", "KWD")


def currencies(spec: Spec | None = None) -> st.SearchStrategy[str]:
    """The spec's currencies when it names them, otherwise NOK, EUR, JPY (0 decimals) or KWD (3)."""
    if spec is not None and spec.policy.currencies is not None:
        return st.sampled_from(sorted(spec.policy.currencies))
    return st.sampled_from(EXTRA_CURRENCIES)


def authorizable_amounts(spec: Spec, currency: str) -> st.SearchStrategy[int]:
    """Amounts the spec accepts for an authorization in `currency` (min, max, decimal format)."""
    policy = spec.policy
    low = max(policy.min_amount(currency), 1)
    high = policy.amount_max if policy.amount_max is not None else 10**12
    step = 1
    if policy.amount_format is not None:
        precision, scale = policy.amount_format
        exp = capstate.exponent(currency)
        high = min(high, 10 ** (precision - scale + exp) - 1)
        step = 10 ** (exp - scale) if exp > scale else 1

    def fit(n: int) -> int:
        n = -(-n // step) * step  # round up to the format's smallest unit
        return n if n <= high else high - high % step

    return st.one_of(st.just(low), st.integers(low, max(low, min(high, 10**6))), st.integers(low, high)).map(fit)


def references() -> st.SearchStrategy[str]:
    """Payment references every shipped spec accepts (Vipps: [a-zA-Z0-9-]{8,50})."""
    return st.integers(10000, 99999).map(lambda n: f"order-{n}")


# ------------------------------------------------------------------------------------ idempotency keys

_PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)
_CONTROL = st.sampled_from(["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\u2028"])


def valid_keys() -> st.SearchStrategy[str]:
    """Printable ASCII, 1..50 characters: valid for every shipped spec."""
    return st.text(_PRINTABLE, min_size=1, max_size=50)


def idempotency_keys() -> st.SearchStrategy[str | None]:
    """None, a valid key, one too long for Vipps (50) or for everyone (255), or one with a control char."""
    too_long = st.text(_PRINTABLE, min_size=51, max_size=300)
    with_control = st.tuples(st.text(_PRINTABLE, max_size=10), _CONTROL, st.text(_PRINTABLE, max_size=10)).map(
        "".join)
    return st.one_of(st.none(), valid_keys(), too_long, with_control)


def keys_for(p: Payment, fresh: str | None = None) -> st.SearchStrategy[str | None]:
    """Keys that probe `p`: none, a fresh one, one it already used, or any key at all."""
    options: list[st.SearchStrategy[str | None]] = [st.none(), idempotency_keys()]
    if fresh is not None:
        options.append(st.just(fresh))
    if p.keys:
        options.append(st.sampled_from([u.key for u in p.keys]))
    return st.one_of(options)


# ------------------------------------------------------------------------------------------- payments

flows = st.sampled_from([None, Flow.MANUAL, Flow.AUTOMATIC])


@st.composite
def authorized_payments(draw: st.DrawFn, spec: Spec | None = None) -> Payment:
    """A freshly authorized payment under `spec` (or any shipped spec)."""
    spec = spec if spec is not None else draw(specs())
    currency = draw(currencies(spec))
    amount = draw(authorizable_amounts(spec, currency))
    return Payment.authorized_for(spec, draw(references()), amount=amount, currency=currency, at=draw(instants()),
                                  flow=draw(flows))


_AMOUNT_REQUIRED = frozenset({EventType.AUTHORIZED, EventType.CAPTURED, EventType.REFUNDED})

# The event types of a random walk, weighted towards the ones that move money: an expiry or a failure
# ends most payments at once, so they come up less often.
WALK_TYPES: tuple[EventType, ...] = (
    EventType.AUTHORIZED, EventType.CAPTURE_REQUESTED, EventType.CAPTURE_REQUESTED, EventType.CAPTURED,
    EventType.CAPTURED, EventType.CAPTURED, EventType.CAPTURE_FAILED, EventType.CANCELLED, EventType.REFUNDED,
    EventType.REFUNDED, EventType.EXPIRED)


@st.composite
def events(draw: st.DrawFn, p: Payment, *, types: Sequence[EventType] = tuple(EventType),
           not_before: datetime | None = None, fresh_key: str | None = None) -> Event:
    """An event of any of `types` for payment `p`, with amounts, times, currencies and keys that probe it."""
    etype = draw(st.sampled_from(types))
    amount = draw(amounts_for(p, none=etype not in _AMOUNT_REQUIRED))
    if etype is EventType.AUTHORIZED and amount is not None and p.authorized == 0:
        amount = draw(st.one_of(st.just(amount), authorizable_amounts(p.spec, p.currency or "NOK")))
    if etype is EventType.AUTHORIZED:
        currency = draw(st.one_of(currencies(p.spec), currencies()))
    else:
        currency = draw(st.one_of(st.none(), st.just(p.currency), currencies()))
    return Event(
        p.reference,
        etype,
        draw(instants_near(p, not_before)),
        amount,
        currency,
        key=draw(keys_for(p, fresh_key)) if etype is not EventType.AUTHORIZED else None,
        flow=draw(flows) if etype is EventType.AUTHORIZED else None,
        reason=draw(st.sampled_from([None, "declined"])) if etype is EventType.CAPTURE_FAILED else None,
    )


@st.composite
def reachable_payments(draw: st.DrawFn, spec: Spec | None = None, *, max_steps: int = 8,
                       lenient: bool = False, open_sometimes: bool = True) -> Payment:
    """A payment a real history could produce: authorized, then up to `max_steps` random events.

    Events go through `capstate.apply`; the ones the spec forbids are skipped (they raise and change
    nothing). With `lenient`, events go through `capstate.observe` instead, as an audit would replay a
    history that breaks the policy (over-captures and all). Sometimes the payment is still `open`.
    """
    spec = spec if spec is not None else draw(any_specs())
    if open_sometimes and draw(st.integers(0, 9)) == 0:
        return Payment.new(spec, draw(references()))
    p = draw(authorized_payments(spec))
    clock = p.authorized_at
    for i in range(draw(st.integers(0, max_steps))):
        e = draw(events(p, types=WALK_TYPES, not_before=clock, fresh_key=f"key-{i}"))
        if lenient:
            p, _ = capstate.observe(p, e)
        else:
            try:
                p = capstate.apply(p, e)
            except InvalidTransition:
                continue
        clock = max(clock, e.at) if clock is not None else e.at
    return p


# ------------------------------------------------------------------------------------------- commands


@st.composite
def commands(draw: st.DrawFn, p: Payment, *, not_before: datetime | None = None) -> capstate.Command:
    """A command of any kind for `p`: authorize, capture (final or not), cancel or refund."""
    kind = draw(st.sampled_from([Authorize, Capture, Capture, Cancel, Refund]))
    at = draw(instants_near(p, not_before))
    key = draw(keys_for(p, "fresh-key"))
    currency = draw(st.one_of(st.none(), st.just(p.currency), currencies(), currencies(p.spec)))
    if kind is Authorize:
        return Authorize(amount=draw(amounts()), currency=currency or "NOK", at=at, flow=draw(flows), key=key)
    if kind is Capture:
        return Capture(at=at, amount=draw(amounts_for(p)), currency=currency, key=key, final=draw(st.booleans()))
    if kind is Cancel:
        return Cancel(at=at, amount=draw(amounts_for(p)), key=key)
    amount = draw(amounts_for(p, none=False))
    assert amount is not None
    return Refund(amount=amount, at=at, currency=currency, key=key)
