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
    # Review: shapes the list above never reached. A finite capture limit above one on a provider whose
    # partial captures stay `authorized`; an over-capture allowance with the remainder still reserved (and
    # on a spec without an amount maximum, so that allowances of int64-sized amounts are computed); refund
    # windows on the specs that leave them unknown; currencies with 0 and 3 decimals where a spec names
    # its currencies (Vipps), each with its own validity and minimum.
    ("vipps", {"max_captures": 2}),
    ("vipps", {"over_capture_percent": 15}),
    ("vipps", {"currencies": ["NOK", "JPY", "KWD"], "authorization_validity": {"NOK": "180d", "JPY": "3d",
                                                                              "KWD": "14d"},
               "amount_min": {"NOK": 100, "JPY": 1, "KWD": 1000}}),
    ("hellgate", {"over_capture_percent": 10, "refund_window": "60d"}),
    ("bambora", {"refund_window": "30d", "max_refunds": "unlimited"}),
    ("pipwave", {"refund_window": "14d", "authorization_validity": "7d"}),
)

spec_names = st.sampled_from(SPEC_NAMES)


def specs() -> st.SearchStrategy[Spec]:
    """A shipped spec, as loaded (the loader caches them)."""
    return spec_names.map(capstate.load_spec)


def load_case(case: tuple[str, Mapping[str, Any]]) -> Spec:
    """Load a shipped spec with overrides: `load_case(("bambora", {"max_captures": 2}))`."""
    name, overrides = case
    return capstate.load_spec(name, overrides=overrides or None)


override_cases = st.sampled_from(OVERRIDES)


def overridden_specs() -> st.SearchStrategy[Spec]:
    """A shipped spec with one of `OVERRIDES` applied. (Its repr does not show the overrides; a test
    that wants them in a failing example draws from `override_cases` and calls `load_case`.)"""
    return override_cases.map(load_case)


def any_specs() -> st.SearchStrategy[Spec]:
    return st.one_of(specs(), overridden_specs())


# Property tests run once per shipped spec, and once more over the overridden ones.
SOURCES: tuple[str, ...] = (*SPEC_NAMES, "overridden")


def specs_from(source: str) -> st.SearchStrategy[Spec]:
    """The shipped spec named `source`, or for "overridden" one of `OVERRIDES` (printed as its case)."""
    if source == "overridden":
        return override_cases.map(load_case)
    return st.just(capstate.load_spec(source))


# ----------------------------------------------------------------------------------------------- time

FIRST = datetime(2024, 1, 1)
LAST = datetime(2030, 12, 31)
ZONES = (UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5)), timezone(timedelta(hours=5, minutes=45)))


def instants() -> st.SearchStrategy[datetime]:
    """Timezone-aware datetimes between 2024 and 2030, in a few offsets."""
    return st.datetimes(min_value=FIRST, max_value=LAST, timezones=st.sampled_from(ZONES))


# Strategies are built once: building one per draw costs Hypothesis more than the engine's whole work.
_ZONE = st.sampled_from(ZONES)
_TIME_KIND = st.sampled_from(["soon", "soon", "later", "edge", "now", "refund_edge"])
_SOON = st.integers(0, 3 * 86400)
_LATER = st.integers(0, 400 * 86400)
_EDGE = st.sampled_from([-1, 0, 1])
_DEFAULT_BASE = datetime(2026, 1, 5, 12, tzinfo=UTC)


def draw_instant(draw: st.DrawFn, p: Payment, not_before: datetime | None = None) -> datetime:
    base = not_before or p.authorized_at or _DEFAULT_BASE
    kind = draw(_TIME_KIND)
    expires = p.expires_at
    window = p.spec.policy.refund_window
    if kind == "edge" and expires is not None:
        at = max(base, expires + timedelta(seconds=draw(_EDGE)))
    elif kind == "refund_edge" and window is not None and p.authorized_at is not None:
        # To the second around the end of the refund window (measured from the authorization).
        at = max(base, p.authorized_at + window + timedelta(seconds=draw(_EDGE)))
    elif kind == "now":
        at = base
    else:
        at = base + timedelta(seconds=draw(_SOON if kind in ("soon", "edge") else _LATER))
    return at.astimezone(draw(_ZONE))


