"""The table is total (h2's state-machine test): every state x every trigger either advances along a
declared transition or raises InvalidTransition and leaves the payment exactly as it was.

"Advances" means: the new state is the destination of a transition the spec declares from that state
for that trigger. Nothing else is allowed to come out of `apply`: no other exception, no undeclared
move, no silent no-op for a move the spec does not have.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import product

import pytest
from attrs import evolve
from hypothesis import given
from hypothesis import strategies as st
from strategies import SPEC_NAMES, amounts, authorized_payments, valid_keys

import capstate
from capstate import Event, EventType, InvalidTransition, Payment, Spec

T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)


def declared(spec: Spec, state: str, trigger: EventType) -> set[str]:
    return {t.dest for t in spec.transitions if t.source == state and t.trigger is trigger}


def advances_or_raises(p: Payment, e: Event) -> Payment | None:
    """Apply `e`; check the outcome against the spec's declared transitions. None when it raised."""
    spec, state = p.spec, p.state
    copy = evolve(p)
    try:
        after = capstate.apply(p, e)
    except InvalidTransition as exc:
        assert exc.violations, f"{spec.name}: {e.type.value} from {state!r} raised without saying why"
        assert p == copy and p.state == state, "a refused event changed the payment"
        return None
    legal = declared(spec, state, e.type)
    assert after.state in legal, (f"{spec.name}: {e.type.value} from {state!r} went to {after.state!r}; "
                                  f"the spec declares {sorted(legal) or 'no such transition'}")
    assert after.state in spec.states
    assert p == copy and p.state == state, "apply changed its input"
    return after


def whole_table_test(name: str) -> Callable[[], None]:
    spec = capstate.load_spec(name)

    @given(state=st.sampled_from(spec.states), trigger=st.sampled_from(EventType),
           payment=authorized_payments(spec), amount=st.one_of(st.none(), amounts()),
           seconds=st.integers(0, 30 * 86400), key=st.one_of(st.none(), valid_keys()),
           currency=st.sampled_from([None, "payment's", "NOK", "JPY"]))
    def test(*, state: str, trigger: EventType, payment: Payment, amount: int | None, seconds: int, key: str | None,
             currency: str | None) -> None:
        assert payment.authorized_at is not None
        p = evolve(payment, state=state)
        e = Event(p.reference, trigger, payment.authorized_at + timedelta(seconds=seconds), amount,
                  payment.currency if currency == "payment's" else currency, key=key)
        advances_or_raises(p, e)

    test.__name__ = f"test_{name}_table_advances_or_raises"
    return test


# One test per shipped spec, as h2 writes one per machine.
for _name in SPEC_NAMES:
    globals()[f"test_{_name}_table_advances_or_raises"] = whole_table_test(_name)


def placed(spec: Spec, state: str, *, captured: int = 0, pending: int = 0) -> Payment:
    base = Payment.authorized_for(spec, "3b2f0c1e-6a4d-4f7b-9c2e-8d1a5e7f0b34", amount=10_000, currency="EUR", at=T0)
    return evolve(base, state=state, captured=captured, pending=pending)


AMOUNTS = (None, 0, 1, 2_500, 5_000, 10_000, 10_001)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_table_is_total(name: str) -> None:
    """Exhaustively: every state x trigger x a few amounts advances along a declared move or raises."""
    spec = capstate.load_spec(name)
    for state, trigger, amount in product(spec.states, EventType, AMOUNTS):
        for captured, pending in ((0, 0), (5_000, 0), (0, 2_500)):
            p = placed(spec, state, captured=captured, pending=pending)
            advances_or_raises(p, Event(p.reference, trigger, T0 + timedelta(hours=1), amount))


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_every_declared_transition_can_fire(name: str) -> None:
    """No dead rows: each declared (source, trigger, dest) is taken by some plausible payment and event."""
    spec = capstate.load_spec(name)
    missing = []
    for t in spec.transitions:
        fired = False
        for (captured, pending), amount in product(((0, 0), (5_000, 0), (0, 2_500), (2_500, 2_500)), AMOUNTS):
            p = placed(spec, t.source, captured=captured, pending=pending)
            try:
                after = capstate.apply(p, Event(p.reference, t.trigger, T0 + timedelta(hours=1), amount))
            except InvalidTransition:
                continue
            if after.state == t.dest:
                fired = True
                break
        if not fired:
            missing.append(f"{t.trigger.value}: {t.source} -> {t.dest}")
    assert not missing, f"{name}: transitions no payment can take: {missing}"
