"""The shipped specs cite their sources: every rule has a doc, or is a marked default with a reason."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import capstate
from capstate import (
    Cancel,
    Capture,
    Code,
    Event,
    EventType,
    Flow,
    InvalidTransition,
    Payment,
    apply,
    decide,
    load_spec,
    replay,
    shipped_specs,
)
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


@pytest.mark.parametrize("name", shipped_specs())
def test_every_capture_fact_checks_its_currency(name: str) -> None:
    # A provider's asynchronous outcome (capturing -> captured) is a fact like any other: one in another currency
    # than the authorization must be refused, or an audit misses the mismatch.
    spec = load_spec(name)
    unchecked = [(t.source, t.dest) for t in spec.transitions
                 if t.trigger is EventType.CAPTURED and "currency_matches" not in t.guards]
    assert unchecked == []


def test_hellgate_outcome_in_another_currency_is_refused() -> None:
    at = datetime(2026, 1, 5, tzinfo=UTC)
    p = Payment.authorized_for(load_spec("hellgate"), "11111111-1111-4111-8111-111111111111", amount=1000,
                               currency="EUR", at=at)
    capturing = apply(p, decide(p, Capture(at=at)).event)  # type: ignore[arg-type]
    assert capturing.state == "capturing"
    with pytest.raises(InvalidTransition) as info:
        apply(capturing, Event(p.reference, EventType.CAPTURED, at, 1000, "SEK"))
    assert [v.code for v in info.value.violations] == [Code.CURRENCY_MISMATCH]


def test_hellgate_refuses_a_void_on_an_automatic_capture_flow() -> None:
    # research §3: with automatic capture the payment stays `processing` until the capture completes; void: no.
    at = datetime(2026, 1, 5, tzinfo=UTC)
    spec = load_spec("hellgate")
    auto = replay([Event("11111111-1111-4111-8111-111111111111", EventType.AUTHORIZED, at, 1000, "EUR",
                         flow=Flow.AUTOMATIC)], spec)
    refused = decide(auto, Cancel(at=at))
    assert not refused.allowed and [v.code for v in refused.violations] == [Code.AUTOMATIC_CAPTURE_FLOW]
    assert "void" in refused.violations[0].message
    manual = replay([Event("11111111-1111-4111-8111-111111111111", EventType.AUTHORIZED, at, 1000, "EUR")], spec)
    assert decide(manual, Cancel(at=at)).allowed


# Every fact research/providers.md labels [UNK] (its section 5 table and the per-provider sections), by
# provider: the spec must state it as a marked default with a note, never as if the provider documented it.
UNDOCUMENTED = [
    ("bambora", "max_captures", "1.4: 'Multiple captures: [UNK]'"),
    ("bambora", "over_capture_percent", "1.4: 'Capturing more than authorized: [UNK]'"),
    ("bambora", "amount_min", "1.3: 'amount: 0 ... what it means is [UNK]'"),
    ("bambora", "remainder", "1.4: 'Remainder after a partial capture: [UNK]'"),
    ("bambora", "max_refunds", "1.2: 'Refunded: [UNK]: further partial refunds undocumented'"),
    ("bambora", "idempotency", "1.7: 'Idempotency: no key mechanism [UNK/none]'"),
    ("hellgate", "authorization_validity", "3.2: 'Authorization expiry: not documented [UNK]'"),
    ("hellgate", "remainder", "3.4: 'Remainder after a partial capture: [UNK]'"),
    ("hellgate", "amount_min", "5: 'Zero amount: [UNK] -> reject'"),
    ("pipwave", "max_captures", "4.7: 'Multiple captures: [UNK]'"),
    ("pipwave", "over_capture_percent", "4.7: 'Over-capture: [UNK]; reject locally'"),
    ("pipwave", "amount_min", "5: 'Zero amount: [UNK] (0.00 may mean full?) -> reject'"),
    ("pipwave", "authorization_validity", "4.7: 'Authorization expiry: [UNK]; it depends on the PG'"),
    ("pipwave", "remainder", "5: 'Remainder after partial capture: [UNK] (PG-dependent)'"),
    ("pipwave", "idempotency", "4.7: 'Idempotency: none documented [UNK]'"),
]


@pytest.mark.parametrize(("name", "rule", "research"), UNDOCUMENTED, ids=[f"{n}.{r}" for n, r, _ in UNDOCUMENTED])
def test_undocumented_facts_are_marked_defaults(name: str, rule: str, research: str) -> None:
    source = load_spec(name).policy.sources[rule]
    assert source.default, f"{name}.{rule} is [UNK] in research/providers.md {research}; mark it default = true"
    assert source.note and ("[UNK]" in source.note or "[INF]" in source.note)


@pytest.mark.parametrize("name", shipped_specs())
def test_every_citation_is_a_url_a_user_can_open(name: str) -> None:
    # Never a path into a file outside the repository (../shared, research notes): a user has only the wheel.
    spec = load_spec(name)
    docs = [spec.doc, *(t.doc for t in spec.transitions),
            *(source.doc for source in spec.policy.sources.values() if source.doc)]
    for doc in docs:
        assert doc and doc.startswith("https://"), (name, doc)
    text = (Path(__file__).resolve().parents[1] / "specs" / f"{name}.toml").read_text(encoding="utf-8")
    assert "../shared" not in text and "research/providers.md" not in text
