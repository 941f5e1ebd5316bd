"""Human output: rich tables and panels for providers, specs and decisions.

Every value that comes from a spec, a history or the user is wrapped in `Text`, never passed as a
markup string: spec notes say "[UNK]" and reference patterns say "[a-zA-Z0-9-]", which rich would
otherwise read as markup and silently drop.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterable, Sequence
from typing import IO, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .._money import to_major_string
from .._policy import POLICY_PARSERS, IdentifierRule, Policy
from .._spec import Spec
from .._time import format_duration, format_instant
from .._values import Payment, PolicyWarning, Violation
from .decision import Decided

# The rules a merchant reads first when choosing or checking a provider (`capstate providers`).
GLANCE = ("capture", "partial_capture", "max_captures", "authorization_validity", "remainder", "idempotency",
          "reference")
_LABELS = {"capture": "capture", "partial_capture": "partial capture", "max_captures": "max captures",
           "authorization_validity": "validity", "remainder": "remainder", "idempotency": "idempotency",
           "reference": "reference"}
# Refusals, warnings and notes are told apart without colour: each heading and line starts with its marker.
REFUSAL_MARK, WARNING_MARK, NOTE_MARK = "✗", "!", "i"
_CODE_WIDTH = 29  # len("MULTIPLE_CAPTURES_UNSUPPORTED"): a code is never folded or cut


class _Console(Console):
    def print(self, *objects: Any, **kwargs: Any) -> None:
        # To a pipe or a file nothing is wrapped: the console is as wide as what it prints, so each
        # finding stays on one line and greps. A terminal keeps its own width.
        if not self.is_terminal and objects:
            from rich.measure import Measurement

            wide = self.options.update_width(10_000)
            need = max(Measurement.get(self, wide, o).maximum for o in objects if not isinstance(o, str))\
                if any(not isinstance(o, str) for o in objects) else 0
            self.width = max(self.width, need)
        super().print(*objects, **kwargs)

    def on_broken_pipe(self) -> None:
        # rich exits with status 1 here, which `validate` uses for "refused"; let `main` choose.
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "stdout was closed")


def console(stream: IO[str] | None = None) -> Console:
    """A Console that writes no control codes unless the stream is a terminal.

    rich honours FORCE_COLOR and TTY_COMPATIBLE even for pipes; a CI that sets them would put escape
    codes in files and in scripts' captured output, so only a real terminal gets colour.
    """
    stream = stream if stream is not None else sys.stdout
    tty = stream.isatty()
    return _Console(file=stream, force_terminal=None if tty else False, highlight=False, emoji=False,
                   soft_wrap=False)


# ------------------------------------------------------------------------------------------ values


def _per_currency(table: Iterable[tuple[str, object]]) -> str:
    items = list(table)
    if len(items) == 1 and items[0][0] == "*":
        return str(items[0][1])
    return ", ".join(f"{'other' if cur == '*' else cur} {value}" for cur, value in items)


def rule_text(policy: Policy, name: str) -> str:
    """One policy value as a person reads it: '180d' per currency, 'unlimited', '8..50 chars'."""
    value = getattr(policy, name)
    if name == "authorization_validity":
        return "unknown" if value is None else _per_currency((k, format_duration(v)) for k, v in value.items())
    if name in ("max_captures", "max_refunds"):
        return "unlimited" if value is None else str(value)
    if name == "refund_window":
        return "none" if value is None else format_duration(value)
    if name == "amount_format":
        return "minor units" if value is None else f"decimal({value[0]},{value[1]})"
    if name == "amount_min":
        return _per_currency(value.items())
    if name == "amount_max":
        return "none" if value is None else str(value)
    if name == "currencies":
        return "any" if value is None else ", ".join(sorted(value))
    if name == "over_capture_percent":
        return f"{value}%"
    if isinstance(value, IdentifierRule):
        return value.describe()
    if name == "identifiers":
        return "; ".join(f"{k}: {rule.describe()}" for k, rule in value.items()) or "none"
    return str(value)


def basis(policy: Policy, name: str) -> str:
    """Where a rule's value comes from: the provider's doc, a marked default, an override, or the
    engine's default because the spec file does not state the rule."""
    source = policy.sources.get(name)
    if source is None:
        return "engine default"
    if source.overridden:
        return "override"
    return "default" if source.default else "doc"


def money(amount: int, currency: str | None) -> str:
    if currency is None:
        return str(amount)
    return f"{amount} ({to_major_string(amount, currency)} {currency})"


def _code_table(title: str, rows: Sequence[Violation | PolicyWarning], style: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, expand=True)
    table.add_column("code", style=style, no_wrap=True, min_width=_CODE_WIDTH)
    table.add_column("message", overflow="fold", ratio=1)
    for row in rows:
        table.add_row(Text(row.code.value), Text(row.message))
    return table


# --------------------------------------------------------------------------------------- providers


def providers(out: Console, specs: Sequence[Spec]) -> None:
    names = Table(title="Shipped provider specs", title_justify="left", box=box.SIMPLE_HEAD)
    names.add_column("name", style="bold", no_wrap=True)
    names.add_column("title and doc", overflow="fold")
    for spec in specs:
        names.add_row(Text(spec.name), Text(spec.title + (f"\n{spec.doc}" if spec.doc else "")))
    out.print(names)

    glance = Table(title="Policy at a glance", title_justify="left", box=box.SIMPLE_HEAD,
                   caption="* a marked default: the provider does not document it; see `capstate spec NAME`",
                   caption_justify="left")
    glance.add_column("rule", style="bold", no_wrap=True)
    for spec in specs:
        glance.add_column(spec.name, overflow="fold")
    for name in GLANCE:
        cells = []
        for spec in specs:
            text = rule_text(spec.policy, name).replace("_", " ")
            cells.append(Text(text + (" *" if basis(spec.policy, name) == "default" else "")))
        glance.add_row(Text(_LABELS[name]), *cells)
    out.print(glance)


