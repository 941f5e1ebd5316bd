"""`capstate check NAME|SPEC [--depth N] [--json]`: lint and model-check a spec.

Exit 0 when the spec lints clean and every invariant holds to the depth, 1 for a lint finding or a
counterexample, 2 when the spec cannot be loaded at all (one line, from `main`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

from .._check import DEFAULT_DEPTH, INVARIANTS, CheckResult, check_spec
from .._errors import SpecError
from .._spec import lint_spec, shipped
from . import wrap
from .options import UsageError, parse_sets

EXIT_HOLDS, EXIT_BROKEN = 0, 1
_OVERRIDES = "overrides."
MAX_DEPTH = 12  # beyond this the search is hours, not seconds, on a spec with many partial captures


def depth(text: str) -> int:
    """argparse type for --depth: an integer from 1 to MAX_DEPTH."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_DEPTH:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer from 1 to {MAX_DEPTH}")
    return int(text)


def configure(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("spec", metavar="NAME|SPEC", help="a shipped provider name or a spec file")
    sub.add_argument("--depth", type=depth, default=DEFAULT_DEPTH, metavar="N",
                     help=f"moves per explored history (default {DEFAULT_DEPTH}, at most {MAX_DEPTH})")


def refuse_directory(spec: str) -> None:
    """A directory is not a spec: say so, instead of the loader's "no such file" for a path that exists."""
    if spec not in shipped() and Path(spec).is_dir():
        raise UsageError(f"{spec}: is a directory; give a spec file (.toml) or a shipped name "
                         f"({', '.join(shipped())})")


def run(args: argparse.Namespace) -> int:
    refuse_directory(args.spec)
    overrides = parse_sets(args.sets, lint_spec(args.spec)[0].name) if args.sets else None
    try:
        result = check_spec(args.spec, depth=args.depth, overrides=overrides)
    except SpecError as exc:
        # A bad --set value is the command line's fault, not the spec file's: say so, as `spec` does.
        if not exc.path.startswith(_OVERRIDES):
            raise
        raise UsageError(f"--set {exc.path[len(_OVERRIDES):]}: {exc.reason}") from None
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(result.to_dict(), option=orjson.OPT_APPEND_NEWLINE))
    else:
        wrap.write(render(result))  # wrapped at spaces in a terminal; one line per finding in a pipe
    return EXIT_HOLDS if result.ok else EXIT_BROKEN


def _amounts(after: dict[str, Any]) -> str:
    return " ".join(f"{k} {after[k]}" for k in ("authorized", "captured", "cancelled", "refunded", "pending"))


def render(result: CheckResult) -> str:
    """The human report: findings, the search's size, then each counterexample step by step."""
    spec = result.spec
    lines = [f"capstate check {spec.name} ({spec.file})"]
    if result.findings:
        lines.append(f"lint: {len(result.findings)} finding(s)")
        for f in result.findings:
            where = f"{spec.file}:{f.line}" if f.line else spec.file
            lines.append(f"  {where}: {f.path}: {f.message} [{f.kind}]")
    else:
        lines.append("lint: ok (every state reachable and able to finish; terminal states have no exits; "
                     "every trigger, guard and route known)")
    bound = "every history explored" if result.complete else f"histories up to {result.depth} moves"
    lines.append(f"explored {result.states} states, {result.moves} moves ({bound})")
    broken = {c.invariant for c in result.counterexamples}
    for name, text in INVARIANTS.items():
        lines.append(f"  {'BROKEN' if name in broken else 'holds '}  {name}: {text}")
    for c in result.counterexamples:
        lines.append("")
        lines.append(f"counterexample for {c.invariant} ({len(c.moves)} moves): {c.message}")
        width = max(len(m.label) for m in c.moves)
        for i, m in enumerate(c.moves, start=1):
            after = m.to_dict()["after"]
            lines.append(f"  {i}. {m.label:<{width}}  -> {after['state']}: {_amounts(after)}")
    lines.append("")
    lines.append("result: " + ("holds" if result.ok else
                               f"FAILS ({len(result.findings)} finding(s), {len(result.counterexamples)} "
                               f"broken invariant(s))"))
    return "\n".join(lines) + "\n"
