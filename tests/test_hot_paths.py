"""The engine's hot-path shortcuts change no answer.

- The capture screen (`capture_suspects`) leaves a guard out only when that guard passes.
- A guard the compiled table prunes as inert under a policy never fails under it.
- A Decision or Violation whose fields are computed on first read is, to every reader, the value an
  eager build makes: equal, same hash and repr, copies, evolves (and a Violation pickles).
- The slot-filling builders (`new_event`, `new_payment`, `Event.from_dict`) make what `__init__` makes,
  and `new_payment` refuses what `__init__` refuses.
- `decide`'s capture path on the compiled CapturePlan answers what the general path answers, in both
  builds of `_capture` (mypyc's and the plain-Python source, side by side); the plan's route cases are
  the routes; a guard's check by room is its check; a key format checked by str methods is the regex's
  verdict.
"""

from __future__ import annotations

import copy
import pickle
import re

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import SOURCES, amounts_for, commands, events, reachable_payments, specs_from

import capstate
from capstate import Decision, Event, EventType, Payment, _builds
from capstate._engine import _decide, evaluate, resolve_amount
from capstate._guards import CAPTURE_SCREENED, CAPTURE_TYPES, GUARDS, ROUTES, capture_suspects, room
from capstate._policy import IdentifierRule, printable_shape
from capstate._values import Violation, new_event, new_payment

# decide's capture plan as plain Python, whichever build `capstate.decide` runs (the compiled one where
# mypyc built it): each differential test below holds both to the general path.
PLAIN = _builds.plain(_builds.capture_imported)


@pytest.mark.parametrize("source", SOURCES)
@given(data=st.data(), command=st.booleans(), lenient=st.booleans())
def test_the_capture_screen_only_clears_guards_that_pass(source: str, data: st.DataObject, command: bool,
                                                         lenient: bool) -> None:
    spec = data.draw(specs_from(source), label="spec")
    p = data.draw(reachable_payments(spec, lenient=lenient), label="payment")
    e = data.draw(events(p, types=sorted(CAPTURE_TYPES)), label="event")
    amount = data.draw(st.one_of(st.just(resolve_amount(p, e)), amounts_for(p, none=False)), label="amount")
    assert isinstance(amount, int)
    suspects = capture_suspects(p, e, amount, spec.policy, command)
    left = room(p, e)
    assert PLAIN.CaptureScreen(spec.policy).suspects(p, e.at, e.amount, e.currency, e.key, amount, left,
                                                     command) == suspects
    for name in CAPTURE_SCREENED - set(suspects):
        verdict = GUARDS[name].check(p, e, amount, spec.policy, command)
        assert verdict is None, f"the screen cleared {name}, which refuses: {verdict}"


@pytest.mark.parametrize("source", SOURCES)
@given(data=st.data(), command=st.booleans())
def test_a_guard_pruned_as_inert_never_fails_under_that_policy(source: str, data: st.DataObject,
                                                               command: bool) -> None:
    spec = data.draw(specs_from(source), label="spec")
    p = data.draw(reachable_payments(spec, lenient=True), label="payment")
    e = data.draw(events(p), label="event")
    amount = data.draw(amounts_for(p, none=False), label="amount")
    assert isinstance(amount, int)
    for guard in GUARDS.values():
        if guard.inert(spec.policy):
            assert guard.check(p, e, amount, spec.policy, command) is None, guard.name


def eager(d: Decision) -> Decision:
    """The same decision built with all seven fields at once."""
    return Decision(d.allowed, d.command, d.before, d.violations, d.warnings, d.event, d.after)


def draw_decidable(data: st.DataObject, source: str) -> tuple[Payment, capstate.Command]:
    """A reachable payment of a spec from `source` (strictly or leniently), and any command for it."""
    spec = data.draw(specs_from(source), label="spec")
    p = data.draw(reachable_payments(spec, lenient=data.draw(st.booleans(), label="lenient")), label="payment")
    return p, data.draw(commands(p), label="command")


