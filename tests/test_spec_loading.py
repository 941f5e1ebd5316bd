"""Broken specs fail to load with a SpecError naming the file, the key path and, where it can, the line.

Each test takes a shipped spec's TOML text from the installed package, breaks it with one precise text
edit (there is no TOML writer; the edits are line-level and the test knows which line it changed), and
checks the error. The expected path and line come from the edit, never from the loader.

Also: policy overrides (good ones change the policy and are recorded as overrides; bad ones name
"overrides.<key>"), missing spec files, and a user's own spec file that loads and decides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import capstate
from capstate import Authorize, Cancel, Capture, Payment, RuleSource, SpecError, decide
from capstate._spec import Spec

SPECS = ("bambora", "hellgate", "pipwave", "vipps")
FILE = "x.toml"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def shipped_text(name: str) -> str:
    return (resources.files("capstate.specs") / f"{name}.toml").read_text(encoding="utf-8")


class Lines:
    """A spec's text as lines, edited in place. Indices are 0-based; the `line` answers are 1-based."""

    def __init__(self, text: str):
        self.lines = text.splitlines()

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def headers(self, header: str) -> list[int]:
        return [i for i, line in enumerate(self.lines) if line.strip() == header]

    def header(self, header: str, nth: int = 0) -> int:
        return self.headers(header)[nth]

    def end_of_block(self, start: int) -> int:
        """The index just past the table that starts at `start` (the next header, or the end)."""
        for i in range(start + 1, len(self.lines)):
            if self.lines[i].lstrip().startswith("["):
                return i
        return len(self.lines)

    def key(self, start: int, key: str) -> int:
        """The index of `key = ...` inside the table that starts at `start`."""
        for i in range(start + 1, self.end_of_block(start)):
            if self.lines[i].split("=", 1)[0].strip() == key:
                return i
        raise LookupError(f"no {key} in the table at line {start + 1}")

    def top_key(self, key: str) -> int:
        return next(i for i, line in enumerate(self.lines) if line.split("=", 1)[0].strip() == key)

    def set(self, index: int, new: str) -> int:
        self.lines[index] = new
        return index + 1

    def insert(self, index: int, *new: str) -> int:
        self.lines[index:index] = list(new)
        return index + 1

    def delete_block(self, start: int) -> None:
        del self.lines[start:self.end_of_block(start)]

    def transitions(self) -> list[int]:
        return self.headers("[[transitions]]")

    def transition_value(self, start: int, key: str) -> str | None:
        try:
            index = self.key(start, key)
        except LookupError:
            return None
        return self.lines[index].split("=", 1)[1].strip()


@dataclass(frozen=True)
class Broken:
    text: str
    path: str
    line: int | None
    reason: str = ""


def load(text: str) -> Spec:
    return Spec.from_toml(text, file=FILE)


def assert_breaks(broken: Broken) -> SpecError:
    with pytest.raises(SpecError) as info:
        load(broken.text)
    err = info.value
    assert err.file == FILE
    assert err.path == broken.path
    message = str(err)
    assert message.startswith(FILE)
    if broken.path:
        assert broken.path in message
    if broken.line is not None:
        assert err.line == broken.line, (err.line, broken.line, message)
        assert message.startswith(f"{FILE}:{broken.line}:")
    if broken.reason:
        assert broken.reason in message
    return err


# --------------------------------------------------------------------------------------------- mutations
# Each takes a spec name and returns the broken text, the key path and the line the error must name.


def unknown_top_level_key(name: str) -> Broken:
    s = Lines(shipped_text(name))
    line = s.insert(0, 'colour = "blue"')
    return Broken(s.text, "colour", line, "unknown key 'colour'")


def unknown_transition_key(name: str) -> Broken:
    s = Lines(shipped_text(name))
    line = s.insert(s.transitions()[2] + 1, "priority = 3")
    return Broken(s.text, "transitions[2].priority", line, "unknown key 'priority'")


