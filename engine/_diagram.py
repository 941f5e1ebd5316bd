"""State diagrams of a spec, drawn by transitions' GraphMachine from the same spec the engine runs.

Each edge is labelled with its trigger, its route (`when`), its guards, and the policy numbers those
guards read ("captured [amount_valid, within_capturable] ≤ 1 capture, valid 7d"), so a reader sees
the rule and its number in one place. Terminal states point at mermaid's final state `[*]` (a double
border in graphviz).

Output is deterministic: the same spec gives the same bytes (states and edges in spec order, no
timestamps), which lets the README keep the seed specs' diagrams and a test prove they are current.
This module is pure; running the `dot` program for svg/png is the CLI's job.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import orjson

from ._errors import CapstateError
from ._machine import draw
from ._money import to_major_string
from ._policy import Policy
from ._spec import Spec, Transition
from ._time import format_duration

FORMATS = ("mermaid", "svg", "png")


class DiagramError(CapstateError):
    """A diagram cannot be drawn here, e.g. svg/png without the graphviz package or program."""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _validity(policy: Policy) -> str | None:
    table = policy.authorization_validity
    if table is None:
        return None
    if set(table) == {"*"}:
        return f"valid {format_duration(table['*'])}"
    return "valid " + "/".join(f"{format_duration(d)} {c}" for c, d in table.items())


def _amount_numbers(policy: Policy) -> list[str]:
    out = []
    if any(low != 1 for low in policy.amount_min.values()):
        # Per currency in major units ("min 1.00 NOK"); a bare number is minor units for every currency.
        out.append("min " + "/".join(str(low) if c == "*" else f"{to_major_string(low, c)} {c}"
                                     for c, low in policy.amount_min.items()))
    if policy.amount_max is not None:
        out.append(f"max {policy.amount_max}")
    if policy.amount_format is not None:
        out.append(f"decimal({policy.amount_format[0]},{policy.amount_format[1]})")
    return out


def policy_numbers(policy: Policy, guards: tuple[str, ...]) -> list[str]:
    """The policy numbers the named guards read, spelled for an edge label."""
    out: list[str] = []
    for g in guards:
        if g == "amount_valid":
            out.extend(_amount_numbers(policy))
        elif g == "currency_supported" and policy.currencies is not None:
            out.append("/".join(sorted(policy.currencies)))
        elif g == "key_valid" and policy.idempotency == "required":
            out.append("key required")
        elif g == "not_expired":
            validity = _validity(policy)
            if validity:
                out.append(validity)
        elif g == "within_capturable" and policy.over_capture_percent:
            out.append(f"+{policy.over_capture_percent} percent over-capture")
        elif g == "partial_allowed" and policy.partial_capture != "yes":
            out.append("full only" if policy.partial_capture == "no" else "partial becomes full")
        elif g == "below_max_captures" and policy.max_captures is not None:
            out.append(f"≤ {_plural(policy.max_captures, 'capture')}")
        elif g == "below_max_refunds" and policy.max_refunds is not None:
            out.append(f"≤ {_plural(policy.max_refunds, 'refund')}")
        elif g == "within_refund_window" and policy.refund_window is not None:
            out.append(f"refund window {format_duration(policy.refund_window)}")
    return out


def edge_label(spec: Spec, t: Transition, sep: str = " ", *, guards: bool = False) -> str:
    """'captured when takes_remainder'; with `guards`, '... [key_valid, within_capturable] valid 180d
    NOK/14d DKK'. `sep` joins the trigger, the guards and the numbers (graphviz gets line breaks,
    mermaid cannot). Without guards a diagram shows the machine's shape, readable at a glance."""
    parts = [t.trigger.value + (f" when {t.when}" if t.when else "")]
    if guards and t.guards:
        parts.append(f"[{', '.join(t.guards)}]")
    numbers = policy_numbers(spec.policy, t.guards) if guards else []
    if numbers:
        parts.append(", ".join(numbers))
    # Characters mermaid reads as syntax inside a transition label (statement separators, comments,
    # entity codes, a second colon) never come from the registries, but a user's spec is checked anyway.
    return sep.join(re.sub(r"[;#:%{}<>\"\\]", " ", part) for part in parts)


def _labels(spec: Spec, sep: str = " ", *, guards: bool = False) -> list[str]:
    return [edge_label(spec, t, sep, guards=guards) for t in spec.transitions]


def mermaid(spec: Spec, *, guards: bool = False) -> str:
    """The spec as a mermaid stateDiagram-v2, ending with a newline; `guards` adds guards and numbers."""
    # The title goes into mermaid's YAML front matter; a JSON string is valid YAML whatever the title holds.
    title = f"title: {orjson.dumps(spec.title).decode()}"
    source: str = draw(spec, _labels(spec, guards=guards), engine="mermaid", title=title)
    lines = []
    for line in source.splitlines():
        stripped = line.strip()
        # transitions styles every node; a spec diagram has one style, so the per-node classes are noise.
        if stripped.startswith(("classDef s_", "Class ")):
            continue
        lines.append(line.rstrip())
    lines = [line for i, line in enumerate(lines) if line or (i and lines[i - 1])]  # no double blank lines
    for state in spec.states:
        if state in spec.terminal:
            lines.append(f"  {state} --> [*]")
    return "\n".join(lines) + "\n"


def graphviz(spec: Spec, *, guards: bool = False) -> Any:
    """The spec as a graphviz.Digraph (render it with `.pipe(format="svg")`). Raises DiagramError when
    the graphviz Python package is missing."""
    # transitions imports the package itself, and quietly falls back to mermaid when it is missing.
    if importlib.util.find_spec("graphviz") is None:
        raise DiagramError("svg and png need the graphviz Python package: pip install 'capstate[graph]' "
                           "(and the graphviz program `dot`)")
    graph = draw(spec, _labels(spec, "\n", guards=guards), engine="graphviz", title=spec.title)
    for state in spec.states:
        if state in spec.terminal:
            graph.node(state, peripheries="2")
    return graph


# ------------------------------------------------------------------------------------------ README

README_MARKERS = ("<!-- diagram:{name} -->", "<!-- /diagram:{name} -->")


def readme_block(spec: Spec) -> str:
    """The README's block for a spec: the mermaid diagram in a fenced block between its markers."""
    start, end = (m.format(name=spec.name) for m in README_MARKERS)
    return f"{start}\n```mermaid\n{mermaid(spec)}```\n{end}"


def update_readme(text: str, specs: list[Spec]) -> str:
    """`text` with every spec's block replaced by a fresh one. Raises DiagramError for a missing marker."""
    for spec in specs:
        start, end = (re.escape(m.format(name=spec.name)) for m in README_MARKERS)
        pattern = re.compile(f"{start}.*?{end}", flags=re.S)
        if not pattern.search(text):
            raise DiagramError(f"the README has no {README_MARKERS[0].format(name=spec.name)} ... "
                               f"{README_MARKERS[1].format(name=spec.name)} block")
        block = readme_block(spec)
        # A function, not a string, as the replacement: the block's backslashes are not escapes.
        text = pattern.sub(lambda _m: block, text, count=1)  # noqa: B023 (used at once, in this iteration)
    return text