@pytest.mark.parametrize("source", SOURCES)
@given(data=st.data())
def test_a_deferred_decision_reads_as_an_eager_one(source: str, data: st.DataObject) -> None:
    p, command = draw_decidable(data, source)
    first, second = capstate.decide(p, command), capstate.decide(p, command)
    # Compared before anything is read from `second`, so its deferred fields settle inside ==.
    assert second == first
    built = eager(first)
    assert first == built and hash(first) == hash(built) and repr(first) == repr(built)
    # (A Decision holds its Spec, which does not pickle; copy goes through the same __getstate__.)
    assert copy.copy(capstate.decide(p, command)) == built
    assert attrs.evolve(capstate.decide(p, command)) == built
    assert attrs.asdict(capstate.decide(p, command), recurse=False) == attrs.asdict(built, recurse=False)
    for v in capstate.decide(p, command).violations:
        assert pickle.loads(pickle.dumps(v)) == Violation(v.code, v.message)
        assert v == Violation(v.code, v.message) and repr(v) == repr(Violation(v.code, v.message))
    with pytest.raises(AttributeError):
        _ = capstate.decide(p, command).no_such_field  # type: ignore[attr-defined]


def test_a_deferred_refusal_message_is_the_arithmetic() -> None:
    spec = capstate.load_spec("vipps")
    at = capstate.Event.from_json(b'{"payment": "order-10001", "type": "authorized", "at": "2026-01-05T10:00:00Z", '
                                  b'"amount": 100000, "currency": "NOK"}')
    p = capstate.apply(Payment.new(spec, "order-10001"), at)
    d = capstate.decide(p, capstate.Capture(at=at.at, amount=120_000, key="k-1"))
    v = d.violations[0]
    assert pickle.loads(pickle.dumps(v)).message == v.message
    assert v.message == "capture 120000 > capturable 100000 = authorized 100000 - captured 0 (NOK 1200.00 > 1000.00)"


@given(payment=st.text(min_size=1, max_size=5), etype=st.sampled_from(list(EventType)),
       amount=st.none() | st.integers(0, 10**6), currency=st.sampled_from([None, "NOK", "JPY"]),
       key=st.none() | st.text(max_size=5))
def test_new_event_is_the_constructor(payment: str, etype: EventType, amount: int | None, currency: str | None,
                                      key: str | None) -> None:
    at = capstate.Event.from_json(b'{"payment": "x", "type": "expired", "at": "2026-01-05T10:00:00+02:00"}').at
    built = Event(payment, etype, at, amount, currency, "vipps", key)
    fast = new_event(payment, etype, at, amount, currency, "vipps", key)
    assert fast == built and type(fast) is Event and repr(fast) == repr(built)
    try:
        parsed = Event.from_dict(built.to_dict())
    except capstate.EventError:
        # A hand-built Event may break the log format (an authorization without its amount).
        assert etype in {EventType.AUTHORIZED, EventType.CAPTURED, EventType.REFUNDED}
        assert amount is None or (etype is EventType.AUTHORIZED and currency is None)
    else:
        assert parsed == built and type(parsed) is Event


def test_new_payment_is_the_constructor_and_refuses_what_it_refuses() -> None:
    spec = capstate.load_spec("bambora")
    args = (spec, "order-1", "authorized", "SEK", 1000, 200, 0, 0, 0, 1, 0, None, None, None, ())
    assert new_payment(*args) == Payment(*args)
    assert Payment.new(spec, "order-1") == Payment(spec, "order-1", spec.initial)
    bad = (spec, "order-1", "authorized", "SEK", 1000, -5, 0, 0, 0, 1, 0, None, None, None, ())
    with pytest.raises(ValueError, match="captured"):
        Payment(*bad)
    with pytest.raises(ValueError, match="captured"):
        new_payment(*bad)
    p = Payment(*args)
    with pytest.raises(ValueError, match="captured"):
        p.moved("captured", captured=-1)


