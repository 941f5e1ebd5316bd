"""The `capstate` command: providers, spec, validate, capture, simulate, check, diagram, audit, bench and emulate.

Exit codes: 0 success (validate: the capture is allowed), 1 validate refused the capture, 2 bad input
of any kind (an unknown provider, a broken spec, an unreadable or impossible history, a bad option);
capture adds 3, the provider's answer left the outcome unknown (capstate.providers.cli_capture).
Every error is one line on stderr, `capstate: error: ...`; a user never sees a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

import orjson

from .._engine import decide
from .._errors import CapstateError
from .._spec import load_spec, shipped
from .._values import Capture
from . import audit as audit_cli
from . import bench as bench_cli
from . import check as check_cli
from . import diagram as diagram_cli
from . import emulate as emulate_cli
from . import journal as journal_cli
from . import payloads, render
from . import simulate as simulate_cli
from .history import replay_history
from .options import UsageError, check_currency, load_with_sets, parse_amount, parse_at

PROG = "capstate"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
# A closed pipe (`capstate providers | head -1`) exits as if killed by SIGPIPE, as C tools do; 1 is
# taken by validate's "refused".
EXIT_PIPE = 128 + 13
EXIT_INTERRUPTED = 128 + 2


def _one_line(text: str) -> str:
    return " ".join(text.splitlines()) or "unknown error"


def _fail(message: str) -> None:
    sys.stderr.write(f"{PROG}: error: {_one_line(message)}\n")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr, like every other error, naming where help is."""

    def error(self, message: str) -> NoReturn:
        # DESIGN §6: one line and exit 2. The usage block would make a second (and wraps at the terminal
        # width); the line says where to find it instead.
        self.exit(EXIT_USAGE, f"{PROG}: error: {_one_line(message)} (see '{self.prog} --help')\n")


def _version() -> str:
    try:
        return version("capstate")
    except PackageNotFoundError:  # pragma: no cover - only in an uninstalled source tree
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Capture state machines for payment providers: which captures "
                                            "are legal, and when.")
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
        return sub

    def add_sets(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                         help="override a policy rule: max_captures=2, authorization_validity=7d, "
                              "authorization_validity.NOK=30d, hellgate.authorization_validity=7d "
                              "(values are TOML, else a bare string)")

    add("providers", "list the shipped provider specs and their policy at a glance")

    spec = add("spec", "show a spec's states, transitions and policy")
    spec.add_argument("spec", metavar="NAME|PATH", help="a shipped provider name or a spec file")
    add_sets(spec)

    def add_capture(sub: argparse.ArgumentParser, provider: tuple[str, str], at_default: str,
                    required: bool = True) -> None:
        sub.add_argument("--provider", required=required, metavar=provider[0], help=provider[1])
        sub.add_argument("--history", required=required, metavar="FILE|-",
                         help="canonical JSONL events of one payment; '-' reads stdin; .gz is gunzipped")
        sub.add_argument("--amount", metavar="N", help="integer minor units (1050 = 10.50 NOK); default: "
                                                       "the full capturable amount")
        sub.add_argument("--currency", metavar="C", help="ISO 4217 code; default: the authorized currency")
        sub.add_argument("--key", metavar="K", help="idempotency key")
        sub.add_argument("--at", metavar="T", help=f"RFC 3339 instant of the capture; default: {at_default}")
        sub.add_argument("--final", action="store_true", help="release what this capture leaves uncaptured")
        add_sets(sub)

    validate = add("validate", "replay a payment's history, then decide one capture "
                               "(exit 0 allowed, 1 refused, 2 bad input)")
    add_capture(validate, ("NAME|PATH", "a shipped provider name or a spec file"),
                "the latest event's `at` (the clock is never read)")

    # `capture` sends; its code lives in capstate.providers and is imported only when it runs
    # (cmd_capture), so the engine and the other commands never load httpx.
    capture = add("capture", "replay a payment's history, decide one capture, then send it to the provider "
                             "(exit 0 done, 1 refused or declined, 2 bad input, 3 outcome unknown)")
    # Not required: with --journal URL --payment REF the journal holds both (capstate._cli.journal).
    add_capture(capture, ("NAME", "bambora, hellgate, pipwave or vipps"), "now (the capture is sent now)",
                required=False)
    capture.add_argument("--dry-run", action="store_true",
                         help="print the exact request as a curl command (credentials masked); send nothing")
    capture.add_argument("--credentials", metavar="FILE",
                         help="TOML or JSON credentials file; the environment (CAPSTATE_<PROVIDER>_<FIELD>, e.g. "
                              "CAPSTATE_VIPPS_ACCESS_TOKEN) overrides it; never pass secrets as arguments")
    capture.add_argument("--timeout", type=float, metavar="SECONDS", help="per-request timeout (default 30, "
                                                                          "connect 5)")
    capture.add_argument("--attempts", type=int, metavar="N", help="sends of the capture, retries included "
                                                                   "(default 4)")
    capture.add_argument("--wait", action="store_true",
                         help="Hellgate: poll until the asynchronous capture is captured or failed")
    capture.add_argument("--verbose", action="store_true", help="log each request, retry and read-back to stderr")
    journal_cli.add_capture_options(capture)

    # `capstate simulate`: its arguments and logic live in simulate.py.
    simulate = add("simulate", "run a capture plan (TOML or JSON) against providers on a virtual clock "
                               "(exit 0 clean, 1 a step refused, 2 bad input)")
    simulate_cli.configure(simulate)
    add_sets(simulate)

    # `capstate check` and `capstate diagram`: their arguments and logic live in check.py and diagram.py.
    check = add("check", "lint a spec, then model-check it: every short history of commands and provider "
                         "outcomes keeps the money invariants (exit 0 holds, 1 finding or counterexample, "
                         "2 unloadable spec)")
    check_cli.configure(check)
    add_sets(check)
    diagram = add("diagram", "draw a spec's state diagram: mermaid text, or svg/png through graphviz")
    diagram_cli.configure(diagram)
    add_sets(diagram)

    audit = add("audit", "replay histories and report every breach of the provider's policy "
                         "(exit 0 clean, 1 violations, 2 bad input)")
    audit_cli.configure(audit)
    add_sets(audit)
    journal_cli.add_audit_options(audit)
    # journal, reconcile, cancel, refund: their arguments and runners live in journal.py.
    journal_cli.register(add)

    bench = add("bench", "measure audit throughput, decide() latency and memory against baselines "
                         "(a report: exit 0 even when a target is missed)")
    bench_cli.add_arguments(bench)

    # `capstate emulate`: its options live in emulate.py; the emulator (Starlette, uvicorn) loads only when
    # it runs.
    emulate = commands.add_parser("emulate", help="serve an offline emulator of the providers' capture APIs",
                                  description="serve an offline, stateful emulator of the providers' capture "
                                              "APIs, with a virtual clock and fault injection (docs/emulator.md)")
    emulate_cli.configure(emulate)
    return parser


