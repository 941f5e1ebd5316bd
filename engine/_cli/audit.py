"""`capstate audit FILE...`: replay histories and report every breach of the provider's policy.

Exit codes: 0 clean, 1 violations found, 2 bad usage or an unreadable file (one line on stderr).
The report goes to stdout: a rich summary, or with --json one object
`{"provider", "events", "payments", "violations": [...], "counts": {...}}`; --report also writes a
self-contained HTML report. A progress bar goes to stderr when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import sys

import orjson
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._audit import DEFAULT_SETTLED_WINDOW, AuditReport
from . import render
from .audit_run import FORMATS, display_name, run_audit, same_file_key
from .options import UsageError, parse_at, parse_sets

EXIT_CLEAN, EXIT_VIOLATIONS = 0, 1
SHOWN = 20  # violations printed in the human summary; --json and --report carry all of them


def configure(parser: argparse.ArgumentParser) -> None:
    """The audit command's arguments (main.py adds --json and --set)."""
    parser.add_argument("files", nargs="*", metavar="FILE", help="canonical JSONL (or --format vipps-events), "
                                                                 "plain or .gz; '-' reads stdin")
    parser.add_argument("--provider", metavar="NAME|PATH", help="judge every event by this spec (default: each "
                                                                "payment's first event names its provider)")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="canonical",
                        help="canonical JSONL (default) or the Vipps ePayment event log (--provider vipps implied)")
    parser.add_argument("--as-of", metavar="T", help="RFC 3339 instant at which dangling authorizations are "
                                                     "judged (default: the latest event's `at`)")
    parser.add_argument("--report", metavar="FILE.html", help="also write a self-contained HTML report")
    parser.add_argument("--settled-window", type=_count, default=DEFAULT_SETTLED_WINDOW, metavar="LINES",
                        help=f"how many input lines a payment in a terminal state is remembered after its latest "
                             f"event, for late refunds, captures and duplicates (default {DEFAULT_SETTLED_WINDOW:,})")
    parser.add_argument("--workers", type=_workers, default=1, metavar="N",
                        help="partition payments over N processes (same output as one)")
    parser.add_argument("--dask", metavar="local|ADDRESS",
                        help="run on Dask: 'local' starts a LocalCluster, else a scheduler address such as "
                             'tcp://host:8786 (pip install "capstate[dask]")')


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def cmd_audit(args: argparse.Namespace) -> int:
    if not args.files:
        raise UsageError("give at least one FILE ('-' reads stdin), or --journal URL")
    as_of = parse_at(args.as_of, "--as-of") if args.as_of is not None else None
    provider = args.provider
    if provider is None and args.fmt == "vipps-events":
        provider = "vipps"
    if args.report is not None and same_file_key(args.report) in {same_file_key(f) for f in args.files}:
        raise UsageError(f"--report {args.report} is also an input file; refusing to overwrite it")
    overrides = _overrides(args.sets, provider) if args.sets else None
    if args.report is not None:
        from .audit_html import check_report_path

        check_report_path(args.report)
    progress = sys.stderr.isatty()
    report = run_audit(args.files, spec=provider, fmt=args.fmt, as_of=as_of, workers=args.workers,
                       dask=args.dask, progress=progress, overrides=overrides,
                       settled_window=args.settled_window)
    names = [display_name(f) for f in args.files]
    if args.report is not None:
        from .audit_html import write_report

        write_report(report, args.report, files=names)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report.to_dict(), option=orjson.OPT_APPEND_NEWLINE))
    else:
        summary(render.console(), report, names)
    return EXIT_VIOLATIONS if report.violations else EXIT_CLEAN


def _overrides(sets: list[str], provider: str | None) -> dict[str, object]:
    """--set items as overrides. With --provider, a prefix must name that spec; without it, each
    payment's spec takes the unprefixed items and those prefixed with its name."""
    from .._spec import load_spec, shipped

    if provider is not None:
        return parse_sets(sets, load_spec(provider).name)
    out: dict[str, object] = {}
    for item in sets:
        head, dot, _ = item.partition("=")[0].strip().partition(".")
        name = head if dot and head in shipped() else ""
        for key, value in parse_sets([item], name).items():
            out[f"{name}.{key}" if name else key] = value
    return out


# C0 and C1 control characters, shown escaped: a log is untrusted, and a payment id carrying ESC
# sequences must not recolour, retitle or clear the auditor's terminal.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def _safe(text: str) -> str:
    return text.translate(_CONTROLS)


def summary(out: Console, report: AuditReport, files: list[str]) -> None:
    """Totals, violations by code, and the first violations with their evidence."""
    head = Text()
    head.append("audit ", style="bold")
    head.append(_safe(", ".join(files)))
    head.append(f"  provider {report.provider or 'per event'}  events {report.events}  "
                f"payments {report.payments}  violations {len(report.violations)}")
    if report.as_of:
        head.append(f"  as of {report.as_of}")
    out.print(head)
    if not report.violations:
        out.print(Text("clean: no violations", style="green"))
        return
    counts = Table(box=box.SIMPLE, show_edge=False)
    counts.add_column("code", no_wrap=True)
    counts.add_column("count", justify="right")
    for code, n in report.counts.items():
        counts.add_row(Text(code), str(n))
    out.print(counts)
    shown = report.violations[:SHOWN]
    out.print(Text(f"first {len(shown)} of {len(report.violations)}:" if len(report.violations) > SHOWN
                   else "violations:", style="bold"))
    # Evidence under its heading rather than in a table column: paths and messages are long, and a
    # narrow terminal would fold them into unreadable slivers.
    for f in shown:
        where = Text()
        where.append(_safe(f"{f.file}:{f.line}"), style="bold")
        where.append(f"  {_safe(f.payment or '-')}  ")
        where.append(f.code.value, style="red")
        if f.at:
            where.append(f"  at {f.at}")
        out.print(where)
        out.print(Text(f"    {_safe(f.message)}"))
    if len(report.violations) > SHOWN:
        out.print(Text(f"{len(report.violations) - SHOWN} more: use --json or --report FILE.html"))