@pytest.mark.parametrize("source", SOURCES)
@given(data=st.data())
def test_a_spec_evolved_onto_another_policy_is_judged_with_every_guard(source: str, data: st.DataObject) -> None:
    """The table's pruned checks belong to its own policy; a hand-evolved spec must not use them."""
    spec = data.draw(specs_from(source), label="spec")
    strict = attrs.evolve(spec.policy, max_captures=1, partial_capture="no", idempotency="required")
    evolved = attrs.evolve(spec, policy=strict)  # keeps the table compiled for the old policy
    p = data.draw(reachable_payments(evolved, lenient=True), label="payment")
    e = data.draw(events(p), label="event")
    amount = resolve_amount(p, e)
    step, violations = evaluate(p, e, amount, command=True)
    if step is None:
        return
    expected = tuple(v for g in step.guards
                     if (v := g.check(p, e, amount, strict, True)) is not None)
    assert [v.code for v in violations] == [v.code for v in expected]


@pytest.mark.parametrize("source", SOURCES)
@given(data=st.data())
def test_decide_on_the_capture_plan_answers_as_the_general_path(source: str, data: st.DataObject) -> None:
    p, command = draw_decidable(data, source)
    general = _decide(p, command)
    for fast in (capstate.decide(p, command), PLAIN.decide(p, command)):
        # Every field, the deferred ones included (== settles them), and the messages as read.
        assert fast == general
        assert [v.message for v in fast.violations] == [v.message for v in general.violations]
        assert [w.message for w in fast.warnings] == [w.message for w in general.warnings]


@pytest.mark.parametrize("amount", [None, 1, 20_000, 69_999, 70_000, 70_001, 90_000])
@pytest.mark.parametrize("key", [None, "cap-1", "cap-2", "bad key"])
def test_decide_on_the_capture_plan_answers_as_the_general_path_on_the_bench_payment(amount: int | None,
                                                                                     key: str | None) -> None:
    """The bench's cases and their neighbours: NOK 1000.00 authorized on Vipps, NOK 300.00 captured."""
    spec = capstate.load_spec("vipps")
    auth = capstate.Event.from_json(b'{"payment": "order-10001", "type": "authorized", "at": "2026-01-05T10:00:00Z", '
                                    b'"amount": 100000, "currency": "NOK"}')
    p = capstate.apply(Payment.new(spec, "order-10001"), auth)
    p = capstate.apply(p, Event(p.reference, EventType.CAPTURED, auth.at, 30_000, key="cap-1"))
    command = capstate.Capture(at=auth.at, amount=amount, key=key)
    general = _decide(p, command)
    for fast in (capstate.decide(p, command), PLAIN.decide(p, command)):
        assert fast == general
        assert [v.message for v in fast.violations] == [v.message for v in general.violations]


class _ShopCapture(capstate.Capture):
    """A service's own Capture subclass: decide takes it by the general path (`type(...) is not Capture`)."""


_WILD_AMOUNTS = st.one_of(st.integers(-10**20, -1), st.integers(10**12, 10**25), st.sampled_from([0, 1, 2]))


@pytest.mark.parametrize("source", SOURCES)
@given(data=st.data())
def test_decide_answers_alike_for_odd_amounts_and_a_capture_subclass(source: str, data: st.DataObject) -> None:
    """The two paths, and a Capture subclass, agree field by field beyond the amounts `commands` draws:
    negative, zero, one and beyond int64; and an allowed decision's fact applies to its `after`.

    Written in review to hold the inlined capture path to `_decide`. It found `Decision.to_dict` naming
    the operation by the class ("_shopcapture") where the command was kept as given."""
    p, command = draw_decidable(data, source)
    if not isinstance(command, (capstate.Authorize, capstate.Refund)) and data.draw(st.booleans(), label="odd"):
        command = attrs.evolve(command, amount=data.draw(st.none() | _WILD_AMOUNTS, label="amount"))
    fast, general = capstate.decide(p, command), _decide(p, command)
    assert PLAIN.decide(p, command) == general
    assert fast == general and type(fast.command) is type(general.command)
    assert [v.message for v in fast.violations] == [v.message for v in general.violations]
    assert [w.message for w in fast.warnings] == [w.message for w in general.warnings]
    assert fast.to_dict() == general.to_dict()
    if isinstance(command, capstate.Capture):
        sub = capstate.decide(p, _ShopCapture(at=command.at, amount=command.amount, currency=command.currency,
                                              key=command.key, final=command.final))
        assert (sub.allowed, sub.violations, sub.warnings, sub.event, sub.after) == (
            fast.allowed, fast.violations, fast.warnings, fast.event, fast.after)
        assert [v.message for v in sub.violations] == [v.message for v in fast.violations]
        assert sub.to_dict() == fast.to_dict()
    released = any(w.code is capstate.Code.REMAINDER_RELEASED for w in fast.warnings)
    if fast.allowed and fast.event is not None and not released:
        assert capstate.apply(p, fast.event) == fast.after


