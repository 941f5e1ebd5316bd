"""Events and plans under fuzz: each parser returns a value or its one documented typed error.

The drawn objects mix valid fields with what broke them before (issue 12): instants at the edges of the
calendar (0001-01-01T00:00:00+14:00, 9999-12-30), lone surrogates, and values of the wrong type. An event
is then applied, audited (both paths) and written back as JSON; a plan is simulated on every shipped
spec and its report written as JSON. Nothing may raise but EventError, InvalidTransition or PlanError.
(The spec loader's fuzz is tests/test_spec_fuzz.py.)
"""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from capstate import Event as CEvent
from capstate import (
    EventError,
    InvalidTransition,
    Payment,
    Plan,
    PlanError,
    apply,
    audit,
    load_spec,
    shipped_specs,
    simulate,
)

SPECS = shipped_specs()

_instants = st.one_of(
    st.sampled_from(["2026-03-02T09:00:00Z", "2026-03-02T09:00:00+14:00", "0001-01-01T00:00:00+14:00",
                     "0001-01-01T00:00:00Z", "0002-01-01T00:00:00Z", "9898-12-31T23:59:59-23:59",
                     "9899-01-01T00:00:00Z", "9999-12-30T00:00:00Z", "9999-12-31T23:59:59-01:00",
                     "2026-02-30T00:00:00Z", "2026-03-02T09:00:00", "+1d", "+99999999d"]),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
)
_text = st.one_of(st.text(max_size=6), st.sampled_from(["order-10001", "3b2f0c1e-6a4d-4f7b-9c2e-8d1a5e7f0b34",
                                                        "x\ud800", "\udcff", "a/b", "..", ""]))
_junk = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**64), st.floats(), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, strategy, _junk)


_events = st.fixed_dictionaries({
    "payment": _maybe(_text),
    "type": _maybe(st.sampled_from(["authorized", "captured", "capture_requested", "capture_failed", "cancelled",
                                    "refunded", "expired"])),
    "at": _maybe(_instants),
}, optional={
    "amount": _maybe(st.integers(0, 10**6)), "currency": _maybe(st.sampled_from(["NOK", "EUR", "MYR", "XXX", "nok"])),
    "provider": _maybe(st.sampled_from([*SPECS, "\ud800"])), "key": _maybe(_text), "reason": _maybe(_text),
    "flow": _maybe(st.sampled_from(["manual", "automatic", "\udcff"])),
})


@given(st.lists(_events, min_size=1, max_size=4), st.sampled_from(SPECS))
def test_events_parse_apply_and_audit_or_raise_their_typed_errors(objs: list[dict[str, Any]], spec: str) -> None:
    payment: Payment | None = None
    for obj in objs:
        try:
            event = CEvent.from_dict(obj)
        except EventError:
            continue
        event.to_json()  # what parses can be written back
        payment = payment if payment is not None and payment.reference == event.payment else Payment.new(
            load_spec(spec), event.payment)
        with contextlib.suppress(InvalidTransition):
            payment = apply(payment, event)
    for fast in (True, False):
        orjson.dumps(audit(objs, spec, fast=fast).to_dict())
        orjson.dumps(audit([CEvent.from_dict(o).to_json() if _parses(o) else b"{}" for o in objs], spec,
                           fast=fast).to_dict())


def _parses(obj: dict[str, Any]) -> bool:
    try:
        CEvent.from_dict(obj)
    except EventError:
        return False
    return True


_steps = st.lists(st.fixed_dictionaries(
    {"op": _maybe(st.sampled_from(["capture", "cancel", "refund", "wait"]))},
    optional={"at": _maybe(_instants), "amount": _maybe(st.integers(0, 10**6)), "key": _maybe(_text),
              "note": _maybe(_text), "outcome": _maybe(st.sampled_from(["succeeded", "failed"]))}), max_size=4)
_plans = st.fixed_dictionaries({
    "payment": _maybe(st.fixed_dictionaries(
        {"amount": _maybe(st.integers(0, 10**7)), "currency": _maybe(st.sampled_from(["NOK", "EUR", "MYR", "ZZZ"])),
         "authorized_at": _maybe(_instants)},
        optional={"reference": _maybe(_text), "flow": _maybe(st.sampled_from(["manual", "automatic", "\ud800"]))})),
}, optional={"step": _maybe(_steps), "description": _maybe(_text)})


@given(_plans)
def test_plans_parse_and_simulate_or_raise_plan_error(obj: dict[str, Any]) -> None:
    try:
        plan = Plan.from_dict(obj)
    except PlanError:
        return
    orjson.dumps(plan.to_dict())
    for spec in SPECS:
        orjson.dumps(simulate(plan, spec).to_dict())
