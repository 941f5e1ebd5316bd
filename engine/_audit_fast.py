"""The audit's fast path, compiled per spec: the moves `_hot` runs on mutable per-payment records.

`observe` builds a frozen Event and a frozen 15-field Payment for every line; that exactness is what an
audit needs when something is wrong, and what it cannot afford on the ~90% of lines that are plain,
legal moves. For those the auditor works on the decoded line and a mutable `Record`, and runs the move
compiled here per (spec, state, event type) from the spec's own table and policy: the same routes, in
the same order, with each guard as the condition under which `observe` (command=False) lets it pass,
policy numbers as plain ints. The move either applies the effect in place, or changes nothing and the
auditor takes the exact path (`Event.from_dict` + `observe` on the materialized Payment). So the fast
path only ever decides "certainly clean"; everything it is unsure of (a guard that may fail, a route
that holds for none, a reused key, an `expired` that leaves money held) goes the exact way, and a
Hypothesis differential test compares the paths on random logs, compiled and as plain Python.

A guard or route this module does not know leaves its (state, event type) without a move: every such
event goes the exact way, which is slower but never wrong.
"""

from __future__ import annotations

import re
import weakref
from types import ModuleType
from typing import Any

from ._guards import CAPTURE_TYPES
from ._hotpath import hot
from ._spec import Spec
from ._table import Step
from ._values import EventType

# Re-exported: the auditor and its tests read the canonical-time helpers here.
canonical = hot.canonical
canonical_at = hot.canonical_at
deadline = hot.deadline
DAYS = hot.DAYS
EXACT_ONLY = hot.EXACT_ONLY
FastSpec = hot.FastSpec
Record = hot.Record

# The guards whose pass condition `_set_guard` writes into a hot Step; any other sends its events the exact way.
_KNOWN_GUARDS = frozenset({
    "amount_valid", "currency_matches", "currency_supported", "reference_valid", "key_valid", "key_unique",
    "not_expired", "manual_flow", "within_capturable", "partial_allowed", "below_max_captures",
    "nothing_cancelled", "nothing_in_flight", "outcome_only", "within_refundable", "below_max_refunds",
    "within_refund_window", "cancels_whole_remainder",
})
assert all(t in CAPTURE_TYPES for t in (EventType.CAPTURED, EventType.CAPTURE_REQUESTED))


def _set_guard(s: Any, name: str, spec: Spec) -> None:
    """Write guard `name`'s pass condition for a logged fact into hot Step `s` (inert under the policy: nothing)."""
    pol = spec.policy
    if name == "amount_valid":
        s.amount_valid = True
        s.amount_min = pol.amount_min["*"] if set(pol.amount_min) == {"*"} else -1
        s.amount_max = pol.amount_max if pol.amount_max is not None else -1
        if pol.amount_format is not None:
            s.amount_format = True
            s.format_p, s.format_s = pol.amount_format
    elif name == "currency_matches":
        s.currency_matches = True
    elif name == "currency_supported":
        s.currency_supported = pol.currencies is not None
    elif name == "reference_valid":
        s.reference_valid = True
    elif name == "key_unique":
        s.key_unique = True
    elif name == "not_expired":
        s.not_expired = True
    elif name == "manual_flow":
        s.manual_flow = True
    elif name == "within_capturable":
        s.within_capturable = True
        s.over_percent = pol.over_capture_percent
    elif name == "partial_allowed":
        s.partial_no = pol.partial_capture == "no"
    elif name == "below_max_captures":
        s.max_captures = pol.max_captures if pol.max_captures is not None else -1
    elif name == "nothing_cancelled":
        s.nothing_cancelled = True
    elif name == "nothing_in_flight":
        s.nothing_in_flight = True
    elif name == "within_refundable":
        s.within_refundable = True
    elif name == "below_max_refunds":
        s.max_refunds = pol.max_refunds if pol.max_refunds is not None else -1
    elif name == "within_refund_window":
        s.within_refund_window = pol.refund_window is not None
    elif name == "cancels_whole_remainder":
        s.cancels_whole = True
    # key_valid judges commands only, outcome_only refuses commands only: both pass for a logged fact.


def _steps(module: ModuleType, spec: Spec, t: EventType, steps: tuple[Step, ...],
           cancellable: bool) -> list[Any] | None:
    """The hot Steps of one (state, event type), or None when a guard or route is one this module does not know."""
    out = []
    for step in steps:
        route = 0
        if step.route is not None:
            route = module.ROUTES.get(step.route.name, -1)
            if route < 0:
                return None
        s = module.Step(route, step.dest, step.dest in spec.terminal)
        for guard in step.guards:
            if guard.name not in _KNOWN_GUARDS:
                return None
            _set_guard(s, guard.name, spec)
        # The audit reports money left to lapse where a cancel could have released it.
        s.expired_nothing_held = t is EventType.EXPIRED and cancellable
        out.append(s)
        if step.route is None:
            break  # evaluate() takes the first step without a route
    return out