def test_the_capture_plan_judges_the_bench_captures_in_both_builds() -> None:
    """decide runs the build `_builds` chose, and the plan itself (not the general path it falls back on)
    answers the bench's allowed and refused captures, compiled and as plain Python."""
    assert capstate.decide is _builds.capture.decide
    assert GUARDS["within_capturable"].by_room is _builds.capture.exceeds_capturable
    spec = capstate.load_spec("vipps")
    auth = capstate.Event.from_json(b'{"payment": "order-10001", "type": "authorized", "at": "2026-01-05T10:00:00Z", '
                                    b'"amount": 100000, "currency": "NOK"}')
    p = capstate.apply(Payment.new(spec, "order-10001"), auth)
    for amount, allowed in ((20_000, True), (120_000, False)):
        command = capstate.Capture(at=auth.at, amount=amount, key="cap-2")
        for build in (_builds.capture, PLAIN):
            d = build.decide_capture(p, command)
            assert d is not None and d.allowed is allowed and d == _decide(p, command), build


def test_the_capture_plan_covers_the_common_captures() -> None:
    """The plan is not vacuous: a plain capture from `authorized` is on it for every shipped spec."""
    for name in capstate.shipped():
        plan = capstate.load_spec(name).table.capture
        assert plan is not None and "authorized" in plan.picks, name
        by_room = plan.picks["authorized"]
        assert all(step is not None and step.suspects is not None for row in by_room for step in row), name


@pytest.mark.parametrize("source", SOURCES)
@given(data=st.data(), command=st.booleans())
def test_route_cases_and_guards_by_room_are_the_registry(source: str, data: st.DataObject, command: bool) -> None:
    """What the CapturePlan calls instead of a route or a guard gives the same answer, and message."""
    spec = data.draw(specs_from(source), label="spec")
    p = data.draw(reachable_payments(spec, lenient=True), label="payment")
    e = data.draw(events(p, types=sorted(CAPTURE_TYPES)), label="event")
    amount = data.draw(amounts_for(p, none=False), label="amount")
    assert isinstance(amount, int)
    for route in ROUTES.values():
        assert route.case is not None
        assert route.case(amount < room(p, e), p.captured > 0) == route.holds(p, e, amount), route.name
    for guard in GUARDS.values():
        if guard.by_room is not None:
            fast = guard.by_room(p, e.type, amount, room(p, e), spec.policy)
            slow = guard.check(p, e, amount, spec.policy, command)
            assert fast == slow, guard.name
            assert fast is None or slow is None or fast.message == slow.message, guard.name
    plain = PLAIN.exceeds_capturable(p, e.type, amount, room(p, e), spec.policy)
    assert plain == GUARDS["within_capturable"].check(p, e, amount, spec.policy, command)


_KEY_PATTERNS = ["[!-~]+", "[ -~]+", "[!-~]{3,8}", "[!-~]{4}", "[!-~]{2,}", "[ -~]*", "[~-!]+", "[!-~]+x",
                 "[a-zA-Z0-9-]{8,50}", "[^!-~]+", "[\\x21-\\x7e]+", "(?i)[a-z]+", "[!-~]+|", None]
_KEY_TEXT = st.text(st.one_of(st.characters(min_codepoint=0x00, max_codepoint=0x80),
                              st.sampled_from(["\x85", "\xa0", "\u2028", "\u00e9", "\U0001f600", " "])), max_size=12)


