"""Specs: one provider's policy as data, loaded from TOML into immutable objects.

A spec file has four parts (see specs/vipps.toml for a full example):

    [provider]        name, title, doc: which API this spec describes
    [machine]         initial, states, terminal
    [[transitions]]   trigger (an event type), source, dest, when (a route), guards, doc
    [policy.NAME]     value, doc, or default = true with a note for an undocumented fact

Loading rejects, with a SpecError naming the file, the key path and where possible the line: TOML
syntax errors, unknown keys, unknown states, triggers, guards and routes, unreachable states, exits
out of terminal states, overlapping transitions, and policy values that do not parse.

`lint_spec` loads leniently for `capstate check`: the structural problems (the unknown names in
transitions, unreachable states, exits out of terminal states, states that cannot reach a terminal
one, overlaps, a capture mode without its transition) become SpecFindings, and the spec is built
from what remains, so the model checker can show what the problem costs. Anything else still raises.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from attrs import evolve, field, frozen

from ._bom import strip_bom
from ._errors import SpecError
from ._guards import GUARDS, ROUTE_GROUPS, ROUTES
from ._policy import POLICY_PARSERS, REQUIRED_RULES, Policy, PolicyValueError, RuleSource
from ._table import Table
from ._values import EventType

_TOP_KEYS = {"provider", "machine", "transitions", "policy"}
_PROVIDER_KEYS = {"name", "title", "doc", "api"}
_MACHINE_KEYS = {"initial", "states", "terminal"}
_TRANSITION_KEYS = {"trigger", "source", "dest", "when", "guards", "doc", "note"}
_RULE_KEYS = {"value", "doc", "default", "note"}
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")
_SAME = "="  # dest "=" means: stay in the source state


@frozen
class SpecFinding:
    """A structural problem that `lint_spec` reports instead of refusing the spec.

    `kind` is one of: unknown_trigger, unknown_guard, unknown_route, unknown_state, terminal_exit,
    unreachable, dead_end (a non-terminal state that cannot reach a terminal one), overlap, capture_mode.
    """

    kind: str
    path: str
    line: int | None
    message: str


@frozen
class Transition:
    """One legal move, as declared: `trigger` from `source` to `dest`, when `when` holds and every
    guard passes."""

    trigger: EventType
    source: str
    dest: str
    when: str | None = None
    guards: tuple[str, ...] = ()
    doc: str | None = None
    note: str | None = None
    row: int = field(default=-1, eq=False, repr=False)  # index of its [[transitions]] table in the file


def _spec_table_repr(table: Table) -> str:
    return f"<{sum(len(v) for v in table.steps.values())} compiled steps>"


@frozen(eq=False)
class Spec:
    """One provider's capture policy: states, transitions and policy numbers. Immutable.

    Load with `load_spec(name_or_path, overrides=...)`. Equality is identity: two loads are two specs.
    """

    name: str
    title: str
    doc: str | None
    file: str
    initial: str
    states: tuple[str, ...]
    terminal: frozenset[str]
    transitions: tuple[Transition, ...]
    policy: Policy
    table: Table = field(repr=_spec_table_repr)

    def __repr__(self) -> str:
        return f"<Spec {self.name} from {self.file}>"

    @classmethod
    def from_toml(cls, text: str, *, file: str = "<spec>",
                  overrides: Mapping[str, Any] | None = None) -> Spec:
        """Parse and validate a spec. Raises SpecError."""
        return _parse(text, file, overrides, lenient=False)[0]

    @classmethod
    def lint_toml(cls, text: str, *, file: str = "<spec>") -> tuple[Spec, tuple[SpecFinding, ...]]:
        """Parse leniently: structural problems come back as findings (see the module docstring).
        Raises SpecError for everything else (TOML syntax, unknown keys, bad policy values)."""
        return _parse(text, file, None, lenient=True)


def _parse(text: str, file: str, overrides: Mapping[str, Any] | None,
           lenient: bool) -> tuple[Spec, tuple[SpecFinding, ...]]:
    try:
        data = tomllib.loads(strip_bom(text))
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        raise SpecError(f"not valid TOML: {exc}", file=file, line=int(m.group(1)) if m else None) from None
    loader = _Loader(data, text, file, lenient=lenient)
    spec = loader.build(overrides or {})
    # The spec is loaded into transitions as well: a configuration transitions refuses never loads,
    # and the Machine (the reference interpreter) is ready for the differential test and diagrams.
    from ._machine import validate_with_transitions

    try:
        validate_with_transitions(spec)
    except Exception as exc:  # transitions raises bare ValueError/MachineError for bad configs
        raise SpecError(f"transitions refuses this machine: {exc}", file=file) from None
    return spec, tuple(loader.findings)


# --------------------------------------------------------------------------------------------- loading


@cache
def shipped() -> tuple[str, ...]:
    """The names of the specs that ship with capstate, sorted."""
    root = resources.files("capstate.specs")
    return tuple(sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml")))


@cache
def _shipped_spec(name: str) -> Spec:
    resource = resources.files("capstate.specs").joinpath(f"{name}.toml")
    return Spec.from_toml(resource.read_text(encoding="utf-8"), file=f"specs/{name}.toml")


def _read(name_or_path: str | Path) -> tuple[str, str]:
    """The text of a spec given by path, and the name it is reported under."""
    text_name = str(name_or_path)
    path = Path(name_or_path)
    if path.is_dir():
        raise SpecError("is a directory; give a spec file (.toml) or a shipped name", file=text_name)
    if not path.is_file():
        known = ", ".join(shipped())
        close = difflib.get_close_matches(text_name.lower(), shipped(), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SpecError(f"no shipped spec of that name ({known}) and no such file{hint}", file=text_name)
    try:
        return path.read_text(encoding="utf-8"), text_name
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read: {exc}", file=text_name) from None


def _shipped_name(name_or_path: str | Path) -> str | None:
    """The shipped spec `name_or_path` names, in any case ("Vipps", "VIPPS"), or None for a path. A file
    of that exact name in the working directory wins: a path is never read as a name."""
    if not isinstance(name_or_path, str):
        return None
    name = name_or_path.lower()
    if not _NAME.fullmatch(name) or name not in shipped():
        return None
    if name != name_or_path and Path(name_or_path).is_file():
        return None
    return name


def lint_spec(name_or_path: str | Path) -> tuple[Spec, tuple[SpecFinding, ...]]:
    """Load a shipped spec or a spec file leniently, for `capstate check`: the spec built from what is
    sound, and the structural problems found. Raises SpecError for a spec that cannot be built at all."""
    name = _shipped_name(name_or_path)
    if name is not None:
        text = resources.files("capstate.specs").joinpath(f"{name}.toml").read_text(encoding="utf-8")
        return Spec.lint_toml(text, file=f"specs/{name}.toml")
    text, file = _read(name_or_path)
    return Spec.lint_toml(text, file=file)


def load_spec(name_or_path: str | Path, overrides: Mapping[str, Any] | None = None) -> Spec:
    """Load a shipped spec by name ("vipps") or a spec file by path, applying policy overrides.

    `overrides` maps policy rule names (or dotted paths into a per-currency table, such as
    "authorization_validity.NOK") to values spelled as in a spec file: {"max_captures": 1}.
    Raises SpecError for a missing file, a broken spec or a bad override.
    """
    name = _shipped_name(name_or_path)
    if name is not None:
        spec = _shipped_spec(name)
        return _with_overrides(spec, overrides) if overrides else spec
    text, file = _read(name_or_path)
    return Spec.from_toml(text, file=file, overrides=overrides)


def _with_overrides(spec: Spec, overrides: Mapping[str, Any]) -> Spec:
    policy = apply_overrides(spec.policy, overrides, file=spec.file)
    # The table's checks are specialized to a policy, so a new policy needs its own table.
    return evolve(spec, policy=policy, table=compile_table(spec.transitions, policy))


def compile_table(transitions: tuple[Transition, ...], policy: Policy) -> Table:
    """The hot path's table for these transitions under this policy."""
    return Table.compile(((t.trigger, t.source, t.dest, t.when, t.guards) for t in transitions), policy)