def unknown_terminal(name: str) -> Broken:
    s = Lines(shipped_text(name))
    index = s.key(s.header("[machine]"), "terminal")
    line = s.set(index, s.lines[index].replace('"captured"', '"settled"'))
    position = [x.strip() for x in s.lines[index].split("[", 1)[1].rstrip("]").split(",")].index('"settled"')
    return Broken(s.text, f"machine.terminal[{position}]", line, "unknown state 'settled'")


def unknown_guard(name: str) -> Broken:
    s = Lines(shipped_text(name))
    start = s.transitions()[0]
    index = s.key(start, "guards")
    assert s.lines[index].startswith('guards = ["reference_valid"')
    line = s.set(index, s.lines[index].replace('"reference_valid"', '"reference_looks_ok"'))
    return Broken(s.text, "transitions[0].guards[0]", line, "unknown guard 'reference_looks_ok'")


def unknown_route(name: str) -> Broken:
    s = Lines(shipped_text(name))
    start = s.transitions()[1]
    line = s.insert(start + 1, 'when = "on_tuesdays"')
    return Broken(s.text, "transitions[1].when", line, "unknown route 'on_tuesdays'")


def unreachable_state(name: str) -> Broken:
    s = Lines(shipped_text(name))
    index = s.key(s.header("[machine]"), "states")
    line = s.set(index, s.lines[index].replace("]", ', "limbo"]'))
    return Broken(s.text, "machine.states", line, "'limbo' is unreachable")


def duplicate_state(name: str) -> Broken:
    s = Lines(shipped_text(name))
    index = s.key(s.header("[machine]"), "states")
    line = s.set(index, s.lines[index].replace('["open",', '["open", "open",'))
    return Broken(s.text, "machine.states", line, "'open' is listed twice")


def exit_out_of_terminal(name: str) -> Broken:
    s = Lines(shipped_text(name))
    count = len(s.transitions())
    first_policy = next(i for i, line in enumerate(s.lines) if line.startswith("[policy."))
    s.insert(first_policy, "[[transitions]]", 'trigger = "authorized"', 'source = "captured"',
             'dest = "authorized"', 'doc = "nothing leaves a terminal state"', "")
    return Broken(s.text, f"transitions[{count}].dest", first_policy + 4, "exit out of terminal state 'captured'")


def overlapping_transitions(name: str) -> Broken:
    """A copy of transitions[0] (authorized from open) right after it: two moves, no route between them."""
    s = Lines(shipped_text(name))
    start = s.transitions()[0]
    block = [line for line in s.lines[start:s.end_of_block(start)] if line.strip()]
    line = s.insert(s.end_of_block(start), *block, "")
    return Broken(s.text, "transitions[1].when", line, "2 transitions for authorized from 'open'")


def sync_without_captured_transition(name: str) -> Broken:
    """capture = "sync", and no `captured` transition out of an authorized state (only out of capturing)."""
    s = Lines(shipped_text(name))
    for start in reversed(s.transitions()):
        if s.transition_value(start, "trigger") == '"captured"' and s.transition_value(start, "source") != \
                '"capturing"':
            s.delete_block(start)
    line = s.set(s.key(s.header("[policy.capture]"), "value"), 'value = "sync"')
    return Broken(s.text, "policy.capture.value", line, "needs a captured transition")


def toml_duplicate_table(name: str) -> Broken:
    s = Lines(shipped_text(name))
    start = s.header("[policy.capture]")
    line = s.insert(s.end_of_block(start), "[policy.capture]", 'value = "sync"', 'doc = "again"')
    return Broken(s.text, "", line, "not valid TOML")


def set_key(header: str, key: str, value: str, path: str, reason: str = "", *, nth: int = 0,
            raw: str | None = None, label: str | None = None) -> Callable[[str], Broken]:
    """Replace `key = ...` in the nth table named `header` with `key = value` (or the raw line)."""

    def mutate(name: str) -> Broken:
        s = Lines(shipped_text(name))
        line = s.set(s.key(s.header(header, nth), key), raw if raw is not None else f"{key} = {value}")
        return Broken(s.text, path, line, reason)

    table = header.strip("[]") + (f"[{nth}]" if header.startswith("[[") else "")
    mutate.__name__ = label or f"{table}.{key}={value}"
    return mutate


