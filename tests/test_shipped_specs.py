"""The shipped specs cite their sources: every rule has a doc, or is a marked default with a reason."""

from __future__ import annotations

import pytest

import capstate
from capstate._guards import GUARDS, ROUTES

SPECS = capstate.shipped_specs()


@pytest.mark.parametrize("name", SPECS)
def test_every_transition_cites_the_provider(name: str) -> None:
    spec = capstate.load_spec(name)
    for t in spec.transitions:
        assert t.doc, f"{name}: {t.trigger.value} {t.source}->{t.dest} has no doc"


@pytest.mark.parametrize("name", SPECS)
def test_every_policy_rule_has_a_doc_or_is_a_marked_default(name: str) -> None:
    spec = capstate.load_spec(name)
    for rule, source in spec.policy.sources.items():
        if source.default:
            assert source.note and ("[UNK]" in source.note or "[INF]" in source.note), (name, rule)
        else:
            assert source.doc, (name, rule)


@pytest.mark.parametrize("name", SPECS)
def test_state_vocabulary_is_the_designs(name: str) -> None:
    spec = capstate.load_spec(name)
    assert set(spec.states) <= {"open", "authorized", "capturing", "captured", "failed", "cancelled", "expired"}
    assert spec.initial == "open"
    assert {"captured", "cancelled", "expired"} <= spec.terminal


def test_every_registered_guard_and_route_is_documented() -> None:
    for guard in GUARDS.values():
        assert guard.doc and guard.code in capstate.Code
    for route in ROUTES.values():
        assert route.doc


def test_policy_summary_is_json_ready_for_every_spec() -> None:
    import orjson

    for name in SPECS:
        text = orjson.dumps(capstate.load_spec(name).policy.summary())
        assert orjson.loads(text)["capture"] in {"sync", "async"}
