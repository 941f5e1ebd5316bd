"""The journal's commands: `journal init|import|ingest|show|pending|export`, `reconcile`, `cancel`, `refund`,
and the `--journal URL --payment REF` options of `capture` and `audit`.

Only the arguments live here. The work is in `capstate.providers.cli_journal`, imported when a command
runs, so `capstate validate` and the engine never load sqlite3, httpx or a provider module.
The journal URL comes from `--journal URL` or the CAPSTATE_JOURNAL environment variable.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .decision import Basis


def _journal_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--journal", metavar="URL", help="sqlite:///path.db or postgresql://... (default: the "
                                                      "CAPSTATE_JOURNAL environment variable)")


def _sending_options(sub: argparse.ArgumentParser, *, capture: bool) -> None:
    """What `cancel` and `refund` share with `capture` (which declares its own)."""
    sub.add_argument("--credentials", metavar="FILE",
                     help="TOML or JSON credentials file; the environment (CAPSTATE_<PROVIDER>_<FIELD>) overrides it")
    sub.add_argument("--timeout", type=float, metavar="SECONDS", help="per-request timeout (default 30, connect 5)")
    sub.add_argument("--attempts", type=int, metavar="N", help="sends of the operation, retries included (default 4)")
    sub.add_argument("--verbose", action="store_true", help="log each request, retry and read-back to stderr")
    if not capture:
        sub.add_argument("--key", metavar="K", help="idempotency key (default: derived from the intent)")


def add_capture_options(capture: argparse.ArgumentParser) -> None:
    """`capture --journal URL --payment REF`: execute through the journal. `--payment` is capture's own option
    (one payment out of a --history log); with --journal it names the payment in the journal."""
    _journal_option(capture)
    capture.add_argument("--lease", metavar="DURATION", help="how long this worker owns its intent (default 5m)")


def add_validate_options(validate: argparse.ArgumentParser) -> None:
    """`validate --journal URL --payment REF`: decide against the journal's payment, as capture would, reading
    only (nothing is written to the journal, nothing is sent)."""
    _journal_option(validate)


def journal_basis(args: argparse.Namespace) -> AbstractContextManager[Basis]:
    from ..providers import cli_journal  # lazy: sqlite3 (or psycopg) and the journal load here only

    return cli_journal.journal_basis(args)


def add_audit_options(audit: argparse.ArgumentParser) -> None:
    _journal_option(audit)


def configure(sub: argparse.ArgumentParser) -> None:
    """The arguments of whichever of this module's commands `sub` is: journal, reconcile, cancel or refund
    (main.py adds --json)."""
    name = sub.prog.split()[-1]
    _CONFIGURE[name](sub)


def _configure_journal(journal: argparse.ArgumentParser) -> None:
    actions = journal.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = actions.add_parser(name, help=help_text, description=help_text)
        _journal_option(sub)
        sub.add_argument("--json", action="store_true", help="print JSON instead of text")
        return sub

    action("init", "create the journal (or migrate it to this capstate's schema)")
    imp = action("import", "record canonical JSONL events or a Vipps event export, each once, in any order "
                           "(exit 0 all recorded or already there, 1 some lines rejected, 2 bad input)")
    imp.add_argument("files", nargs="+", metavar="FILE", help="plain or .gz; '-' reads stdin")
    imp.add_argument("--format", dest="fmt", choices=("canonical", "vipps-events"), default="canonical")
    imp.add_argument("--provider", metavar="NAME", help="for events that do not name their provider")
    ing = action("ingest", "record one verified webhook delivery: a Vipps webhook (signature checked with "
                           "CAPSTATE_VIPPS_WEBHOOK_SECRET), a Pipwave IPN (signature checked with the pipwave "
                           "credentials) or canonical events (exit as import)")
    ing.add_argument("body", metavar="FILE", help="the delivery's raw body ('-': stdin)")
    ing.add_argument("--format", dest="fmt", choices=("canonical", "vipps-webhook", "pipwave-ipn"),
                     default="canonical")
    ing.add_argument("--credentials", metavar="FILE", help="pipwave-ipn: TOML or JSON credentials file (the "
                                                           "environment, CAPSTATE_PIPWAVE_API_KEY/_API_SECRET, wins)")
    ing.add_argument("--headers", metavar="FILE", help="vipps-webhook: the received headers, a JSON object")
    ing.add_argument("--target", metavar="PATH", help="vipps-webhook: the request target as received (/hook?x=1)")
    show = action("show", "one payment: its aggregate, events (with provenance) and intents")
    show.add_argument("payment", metavar="REF")
    action("pending", "every intent still pending or unknown (exit 0 none, 1 some)")
    action("export", "every payment's canonical events as JSONL, in the order they happened")



def _configure_reconcile(reconcile: argparse.ArgumentParser) -> None:
    _journal_option(reconcile)
    reconcile.add_argument("--older-than", metavar="DURATION", default="0s",
                           help="only intents whose lease ran out at least this long ago (30s, 2m, 1h; default 0s)")
    _sending_options(reconcile, capture=True)



def _configure_operation(sub: argparse.ArgumentParser) -> None:
    _journal_option(sub)
    sub.add_argument("--payment", required=True, metavar="REF", help="the payment's reference in the journal")
    sub.add_argument("--lease", metavar="DURATION", help="how long this worker owns its intent (default 5m)")
    _sending_options(sub, capture=False)


def _configure_refund(refund: argparse.ArgumentParser) -> None:
    _configure_operation(refund)
    refund.add_argument("--amount", required=True, metavar="N", help="integer minor units")
    refund.add_argument("--currency", metavar="C", help="ISO 4217 code; default: the payment's")


_CONFIGURE: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "journal": _configure_journal, "reconcile": _configure_reconcile, "cancel": _configure_operation,
    "refund": _configure_refund}



def _runner(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from ..providers import cli_journal  # lazy: sqlite3, httpx and the providers load here only

        fn: Callable[[argparse.Namespace], int] = getattr(cli_journal, f"cmd_{name}")
        return fn(args)

    return run


cmd_journal, cmd_reconcile, cmd_cancel, cmd_refund = (_runner(name) for name in
                                                      ("journal", "reconcile", "cancel", "refund"))


def cmd_capture_journal(args: argparse.Namespace) -> int:
    from ..providers import cli_journal

    return cli_journal.cmd_capture(args)


def cmd_audit_journal(args: argparse.Namespace) -> int:
    from ..providers import cli_journal

    return cli_journal.cmd_audit(args)
