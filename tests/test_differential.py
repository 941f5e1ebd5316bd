"""Differential test: the compiled table against the transitions Machine (DESIGN.md section 2).

The hot path runs the table compiled from a spec (`capstate._engine.evaluate`); the Machine built by
`capstate._machine` from the same spec is the reference interpreter. For any payment, event, amount
and command flag they must agree on where the payment goes, or that it goes nowhere:

    table:   step.dest if step is not None and not violations else None
    machine: reference_dest(payment, event, amount, command)

Payments come from random histories (strict `apply`, or lenient `observe`, which can hold payments
that broke the policy), over the shipped specs and over specs with overridden policy numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from itertools import product
from typing import Any

import pytest
from attrs import evolve
from hypothesis import given
from hypothesis import strategies as st
from strategies import OVERRIDES, SOURCES, SPEC_NAMES, amounts_for, events, load_case, reachable_payments, specs_from

import capstate
from capstate import Event, EventType, InvalidTransition, Payment
from capstate._engine import evaluate, resolve_amount
from capstate._machine import reference_dest

REF = "3b2f0c1e-6a4d-4f7b-9c2e-8d1a5e7f0b34"  # a reference every shipped spec accepts (Hellgate: a UUID)
T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
CASES: list[tuple[str, Mapping[str, Any]]] = [(name, {}) for name in SPEC_NAMES] + list(OVERRIDES)


def case_id(case: tuple[str, Mapping[str, Any]]) -> str:
    name, overrides = case
    return "-".join([name, *(f"{k}={v}" for k, v in overrides.items())])


def table_dest(p: Payment, e: Event, amount: int, command: bool) -> str | None:
    step, violations = evaluate(p, e, amount, command)
    return step.dest if step is not None and not violations else None


def snapshot(p: Payment) -> tuple[Payment, str, int]:
    """What must not change: the payment's fields (a copy), its state and its spec's compiled table."""
    return evolve(p), p.state, len(p.spec.table.steps)


def assert_agree(p: Payment, e: Event, amount: int, command: bool) -> str | None:
    before = snapshot(p)
    table = table_dest(p, e, amount, command)
    machine = reference_dest(p, e, amount, command)
    assert table == machine, (f"{p.spec.name}: {e.type.value} of {amount} (command={command}) from {p.state!r}: "
                              f"table -> {table}, Machine -> {machine}")
    assert snapshot(p) == before, "judging a move changed the payment or the spec"
    assert p.state == before[1]
    return table


@pytest.mark.parametrize("source", SOURCES)
@given(data=st.data(), command=st.booleans(), lenient=st.booleans())
def test_table_and_machine_agree_on_reachable_payments(source: str, data: st.DataObject, command: bool,
                                                       lenient: bool) -> None:
    spec = data.draw(specs_from(source), label="spec")
    p = data.draw(reachable_payments(spec, lenient=lenient), label="payment")
    e = data.draw(events(p), label="event")
    amount = data.draw(st.one_of(st.just(resolve_amount(p, e)), amounts_for(p, none=False)), label="amount")
    assert isinstance(amount, int)
    assert_agree(p, e, amount, command)


@pytest.mark.parametrize("source", SOURCES)
@given(data=st.data())
def test_table_and_machine_agree_along_a_history(source: str, data: st.DataObject) -> None:
    """At every step of a random history both judge the next event alike, as a command and as a fact,
    and `apply` (which judges facts) goes where they say."""
    spec = data.draw(specs_from(source), label="spec")
    p = data.draw(reachable_payments(spec, max_steps=0), label="start")
    clock = p.authorized_at
    for i in range(data.draw(st.integers(1, 12), label="steps")):
        e = data.draw(events(p, not_before=clock, fresh_key=f"key-{i}"), label=f"event {i}")
        amount = resolve_amount(p, e)
        assert_agree(p, e, amount, True)
        dest = assert_agree(p, e, amount, False)
        try:
            p = capstate.apply(p, e)
        except InvalidTransition:
            assert dest is None, f"table and Machine take {e.type.value} to {dest}, apply refuses it"
            continue
        assert p.state == dest, f"apply went to {p.state}, table and Machine to {dest}"
        clock = max(clock, e.at) if clock is not None else e.at


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_table_and_machine_agree_on_every_state_and_trigger(case: tuple[str, Mapping[str, Any]]) -> None:
    """Exhaustively, over every state x trigger x a few amounts and aggregates, as command and as fact.

    The Machine is shared per spec, and consecutive calls come from different states: a Machine that
    kept the previous payment's state would answer for the wrong one.
    """
    spec = load_case(case)
    names = spec.policy.currencies
    currency = "EUR" if names is None or "EUR" in names else sorted(names)[0]  # JPY where EUR is overridden away
    authorized = Payment.authorized_for(spec, REF, amount=10_000, currency=currency, at=T0)
    payments = [Payment.new(spec, REF), authorized, evolve(authorized, captured=4_000),
                evolve(authorized, pending=4_000)]
    for state, trigger, base, amount in product(spec.states, EventType, payments, (0, 1, 4_000, 10_001)):
        p = evolve(base, state=state)
        e = Event(p.reference, trigger, T0 + timedelta(hours=1), amount)
        for command in (True, False):
            assert_agree(p, e, amount, command)
