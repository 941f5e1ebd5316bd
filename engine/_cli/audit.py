"""`capstate audit FILE...`: replay histories and report every breach of the provider's policy.

Exit codes: 0 clean, 1 findings (violations or warnings), 2 bad usage, an unreadable or empty input,
or an input with no events (one line on stderr).

Every report (the human text on stdout, --json, --report FILE.html) says what produced it: the
capstate version, when it ran, every input (name, format, size, sha256), the instant dangling
authorizations were judged at, and the specs and overrides in force (`audit_meta`); the money at
stake per code and currency (`audit_model`); and how many findings it shows of how many. The formats
are documented in docs/audit-reports.md. A progress bar goes to stderr when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import orjson

from .._audit import DEFAULT_SETTLED_WINDOW, AuditReport
from . import audit_text
from .audit_meta import InputInfo, RunInfo, capstate_version, describe_specs, now, sha256_file, stamp
from .audit_model import headline, money_rows, severity, severity_counts, showing
from .audit_run import (
    DEFAULT_MAX_MEMORY,
    EMPTY,
    FORMATS,
    display_name,
    resolve_formats,
    run_audit,
    same_file_key,
)
from .options import UsageError, parse_at, parse_sets
from .outputs import refuse_overwrite

EXIT_CLEAN, EXIT_VIOLATIONS = 0, 1
TERMINAL_LIMIT = 20
"""Findings listed on a terminal by default; to a pipe or file every one is (one per line, for grep)."""
HTML_LIMIT = 10_000
"""Findings written to the HTML report by default (a browser slows past that; --json carries all)."""


def configure(parser: argparse.ArgumentParser) -> None:
    """The audit command's arguments (main.py adds --json and --set)."""
    parser.add_argument("files", nargs="*", metavar="FILE", help="canonical JSONL (or --format vipps-events), "
                                                                 "plain or .gz; '-' reads stdin")
    from .journal import add_audit_options

    add_audit_options(parser)
    parser.add_argument("--provider", metavar="NAME|PATH", help="judge every event by this spec (default: each "
                                                                "payment's first event names its provider)")
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default="auto",
                        help="auto (default: what each input is), canonical JSONL, or the Vipps ePayment "
                             "event log (--provider vipps implied)")
    parser.add_argument("--as-of", metavar="T", help="RFC 3339 instant at which dangling authorizations are "
                                                     "judged (default: the latest event's `at`)")
    parser.add_argument("--report", metavar="FILE.html", help="also write a self-contained HTML report")
    parser.add_argument("--limit", type=_count, metavar="N",
                        help=f"findings listed in the text and HTML reports (default: {TERMINAL_LIMIT} on a "
                             f"terminal, all to a pipe or file, {HTML_LIMIT:,} in HTML); --json lists all")
    parser.add_argument("--settled-window", type=_count, default=DEFAULT_SETTLED_WINDOW, metavar="LINES",
                        help=f"how many input lines a payment in a terminal state is remembered after its latest "
                             f"event, for late refunds, captures and duplicates (default {DEFAULT_SETTLED_WINDOW:,})")
    parser.add_argument("--max-memory", type=parse_size, default=DEFAULT_MAX_MEMORY, metavar="SIZE",
                        help="memory for open payments, e.g. 512MB or 4GiB (default 1GiB); past it the oldest "
                             "wait in a temporary SQLite file until their next event (the same report); "
                             "'none' for no bound")
    parser.add_argument("--workers", type=_workers, default=1, metavar="N",
                        help="audit on N processes: byte ranges of plain files, payments of gzip or Vipps "
                             "exports (same output as one)")
    parser.add_argument("--dask", metavar="local|ADDRESS",
                        help="run on Dask: 'local' starts a LocalCluster, else a scheduler address such as "
                             'tcp://host:8786 (pip install "capstate[dask]")')


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20,
          "gib": 1 << 30, "tib": 1 << 40}


def parse_size(text: str) -> int | None:
    """A size in bytes: a whole number with an optional unit (KB, MB, GB; KiB, MiB, GiB), or 'none'."""
    if text.strip().lower() == "none":
        return None
    match = re.fullmatch(r"\s*([0-9]{1,15})\s*([A-Za-z]{0,3})\s*", text, re.ASCII)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size > 0 such as 512MB, 4GiB or 'none'")
    return int(match.group(1)) * _UNITS[unit]