def apply_overrides(policy: Policy, overrides: Mapping[str, Any], *, file: str = "<overrides>") -> Policy:
    """A new Policy with `overrides` parsed and applied; the sources record them as overrides."""
    changes: dict[str, Any] = {}
    sources = dict(policy.sources)
    for raw_key, value in overrides.items():
        name, _, sub = str(raw_key).partition(".")
        path = f"overrides.{raw_key}"
        if name not in POLICY_PARSERS:
            raise SpecError(f"unknown policy rule {name!r} (known: {', '.join(POLICY_PARSERS)})",
                            file=file, path=path)
        if sub:
            # From the rule as overridden so far: {"x.NOK": .., "x.DKK": ..} must keep both.
            current = _unparse(evolve(policy, **changes) if name in changes else policy, name)
            if not isinstance(current, dict):
                current = {"*": current} if current != "unknown" else {}
            value = {**current, sub: value}
        try:
            changes[name] = POLICY_PARSERS[name](value)
        except PolicyValueError as exc:
            raise SpecError(str(exc), file=file, path=path) from None
        old = sources.get(name)
        # The provider's citation no longer describes the value, so it is not kept beside it.
        sources[name] = RuleSource(doc=None, default=False,
                                   note=f"overridden (was {_unparse(policy, name)!r}"
                                        + (f"; provider doc: {old.doc})" if old and old.doc else ")"),
                                   overridden=True)
    return evolve(policy, **changes, sources=MappingProxyType(sources))


