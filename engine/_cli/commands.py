"""The small commands: `providers`, `spec`, `validate`, `capture` (its arguments; the sending lives in
capstate.providers.cli_capture) and `completion`. main.py imports this module only when one of them runs."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from . import payloads, render
from .decision import decide_capture
from .options import UsageError, load_with_sets

EXIT_OK, EXIT_REFUSED = 0, 1
SHELLS = ("bash", "zsh", "tcsh")


def _print_json(obj: Any) -> None:
    sys.stdout.buffer.write(payloads.dumps(obj))


# ------------------------------------------------------------------------------------------- arguments


def configure(sub: argparse.ArgumentParser) -> None:
    """The arguments of whichever of this module's commands `sub` is (main adds --json and --set)."""
    name = sub.prog.split()[-1]
    if name == "spec":
        sub.add_argument("spec", metavar="NAME|PATH", help="a shipped provider name or a spec file")
    elif name in ("validate", "capture"):
        _configure_decision(sub, name)
    elif name == "completion":
        sub.add_argument("shell", choices=SHELLS, help="the shell to complete for")


def _configure_decision(sub: argparse.ArgumentParser, name: str) -> None:
    # validate and capture take the same decision arguments, and decide the same way (decision.py).
    # Neither is required: with --journal URL --payment REF the journal holds both (capstate._cli.journal).
    if name == "capture":
        sub.add_argument("--provider", metavar="NAME", help="bambora, hellgate, pipwave or vipps")
    else:
        sub.add_argument("--provider", metavar="NAME|PATH", help="a shipped provider name (any case) or a spec file")
    sub.add_argument("--history", metavar="FILE|-",
                     help="canonical JSONL events of one payment; '-' reads stdin; .gz is gunzipped")
    sub.add_argument("--payment", metavar="REF", help="read only this payment's events out of a log of many "
                                                      "(with --journal: the payment in the journal)")
    sub.add_argument("--amount", metavar="N", help="integer minor units (1050 = 10.50 NOK); default: "
                                                   "the full capturable amount")
    sub.add_argument("--currency", metavar="C", help="ISO 4217 code, any case; default: the authorized currency")
    sub.add_argument("--key", metavar="K", help="idempotency key; default: derived from the history, as capture "
                                                "sends it")
    sub.add_argument("--at", metavar="T", help="RFC 3339 instant of the capture; default: now (printed)")
    sub.add_argument("--final", action="store_true", help="release what this capture leaves uncaptured")
    from .journal import add_capture_options, add_validate_options

    if name != "capture":
        add_validate_options(sub)
        return
    add_capture_options(sub)
    sub.add_argument("--dry-run", action="store_true",
                     help="print the exact request as a curl command (credentials masked); send nothing")
    sub.add_argument("--credentials", metavar="FILE",
                     help="TOML or JSON credentials file; the environment (CAPSTATE_<PROVIDER>_<FIELD>, e.g. "
                          "CAPSTATE_VIPPS_ACCESS_TOKEN) overrides it; never pass secrets as arguments")
    sub.add_argument("--timeout", type=float, metavar="SECONDS", help="per-request timeout (default 30, connect 5)")
    sub.add_argument("--attempts", type=int, metavar="N", help="sends of the capture, retries included (default 4)")
    sub.add_argument("--wait", action="store_true",
                     help="Hellgate: poll until the asynchronous capture is captured or failed")
    sub.add_argument("--verbose", action="store_true", help="log each request, retry and read-back to stderr")


# -------------------------------------------------------------------------------------------- commands


def cmd_providers(args: argparse.Namespace) -> int:
    from .._spec import load_spec, shipped

    specs = [load_spec(name) for name in shipped()]
    if args.json:
        _print_json({"providers": [payloads.provider(s) for s in specs]})
    else:
        render.providers(render.console(), specs)
    return EXIT_OK


def cmd_spec(args: argparse.Namespace) -> int:
    s = load_with_sets(args.spec, args.sets)
    if args.json:
        _print_json(payloads.spec(s))
    else:
        render.spec(render.console(), s)
    return EXIT_OK


def _from_journal(args: argparse.Namespace) -> bool:
    """--journal, or CAPSTATE_JOURNAL when no --history is given: the payment is the journal's."""
    return args.journal is not None or (args.history is None and bool(os.environ.get("CAPSTATE_JOURNAL")))


def cmd_validate(args: argparse.Namespace) -> int:
    # The same decision `capture` makes for the same arguments (decision.py): instant, key and reference.
    if _from_journal(args):
        from .journal import journal_basis  # lazy: sqlite3 (or psycopg) loads only for a journal

        if args.history is not None or args.sets:
            raise UsageError("--history and --set are not read with --journal: the journal holds the payment's "
                             "events, judged by the shipped spec as capture judges them")
        if not args.payment:
            raise UsageError("--payment REF is required with --journal")
        with journal_basis(args) as basis:
            decided = decide_capture(args, basis=basis)
    elif args.provider is None or args.history is None:
        raise UsageError("validate needs --provider NAME and --history FILE, or --journal URL --payment REF")
    else:
        decided = decide_capture(args)
    d = decided.decision
    if args.json:
        _print_json(payloads.decision(d, key_derived=decided.key_derived))
    else:
        render.decision(render.console(), decided)
    return EXIT_OK if d.allowed else EXIT_REFUSED


def cmd_capture(args: argparse.Namespace) -> int:
    # Sending goes through the journal only (issue 10): a history file cannot hold an intent, so two workers or a
    # crash mid-request would capture twice. --history stays for --dry-run, which sends nothing.
    if args.history is not None and not args.dry_run:
        raise UsageError("--history is for --dry-run only; to send, use --journal URL --payment REF (or set "
                         "CAPSTATE_JOURNAL)")
    if args.journal is not None or (not args.dry_run and os.environ.get("CAPSTATE_JOURNAL")):
        from .journal import cmd_capture_journal  # through the journal: intent, send, settle

        return cmd_capture_journal(args)
    if not args.dry_run:
        raise UsageError("capture sends through the journal: --journal URL --payment REF (or set CAPSTATE_JOURNAL); "
                         "--dry-run --provider NAME --history FILE prints the request instead")
    if args.provider is None or args.history is None:
        raise UsageError("capture --dry-run needs --provider NAME and --history FILE")
    from ..providers import cli_capture  # lazy: httpx and the provider modules load for this command only

    return cli_capture.run(args)


def cmd_completion(args: argparse.Namespace) -> int:
    """A completion script generated from the parser itself by shtab, so it never lags behind the CLI."""
    import shtab

    from .main import build_parser

    if args.shell not in SHELLS:
        raise UsageError(f"completion: no script for {args.shell!r} (bash, zsh or tcsh)")
    sys.stdout.write(shtab.complete(build_parser(), shell=args.shell))
    return EXIT_OK