def build(spec: Spec, module: ModuleType = hot) -> Any:
    """The FastSpec of `spec` in `module` (the compiled `_hot`, or its plain-Python twin)."""
    by_state: dict[str, dict[str, Any]] = {state: {} for state in spec.states}
    cancellable = {state for (state, trigger) in spec.table.steps if trigger is EventType.CANCELLED}
    for (state, trigger), steps in spec.table.steps.items():
        found = _steps(module, spec, trigger, steps, state in cancellable)
        if found is None:
            continue
        by_state[state][trigger.value] = module.Move(module.TYPE_CODES[trigger.value], found)
    pol = spec.policy  # the FastSpec sets each step's `dest_moves`
    parts = pol.reference.fullmatch_parts()
    fast = module.FastSpec(spec, by_state, pol, pol.currencies, pol.reference.acceptor(), parts,
                           pol.reference.in_path)
    pieces = ascii_pieces(parts[2]) if parts is not None else None
    if pieces is not None:
        fast.ref_sets, fast.ref_mins, fast.ref_maxs = pieces
        fast.ref_pieces = True
    return fast


# A piece of a reference pattern `ascii_pieces` reads: a class (read by `re` itself) or one literal character,
# then an optional quantifier; what follows a quantifier must not be another (lazy or possessive forms).
_CLASS_PIECE = re.compile(r"\[[ -~]+?\]|[A-Za-z0-9_~-]")
_QUANTIFIER = re.compile(r"\{(\d+)(?:(,)(\d*))?\}|[+*?]")
# What `_acceptor` wraps a pattern in: a lookahead refusing a class of characters, then the pattern.
_LOOKAHEAD = re.compile(r"\(\?=\[\^(.+?)\]\*\\Z\)", re.DOTALL)


def ascii_pieces(match: object) -> tuple[list[bytes], list[int], list[int]] | None:
    """The reference regex behind `match` (a compiled pattern's `fullmatch`, as `_acceptor` built it) as a
    sequence of pieces `_hot` matches on an ASCII str without `re`: for each, a 128-byte table of the ASCII
    characters it takes (1), and its least and most repeats (-1: no most). None when the regex is not one
    this reads: a lookahead of refused characters and `.*`, or a concatenation of classes and literal
    characters with quantifiers where greedy reading is the only reading (every piece of variable length is
    last, or followed by one that takes at least one character none of whose characters it takes).

    Each class's characters are asked of `re` itself (one fullmatch per ASCII character), so the tables are
    what the regex takes, and a refused character is taken out of every piece (the lookahead refuses it
    anywhere in the value). The sre engine spends ~100 instructions a character; `_hot` ~40."""
    pattern = getattr(match, "__self__", None)
    if not isinstance(pattern, re.Pattern) or pattern.flags != re.DOTALL | re.UNICODE:
        return None
    source = pattern.pattern
    assert isinstance(source, str)
    refused: bytes | None = bytes(128)
    head = _LOOKAHEAD.match(source)
    if head is not None:
        refused = _table(f"[{head.group(1)}]")
        source = source[head.end():]
    if refused is None:
        return None
    sets: list[bytes] = []
    mins: list[int] = []
    maxs: list[int] = []
    if source == ".*":
        sets.append(bytes(0 if r else 1 for r in refused))
        mins.append(0)
        maxs.append(-1)
    elif source.startswith("(?:") and source.endswith(")"):
        body = source[3:-1]
        pos = 0
        while pos < len(body):
            piece = _CLASS_PIECE.match(body, pos)
            if piece is None:
                return None
            chars = _table(piece.group())
            if chars is None:
                return None
            pos = piece.end()
            low = high = 1
            quantifier = _QUANTIFIER.match(body, pos)
            if quantifier is not None:
                pos = quantifier.end()
                if pos < len(body) and body[pos] in "+*?{":
                    return None  # lazy or possessive
                q = quantifier.group()
                if q == "+":
                    low, high = 1, -1
                elif q == "*":
                    low, high = 0, -1
                elif q == "?":
                    low, high = 0, 1
                else:
                    low = high = int(quantifier.group(1))
                    if quantifier.group(2) is not None:  # "{n,m}", or "{n,}": no most
                        high = int(quantifier.group(3)) if quantifier.group(3) else -1
                    if 0 <= high < low:
                        return None
            sets.append(bytes(0 if r else c for c, r in zip(chars, refused, strict=True)))
            mins.append(low)
            maxs.append(high)
    else:
        return None
    for k in range(len(sets) - 1):
        if mins[k] != maxs[k] and (mins[k + 1] < 1 or any(a and b for a, b in zip(sets[k], sets[k + 1], strict=True))):
            return None  # greedy reading could take what the next piece needs
    return sets, mins, maxs


def _table(cls: str) -> bytes | None:
    """Which ASCII characters the regex `cls` (one class or character) fully matches, as 128 bytes."""
    try:
        compiled = re.compile(cls, re.DOTALL)
    except re.error:
        return None
    return bytes(1 if compiled.fullmatch(chr(c)) else 0 for c in range(128))


_COMPILED: dict[str, weakref.WeakKeyDictionary[Spec, Any]] = {}


def fast_spec(spec: Spec, module: ModuleType = hot) -> Any:
    """The compiled moves of a spec (built once per Spec object and module: a spec under overrides is another)."""
    cache = _COMPILED.setdefault(module.__name__, weakref.WeakKeyDictionary())
    found = cache.get(spec)
    if found is None:
        found = cache[spec] = build(spec, module)
    return found
