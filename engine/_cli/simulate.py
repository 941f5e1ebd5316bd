"""`capstate simulate PLAN`: run a capture plan against one provider, several, or all of them.

The file is read here (the core never reads files) and parsed by its extension, .toml or .json. Exit 0
when every selected provider runs the plan clean, 1 when any refuses a step (or cannot recover from a
rehearsed failure), 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from rich import box
from rich.console import Console, Group, RenderableType
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .._plan import Plan
from .._policy import POLICY_PARSERS
from .._simulate import SimulationNote, SimulationResult, StepResult, simulate
from .._spec import Spec, load_spec, shipped
from .._time import format_instant
from . import render
from .options import UsageError, load_with_sets

EXIT_OK, EXIT_REFUSED = 0, 1
_ALL = "all"
_MARK = "✓"


PLAN_FORMATS = ("toml", "json")


def configure(sub: argparse.ArgumentParser) -> None:
    """The command's own arguments (main adds --json and --set)."""
    sub.add_argument("plan", metavar="PLAN|-", help="a plan file, .toml or .json (see examples/plans/); '-' reads "
                                                     "stdin, with --format")
    sub.add_argument("--provider", default=_ALL, metavar="NAME|PATH|all",
                     help="a shipped provider (any case), a spec file, several joined by commas, or 'all' "
                          "(the default)")
    sub.add_argument("--format", dest="plan_format", choices=PLAN_FORMATS,
                     help="how to read the plan: toml or json (default: the file's extension; needed for '-')")


# --------------------------------------------------------------------------------------------- input


def read_plan(path: str, fmt: str | None = None) -> Plan:
    """Read and parse the plan, as `fmt` or by its extension; "-" is stdin. Raises PlanError or
    UsageError (exit 2)."""
    name = "stdin" if path == "-" else path
    if fmt is None:
        if path == "-":
            raise UsageError("plan -: stdin has no extension to tell TOML from JSON; give --format toml or json")
        suffix = Path(path).suffix.lower()
        if suffix not in (".toml", ".json"):
            raise UsageError(f"plan {path}: the file must end in .toml or .json, which says how to read it "
                             f"(or give --format)")
        fmt = suffix[1:]
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read plan {name}: {exc.strerror or exc}") from None
    if fmt == "json":
        return Plan.from_json(data, file=name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"plan {name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return Plan.from_toml(text, file=name)


def _prefix(item: str) -> str | None:
    key = item.partition("=")[0].strip()
    head, dot, _ = key.partition(".")
    return head if dot and head not in POLICY_PARSERS else None


def select_specs(provider: str, sets: Sequence[str]) -> list[Spec]:
    """The specs `--provider` names, each with the `--set` items meant for it: unprefixed ones apply to
    every provider; `vipps.max_captures=1` only to vipps. A prefix naming a provider not selected is
    refused (by load_with_sets), because the user would believe the override is in force."""
    names = list(shipped()) if provider == _ALL else [n.strip() for n in provider.split(",") if n.strip()]
    if not names:
        raise UsageError("--provider: name a provider, a spec file, or 'all'")
    plain = [load_spec(n) for n in names]
    selected = [s.name for s in plain]
    twice = sorted({n for n in selected if selected.count(n) > 1})
    if twice:
        raise UsageError(f"--provider: {twice[0]!r} is selected twice")
    specs = []
    for name, spec in zip(names, plain, strict=True):
        mine = [item for item in sets if _prefix(item) in (None, spec.name) or _prefix(item) not in selected]
        specs.append(load_with_sets(name, mine) if mine else spec)
    return specs


def run(args: argparse.Namespace) -> int:
    plan = read_plan(args.plan, args.plan_format)
    specs = select_specs(args.provider, args.sets)
    results = [simulate(plan, spec) for spec in specs]
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(to_json(results), option=orjson.OPT_APPEND_NEWLINE))
    else:
        out = render.console()
        if len(results) == 1:
            single(out, results[0])
        else:
            matrix(out, results)
    return EXIT_OK if all(r.ok for r in results) else EXIT_REFUSED


