"""`capstate check`: the seed specs hold, and deliberately broken copies of them are caught.

Each broken spec is a seed spec's own text with one rule removed or one transition added (the edit
is asserted to have happened, so a change to the seed spec cannot silently turn a test into a no-op).
The model checker must name the invariant the break costs and give a shortest history that shows it;
the CLI runs as a real process.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import orjson
import pytest
from test_cli import Run, assert_error, run_cli, write

from capstate import SpecError, load_spec, shipped_specs
from capstate._check import INVARIANTS, CheckResult, check_spec
from capstate._spec import lint_spec


def seed_text(name: str) -> str:
    return resources.files("capstate.specs").joinpath(f"{name}.toml").read_text(encoding="utf-8")


def mutate(name: str, old: str, new: str) -> str:
    text = seed_text(name)
    assert text.count(old) >= 1, f"{name}.toml no longer holds {old!r}; update the mutation"
    return text.replace(old, new, 1)


def spec_file(tmp_path: Path, text: str, name: str = "broken.toml") -> Path:
    return write(tmp_path, name, text)


def broken(result: CheckResult) -> dict[str, list[str]]:
    return {c.invariant: [m.label for m in c.moves] for c in result.counterexamples}


# Bambora's capture from `authorized`, and the guard list that ends it.
BAMBORA_CAPTURE_GUARDS = (
    'guards = ["key_unique", "amount_valid", "currency_matches", "not_expired", "nothing_cancelled",\n'
    '          "nothing_in_flight", "below_max_captures", "partial_allowed", "within_capturable"]\n'
    'doc = "https://github.com/bambora/dev.bambora.com/blob/94ce7867822f9313a8f7440422f3ea7fe64b9be2/'
    'source/includes/api/_capture.md: \'If it is less')
VIPPS_TAKES_REMAINDER = '''when = "takes_remainder"
guards = ["key_valid", "key_unique", "amount_valid", "currency_matches", "not_expired", "nothing_cancelled",
          "nothing_in_flight", "below_max_captures", "partial_allowed", "within_capturable"]'''


def over_capture_bambora() -> str:
    return mutate("bambora", BAMBORA_CAPTURE_GUARDS,
                  BAMBORA_CAPTURE_GUARDS.replace(', "within_capturable"]', "]"))


def terminal_exit_bambora() -> str:
    """A cancel out of `captured`, with no guards: the remainder of a captured payment released again."""
    return mutate("bambora", '[[transitions]]\ntrigger = "expired"',
                  '[[transitions]]\ntrigger = "cancelled"\nsource = "captured"\ndest = "cancelled"\n'
                  'doc = "broken on purpose"\n\n[[transitions]]\ntrigger = "expired"')


# ------------------------------------------------------------------------------------------ seed specs


@pytest.mark.parametrize("name", shipped_specs())
def test_every_seed_spec_passes(name: str) -> None:
    result = check_spec(name)
    assert result.findings == ()
    assert result.counterexamples == (), broken(result)
    assert result.ok
    assert result.depth >= 6
    # A search that visits a handful of states proves nothing: authorize, capture, refund, cancel and
    # expiry each lead somewhere in every seed spec.
    assert result.states > 90, result.states
    assert result.moves > result.states


def test_a_spec_object_is_checked_as_loaded() -> None:
    result = check_spec(load_spec("hellgate"), depth=6)
    assert result.ok and result.spec.name == "hellgate"


def test_depth_bounds_the_search() -> None:
    shallow, deep = check_spec("vipps", depth=3), check_spec("vipps", depth=5)
    assert shallow.states < deep.states
    assert not shallow.complete
    with pytest.raises(ValueError, match="depth"):
        check_spec("vipps", depth=0)


# -------------------------------------------------------------------------------------- broken specs


def test_removed_over_capture_guard_gives_a_shortest_counterexample(tmp_path: Path) -> None:
    result = check_spec(spec_file(tmp_path, over_capture_bambora()))
    assert not result.ok
    assert result.findings == ()  # the graph is sound; only the money is not
    steps = broken(result)
    assert steps["captured_within_authorized"] == ["authorize 100 EUR", "capture 101"]
    (first,) = [c for c in result.counterexamples if c.invariant == "captured_within_authorized"]
    assert "captured 101 > authorized 100 + allowance 0" in first.message
    assert first.moves[-1].after.captured == 101


def test_removed_over_capture_guard_in_vipps_is_caught_after_a_partial_capture(tmp_path: Path) -> None:
    # Only the "takes the remainder" route loses its bound: the counterexample must go through it.
    text = mutate("vipps", VIPPS_TAKES_REMAINDER, VIPPS_TAKES_REMAINDER.replace(', "within_capturable"]', "]"))
    result = check_spec(spec_file(tmp_path, text))
    steps = broken(result)
    assert steps["captured_within_authorized"][0].startswith("authorize 100 ")
    assert steps["captured_within_authorized"][-1].startswith("capture 101")
    assert len(steps["captured_within_authorized"]) == 2


def test_removed_outcome_bound_is_caught_through_a_provider_fact(tmp_path: Path) -> None:
    # Hellgate's asynchronous capture settles through a `captured` fact; without its bound the
    # provider could report more than was requested, and only `apply` sees that.
    old = 'guards = ["outcome_only", "key_unique", "currency_matches", "within_capturable"]'
    new = 'guards = ["outcome_only", "key_unique", "currency_matches"]'
    result = check_spec(spec_file(tmp_path, mutate("hellgate", old, new)))
    steps = broken(result)["captured_within_authorized"]
    assert steps[0] == "authorize 100 EUR"
    assert steps[-1] == "provider reports captured 101"
    assert len(steps) == 3  # authorize, a capture request, its outcome


def test_exit_out_of_a_terminal_state_is_a_lint_finding_not_a_load_error(tmp_path: Path) -> None:
    path = spec_file(tmp_path, terminal_exit_bambora())
    with pytest.raises(SpecError, match="exit out of terminal state 'captured'"):
        load_spec(path)  # the default loader stays strict
    result = check_spec(path)
    assert [f.kind for f in result.findings] == ["terminal_exit"]
    (finding,) = result.findings
    assert finding.path.endswith(".dest") and finding.line is not None
    steps = broken(result)
    assert steps["terminal_absorbs"] == ["authorize 100 EUR", "capture 1", "cancel rest"]
    (absorbs,) = [c for c in result.counterexamples if c.invariant == "terminal_absorbs"]
    assert "left terminal state 'captured' for 'cancelled'" in absorbs.message
    # The unguarded exit also releases more than is left.
    assert "released_within_authorized" in steps


def test_removed_refund_bound(tmp_path: Path) -> None:
    text = mutate("bambora", '"below_max_refunds", "within_refundable"]', '"below_max_refunds"]')
    steps = broken(check_spec(spec_file(tmp_path, text)))
    assert steps == {"refunded_within_captured": ["authorize 100 EUR", "capture 1", "refund 50"]}


def test_removed_cancel_bound(tmp_path: Path) -> None:
    text = mutate("vipps", 'when = "nothing_captured"\nguards = ["key_valid", "key_unique", "not_expired", '
                           '"nothing_in_flight", "cancels_whole_remainder"]',
                  'when = "nothing_captured"\nguards = ["key_valid", "key_unique", "not_expired", '
                  '"nothing_in_flight"]')
    steps = broken(check_spec(spec_file(tmp_path, text)))
    assert steps["released_within_authorized"][-1] == "cancel 101 key=k1"
    assert len(steps["released_within_authorized"]) == 2


def test_a_minimum_above_the_domain_scales_it_instead_of_passing_on_nothing(tmp_path: Path) -> None:
    result = check_spec("bambora", overrides={"amount_min": 500})
    assert result.ok and result.states > 50, result.states
    # ... and the scaled domain still finds an over-capture.
    broken_spec = spec_file(tmp_path, over_capture_bambora())
    steps = broken(check_spec(broken_spec, overrides={"amount_min": 500}))
    assert steps["captured_within_authorized"] == ["authorize 1000 EUR", "capture 1010"]


def test_keys_and_references_follow_the_policys_own_formats() -> None:
    # "k1" and "check-0001" break these rules; the search must still get past the authorization.
    for overrides in ({"idempotency_key": {"min_length": 10, "max_length": 50}},
                      {"reference": {"min_length": 36, "max_length": 36, "pattern": "[0-9a-f-]{36}"}}):
        result = check_spec("vipps", overrides=overrides)
        assert result.ok and result.states > 90, (overrides, result.states, result.findings)


def test_a_policy_that_authorizes_nothing_is_a_finding_not_a_pass() -> None:
    result = check_spec("bambora", overrides={"amount_max": 50})
    assert not result.ok
    assert [f.kind for f in result.findings] == ["unexplored"]
    assert "no authorization in the explored domain succeeded (authorize 100 EUR)" in result.findings[0].message


def test_removed_currency_check_is_caught(tmp_path: Path) -> None:
    # The money still adds up in minor units, so only the currency invariant can see this break.
    text = mutate("bambora", BAMBORA_CAPTURE_GUARDS, BAMBORA_CAPTURE_GUARDS.replace('"currency_matches", ', ""))
    result = check_spec(spec_file(tmp_path, text))
    steps = broken(result)
    assert steps["single_currency"] == ["authorize 100 EUR", "capture 50 SEK"]
    (found,) = [c for c in result.counterexamples if c.invariant == "single_currency"]
    assert "capture in SEK allowed on a payment authorized in EUR" in found.message


def test_removed_currency_check_on_refund_is_caught(tmp_path: Path) -> None:
    old = ('guards = ["key_unique", "amount_valid", "currency_matches", "within_refund_window", "below_max_refunds", '
           '"within_refundable"]')
    text = mutate("bambora", old, old.replace('"currency_matches", ', ""))
    steps = broken(check_spec(spec_file(tmp_path, text)))
    assert steps["single_currency"][-1] == "refund 50 SEK"


def test_removed_expiry_guard_is_caught(tmp_path: Path) -> None:
    text = mutate("bambora", BAMBORA_CAPTURE_GUARDS, BAMBORA_CAPTURE_GUARDS.replace('"not_expired", ', ""))
    result = check_spec(spec_file(tmp_path, text))
    steps = broken(result)
    assert steps["obeys_own_policy"][0] == "authorize 100 EUR"
    assert steps["obeys_own_policy"][1].startswith("time passes to ")
    assert steps["obeys_own_policy"][2].startswith("capture ")
    (found,) = [c for c in result.counterexamples if c.invariant == "obeys_own_policy"]
    assert "at or past expiry" in found.message


def test_removed_refund_count_guard_is_caught(tmp_path: Path) -> None:
    text = mutate("bambora", '"below_max_refunds", "within_refundable"]', '"within_refundable"]')
    result = check_spec(spec_file(tmp_path, text))
    (found,) = [c for c in result.counterexamples if c.invariant == "obeys_own_policy"]
    assert "refund 2 of at most 1" in found.message


def test_removed_capture_count_guard_in_vipps_is_caught(tmp_path: Path) -> None:
    text = seed_text("vipps").replace('"below_max_captures", ', "")
    assert text != seed_text("vipps")
    result = check_spec(spec_file(tmp_path, text), overrides={"max_captures": 2})
    (found,) = [c for c in result.counterexamples if c.invariant == "obeys_own_policy"]
    assert "capture 3 of at most 2" in found.message


def test_unknown_guard_is_a_finding_and_the_spec_is_explored_without_it(tmp_path: Path) -> None:
    text = mutate("bambora", BAMBORA_CAPTURE_GUARDS,
                  BAMBORA_CAPTURE_GUARDS.replace('"within_capturable"]', '"within_capturabel"]'))
    result = check_spec(spec_file(tmp_path, text))
    assert [(f.kind, f.path) for f in result.findings] == [("unknown_guard", "transitions[1].guards[8]")]
    assert "within_capturabel" in result.findings[0].message
    assert "captured_within_authorized" in broken(result)


def test_unknown_trigger_and_unreachable_and_dead_end_states(tmp_path: Path) -> None:
    text = mutate("bambora", 'states = ["open", "authorized",', 'states = ["open", "limbo", "stuck", "authorized",')
    text = text.replace('[[transitions]]\ntrigger = "expired"',
                        '[[transitions]]\ntrigger = "settled"\nsource = "authorized"\ndest = "captured"\n\n'
                        '[[transitions]]\ntrigger = "capture_failed"\nsource = "captured"\ndest = "captured"\n\n'
                        '[[transitions]]\ntrigger = "expired"\nsource = "authorized"\ndest = "stuck"\n\n'
                        '[[transitions]]\ntrigger = "expired"', 1)
    path = spec_file(tmp_path, text)
    _, findings = lint_spec(path)
    kinds = sorted((f.kind, f.message.split(" (")[0]) for f in findings)
    assert ("unknown_trigger", "unknown trigger 'settled'") in kinds
    assert ("unreachable", "state 'limbo' is unreachable from 'open'") in kinds
    assert ("dead_end", "state 'stuck' cannot reach a terminal state") in kinds
    # `expired` from authorized now has two transitions and no route between them: an overlap.
    assert any(kind == "overlap" for kind, _ in kinds)


def test_lint_spec_of_a_seed_spec_finds_nothing() -> None:
    for name in shipped_specs():
        spec, findings = lint_spec(name)
        assert findings == () and spec.name == name


# ------------------------------------------------------------------------------------------------ CLI


def check(tmp_path: Path, *args: str | Path) -> Run:
    return run_cli(tmp_path, "check", *args)


def test_cli_seed_spec_holds(tmp_path: Path) -> None:
    r = check(tmp_path, "bambora")
    assert (r.code, r.err) == (0, "")
    assert "lint: ok" in r.out
    assert "result: holds" in r.out
    assert "every history explored" in r.out  # Bambora's one capture and one refund end every history
    for name in INVARIANTS:
        assert f"holds   {name}" in r.out


def test_cli_json_for_a_seed_spec(tmp_path: Path) -> None:
    r = check(tmp_path, "hellgate", "--json", "--depth", "7")
    assert r.code == 0
    doc = r.json()
    assert set(doc) == {"spec", "file", "ok", "depth", "states", "moves", "complete", "findings", "invariants",
                        "counterexamples"}
    assert (doc["spec"], doc["ok"], doc["depth"], doc["findings"], doc["counterexamples"]) == (
        "hellgate", True, 7, [], [])
    assert doc["invariants"] == list(INVARIANTS)
    assert doc["states"] > 300


def test_cli_over_capture_counterexample(tmp_path: Path) -> None:
    path = spec_file(tmp_path, over_capture_bambora())
    r = check(tmp_path, path)
    assert r.code == 1, r.err
    assert r.err == ""
    assert "BROKEN  captured_within_authorized" in r.out
    assert "counterexample for captured_within_authorized (2 moves): capture 101: captured 101 > authorized 100" \
        in r.out
    assert re.search(r"\n  2\. capture 101 +-> captured: authorized 100 captured 101 cancelled 0", r.out), r.out
    assert r.out.rstrip().endswith("broken invariant(s))")

    doc = orjson.loads(check(tmp_path, path, "--json").out)
    assert doc["ok"] is False
    (first, *_) = doc["counterexamples"]
    assert first["invariant"] == "captured_within_authorized"
    assert [s["step"] for s in first["steps"]] == ["authorize 100 EUR", "capture 101"]
    assert first["steps"][-1]["after"] == {"state": "captured", "authorized": 100, "captured": 101, "cancelled": 0,
                                           "refunded": 0, "pending": 0}


def test_cli_terminal_exit_is_exit_1_with_the_finding(tmp_path: Path) -> None:
    path = spec_file(tmp_path, terminal_exit_bambora())
    r = check(tmp_path, path)
    assert r.code == 1, r.err
    assert f"{path}:" in r.out and "exit out of terminal state 'captured' (to 'cancelled' on cancelled) " \
                                     "[terminal_exit]" in r.out
    assert "BROKEN  terminal_absorbs" in r.out


def test_cli_broken_toml_is_exit_2_one_line(tmp_path: Path) -> None:
    path = spec_file(tmp_path, seed_text("vipps").replace("[machine]", "[machine", 1))
    assert_error(check(tmp_path, path), str(path), "not valid TOML")


def test_cli_unloadable_spec_and_bad_depth(tmp_path: Path) -> None:
    assert_error(check(tmp_path, "no-such-provider"), "no shipped spec of that name")
    # An unknown policy rule is not structural: the spec cannot be built, so exit 2, not a finding.
    path = spec_file(tmp_path, seed_text("bambora") + '\n[policy.colour]\nvalue = "blue"\ndoc = "x"\n')
    assert_error(check(tmp_path, path), "policy.colour")
    r = check(tmp_path, "vipps", "--depth", "zero")
    assert r.code == 2 and "--depth" in r.err and "Traceback" not in r.err
    assert_error(check(tmp_path, tmp_path), "is a directory; give a spec file")
    # A validity no calendar holds cannot be explored (the clock would overflow): the spec is unloadable.
    forever = spec_file(tmp_path, mutate("bambora", 'value = "7d"', 'value = "99999999d"'), "forever.toml")
    assert_error(check(tmp_path, forever), str(forever), "policy.authorization_validity")
    empty = spec_file(tmp_path, "", "empty.toml")
    assert_error(check(tmp_path, empty), "provider: required key is missing")


def test_cli_set_overrides_policy_numbers_for_the_run(tmp_path: Path) -> None:
    plain = check(tmp_path, "hellgate", "--json").json()
    # With a known validity the clock can pass it, so the search reaches expired captures and cancels.
    dated = check(tmp_path, "hellgate", "--json", "--set", "authorization_validity=7d").json()
    assert plain["ok"] and dated["ok"]
    assert dated["states"] > plain["states"]
    assert_error(check(tmp_path, "hellgate", "--set", "authorization_validity=7x"), "--set authorization_validity",
                 "'7x'")
    assert_error(check(tmp_path, "hellgate", "--set", "vipps.max_captures=2"), "the override is for 'vipps'")


def test_overrides_reach_the_explored_policy(tmp_path: Path) -> None:
    # One capture where Vipps takes many: the search must then refuse every second capture.
    one = check_spec("vipps", depth=4, overrides={"max_captures": 1})
    many = check_spec("vipps", depth=4)
    assert one.ok and one.spec.policy.max_captures == 1
    assert one.states < many.states


def test_no_counterexample_is_longer_than_the_depth(tmp_path: Path) -> None:
    # The over-capture takes two moves (authorize, capture 101): depth 1 must not find it, depth 2 must.
    path = spec_file(tmp_path, over_capture_bambora())
    shallow = check_spec(path, depth=1)
    assert "captured_within_authorized" not in broken(shallow) and not shallow.complete
    assert all(len(c.moves) <= 1 for c in shallow.counterexamples)
    deep = check_spec(path, depth=2)
    assert broken(deep)["captured_within_authorized"] == ["authorize 100 EUR", "capture 101"]
    assert all(len(c.moves) <= 2 for c in deep.counterexamples)


def test_removed_partial_capture_guard_is_caught(tmp_path: Path) -> None:
    # Under partial_capture = no, a capture transition that lost partial_allowed keeps the sums right (a
    # partial capture is still within the capturable) and breaks only the spec's own policy.
    text = mutate("bambora", BAMBORA_CAPTURE_GUARDS, BAMBORA_CAPTURE_GUARDS.replace('"partial_allowed", ', ""))
    path = spec_file(tmp_path, text)
    assert check_spec(path).ok  # bambora captures partially: the guard is inert there
    result = check_spec(path, overrides={"partial_capture": "no"})
    assert result.findings == ()
    (found,) = [c for c in result.counterexamples if c.invariant == "obeys_own_policy"]
    assert "where partial_capture = no" in found.message
    assert found.moves[0].label == "authorize 100 EUR"
    assert check_spec("bambora", overrides={"partial_capture": "no"}).ok  # the seed keeps the guard


def test_removed_refund_window_guard_is_caught(tmp_path: Path) -> None:
    # A refund after the refund window closed is still within the captured amount: only the spec's own
    # refund window says it is wrong. The clock must reach that deadline for the search to try it.
    old = '"currency_matches", "within_refund_window",\n          "below_max_refunds"'
    text = mutate("vipps", old, '"currency_matches",\n          "below_max_refunds"')
    result = check_spec(spec_file(tmp_path, text))
    assert result.findings == ()
    (found,) = [c for c in result.counterexamples if c.invariant == "obeys_own_policy"]
    assert "at or past the end of the refund window" in found.message
    labels = [m.label for m in found.moves]
    assert labels[0].startswith("authorize ") and labels[-1].startswith("refund ")
    assert any(label.startswith("time passes to ") for label in labels)