def _workers(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return int(text)


def cmd_audit(args: argparse.Namespace) -> int:
    if getattr(args, "journal", None) is not None:
        from .journal import cmd_audit_journal  # audit --journal URL: the journal's events and intents

        return cmd_audit_journal(args)
    if not args.files:
        raise UsageError("give at least one FILE ('-' reads stdin), or --journal URL")
    started, clock = now(), time.perf_counter()
    as_of = parse_at(args.as_of, "--as-of") if args.as_of is not None else None
    provider = args.provider
    if args.report is not None:
        refuse_overwrite(args.report, args, option="--report")
    if args.report is not None:
        from .audit_html import check_report_path

        check_report_path(args.report)
    names = [display_name(f) for f in args.files]
    with _streams_spooled(args.files) as (paths, spooled):
        digests = [spooled[i] if i in spooled else sha256_file(path) for i, path in enumerate(paths)]
        fmt, found = resolve_formats(paths, names, args.fmt)
        if all(kind == EMPTY for kind in found):
            raise UsageError(f"{', '.join(names)} {'is' if len(names) == 1 else 'are all'} empty: nothing to audit")
        if provider is None and fmt == "vipps-events":
            provider = "vipps"
        overrides = _overrides(args.sets, provider) if args.sets else None
        progress = sys.stderr.isatty()
        report = run_audit(paths, spec=provider, fmt=fmt, as_of=as_of, workers=args.workers, dask=args.dask,
                           progress=progress, overrides=overrides, settled_window=args.settled_window,
                           names=names, max_memory=args.max_memory)
        if not report.events:
            raise UsageError(_no_events(names, report))
        run = RunInfo(capstate_version(), stamp(started), round(time.perf_counter() - clock, 3),
                      tuple(InputInfo(name, EMPTY if kind == EMPTY else fmt, size, digest)
                            for name, kind, (size, digest) in zip(names, found, digests, strict=True)),
                      report.as_of, as_of is not None, tuple(args.sets or ()),
                      describe_specs(report.providers, args.provider, overrides), args.settled_window)
        tty = sys.stdout.isatty()
        limit = args.limit if args.limit is not None else (TERMINAL_LIMIT if tty else None)
        if args.report is not None:
            from .audit_html import write_report
            from .audit_timeline import timelines

            html_limit = args.limit if args.limit is not None else HTML_LIMIT
            shown = report.violations[:html_limit]
            lines = timelines(paths, names, fmt, {f.payment for f in shown if f.payment is not None})
            write_report(report, run, notes(report, run, html_limit), args.report, limit=html_limit,
                         timelines=lines)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(to_json(report, run, notes(report, run, None)),
                                             option=orjson.OPT_APPEND_NEWLINE))
    else:
        width = shutil.get_terminal_size((80, 24)).columns if tty else None
        text = audit_text.render(report, run, notes(report, run, limit), limit=limit, width=width)
        sys.stdout.write("\n".join(text) + "\n")
        sys.stdout.flush()
    return EXIT_VIOLATIONS if report.violations else EXIT_CLEAN


@contextmanager
def _streams_spooled(files: Sequence[str]) -> Iterator[tuple[list[str], dict[int, tuple[int, str]]]]:
    """The inputs as paths, each that is a stream (stdin "-", a named pipe, `<(zcat log.gz)`, a device)
    copied to a temporary file on the way and hashed as it is copied: a stream can be read once, and the
    audit reads its inputs several times (format sniff, digest, audit, the HTML timelines). Reading a pipe
    in place lost the lines the sniff consumed, or all of them. Returns the paths and, by position, the
    (size, sha256) of each spooled stream."""
    streams = [i for i, f in enumerate(files) if f == "-" or _is_stream(f)]
    if not streams:
        yield list(files), {}
        return
    paths = list(files)
    digests: dict[int, tuple[int, str]] = {}
    copies: dict[object, int] = {}  # one stream named twice is one copy: run_audit then refuses the repeat
    with ExitStack() as stack:
        for i in streams:
            first = copies.setdefault(same_file_key(files[i]), i)
            if first != i:
                paths[i], digests[i] = paths[first], digests[first]
                continue
            tmp = stack.enter_context(tempfile.NamedTemporaryFile(prefix="capstate-stream-", delete=True))
            try:
                source = sys.stdin.buffer if files[i] == "-" else stack.enter_context(open(files[i], "rb"))
            except OSError as exc:
                raise UsageError(f"cannot read {files[i]}: {exc.strerror or exc}") from None
            digest = hashlib.sha256()
            size = 0
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                tmp.write(chunk)
            tmp.flush()
            paths[i] = tmp.name
            digests[i] = (size, digest.hexdigest())
        yield paths, digests


def _is_stream(path: str) -> bool:
    """Not a regular file (nor a directory, which run_audit refuses by name): it can be read only once."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False  # run_audit reports what is wrong with it
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _no_events(names: Sequence[str], report: AuditReport) -> str:
    where = ", ".join(names)
    if not report.violations:
        return f"no events in {where}: nothing to audit"
    first = report.violations[0]
    return (f"no events in {where}: {len(report.violations):,} line(s), none a valid event "
            f"(first, {first.file}:{first.line}: {audit_text.safe(first.message)})")


def notes(report: AuditReport, run: RunInfo, limit: int | None) -> list[str]:
    """What a reader must know to read the report right (see audit_model)."""
    out = []
    total = len(report.violations)
    if limit is not None and limit < total:
        out.append(f"{showing(limit, total)}; --json lists all of them")
    if report.as_of is not None:
        how = "given with --as-of" if run.as_of_given else "the latest event's at; --as-of T judges at another instant"
        out.append(f"dangling authorizations were judged as of {report.as_of} ({how})")
    for spec in run.specs:
        if not spec.judges_expiry:
            out.append(f"{spec.name}: the authorization validity is unknown, so its payments were not judged for "
                       f"expiry or DANGLING_AUTHORIZATION (--set {spec.name}.authorization_validity=7d to judge)")
    for i in run.inputs:
        if i.format == EMPTY:
            out.append(f"{audit_text.safe(i.name)} is empty")
    out.append(f"a payment in a terminal state is remembered for {run.settled_window:,} input lines after its "
               f"latest event (--settled-window)")
    return out


def to_json(report: AuditReport, run: RunInfo, report_notes: Sequence[str]) -> dict[str, Any]:
    """The `--json` object (docs/audit-reports.md): provenance, totals, money, notes, then every finding."""
    rows = money_rows(report.violations)
    findings = []
    for f in report.violations:
        item = f.to_dict()
        item["severity"] = severity(f.code)
        findings.append(item)
    return {**run.to_dict(), "provider": report.provider, "providers": list(report.providers),
            "events": report.events, "payments": report.payments,
            "shown": len(findings), "total": len(findings), "severities": severity_counts(report.violations),
            "money": {"by_code": [r.to_dict() for r in rows], "totals": headline(rows)},
            "notes": list(report_notes), "violations": findings, "counts": dict(report.counts)}


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