# ------------------------------------------------------------------------------------------ rendering


def _step_label(plan: Plan, s: StepResult, *, resolved: bool) -> Text:
    """The step as the plan wrote it; `resolved` adds what an omitted amount came to on this provider."""
    text = Text(s.op, style="bold")
    written = next((p for p in plan.steps if p.index == s.index), None)
    if written is None:  # the authorization
        text.append(f" {plan.amount}")
        return text
    if written.amount is not None:
        text.append(f" {written.amount}")
    elif written.op.value in ("capture", "cancel"):
        text.append(" in full" if written.op.value == "capture" else " the rest")
        if resolved and s.allowed and s.amount is not None:
            text.append(f" ({s.amount})")
    if written.final:
        text.append(" final")
    if written.outcome.value == "failed":
        text.append(" (fails)", style="yellow")
    if written.note:
        text.append(f"\n{written.note}", style="dim")
    return text


def _at(plan: Plan, s: StepResult) -> Text:
    return Text(f"{plan.offset(s.at)}\n{format_instant(s.at)}")


def _cell(s: StepResult, *, aggregate: bool = False, short: dict[str, str] | None = None) -> Text:
    """✓ or the refusing codes (with `short`, their abbreviations); what the clock or a failure did; with
    `aggregate`, the payment after."""
    if not s.allowed:
        codes = [short.get(c, c) for c in s.codes] if short is not None else list(s.codes)
        text = Text(f"{render.REFUSAL_MARK} " + (",".join(codes) if short is not None else "\n".join(codes)),
                    style="bold red")
    elif s.outcome is not None and s.outcome.value == "failed" and s.op != "wait":
        text = Text(f"{_MARK} failed", style="yellow")
    else:
        text = Text(_MARK, style="green")
    if s.lapsed_at is not None:
        text.append(f"\nlapsed{chr(10) if short is not None else ' '}{format_instant(s.lapsed_at)[:10]}",
                    style="yellow")
    if s.surprise:
        text.append("\nno retry", style="bold red")
    if aggregate:
        text.append(f"\n{s.after.state}\n{s.after.captured}/{s.after.cancelled}" if short is not None
                    else f"\n{s.after.state} {s.after.captured}/{s.after.cancelled}", style="dim")
    return text


def abbreviations(codes: Sequence[str]) -> dict[str, str]:
    """A short, unique label per code: the initials of its words (MULTIPLE_CAPTURES_UNSUPPORTED -> MCU),
    with a digit after a clash. Used only where the full codes do not fit the terminal, with a legend."""
    out: dict[str, str] = {}
    for code in codes:
        if code in out:
            continue
        base = "".join(word[0] for word in code.split("_"))
        label, n = base, 2
        while label in out.values():
            label, n = f"{base}{n}", n + 1
        out[code] = label
    return out


def verdict(r: SimulationResult) -> Text:
    cur = r.plan.currency
    head = (Text(f"{r.provider}: runs clean", style="bold green") if r.ok
            else Text(f"{r.provider}: NOT clean", style="bold red"))
    refused = [str(s.index) for s in r.steps if not s.allowed]
    surprises = [str(s.index) for s in r.steps if s.surprise]
    why = []
    if not r.authorization.allowed:
        why.append("refuses the authorization")
    if refused:
        why.append(f"refuses step {', '.join(refused)}")
    if surprises:
        why.append(f"cannot recover from the failure at step {', '.join(surprises)}")
    if why:
        head.append(f" ({'; '.join(why)})", style="red")
    head.append(f" - captured {render.money(r.captured, cur)} of {render.money(r.intended, cur)} intended; "
                f"released {render.money(r.released, cur)}")
    if r.lapsed:
        head.append(f" (lapsed {r.lapsed})")
    if r.held:
        until = r.held_until_text
        head.append(f"; held {render.money(r.held, cur)}", style="bold yellow")
        if until == "unknown":
            head.append(" for as long as the card issuer keeps it")
        else:
            head.append(f" {until}" if until.startswith("until ") else f" until {until}")
    else:
        head.append("; nothing held")
    if r.expires_at is None and r.authorization.allowed and r.steps:
        head.append(f"\n  {r.provider}'s authorization validity is unknown, so no step here can expire; set it "
                    f"with --set {r.provider}.authorization_validity=7d", style="dim")
    return head