def _unparse(policy: Policy, name: str) -> Any:
    return policy.summary()[name]


class _Loader:
    def __init__(self, data: dict[str, Any], text: str, file: str, *, lenient: bool = False):
        self.data = data
        self.lines = text.splitlines()
        self.file = file
        self.lenient = lenient
        self.findings: list[SpecFinding] = []

    def fail(self, path: str, message: str) -> SpecError:
        return SpecError(message, file=self.file, path=path, line=_locate(self.lines, path))

    def problem(self, kind: str, path: str, message: str) -> None:
        """A structural problem: refused when strict; when linting, recorded, and the caller goes on
        without the offending part."""
        if not self.lenient:
            raise self.fail(path, message)
        self.findings.append(SpecFinding(kind, path, _locate(self.lines, path), message))

    def table(self, obj: object, path: str, allowed: set[str], required: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise self.fail(path, f"must be a table, got {type(obj).__name__}")
        for key in obj:
            if key not in allowed:
                raise self.fail(f"{path}.{key}" if path else key,
                                f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
        for key in required:
            if key not in obj:
                raise self.fail(f"{path}.{key}" if path else key, "required key is missing")
        return obj

    def string(self, obj: Mapping[str, Any], key: str, path: str, *, optional: bool = False) -> str | None:
        value = obj.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise self.fail(f"{path}.{key}", f"must be a non-empty string, got {value!r}")
        return value

    def build(self, overrides: Mapping[str, Any]) -> Spec:
        top = self.table(self.data, "", _TOP_KEYS, ("provider", "machine", "transitions", "policy"))
        provider = self.table(top["provider"], "provider", _PROVIDER_KEYS, ("name", "title"))
        name = self.string(provider, "name", "provider")
        assert name is not None
        if not _NAME.fullmatch(name):
            raise self.fail("provider.name", f"{name!r} must be lowercase letters, digits, '-' or '_'")
        title = self.string(provider, "title", "provider") or name
        doc = self.string(provider, "doc", "provider", optional=True)

        machine = self.table(top["machine"], "machine", _MACHINE_KEYS, ("initial", "states", "terminal"))
        states = self.names(machine["states"], "machine.states")
        if len(set(states)) != len(states):
            dup = next(s for s in states if states.count(s) > 1)
            raise self.fail("machine.states", f"state {dup!r} is listed twice")
        known = set(states)
        initial = self.string(machine, "initial", "machine")
        assert initial is not None
        if initial not in known:
            raise self.fail("machine.initial", f"unknown state {initial!r} (states: {', '.join(states)})")
        terminal = self.names(machine["terminal"], "machine.terminal")
        for i, t in enumerate(terminal):
            if t not in known:
                raise self.fail(f"machine.terminal[{i}]", f"unknown state {t!r} (states: {', '.join(states)})")

        transitions = tuple(self.transitions(top["transitions"], known))
        policy = self.policy(top["policy"])
        self.check_graph(states, initial, frozenset(terminal), transitions)
        self.check_overlaps(transitions)
        self.check_capture_mode(policy, transitions)
        if overrides:
            policy = apply_overrides(policy, overrides, file=self.file)
        table = compile_table(transitions, policy)
        return Spec(name, title, doc, self.file, initial, tuple(states), frozenset(terminal), transitions,
                    policy, table)

    def text(self, value: object, path: str, what: str) -> str:
        """A value the spec must spell as a string (a trigger, state, route or guard name). Checked before
        any lookup: a table or an array there is unhashable, and `in` would raise TypeError."""
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string ({what}), got {type(value).__name__} {value!r}")
        return value

    def names(self, value: object, path: str) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) and _NAME.fullmatch(v) for v in value):
            raise self.fail(path, f"must be a list of lowercase names, got {value!r}")
        return list(value)

    def transitions(self, rows: object, known: set[str]) -> Iterator[Transition]:
        if not isinstance(rows, list) or not rows:
            raise self.fail("transitions", "must be a non-empty array of tables ([[transitions]])")
        for i, row in enumerate(rows):
            path = f"transitions[{i}]"
            row = self.table(row, path, _TRANSITION_KEYS, ("trigger", "source", "dest"))
            raw_trigger = self.text(row["trigger"], f"{path}.trigger", "an event type")
            try:
                trigger = EventType(raw_trigger)
            except ValueError:
                # A transition whose trigger, route or states are unknown cannot be modelled: dropped.
                self.problem("unknown_trigger", f"{path}.trigger",
                             f"unknown trigger {raw_trigger!r} (triggers are event types: "
                             f"{', '.join(t.value for t in EventType)})")
                continue
            listed = isinstance(row["source"], list)
            sources = row["source"] if listed else [row["source"]]
            if not sources:
                raise self.fail(f"{path}.source", "an empty list of source states declares no transition")
            for j, source in enumerate(sources):
                self.text(source, f"{path}.source[{j}]" if listed else f"{path}.source", "a state name")
            for j, source in enumerate(sources):
                if source not in known:
                    where = f"{path}.source[{j}]" if listed else f"{path}.source"
                    self.problem("unknown_state", where,
                                 f"unknown state {source!r} (states: {', '.join(sorted(known))})")
            sources = [s for s in sources if s in known]
            dest = self.text(row["dest"], f"{path}.dest", "a state name, or \"=\" for the source state")
            if dest != _SAME and dest not in known:
                self.problem("unknown_state", f"{path}.dest",
                             f"unknown state {dest!r} (states: {', '.join(sorted(known))})")
                continue
            when = row.get("when")
            if when is not None:
                self.text(when, f"{path}.when", "a route name")
            if when is not None and when not in ROUTES:
                self.problem("unknown_route", f"{path}.when", f"unknown route {when!r} (routes: {', '.join(ROUTES)})")
                continue
            guards = row.get("guards", [])
            if not isinstance(guards, list):
                raise self.fail(f"{path}.guards", "must be a list of guard names")
            for j, g in enumerate(guards):
                if self.text(g, f"{path}.guards[{j}]", "a guard name") not in GUARDS:
                    # Linting goes on without the unknown guard, so exploring shows what it would have stopped.
                    self.problem("unknown_guard", f"{path}.guards[{j}]",
                                 f"unknown guard {g!r} (guards: {', '.join(GUARDS)})")
            guards = [g for g in guards if g in GUARDS]
            if len(set(guards)) != len(guards):
                raise self.fail(f"{path}.guards", "a guard is listed twice")
            doc = self.string(row, "doc", path, optional=True)
            note = self.string(row, "note", path, optional=True)
            for source in sources:
                yield Transition(trigger, source, source if dest == _SAME else dest, when, tuple(guards), doc,
                                 note, i)

    def policy(self, obj: object) -> Policy:
        rules = self.table(obj, "policy", set(POLICY_PARSERS))
        for name in REQUIRED_RULES:
            if name not in rules:
                raise self.fail(f"policy.{name}", "required rule is missing (state it, even as a marked default)")
        values: dict[str, Any] = {}
        sources: dict[str, RuleSource] = {}
        for name, rule in rules.items():
            path = f"policy.{name}"
            rule = self.table(rule, path, _RULE_KEYS, ("value",))
            doc = self.string(rule, "doc", path, optional=True)
            note = self.string(rule, "note", path, optional=True)
            default = rule.get("default", False)
            if not isinstance(default, bool):
                raise self.fail(f"{path}.default", f"must be true or false, got {default!r}")
            if default and not note:
                raise self.fail(f"{path}.note", "a default needs a note saying why it is the conservative choice")
            if not default and not doc:
                raise self.fail(f"{path}.doc", "a rule from the provider's docs must cite them (or be a "
                                               "default = true with a note)")
            try:
                values[name] = POLICY_PARSERS[name](rule["value"])
            except PolicyValueError as exc:
                sub = exc.subpath if exc.subpath.startswith("[") else f".{exc.subpath}" if exc.subpath else ""
                raise self.fail(f"{path}.value{sub}", str(exc)) from None
            sources[name] = RuleSource(doc, default, note)
        policy = Policy(**values, sources=MappingProxyType(sources))
        if policy.amount_max is not None:
            for currency, low in policy.amount_min.items():
                if low > policy.amount_max:
                    raise self.fail("policy.amount_min.value", f"minimum {low} ({currency}) > amount_max "
                                                               f"{policy.amount_max}: no amount could pass")
        return policy

    def check_graph(self, states: list[str], initial: str, terminal: frozenset[str],
                    transitions: tuple[Transition, ...]) -> None:
        for kind, path, message in graph_problems(states, initial, terminal, transitions):
            # A dead end is a lint finding only: the strict loader has always accepted it.
            if self.lenient or kind != "dead_end":
                self.problem(kind, path, message)

    def check_overlaps(self, transitions: tuple[Transition, ...]) -> None:
        """Transitions of one trigger from one state must be told apart by routes of one group.

        Otherwise the first matching transition would depend on guard outcomes, and the compiled
        table (first route that holds) and the Machine (first whose conditions all pass) could differ.
        """
        groups: dict[tuple[str, EventType], list[tuple[int, Transition]]] = {}
        for t in transitions:
            groups.setdefault((t.source, t.trigger), []).append((t.row, t))
        for (source, trigger), rows in groups.items():
            if len(rows) == 1:
                continue
            routes = [t.when for _, t in rows]
            families = {ROUTES[r].group for r in routes if r is not None}
            last = rows[-1][0]
            if None in routes or len(families) != 1 or len(set(routes)) != len(routes):
                self.problem("overlap", f"transitions[{last}].when",
                             f"{len(rows)} transitions for {trigger.value} from {source!r} must each have "
                             f"a distinct route ('when') of one group")
                continue
            family = families.pop()
            if set(routes) != ROUTE_GROUPS[family]:
                missing = ", ".join(sorted(ROUTE_GROUPS[family] - {r for r in routes if r}))
                self.problem("overlap", f"transitions[{last}].when", f"routes of group {family!r} for "
                                                                     f"{trigger.value} from {source!r} miss {missing}")

    def check_capture_mode(self, policy: Policy, transitions: tuple[Transition, ...]) -> None:
        needed = EventType.CAPTURE_REQUESTED if policy.capture == "async" else EventType.CAPTURED
        if not any(t.trigger is needed and t.source != "capturing" for t in transitions):
            self.problem("capture_mode", "policy.capture.value",
                         f"capture = {policy.capture!r} needs a {needed.value} transition out of an authorized state")