def policy_value(rule: str, value: str, subpath: str = "", reason: str = "") -> Callable[[str], Broken]:
    return set_key(f"[policy.{rule}]", "value", value, f"policy.{rule}.value{subpath}", reason)


def rule_without_doc(name: str) -> Broken:
    s = Lines(shipped_text(name))
    start = s.header("[policy.capture]")
    del s.lines[s.key(start, "doc")]
    return Broken(s.text, "policy.capture.doc", start + 1, "must cite them")


def default_without_note(name: str) -> Broken:
    s = Lines(shipped_text(name))
    start = s.header("[policy.capture]")
    if s.transition_value(start, "note") is not None:
        del s.lines[s.key(start, "note")]
    s.insert(start + 1, "default = true")
    return Broken(s.text, "policy.capture.note", start + 1, "a default needs a note")


def default_not_a_bool(name: str) -> Broken:
    s = Lines(shipped_text(name))
    line = s.insert(s.header("[policy.capture]") + 1, 'default = "yes"')
    return Broken(s.text, "policy.capture.default", line, "true or false")


def required_rule_missing(rule: str) -> Callable[[str], Broken]:
    def mutate(name: str) -> Broken:
        s = Lines(shipped_text(name))
        s.delete_block(s.header(f"[policy.{rule}]"))
        return Broken(s.text, f"policy.{rule}", None, "required rule is missing")

    mutate.__name__ = f"without_{rule}"
    return mutate


def unknown_key_in_a_policy_rule(name: str) -> Broken:
    s = Lines(shipped_text(name))
    line = s.insert(s.header("[policy.remainder]") + 1, 'source = "a blog post"')
    return Broken(s.text, "policy.remainder.source", line, "unknown key 'source'")


def unknown_policy_rule(name: str) -> Broken:
    s = Lines(shipped_text(name))
    start = s.header("[policy.capture]")
    line = s.insert(start, "[policy.surcharge]", "value = 3", 'doc = "made up"', "")
    return Broken(s.text, "policy.surcharge", line, "unknown key 'surcharge'")


UNKNOWN_DEST = set_key("[[transitions]]", "dest", '"capturd"', "transitions[1].dest", "unknown state 'capturd'",
                       nth=1)

