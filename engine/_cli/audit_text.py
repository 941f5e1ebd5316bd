"""The audit's human report: plain text that fits 80 columns on a terminal and greps well in a file.

- Each finding is ONE line, compiler-style: `FILE:LINE: SEVERITY: CODE PAYMENT at AT: MESSAGE`, so
  `grep ': violation: EXCEEDS_CAPTURABLE'` or an editor's jump-to-line works on it. On a terminal a long
  finding wraps at the terminal's width under a 4-space indent; to a pipe or a file it is never wrapped.
- Severities are told apart without colour: the word on every line, and a heading per severity.
- Tables (findings by code, money at stake) are laid out to fit 80 columns whatever they hold: a code
  is never folded or cut, amounts are right-aligned with thousands separators.
- "showing N of M" is the report's second line, never only at the bottom.

Every value from a log (file names, payment references, messages) is shown with control characters
escaped: a log is untrusted, and ESC sequences in a payment id must not drive the auditor's terminal.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence

from .._audit import AuditReport, Finding
from .._codes import Code
from .audit_meta import RunInfo
from .audit_model import (
    EXPLAIN,
    HEADLINE,
    NOTE,
    VIOLATION,
    WARNING,
    MoneyRow,
    group,
    headline,
    major,
    money_rows,
    plural,
    rule_value,
    severity,
    severity_counts,
    showing,
)

_CODE_WIDTH = 29  # len("MULTIPLE_CAPTURES_UNSUPPORTED")
_INDENT = "    "
_Say = Callable[[str], None]
# C0 and C1 control characters, shown escaped (see the module docstring).
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def safe(text: str) -> str:
    return text.translate(_CONTROLS)


def finding_line(f: Finding) -> str:
    """One finding on one line (see the module docstring)."""
    at = f" at {f.at}" if f.at else ""
    return (f"{safe(f.file)}:{f.line}: {severity(f.code)}: {f.code.value} {safe(f.payment or '-')}{at}: "
            f"{safe(f.message)}")


def render(report: AuditReport, run: RunInfo, notes: Sequence[str], *, limit: int | None,
           width: int | None) -> list[str]:
    """The report's lines. `limit` None lists every finding; `width` None never wraps (a pipe or file)."""
    lines: list[str] = []

    def say(text: str) -> None:
        if width is None or len(text) <= width:
            lines.append(text)
            return
        lines.extend(textwrap.wrap(text, width, subsequent_indent=_INDENT, break_long_words=False,
                                   break_on_hyphens=False) or [""])

    findings = report.violations
    total = len(findings)
    shown = findings if limit is None else findings[:limit]
    by_severity = severity_counts(findings)
    verdict = "clean" if not total else (f"{plural(by_severity[VIOLATION], 'violation')}, "
                                         f"{plural(by_severity[WARNING], 'warning')}")
    say(f"capstate audit: {verdict}; {plural(report.events, 'event')}, {plural(report.payments, 'payment')}")
    say(f"{showing(len(shown), total)}" + ("" if len(shown) >= total else
                                           "; --limit N, --json or --report FILE.html for more"))
    say("")
    _provenance(say, report, run)
    rows = money_rows(findings)
    if rows:
        say("")
        _money(say, rows)
    if report.counts:
        say("")
        say("Findings by code")
        say(f"  {'severity':<9}  {'code':<{_CODE_WIDTH}}  {'count':>9}")
        for code, n in sorted(report.counts.items(), key=lambda kv: (_severity(kv[0]) != VIOLATION, kv[0])):
            say(f"  {_severity(code):<9}  {code:<{_CODE_WIDTH}}  {group(n):>9}")
    for sev, title in ((VIOLATION, "Violations"), (WARNING, "Warnings")):
        listed = [f for f in shown if severity(f.code) == sev]
        if not by_severity[sev]:
            continue
        say("")
        say(f"{title}: {showing(len(listed), by_severity[sev], sev)}")
        for f in listed:
            say(finding_line(f))
    if report.counts:
        say("")
        say("Codes")
        for code in sorted(report.counts, key=lambda c: (_severity(c) != VIOLATION, c)):
            say(f"  {code}: {EXPLAIN[Code(code)]}")
    say("")
    say("Notes")
    for note in notes:
        say(f"{NOTE}: {note}")
    if not findings:
        say("")
        say("clean: no violations, no warnings")
    return lines


def _provenance(say: _Say, report: AuditReport, run: RunInfo) -> None:
    say(f"capstate {run.version}, run {run.started_at} in {run.seconds:.2f} s")
    source = "given with --as-of" if run.as_of_given else "the latest event's at"
    say(f"as of {report.as_of or '-'} ({source})")
    say("Inputs")
    for i in run.inputs:
        say(f"  {safe(i.name)}: {i.format}, {group(i.size)} bytes")
        say(f"  sha256 {i.sha256}")
    say("Specs" if run.specs else "Specs: none judged a payment")
    for s in run.specs:
        say(f"  {s.name}: {safe(s.file)}" + ("" if s.shipped else " (not shipped)"))
        say(f"  sha256 {s.sha256}")
        for rule, (before, after) in s.overrides.items():
            say(f"  override {rule}: {rule_value(before)} -> {rule_value(after)}")
    say("Overrides: " + (" ".join(f"--set {safe(item)}" for item in run.sets) if run.sets else "none"))


def _money(say: _Say, typed: Sequence[MoneyRow]) -> None:
    say("Money at stake (in each currency's major units)")
    for currency, kinds in headline(typed).items():
        say(f"  {currency}: " + ", ".join(f"{kind} {major(kinds[kind], None if currency == '?' else currency)}"
                                          for kind in HEADLINE))
    amounts = [major(r.amount, r.currency) for r in typed]
    wide = max(10, *(len(a) for a in amounts))
    say(f"  {'code':<{_CODE_WIDTH}} {'cur':<3} {'amount':>{wide}}  what")
    for r, amount in zip(typed, amounts, strict=True):
        say(f"  {r.code:<{_CODE_WIDTH}} {r.currency or '?':<3} {amount:>{wide}}  {r.kind}")


def _severity(name: str) -> str:
    return severity(Code(name))