def _messages(s: StepResult) -> Text:
    text = Text()
    for item in (*s.violations, *s.warnings):
        # A marker tells refusals, warnings and notes apart where there is no colour (a pipe, NO_COLOR).
        if item in s.violations:
            mark, style = render.REFUSAL_MARK, "red"
        elif isinstance(item, SimulationNote):
            mark, style = render.NOTE_MARK, "yellow"
        else:
            mark, style = render.WARNING_MARK, "bold"
        if text:
            text.append("\n")
        text.append(f"{mark} {item.code.value}: ", style=style)
        text.append(item.message)
    return text


def _header(plan: Plan, providers: str) -> Text:
    text = Text(plan.description or "capture plan", style="bold")
    ref = f"reference {plan.reference}" + (" (derived from the plan)" if plan.reference_derived else "")
    text.append(f"\nauthorize {render.money(plan.amount, plan.currency)} at {format_instant(plan.authorized_at)}"
                f"{f', flow {plan.flow.value}' if plan.flow else ''}; {ref}")
    text.append(f"\n{len(plan.steps)} step(s) on {providers}")
    return text


def _widen(out: Console, table: Table, margin: int = 0) -> None:
    # Codes are never cut: written to a file or a pipe, the output may be as wide as the table needs.
    if not out.is_terminal:
        need = Measurement.get(out, out.options.update_width(10_000), table).maximum + margin
        out.width = max(out.width, need)


def _why(rows: Sequence[tuple[str | None, StepResult]]) -> Table:
    """Every step's violations and warnings, in full, below the compact table."""
    marks = f"{render.REFUSAL_MARK} refusal, {render.WARNING_MARK} warning, {render.NOTE_MARK} note"
    why = Table(title=f"Why ({marks})", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, expand=True)
    named = any(name is not None for name, _ in rows)
    if named:
        why.add_column("provider", no_wrap=True)
    why.add_column("#", justify="right", no_wrap=True)
    why.add_column("code: message", overflow="fold", ratio=1)
    for name, s in rows:
        if s.violations or s.warnings:
            why.add_row(*([Text(name or "")] if named else []), Text(str(s.index)), _messages(s))
    return why


def _steps(r: SimulationResult, short: dict[str, str] | None) -> Table:
    plan = r.plan
    steps = Table(box=box.SIMPLE_HEAD, show_lines=True, pad_edge=short is None)
    steps.add_column("#", justify="right", no_wrap=True)
    steps.add_column("at", no_wrap=True)
    steps.add_column("step", overflow="fold", min_width=16, max_width=20 if short is not None else None)
    steps.add_column("result", no_wrap=True)
    steps.add_column("after: state\ncaptured / cancelled / refunded" if short is None
                     else "after: state\ncapt./canc./ref.", no_wrap=True)
    for s in (r.authorization, *r.steps):
        agg = s.after
        instant = format_instant(s.at).replace("T", "\n")  # date, then time: 10 columns, not 20
        at = _at(plan, s) if short is None else Text(f"{plan.offset(s.at)}\n{instant}")
        sep = " / " if short is None else "/"
        steps.add_row(Text(str(s.index)), at, _step_label(plan, s, resolved=True), _cell(s, short=short),
                      Text(f"{agg.state}\n{agg.captured}{sep}{agg.cancelled}{sep}{agg.refunded}"))
    return steps