def graph_problems(states: Sequence[str], initial: str, terminal: frozenset[str],
                   transitions: Sequence[Transition]) -> Iterator[tuple[str, str, str]]:
    """(kind, path, message) for every exit out of a terminal state (a self-loop, such as a refund, is
    not an exit), every state unreachable from `initial`, and every non-terminal state from which no
    terminal state can be reached (kind dead_end)."""
    for t in transitions:
        if t.source in terminal and t.dest != t.source:
            yield ("terminal_exit", f"transitions[{t.row}].dest",
                   f"exit out of terminal state {t.source!r} (to {t.dest!r} on {t.trigger.value})")
    reached = _closure({initial}, [(t.source, t.dest) for t in transitions])
    for state in states:
        if state not in reached:
            yield "unreachable", "machine.states", f"state {state!r} is unreachable from {initial!r}"
    finishing = _closure(set(terminal), [(t.dest, t.source) for t in transitions])
    for state in states:
        if state not in finishing and state in reached:
            yield ("dead_end", "machine.states",
                   f"state {state!r} cannot reach a terminal state ({', '.join(sorted(terminal)) or 'none declared'})")


def _closure(start: set[str], edges: list[tuple[str, str]]) -> set[str]:
    """The states reachable from `start` along (from, to) edges."""
    reached = set(start)
    frontier = list(start)
    while frontier:
        state = frontier.pop()
        for a, b in edges:
            if a == state and b not in reached:
                reached.add(b)
                frontier.append(b)
    return reached


def _locate(lines: list[str], path: str) -> int | None:
    """Best-effort line number of a dotted key path such as transitions[3].dest or policy.x.value."""
    if not path:
        return None
    target = re.sub(r"\[\d+\]$", "", path) if path.endswith("]") and "." in path else path
    header = ""
    counts: dict[str, int] = {}
    best: int | None = None
    best_len = -1
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if line.startswith("[["):
            name = line.strip("[] ")
            counts[name] = counts.get(name, 0) + 1
            header = f"{name}[{counts[name] - 1}]"
            full = header
        elif line.startswith("["):
            header = line.strip("[] ")
            full = header
        elif "=" in line and not line.startswith("#"):
            key = line.split("=", 1)[0].strip().strip('"')
            full = f"{header}.{key}" if header else key
        else:
            continue
        matches = target == full or target.startswith((full + ".", full + "["))
        if matches and len(full) > best_len:
            best, best_len = number, len(full)
    return best