MUTATIONS: list[Callable[[str], Broken]] = [
    unknown_top_level_key,
    unknown_transition_key,
    set_key("[[transitions]]", "source", '"limbo"', "transitions[0].source", "unknown state 'limbo'"),
    UNKNOWN_DEST,
    set_key("[machine]", "initial", '"opened"', "machine.initial", "unknown state 'opened'"),
    unknown_terminal,
    set_key("[[transitions]]", "trigger", '"capture"', "transitions[1].trigger", "unknown trigger 'capture'",
            nth=1),
    unknown_guard,
    unknown_route,
    unreachable_state,
    duplicate_state,
    exit_out_of_terminal,
    overlapping_transitions,
    sync_without_captured_transition,
    set_key("[machine]", "initial", "", "", "not valid TOML", raw='initial = "open', label="toml_syntax_error"),
    toml_duplicate_table,
    policy_value("max_captures", "0", reason="got 0"),
    policy_value("max_captures", '"many"', reason="'many'"),
    policy_value("authorization_validity", '"7 days"', reason="'7 days'"),
    policy_value("authorization_validity", '{ NOK = "180d", DKK = "two weeks" }', ".DKK", "'two weeks'"),
    policy_value("authorization_validity", '{ ZZZ = "7d" }', ".ZZZ", "'ZZZ'"),
    policy_value("amount_format", '"decimal(2,5)"', reason="decimal(2,5)"),
    policy_value("amount_format", '"float"', reason="'float'"),
    policy_value("amount_min", "{ XXX = 1 }", ".XXX", "'XXX'"),
    policy_value("amount_min", "{ EUR = 1, ZZZ = 1 }", ".ZZZ", "'ZZZ'"),
    policy_value("amount_min", "-1", reason="-1"),
    policy_value("currencies", "[]", reason="non-empty list"),
    policy_value("reference", '{ min_length = 1, pattern = "[a-z" }', ".pattern", "not a regular expression"),
    policy_value("reference", "{ min_length = 0 }", ".min_length", "got 0"),
    policy_value("reference", "{ min_length = 8, max_length = 4 }", ".max_length", "got 4"),
    policy_value("reference", "{ max_len = 4 }", ".max_len", "unknown key 'max_len'"),
    policy_value("capture", '"eventually"', reason="'eventually'"),
    policy_value("partial_capture", '"sometimes"', reason="'sometimes'"),
    policy_value("remainder", '"kept"', reason="'kept'"),
    policy_value("idempotency", "true", reason="True"),
    policy_value("over_capture_percent", "101", reason="101"),
    policy_value("refund_window", '"a year"', reason="'a year'"),
    policy_value("authorization_validity", '"0d"', reason="zero duration"),
    rule_without_doc,
    default_without_note,
    default_not_a_bool,
    required_rule_missing("remainder"),
    required_rule_missing("capture"),
    required_rule_missing("max_captures"),
    required_rule_missing("reference"),
    unknown_policy_rule,
    unknown_key_in_a_policy_rule,
]


def _mutation_id(mutate: Callable[[str], Broken]) -> str:
    return mutate.__name__


@pytest.mark.parametrize("name", SPECS)
@pytest.mark.parametrize("mutate", MUTATIONS, ids=[_mutation_id(m) for m in MUTATIONS])
def test_broken_spec_names_file_path_and_line(name: str, mutate: Callable[[str], Broken]) -> None:
    assert_breaks(mutate(name))


@pytest.mark.parametrize("name", SPECS)
def test_the_unbroken_text_loads(name: str) -> None:
    """The mutations start from text that loads: each failure above is the mutation's doing."""
    spec = load(shipped_text(name))
    assert spec.name == name and spec.file == FILE
    assert len(spec.transitions) >= len(Lines(shipped_text(name)).transitions())


def test_unknown_state_in_a_source_list_names_the_element() -> None:
    s = Lines(shipped_text("vipps"))
    start = next(i for i in s.transitions() if (s.transition_value(i, "source") or "").startswith("["))
    row = s.transitions().index(start)
    index = s.key(start, "source")
    line = s.set(index, 'source = ["capturing", "authorised"]')
    assert_breaks(Broken(s.text, f"transitions[{row}].source[1]", line, "unknown state 'authorised'"))


def test_unknown_currency_in_a_currency_list_names_the_element() -> None:
    """The path of a list element is `value[1]`, as `machine.terminal[0]` and `guards[0]` are."""
    s = Lines(shipped_text("vipps"))
    line = s.set(s.key(s.header("[policy.currencies]"), "value"), 'value = ["NOK", "ZZZ", "EUR"]')
    assert_breaks(Broken(s.text, "policy.currencies.value[1]", line, "'ZZZ'"))


def test_an_empty_source_list_is_refused() -> None:
    """`source = []` would silently drop the transition; a spec says where a move starts."""
    s = Lines(shipped_text("bambora"))
    start = next(i for i in s.transitions() if (s.transition_value(i, "source") or "").startswith("["))
    row = s.transitions().index(start)
    line = s.set(s.key(start, "source"), "source = []")
    assert_breaks(Broken(s.text, f"transitions[{row}].source", line))