@st.composite
def instants_near(draw: st.DrawFn, p: Payment, not_before: datetime | None = None) -> datetime:
    """Times that matter to `p`: soon after authorization (or `not_before`), to the second around its
    expiry or the end of its refund window, or long after; in any of a few offsets."""
    return draw_instant(draw, p, not_before)


# -------------------------------------------------------------------------------------------- amounts

INT64_MAX = 2**63 - 1  # every provider's amount is an int64 (Vipps `Amount`, Bambora's swagger)
AMOUNT_BOUNDARIES = (0, 1, 2, 9, 10, 99, 100, 101, 999, 1000, 1001, 65_000_000, 65_000_001,
                     10**9 - 1, 10**9, 10**11 - 1, 10**11, 10**12 - 1, 10**12,
                     2**53, 2**53 + 1, INT64_MAX - 1, INT64_MAX, INT64_MAX + 1)


def amounts() -> st.SearchStrategy[int]:
    """Non-negative minor units: small ones (0 included), policy boundaries, and large ones."""
    return st.one_of(st.integers(0, 20), st.sampled_from(AMOUNT_BOUNDARIES), st.integers(0, 10**7),
                     st.integers(0, 10**13))


_AMOUNTS = amounts()
_AMOUNT_KIND = st.sampled_from(["near", "near", "below", "any", "none"])
_AMOUNT_KIND_NOT_NONE = st.sampled_from(["near", "near", "below", "any"])
_LIMIT = st.sampled_from(["capturable", "pending", "refundable", "remainder", "over"])
_OFFSET = st.sampled_from([0, -1, 1])
_FRACTION = st.integers(0, 1000)


