"""The guards `_rules.evaluate` does not call, and the key history the audit's exact path leaves out.

`evaluate` skips a guard named in `_guards.FACT_INERT` on a logged fact and one in `_guards.KEYED` on a fact
with no key, as passing whatever else it reads; the audit's exact path judges a fact on a Payment built
with the key history of the fact's own key alone (`_hot.Record.payment(whole=False)`). Each holds only
while the guards say so: these tests call the guards themselves, on payments a real (lenient) history
reaches, so that a guard changed to judge something else fails here, not silently in an audit.
"""

from __future__ import annotations

from typing import Any

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import events, reachable_payments

from capstate import _guards, _rules
from capstate._builds import plain
from capstate._values import Payment


@st.composite
def _cases(draw: st.DrawFn) -> tuple[Payment, Any]:
    p = draw(reachable_payments(lenient=True))
    return p, draw(events(p))


@settings(max_examples=300)
@given(_cases(), st.booleans())
def test_skipped_guards_pass_whatever_they_read(case: tuple[Payment, Any], command: bool) -> None:
    p, e = case
    policy = p.spec.policy
    amount = _rules.resolve_amount(p, e)
    if not command:
        for name in _guards.FACT_INERT:
            assert _guards.GUARDS[name].check(p, e, amount, policy, False) is None, name
    if e.key is None:
        for name in _guards.KEYED:
            assert _guards.GUARDS[name].check(p, e, amount, policy, command) is None, name


@settings(max_examples=300)
@given(_cases(), st.booleans())
def test_a_fact_is_judged_alike_with_the_key_history_of_its_own_key_alone(case: tuple[Payment, Any],
                                                                          command: bool) -> None:
    p, drawn = case
    for e in (drawn, attrs.evolve(drawn, key=None)):
        bare = attrs.evolve(p, keys=tuple(use for use in p.keys if use.key == e.key))
        for rules in (_rules, plain(_rules)):  # the compiled build, where installed, and the source
            amount = rules.resolve_amount(p, e)
            assert rules.resolve_amount(bare, e) == amount
            step, found = rules.evaluate(p, e, amount, command)
            bare_step, bare_found = rules.evaluate(bare, e, amount, command)
            assert bare_step is step
            assert [(v.code, v.message) for v in bare_found] == [(v.code, v.message) for v in found]