def test_the_screen_names_its_guards_by_bit() -> None:
    """`CaptureScreen.screen`'s bits are the screened guards, each once, and a list names them in order."""
    for build in (_builds.capture, PLAIN):
        assert len(build.SUSPECTS) == len(CAPTURE_SCREENED) and set(build.SUSPECTS) == CAPTURE_SCREENED
        assert build.suspect_names(0) == []
        assert build.suspect_names((1 << len(build.SUSPECTS)) - 1) == list(build.SUSPECTS)
        assert build.suspect_names(0b101_0000) == ["key_unique", "within_capturable"]


def test_each_build_knows_whether_it_is_compiled() -> None:
    """`_capture._COMPILED` picks object.__setattr__ and the character loop only where mypyc compiled them."""
    assert _builds.capture._COMPILED is _builds.CAPTURE_COMPILED
    assert PLAIN._COMPILED is False


@given(key=_KEY_TEXT | st.text(max_size=60), spaces=st.booleans())
def test_the_compiled_key_loop_is_the_str_methods(key: str, spaces: bool) -> None:
    expected = key.isascii() and key.isprintable() and (spaces or " " not in key)
    assert _builds.capture.printable_ascii(key, spaces) is expected
    assert PLAIN.printable_ascii(key, spaces) is expected


def test_decide_keeps_specs_apart() -> None:
    """decide remembers the last spec's plan: alternating a spec with one evolved by hand onto a stricter
    policy (its table still compiled for the old one), each is judged as the general path judges it."""
    spec = capstate.load_spec("vipps")
    strict = attrs.evolve(spec, policy=attrs.evolve(spec.policy, max_captures=0))
    auth = capstate.Event.from_json(b'{"payment": "order-10001", "type": "authorized", "at": "2026-01-05T10:00:00Z", '
                                    b'"amount": 100000, "currency": "NOK"}')
    command = capstate.Capture(at=auth.at, amount=20_000, key="cap-1")
    answers = []
    for s in (spec, strict, spec, strict, spec):
        p = capstate.apply(Payment.new(s, "order-10001"), auth)
        for build in (_builds.capture, PLAIN):
            d = build.decide(p, command)
            assert d == _decide(p, command)
            answers.append(d.allowed)
    assert answers == [True, True, False, False] * 2 + [True, True]


_KEY_PROBES = ["", "a", "ab", "a b", " ", " ab", "ab ", "abc\x00", "\x7f", "\x85", "~!", "é", "x" * 9, "x" * 60,
               "K-1_/?#", "\u2028", "ABCDEFGH"]


def _same_verdicts(rule: IdentifierRule, values: list[str]) -> None:
    try:
        expected = [rule.problem(v) is None for v in values]
    except re.error:  # a pattern the regex engine refuses: nothing to agree with
        return
    accepts = rule.acceptor()
    assert [accepts(v) for v in values] == expected, rule


@pytest.mark.parametrize("pattern", _KEY_PATTERNS)
@pytest.mark.parametrize(("min_length", "max_length"), [(1, None), (1, 5), (3, 10), (2, 2)])
def test_a_key_acceptor_is_the_rule_on_probes(pattern: str | None, min_length: int, max_length: int | None) -> None:
    _same_verdicts(IdentifierRule(min_length, max_length, pattern), _KEY_PROBES)


@given(pattern=st.sampled_from(_KEY_PATTERNS), min_length=st.integers(1, 5),
       max_length=st.none() | st.integers(5, 10), values=st.lists(_KEY_TEXT, max_size=20))
def test_a_key_acceptor_is_the_rule(pattern: str | None, min_length: int, max_length: int | None,
                                    values: list[str]) -> None:
    _same_verdicts(IdentifierRule(min_length, max_length, pattern), values)


def test_the_shipped_key_patterns_take_the_str_method_path() -> None:
    """The shipped key rules are the ones decide checks on every capture: they must not need the regex."""
    for name in capstate.shipped():
        rule = capstate.load_spec(name).policy.idempotency_key
        if rule.pattern is not None:
            assert printable_shape(rule) is not None, name
