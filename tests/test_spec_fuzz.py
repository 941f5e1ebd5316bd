"""The spec loader under mutation: every shape a spec file can take either loads or is a SpecError.

Hypothesis takes a shipped spec's decoded TOML, changes one place in its structure (replaces a value with
any TOML value, wraps it in an array or a table, deletes a key, adds one), writes it back as TOML text
and loads it, strictly (`Spec.from_toml`) and leniently (`Spec.lint_toml`, what `capstate check` reads).
The only exception allowed is SpecError; a TypeError or KeyError from a lookup of an unhashable value is
the loader failing its contract (DESIGN.md section 4: "A broken spec fails to load with a SpecError
naming the file, the key path and, where possible, the line").

There is no TOML writer among the dependencies, so `dump` below writes one: every value inline, which
TOML allows for any table or array of tables.
"""

from __future__ import annotations

import math
import tomllib
from datetime import UTC, date, datetime, time
from importlib import resources
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from capstate import SpecError, load_spec
from capstate._spec import Spec

SPECS = ("bambora", "hellgate", "pipwave", "vipps")
FILE = "mutant.toml"


def shipped(name: str) -> dict[str, Any]:
    return tomllib.loads((resources.files("capstate.specs") / f"{name}.toml").read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------ TOML out


def _string(text: str) -> str:
    out = []
    for c in text:
        if c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, datetime | date | time):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_string(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise AssertionError(f"not a TOML value: {v!r}")


def dump(data: dict[str, Any]) -> str:
    """TOML text that tomllib reads back as `data` (every value inline)."""
    return "".join(f"{_string(k)} = {_value(v)}\n" for k, v in data.items())


def test_dump_round_trips_every_shipped_spec() -> None:
    for name in SPECS:
        data = shipped(name)
        assert tomllib.loads(dump(data)) == data
        Spec.from_toml(dump(data), file=FILE)  # and it still loads


# ------------------------------------------------------------------------------------------ mutation

_scalars = st.one_of(
    st.none(),  # stands for "delete the key" (TOML has no null)
    st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=8),
    st.sampled_from(["", "=", "open", "authorized", "captured", "capture_failed", "unknown", "7d", "yes",
                     "leaves_remainder", "amount_valid", "decimal(11,2)", "NOK", "*", "[!-~]+", "(", "unlimited"]),
    st.just(datetime(2026, 1, 5, 10, tzinfo=UTC)), st.just(date(2026, 1, 5)), st.just(time(10, 0)),
)
_values = st.recursive(
    _scalars.filter(lambda v: v is not None),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["x", "value", "doc", "note", "default", "NOK",
                                                             "min_length", "pattern", "trigger"]), inner,
                                            max_size=3)),
    max_leaves=6,
)


def _places(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `node` (dict keys and list indices)."""
    found = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in items:
        found.append((*path, key))
        found.extend(_places(child, (*path, key)))
    return found


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


@st.composite
def mutants(draw: st.DrawFn) -> dict[str, Any]:
    data = shipped(draw(st.sampled_from(SPECS)))
    for _ in range(draw(st.integers(1, 3))):
        places = _places(data)
        path = draw(st.sampled_from(places))
        parent, key = _at(data, path[:-1]), path[-1]
        how = draw(st.sampled_from(["replace", "wrap_list", "wrap_table", "delete", "add"]))
        if how == "replace":
            parent[key] = draw(_values)
        elif how == "wrap_list":
            parent[key] = [parent[key]]
        elif how == "wrap_table":
            parent[key] = {draw(st.sampled_from(["x", "value"])): parent[key]}
        elif how == "delete":
            if isinstance(parent, dict) or len(parent) > 1:
                del parent[key]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(["x", "doc", "when", "guards", "value", "default", "note"]))] = draw(_values)
    return data


@given(mutants())
def test_a_mutated_spec_loads_or_is_a_spec_error(data: dict[str, Any]) -> None:
    text = dump(data)
    for load in (lambda: Spec.from_toml(text, file=FILE), lambda: Spec.lint_toml(text, file=FILE)):
        try:
            load()
        except SpecError as exc:
            assert str(exc).startswith(FILE), exc  # it names the file
        # Anything else propagates and fails the test: the loader's only error is SpecError.


# ------------------------------------------------------------------------------ the shapes of issue 12


def _with(name: str, path: tuple[Any, ...], value: Any) -> str:
    data = shipped(name)
    _at(data, path[:-1])[path[-1]] = value
    return dump(data)


@pytest.mark.parametrize(("path", "value", "where"), [
    (("transitions", 0, "dest"), {"x": 1}, "transitions[0].dest"),
    (("transitions", 0, "source"), [[]], "transitions[0].source[0]"),
    (("transitions", 2, "when"), [], "transitions[2].when"),
    (("transitions", 0, "guards"), [[]], "transitions[0].guards[0]"),
    (("transitions", 0, "trigger"), {"x": 1}, "transitions[0].trigger"),
    (("transitions", 0, "source"), {"x": 1}, "transitions[0].source"),
    (("transitions", 0, "dest"), 5, "transitions[0].dest"),
])
@pytest.mark.parametrize("lenient", [False, True])
def test_a_malformed_transition_is_a_spec_error_naming_its_key_path(path: tuple[Any, ...], value: Any,
                                                                     where: str, lenient: bool) -> None:
    text = _with("vipps", path, value)
    with pytest.raises(SpecError) as err:
        Spec.lint_toml(text, file=FILE) if lenient else Spec.from_toml(text, file=FILE)
    assert err.value.path == where
    assert "must be a string" in err.value.reason


_RULES = ("capture", "partial_capture", "max_captures", "over_capture_percent", "amount_format", "amount_min",
          "amount_max", "currencies", "authorization_validity", "remainder", "idempotency", "idempotency_key",
          "reference", "identifiers", "max_refunds", "refund_window")


@given(st.sampled_from(SPECS), st.dictionaries(
    st.one_of(st.sampled_from(_RULES), st.sampled_from(_RULES).map(lambda r: f"{r}.NOK"), st.just("x.y")),
    _values, min_size=1, max_size=2))
def test_a_malformed_override_is_a_spec_error(name: str, overrides: dict[str, Any]) -> None:
    # Overrides come from `--set KEY=VALUE` parsed as TOML: the same shapes, through the same parsers.
    try:
        load_spec(name, overrides=overrides)
    except SpecError as exc:
        assert exc.path.startswith("overrides."), exc