def test_exit_out_of_terminal_through_a_dest_that_looks_harmless() -> None:
    """A refund that moves a captured Bambora payment back to authorized would reopen captures."""
    s = Lines(shipped_text("bambora"))
    start = next(i for i in s.transitions() if s.transition_value(i, "trigger") == '"refunded"')
    row = s.transitions().index(start)
    line = s.set(s.key(start, "dest"), 'dest = "authorized"')
    assert_breaks(Broken(s.text, f"transitions[{row}].dest", line, "exit out of terminal state 'captured'"))


def test_routes_of_two_groups_on_one_move_are_refused() -> None:
    s = Lines(shipped_text("vipps"))
    starts = [i for i in s.transitions() if s.transition_value(i, "when") == '"takes_remainder"']
    start = starts[0]
    row = s.transitions().index(start)
    line = s.set(s.key(start, "when"), 'when = "something_captured"')
    assert_breaks(Broken(s.text, f"transitions[{row}].when", line, "distinct route"))


def test_not_a_spec_at_all() -> None:
    with pytest.raises(SpecError) as info:
        load('title = "hello"\n')
    assert FILE in str(info.value)
    with pytest.raises(SpecError):
        load("")


def test_a_directory_or_a_missing_file_is_named_for_what_it_is(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a directory"):
        capstate.load_spec(tmp_path)
    with pytest.raises(SpecError, match="no such file"):
        capstate.load_spec(tmp_path / "absent.toml")


def test_spec_error_is_a_value_error_and_a_capstate_error() -> None:
    with pytest.raises(ValueError, match=r"x\.toml"):
        load(unknown_top_level_key("vipps").text)
    assert issubclass(SpecError, capstate.CapstateError)


# --------------------------------------------------------------------------------------------- overrides

BAD_OVERRIDES = [
    ("surcharge", 3, "overrides.surcharge"),
    ("max_captures", 0, "overrides.max_captures"),
    ("max_captures", "2", "overrides.max_captures"),
    ("authorization_validity", "7 days", "overrides.authorization_validity"),
    ("authorization_validity.EUR", "a week", "overrides.authorization_validity.EUR"),
    ("authorization_validity.ZZZ", "7d", "overrides.authorization_validity.ZZZ"),
    ("partial_capture", "maybe", "overrides.partial_capture"),
    ("amount_format", "decimal(2,5)", "overrides.amount_format"),
    ("amount_format", "decimal(11,2)\n", "overrides.amount_format"),
    ("amount_format", "decimal(\uff11\uff11,2)", "overrides.amount_format"),
    ("amount_min", {"XXX": 1}, "overrides.amount_min"),
    ("reference", {"pattern": "[a-z"}, "overrides.reference"),
    ("capture", "eventually", "overrides.capture"),
]


@pytest.mark.parametrize(("key", "value", "path"), BAD_OVERRIDES, ids=[f"{k}={v!r}" for k, v, _ in BAD_OVERRIDES])
def test_bad_override_names_the_override(key: str, value: Any, path: str) -> None:
    with pytest.raises(SpecError) as info:
        capstate.load_spec("hellgate", overrides={key: value})
    err = info.value
    assert err.path == path
    assert path in str(err)
    assert "hellgate" in err.file


def test_bad_override_through_from_toml_names_the_file() -> None:
    with pytest.raises(SpecError) as info:
        Spec.from_toml(shipped_text("pipwave"), file=FILE, overrides={"partial_capture": "half"})
    assert info.value.path == "overrides.partial_capture" and str(info.value).startswith(FILE)


def test_good_override_changes_the_policy_and_is_recorded() -> None:
    spec = capstate.load_spec("hellgate", overrides={"authorization_validity": "7d"})
    assert spec.policy.validity_for("EUR") == timedelta(days=7)
    assert spec.policy.validity_for("JPY") == timedelta(days=7)
    source = spec.policy.sources["authorization_validity"]
    assert isinstance(source, RuleSource)
    assert source.overridden is True and source.default is False
    assert spec.policy.sources["max_captures"].overridden is False
    # The shipped spec is untouched.
    plain = capstate.load_spec("hellgate")
    assert plain.policy.validity_for("EUR") is None
    assert plain.policy.sources["authorization_validity"].overridden is False
    assert plain.policy.sources["authorization_validity"].default is True


def test_override_of_one_currency_keeps_the_others() -> None:
    spec = capstate.load_spec("vipps", overrides={"authorization_validity.NOK": "5d"})
    assert spec.policy.validity_for("NOK") == timedelta(days=5)
    assert spec.policy.validity_for("DKK") == timedelta(days=14)
    assert spec.policy.validity_for("EUR") == timedelta(days=14)
    assert spec.policy.sources["authorization_validity"].overridden is True
    p = Payment.authorized_for(spec, "order-20001", amount=10000, currency="NOK", at=T0)
    assert decide(p, Capture(at=T0 + timedelta(days=5), amount=1000, key="k1")).codes == (
        capstate.Code.AUTHORIZATION_EXPIRED,)
    assert decide(p, Capture(at=T0 + timedelta(days=4), amount=1000, key="k1")).allowed


@pytest.mark.parametrize(("overrides", "attribute", "expected"), [
    ({"partial_capture": "becomes_full"}, "partial_capture", "becomes_full"),
    ({"partial_capture": "no"}, "partial_capture", "no"),
    ({"max_captures": "unlimited"}, "max_captures", None),
    ({"max_captures": 2}, "max_captures", 2),
    ({"over_capture_percent": 15}, "over_capture_percent", 15),
    ({"amount_format": "decimal(13,4)"}, "amount_format", (13, 4)),
])
def test_good_overrides_of_pipwave(overrides: dict[str, Any], attribute: str, expected: Any) -> None:
    spec = capstate.load_spec("pipwave", overrides=overrides)
    assert getattr(spec.policy, attribute) == expected
    (name,) = overrides
    assert spec.policy.sources[name].overridden is True
    assert getattr(capstate.load_spec("pipwave").policy, attribute) != expected


def test_override_max_captures_lets_a_second_capture_through() -> None:
    spec = capstate.load_spec("bambora", overrides={"max_captures": 2})
    p = Payment.authorized_for(spec, "order-2", amount=10000, currency="SEK", at=T0)
    first = decide(p, Capture(at=T0, amount=4000))
    assert first.allowed and first.after is not None
    # Bambora's machine moves to captured after one capture; the override changes the number, not the graph.
    second = decide(first.after, Capture(at=T0, amount=1000))
    assert second.codes == (capstate.Code.INVALID_STATE,)


# ----------------------------------------------------------------------------------------- spec files


def test_load_spec_of_a_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(SpecError) as info:
        capstate.load_spec(missing)
    assert str(missing) in str(info.value)
    with pytest.raises(SpecError) as info:
        capstate.load_spec(str(missing))
    assert str(missing) in str(info.value)


def test_load_spec_of_an_unknown_name() -> None:
    with pytest.raises(SpecError) as info:
        capstate.load_spec("stripe")
    assert "stripe" in str(info.value)
    for name in SPECS:
        assert name in str(info.value)


def test_load_spec_of_a_broken_file_names_that_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    broken = UNKNOWN_DEST("bambora")
    path.write_text(broken.text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        capstate.load_spec(path)
    assert info.value.file == str(path)
    assert info.value.path == "transitions[1].dest"
    assert str(info.value).startswith(f"{path}:{broken.line}:")


def test_load_spec_of_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(shipped_text("vipps").replace("øre", "\u00f8re").encode("latin-1", errors="replace"))
    with pytest.raises(SpecError) as info:
        capstate.load_spec(path)
    assert str(path) in str(info.value)


ACME = """\
# Acme Pay: a made-up provider with full captures only, inside three days, and a required key.

[provider]
name = "acme"
title = "Acme Pay"

[machine]
initial = "open"
states = ["open", "authorized", "captured", "cancelled"]
terminal = ["captured", "cancelled"]

[[transitions]]
trigger = "authorized"
source = "open"
dest = "authorized"
guards = ["reference_valid", "currency_supported", "amount_valid"]

[[transitions]]
trigger = "captured"
source = "authorized"
dest = "captured"
guards = ["key_valid", "key_unique", "amount_valid", "currency_matches", "not_expired", "partial_allowed",
          "below_max_captures", "within_capturable"]

[[transitions]]
trigger = "cancelled"
source = "authorized"
dest = "cancelled"
guards = ["key_valid", "not_expired", "cancels_whole_remainder"]

[[transitions]]
trigger = "refunded"
source = "captured"
dest = "="
guards = ["key_valid", "key_unique", "amount_valid", "within_refundable"]

[policy.capture]
value = "sync"
doc = "acme.example/docs/capture"

[policy.partial_capture]
value = "no"
doc = "acme.example/docs/capture: 'captures are always for the full amount'"

[policy.max_captures]
value = 1
doc = "acme.example/docs/capture"

[policy.remainder]
value = "lapses"
default = true
note = "nothing is left after a full capture [INF]"

[policy.idempotency]
value = "required"
doc = "acme.example/docs/headers: 'Acme-Key is required'"

[policy.idempotency_key]
value = { min_length = 4, max_length = 20, pattern = "[A-Z0-9]+" }
doc = "acme.example/docs/headers"

[policy.authorization_validity]
value = { SEK = "3d", "*" = "1d" }
doc = "acme.example/docs/holds"

[policy.currencies]
value = ["SEK", "NOK"]
doc = "acme.example/docs/currencies"

[policy.reference]
value = { min_length = 4, max_length = 12, pattern = "[a-z0-9]+" }
doc = "acme.example/docs/references"
"""


@pytest.fixture
def acme(tmp_path: Path) -> Spec:
    path = tmp_path / "acme.toml"
    path.write_text(ACME, encoding="utf-8")
    return capstate.load_spec(path)


def test_own_spec_loads(acme: Spec, tmp_path: Path) -> None:
    assert acme.name == "acme" and acme.title == "Acme Pay"
    assert acme.file == str(tmp_path / "acme.toml")
    assert acme.states == ("open", "authorized", "captured", "cancelled")
    assert acme.terminal == frozenset({"captured", "cancelled"})
    assert acme.policy.partial_capture == "no" and acme.policy.max_captures == 1
    assert acme.policy.validity_for("SEK") == timedelta(days=3)
    assert acme.policy.validity_for("NOK") == timedelta(days=1)
    assert acme.policy.sources["remainder"].default is True
    refunds = [t for t in acme.transitions if t.trigger.value == "refunded"]
    assert [(t.source, t.dest) for t in refunds] == [("captured", "captured")]


def test_own_spec_decides(acme: Spec) -> None:
    new = Payment.new(acme, "order42")
    assert decide(new, Authorize(amount=5000, currency="DKK", at=T0)).codes == (
        capstate.Code.CURRENCY_UNSUPPORTED,)
    assert decide(Payment.new(acme, "ORDER-42"), Authorize(amount=5000, currency="SEK", at=T0)).codes == (
        capstate.Code.REFERENCE_INVALID,)
    authorized = decide(new, Authorize(amount=5000, currency="SEK", at=T0))
    assert authorized.allowed and authorized.after is not None
    p = authorized.after
    assert p.expires_at == T0 + timedelta(days=3)

    assert decide(p, Capture(at=T0, amount=2000, key="KEY1")).codes == (
        capstate.Code.PARTIAL_CAPTURE_UNSUPPORTED,)
    assert decide(p, Capture(at=T0, amount=5000)).codes == (capstate.Code.IDEMPOTENCY_KEY_REQUIRED,)
    assert decide(p, Capture(at=T0, amount=5000, key="key1")).codes == (capstate.Code.IDEMPOTENCY_KEY_REQUIRED,)
    assert decide(p, Capture(at=T0 + timedelta(days=3), key="KEY1")).codes == (
        capstate.Code.AUTHORIZATION_EXPIRED,)
    over = decide(p, Capture(at=T0, amount=5001, key="KEY1"))
    assert set(over.codes) == {capstate.Code.EXCEEDS_CAPTURABLE}
    assert "5001" in over.violations[0].message and "5000" in over.violations[0].message

    full = decide(p, Capture(at=T0 + timedelta(days=2), key="KEY1"))
    assert full.allowed and full.after is not None
    assert full.after.summary() == {"state": "captured", "authorized": 5000, "captured": 5000, "cancelled": 0,
                                    "refunded": 0}
    assert full.warnings == ()
    assert decide(full.after, Capture(at=T0, amount=1, key="KEY2")).codes == (
        capstate.Code.MULTIPLE_CAPTURES_UNSUPPORTED,)
    assert decide(full.after, Cancel(at=T0, key="KEY3")).codes == (capstate.Code.INVALID_STATE,)
    refunded = decide(full.after, capstate.Refund(amount=1500, at=T0, key="KEY4"))
    assert refunded.allowed and refunded.after is not None
    assert (refunded.after.state, refunded.after.refunded) == ("captured", 1500)

    cancelled = decide(p, Cancel(at=T0, key="KEY5"))
    assert cancelled.allowed and cancelled.after is not None
    assert (cancelled.after.state, cancelled.after.cancelled) == ("cancelled", 5000)


def test_own_spec_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "acme.toml"
    path.write_text(ACME, encoding="utf-8")
    spec = capstate.load_spec(path, overrides={"partial_capture": "yes", "authorization_validity.SEK": "1h"})
    assert spec.policy.partial_capture == "yes"
    assert spec.policy.validity_for("SEK") == timedelta(hours=1)
    assert spec.policy.validity_for("NOK") == timedelta(days=1)
    p = Payment.authorized_for(spec, "order42", amount=5000, currency="SEK", at=T0)
    d = decide(p, Capture(at=T0 + timedelta(minutes=59), amount=2000, key="KEY1"))
    assert d.allowed and d.after is not None and d.after.state == "captured"
    assert [w.code for w in d.warnings] == [capstate.Code.REMAINDER_HELD]
    with pytest.raises(SpecError) as info:
        capstate.load_spec(path, overrides={"remainder": "kept"})
    assert info.value.path == "overrides.remainder" and str(path) in str(info.value)


@pytest.mark.parametrize("name", SPECS)
def test_a_minimum_above_the_maximum_is_refused(name: str) -> None:
    """No amount could ever pass such a spec, so it must not load."""
    s = Lines(shipped_text(name))
    start = s.header("[policy.amount_max]")
    s.set(s.key(start, "value"), "value = 50")
    s.set(s.key(s.header("[policy.amount_min]"), "value"), "value = 100")
    err = assert_breaks(Broken(s.text, "policy.amount_min.value", None, "no amount could pass"))
    assert "100" in str(err) and "50" in str(err)


@pytest.mark.parametrize("name", SPECS)
def test_an_absent_validity_means_unknown(name: str) -> None:
    """DESIGN.md section 4: an absent authorization validity means unknown, so no expiry checks."""
    s = Lines(shipped_text(name))
    s.delete_block(s.header("[policy.authorization_validity]"))
    spec = load(s.text)
    assert spec.policy.authorization_validity is None
    assert spec.policy.validity_for("EUR") is None


@pytest.mark.parametrize("bad", ["acme\\n", "acme\\u0661"])
def test_provider_name_is_the_whole_string(tmp_path: Path, bad: str) -> None:
    """A regex "$" matches before a final newline: "acme\\n" once passed as a provider name."""
    path = tmp_path / "acme.toml"
    path.write_text(ACME.replace('name = "acme"', f'name = "{bad}"'), encoding="utf-8")
    with pytest.raises(SpecError, match=r"provider\.name"):
        capstate.load_spec(path)