# -------------------------------------------------------------------------------------------- spec


def spec(out: Console, s: Spec) -> None:
    head = Text.assemble((s.title, "bold"), f"\nname {s.name}   file {s.file}")
    if s.doc:
        head.append(f"\ndoc  {s.doc}")
    out.print(Panel(head, title=Text(f"spec {s.name}"), title_align="left", expand=False))

    states = Table(title="States", title_justify="left", box=box.SIMPLE_HEAD)
    states.add_column("state", style="bold", no_wrap=True)
    states.add_column("role", no_wrap=True)
    states.add_column("triggers out")
    for state in s.states:
        role = "initial" if state == s.initial else "terminal" if state in s.terminal else ""
        outs = sorted({t.trigger.value for t in s.transitions if t.source == state})
        states.add_row(Text(state), Text(role), Text(", ".join(outs) or "-"))
    out.print(states)

    # One cell per transition, its parts on their own lines: five side-by-side columns of guard names
    # and doc URLs fold into unreadable slivers at 80 columns.
    moves = Table(title="Transitions", title_justify="left", box=box.SIMPLE_HEAD, show_lines=True)
    moves.add_column("#", justify="right", no_wrap=True)
    moves.add_column("trigger: source -> dest, guards, doc", overflow="fold", ratio=1)
    for i, t in enumerate(s.transitions):
        cell = Text(f"{t.trigger.value}: {t.source} -> {t.dest}", style="bold")
        if t.when:
            cell.append(f"  when {t.when}", style="not bold")
        cell.append(f"\nguards: {', '.join(t.guards) or '-'}", style="not bold")
        cell.append(f"\ndoc: {t.doc or '-'}", style="not bold")
        if t.note:
            cell.append(f"\nnote: {t.note}", style="not bold")
        moves.add_row(Text(str(i)), cell)
    out.print(moves)

    rules = Table(title="Policy", title_justify="left", box=box.SIMPLE_HEAD, show_lines=True,
                  caption="basis: doc = from the provider's documentation; default = a marked default for an "
                          "undocumented fact; override = --set; engine default = not stated in the spec",
                  caption_justify="left")
    rules.add_column("rule", style="bold", no_wrap=True)
    rules.add_column("value (basis), doc, note", overflow="fold", ratio=1)
    for name in POLICY_PARSERS:
        source = s.policy.sources.get(name)
        cell = Text(rule_text(s.policy, name), style="bold")
        cell.append(f"  ({basis(s.policy, name)})")
        if source is not None and source.doc:
            cell.append(f"\ndoc: {source.doc}")
        if source is not None and source.note:
            cell.append(f"\nnote: {source.note}")
        rules.add_row(Text(name), cell)
    out.print(rules)


# ---------------------------------------------------------------------------------------- decision


def _aggregate(p: Payment) -> dict[str, str]:
    cur = p.currency
    return {
        "state": p.state,
        "authorized": money(p.authorized, cur),
        "captured": money(p.captured, cur),
        "cancelled": money(p.cancelled, cur),
        "refunded": money(p.refunded, cur),
        "pending": money(p.pending, cur),
        "capturable": money(p.capturable, cur),
        "expires at": format_instant(p.expires_at) if p.expires_at else "unknown",
    }


def decision(out: Console, decided: Decided) -> None:
    d = decided.decision
    p = d.before
    cmd = decided.command
    amount = "?" if cmd.amount is None else money(cmd.amount, cmd.currency or p.currency)
    what = amount if decided.amount_given else f"in full, resolved to {amount},"
    verdict = Text("ALLOWED", style="bold green") if d.allowed else Text("REFUSED", style="bold red")
    line = Text.assemble(verdict, f"  capture {what} of payment {p.reference!r} on {p.spec.name}")
    details = [f"at {format_instant(cmd.at)}" + ("" if decided.at_given else " (now: --at not given)"),
               (f"key {cmd.key!r}" + (" (derived, as capture sends it)" if decided.key_derived else ""))
               if cmd.key is not None else "no idempotency key"]
    if cmd.final:
        details.append("final: release the rest")
    details.append(decided.origin)
    # One fact per line: at 80 columns a joined sentence breaks inside a key or an instant.
    line.append("".join(f"\n{d}" for d in details))

    parts: list[RenderableType] = [line]
    if d.violations:
        parts.append(_code_table(f"{REFUSAL_MARK} Refusals", d.violations, "bold red"))
    if d.warnings:
        parts.append(_code_table(f"{WARNING_MARK} Warnings", d.warnings, "yellow"))

    agg = Table(title="Payment", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    agg.add_column("", style="bold", no_wrap=True)
    agg.add_column("before")
    before = _aggregate(p)
    # A refused capture has no "after"; a column of dashes would only look like data.
    after = _aggregate(d.after) if d.after is not None else None
    if after is not None:
        agg.add_column("after")
    for name, value in before.items():
        agg.add_row(Text(name), Text(value), *([Text(after[name])] if after is not None else []))
    parts.append(agg)
    out.print(Panel(Group(*parts), title=Text(f"capstate validate: {p.spec.name}"), title_align="left",
                    border_style="green" if d.allowed else "red"))