def draw_amount(draw: st.DrawFn, p: Payment, *, none: bool = True) -> int | None:
    kind = draw(_AMOUNT_KIND if none else _AMOUNT_KIND_NOT_NONE)
    if kind == "none":
        return None
    if kind == "any":
        return draw(_AMOUNTS)
    which = draw(_LIMIT)
    if which == "over":
        # The over-capture bound: capturable plus the allowance, in integer arithmetic.
        limit = max(p.capturable + p.authorized * p.spec.policy.over_capture_percent // 100, 0)
    else:
        limit = max(getattr(p, which), 0)
    if kind == "near":
        return max(limit + draw(_OFFSET), 0)
    return limit * draw(_FRACTION) // 1000


@st.composite
def amounts_for(draw: st.DrawFn, p: Payment, *, none: bool = True) -> int | None:
    """Amounts that probe `p`: at or next to what is capturable (with or without the over-capture
    allowance), pending, refundable or left, a part of it, any amount, or (with `none`) no amount."""
    return draw_amount(draw, p, none=none)


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
    high = policy.amount_max if policy.amount_max is not None else INT64_MAX
    step = 1
    if policy.amount_format is not None:
        precision, scale = policy.amount_format
        exp = capstate.exponent(currency)
        high = min(high, 10 ** (precision - scale + exp) - 1)
        step = 10 ** (exp - scale) if exp > scale else 1

    def fit(n: int) -> int:
        n = -(-n // step) * step  # round up to the format's smallest unit
        return n if n <= high else high - high % step

    # The largest amount the spec takes comes up on its own: at int64 scale an allowance or a sum
    # computed in floating point is off by whole units.
    return st.one_of(st.just(low), st.integers(low, max(low, min(high, 10**6))), st.integers(low, min(high, 10**12)),
                     st.just(high), st.integers(low, high)).map(fit)


def references() -> st.SearchStrategy[str]:
    """Payment references every shipped spec accepts (Vipps: [a-zA-Z0-9-]{8,50}; Hellgate: a payment id,
    a UUID)."""
    return st.uuids().map(str)


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


_IDEMPOTENCY_KEYS = idempotency_keys()
_KEY_KIND = st.sampled_from(["none", "fresh", "fresh", "used", "any"])


def draw_key(draw: st.DrawFn, p: Payment, fresh: str | None = None) -> str | None:
    kind = draw(_KEY_KIND)
    if kind == "fresh" and fresh is not None:
        return fresh
    if kind == "used" and p.keys:
        return p.keys[draw(st.integers(0, len(p.keys) - 1))].key
    if kind == "any":
        return draw(_IDEMPOTENCY_KEYS)
    return None


@st.composite
def keys_for(draw: st.DrawFn, p: Payment, fresh: str | None = None) -> str | None:
    """Keys that probe `p`: none, a fresh one, one it already used, or any key at all."""
    return draw_key(draw, p, fresh)


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


_EVENT_TYPES = st.sampled_from(tuple(EventType))
_WALK_TYPES = st.sampled_from(WALK_TYPES)
_REASONS = st.sampled_from([None, "declined"])
_OTHER_CURRENCIES = currencies()
_CURRENCY_KIND = st.sampled_from(["none", "none", "same", "other"])


@st.composite
def events(draw: st.DrawFn, p: Payment, *, types: Sequence[EventType] | None = None,
           not_before: datetime | None = None, fresh_key: str | None = None) -> Event:
    """An event of any of `types` (default: every type) for payment `p`, with amounts, times,
    currencies and keys that probe it."""
    return draw_event(draw, p, types=types, not_before=not_before, fresh_key=fresh_key)


def draw_event(draw: st.DrawFn, p: Payment, *, types: Sequence[EventType] | None = None,
               not_before: datetime | None = None, fresh_key: str | None = None) -> Event:
    etype = draw(_EVENT_TYPES if types is None else _WALK_TYPES if types is WALK_TYPES else st.sampled_from(types))
    amount = draw_amount(draw, p, none=etype not in _AMOUNT_REQUIRED)
    if etype is EventType.AUTHORIZED:
        if p.authorized == 0 and draw(st.booleans()):
            amount = draw(authorizable_amounts(p.spec, p.currency or "NOK"))
        currency: str | None = draw(st.one_of(currencies(p.spec), _OTHER_CURRENCIES))
    else:
        kind = draw(_CURRENCY_KIND)
        currency = None if kind == "none" else p.currency if kind == "same" else draw(_OTHER_CURRENCIES)
    return Event(
        p.reference,
        etype,
        draw_instant(draw, p, not_before),
        amount,
        currency,
        key=draw_key(draw, p, fresh_key) if etype is not EventType.AUTHORIZED else None,
        flow=draw(flows) if etype is EventType.AUTHORIZED else None,
        reason=draw(_REASONS) if etype is EventType.CAPTURE_FAILED else None,
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
        e = draw_event(draw, p, types=WALK_TYPES, not_before=clock, fresh_key=f"key-{i}")
        if lenient:
            try:
                p, _ = capstate.observe(p, e)
            except ValueError:
                # observe should record every fact; that it does is test_invariants' concern, not a
                # walk's (a capture request without an amount after an over-capture is one it cannot).
                continue
        else:
            try:
                p = capstate.apply(p, e)
            except InvalidTransition:
                continue
        clock = max(clock, e.at) if clock is not None else e.at
    return p


# ------------------------------------------------------------------------------------------- commands


_COMMAND_KINDS = st.sampled_from([Authorize, Capture, Capture, Cancel, Refund])


@st.composite
def commands(draw: st.DrawFn, p: Payment, *, not_before: datetime | None = None) -> capstate.Command:
    """A command of any kind for `p`: authorize, capture (final or not), cancel or refund."""
    kind = draw(_COMMAND_KINDS)
    at = draw_instant(draw, p, not_before)
    key = draw_key(draw, p, "fresh-key")
    which = draw(_CURRENCY_KIND)
    currency = None if which == "none" else p.currency if which == "same" else draw(_OTHER_CURRENCIES)
    if kind is Authorize:
        amount = draw(_AMOUNTS)
        return Authorize(amount=amount, currency=currency or draw(currencies(p.spec)), at=at, flow=draw(flows), key=key)
    if kind is Capture:
        return Capture(at=at, amount=draw_amount(draw, p), currency=currency, key=key, final=draw(st.booleans()))
    if kind is Cancel:
        return Cancel(at=at, amount=draw_amount(draw, p), key=key)
    amount = draw_amount(draw, p, none=False)
    assert amount is not None
    return Refund(amount=amount, at=at, currency=currency, key=key)