def single(out: Console, r: SimulationResult) -> None:
    plan = r.plan
    steps = _steps(r, None)
    short: dict[str, str] | None = None
    if out.is_terminal and not _fits(out, steps, margin=4):
        # A narrow terminal: the instant on two lines and the codes abbreviated, with a legend below.
        short = abbreviations([c for s in (r.authorization, *r.steps) for c in s.codes])
        steps = _steps(r, short)
    _widen(out, steps, margin=4)  # the panel's borders and padding
    parts: list[RenderableType] = [_header(plan, r.provider), steps]
    if short:
        width = max(len(label) for label in short.values())
        parts.append(Text("\n".join(f"  {label:<{width}}  {code}" for code, label in short.items())))
    why = _why([(None, s) for s in (r.authorization, *r.steps)])
    if why.row_count:
        parts.append(why)
    parts.append(verdict(r))
    out.print(Panel(Group(*parts), title=Text(f"capstate simulate: {r.provider}"), title_align="left",
                    border_style="green" if r.ok else "red"))


_LEGEND = (f"{_MARK} allowed, {render.REFUSAL_MARK} refused by the code(s) shown; under it the state and "
           f"captured/cancelled after the step")


def _grid(plan: Plan, results: Sequence[SimulationResult], short: dict[str, str] | None) -> Table:
    """Steps as rows, providers as columns. With `short` (a narrow terminal), codes are abbreviated and the
    instant folds into the step number's column, so four providers fit 80 columns without cutting a code."""
    grid = Table(title="Steps by provider", title_justify="left", box=box.SIMPLE_HEAD, show_lines=True,
                 pad_edge=short is None)
    grid.add_column("#", justify="right" if short is None else "left", no_wrap=True)
    if short is None:
        grid.add_column("at", no_wrap=True)
    grid.add_column("step", overflow="fold", min_width=16, max_width=18 if short is not None else None)
    for r in results:
        grid.add_column(r.provider, no_wrap=short is not None, overflow="fold")
    rows: list[Sequence[StepResult]] = [[r.authorization for r in results]]
    rows += [[r.steps[i] for r in results] for i in range(len(plan.steps))]
    for row in rows:
        first = row[0]
        head = [Text(str(first.index)), _at(plan, first)] if short is None else \
            [Text(f"{first.index}\n{plan.offset(first.at)}")]
        grid.add_row(*head, _step_label(plan, first, resolved=False), *(_cell(s, aggregate=True, short=short)
                                                                         for s in row))
    return grid


def _fits(out: Console, table: Table, margin: int = 0) -> bool:
    # Its natural width: narrower, rich would fold codes inside cells or drop whole columns.
    return Measurement.get(out, out.options.update_width(10_000), table).maximum + margin <= out.width


def matrix(out: Console, results: Sequence[SimulationResult]) -> None:
    plan = results[0].plan
    out.print(_header(plan, ", ".join(r.provider for r in results)))
    grid = _grid(plan, results, None)
    if out.is_terminal and not _fits(out, grid):
        # Too wide for this terminal: codes abbreviated with a legend, and, when even that is too wide
        # (many providers), one block of providers after another. Never a dropped column or a cut code.
        codes = [c for r in results for s in (r.authorization, *r.steps) for c in s.codes]
        short = abbreviations(codes)
        blocks: list[Sequence[SimulationResult]] = [results]
        size = len(results)
        while size > 1 and not _fits(out, _grid(plan, blocks[0], short)):
            size -= 1
            blocks = [results[i:i + size] for i in range(0, len(results), size)]
        for block in blocks:
            out.print(_grid(plan, block, short))
        out.print(Text(_LEGEND))
        width = max((len(label) for label in short.values()), default=0)
        for code, label in short.items():
            out.print(Text(f"  {label:<{width}}  {code}"))
    else:
        _widen(out, grid)
        out.print(grid)
        out.print(Text(_LEGEND))
    why = _why([(r.provider, s) for r in results for s in (r.authorization, *r.steps)])
    if why.row_count:
        _widen(out, why)
        out.print(why)
    out.print(Text("Verdict", style="bold"))
    for r in results:
        out.print(verdict(r), soft_wrap=not out.is_terminal)  # one greppable line per provider in a pipe


def to_json(results: Sequence[SimulationResult]) -> dict[str, Any]:
    """`capstate simulate --json`: {"results": {provider: its result}} in the order selected."""
    return {"results": {r.provider: r.to_dict() for r in results}}