def _print_json(obj: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE))


def cmd_providers(args: argparse.Namespace) -> int:
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


def cmd_validate(args: argparse.Namespace) -> int:
    # Cheap checks of the options first, so a typo never waits for a long history.
    amount = parse_amount(args.amount) if args.amount is not None else None
    at = parse_at(args.at) if args.at is not None else None
    currency = check_currency(args.currency) if args.currency is not None else None
    s = load_with_sets(args.provider, args.sets)
    history = replay_history(s, args.history)
    if at is None:
        at = history.latest_at
    elif at < history.latest_at:
        # A decision rests on every fact in the history, so it cannot come before the last of them.
        raise UsageError(f"--at {args.at} is before the history's latest event (line {history.latest_line}); "
                         f"a capture is decided after the facts it rests on")
    command = Capture(at=at, amount=amount, currency=currency, key=args.key, final=args.final)
    d = decide(history.payment, command)
    if args.json:
        _print_json(payloads.decision(d))
    else:
        render.decision(render.console(), history, d, amount_given=amount is not None, at_given=args.at is not None)
    return EXIT_OK if d.allowed else EXIT_REFUSED


def cmd_capture(args: argparse.Namespace) -> int:
    if args.journal is not None or args.payment is not None:
        return journal_cli.cmd_capture_journal(args)
    from ..providers import cli_capture  # lazy: httpx and the provider modules load for this command only

    return cli_capture.run(args)


COMMANDS = {"providers": cmd_providers, "spec": cmd_spec, "validate": cmd_validate, "capture": cmd_capture,
            "simulate": simulate_cli.run, "check": check_cli.run, "diagram": diagram_cli.run,
            "audit": lambda a: (journal_cli.cmd_audit_journal(a) if a.journal else audit_cli.cmd_audit(a)),
            "bench": bench_cli.cmd_bench, "emulate": emulate_cli.run, **journal_cli.COMMANDS}


def _run(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    code = COMMANDS[args.command](args)
    # Flush here, not at interpreter exit, so a closed pipe is caught below and not reported by Python.
    sys.stdout.flush()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on `argv` (default: sys.argv[1:]) and return the exit code."""
    try:
        return _run(argv)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush cannot raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    except (CapstateError, ValueError, OSError) as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except Exception as exc:  # last resort: an engine bug must still be one line, not a traceback
        _fail(f"internal error ({type(exc).__name__}): {exc}")
        return EXIT_USAGE
