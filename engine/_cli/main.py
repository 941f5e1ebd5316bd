"""The `capstate` command: providers, spec, validate, capture, simulate, check, diagram, audit, bench and emulate.

Exit codes: 0 success (validate: the capture is allowed), 1 validate refused the capture, 2 bad input
of any kind (an unknown provider, a broken spec, an unreadable or impossible history, a bad option);
capture adds 3, the provider's answer left the outcome unknown (capstate.providers.cli_capture).
Every error is one line on stderr, `capstate: error: ...`; a user never sees a traceback.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType, ModuleType
from typing import Any, NoReturn

PROG = "capstate"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
# A closed pipe (`capstate providers | head -1`) exits as if killed by SIGPIPE, as C tools do; 1 is
# taken by validate's "refused".
EXIT_PIPE = 128 + 13
# Ctrl-C and SIGTERM both exit 130 (128 + SIGINT), after one line on stderr, in every command and mode.
EXIT_INTERRUPTED = 128 + 2

# name -> (module in capstate._cli holding `configure(sub)` and the runner, runner's name, help). The
# module is imported only for the command that runs (or for `--help` of that command), so `capstate
# --help` imports no engine module, rich or transitions: it starts in a few tens of milliseconds.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "providers": ("commands", "cmd_providers", "list the shipped provider specs and their policy at a glance"),
    "spec": ("commands", "cmd_spec", "show a spec's states, transitions and policy"),
    "validate": ("commands", "cmd_validate", "replay a payment's history, then decide one capture as `capture` "
                                             "would (exit 0 allowed, 1 refused, 2 bad input)"),
    "capture": ("commands", "cmd_capture", "replay a payment's history, decide one capture, then send it to the "
                                           "provider (exit 0 done, 1 refused or declined, 2 bad input, 3 outcome "
                                           "unknown)"),
    "simulate": ("simulate", "run", "run a capture plan (TOML or JSON) against providers on a virtual clock "
                                    "(exit 0 clean, 1 a step refused, 2 bad input)"),
    "check": ("check", "run", "lint a spec, then model-check it: every short history of commands and provider "
                              "outcomes keeps the money invariants (exit 0 holds, 1 finding or counterexample, "
                              "2 unloadable spec)"),
    "diagram": ("diagram", "run", "draw a spec's state diagram: mermaid text, or svg/png through graphviz"),
    "audit": ("audit", "cmd_audit", "replay histories and report every breach of the provider's policy "
                                    "(exit 0 clean, 1 violations, 2 bad input)"),
    "bench": ("bench", "cmd_bench", "measure audit throughput, decide() latency, memory and start-up against "
                                    "baselines (a report: exit 0 even when a target is missed)"),
    "emulate": ("emulate", "run", "serve an offline, stateful emulator of the providers' capture APIs, with a "
                                  "virtual clock and fault injection (docs/emulator.md)"),
    "journal": ("journal", "cmd_journal", "the durable journal: payments, their events and operation intents"),
    "reconcile": ("journal", "cmd_reconcile", "settle every intent left pending or unknown past its lease by "
                                              "reading the provider back (exit 0 all settled, 1 some still "
                                              "unknown, 2 bad input)"),
    "cancel": ("journal", "cmd_cancel", "release a payment's uncaptured remainder through the journal "
                                        "(exit 0 done, 1 refused or declined, 2 bad input, 3 outcome unknown)"),
    "refund": ("journal", "cmd_refund", "refund part of what was captured, through the journal (exit as "
                                        "cancel)"),
    "codes": ("codes", "cmd_codes", "list every refusal, warning and note code with its meaning"),
    "explain": ("codes", "cmd_explain", "explain one code: what it means, when it is raised, what to do"),
    "completion": ("commands", "cmd_completion", "print a shell completion script: "
                                                 "eval \"$(capstate completion bash)\""),
}
# Commands without --json: they print a script or a document, not a result.
_NO_JSON = {"completion", "explain", "emulate"}
# emulate takes --set per provider itself (emulate.split_sets).
_NO_SETS = {"providers", "codes", "explain", "completion", "bench", "emulate", "journal", "reconcile", "cancel",
            "refund"}


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so both unwind the same way."""


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


class _Version(argparse.Action):
    """--version, looked up only when asked for (importlib.metadata costs start-up time)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print capstate's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("capstate")
        except PackageNotFoundError:  # pragma: no cover - only in an uninstalled source tree
            found = "unknown"
        sys.stdout.write(f"{PROG} {found}\n")
        parser.exit(EXIT_OK)


def _module(command: str) -> ModuleType:
    return importlib.import_module(f"capstate._cli.{_COMMANDS[command][0]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI's parser. With `only`, just that command's arguments are configured (the others are
    listed by name and help), so parsing one command imports one command's module."""
    parser = _Parser(prog=PROG, description="Capture state machines for payment providers: which captures "
                                            "are legal, and when. 'capstate COMMAND --help' for a command; "
                                            "'capstate codes' for what a code means.")
    parser.add_argument("--version", action=_Version)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, _, help_text) in _COMMANDS.items():
        sub: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text)
        if only is not None and only != name:
            continue
        if name not in _NO_JSON:
            sub.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
        _module(name).configure(sub)
        if name not in _NO_SETS:
            sub.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                             help="override a policy rule: max_captures=2, authorization_validity=7d, "
                                  "authorization_validity.NOK=30d, hellgate.authorization_validity=7d "
                                  "(values are TOML, else a bare string)")
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command word of `argv` (its first word that is not an option), or None."""
    return next((word for word in argv if not word.startswith("-")), None)


def _unknown_command(word: str) -> int:
    close = difflib.get_close_matches(word, list(_COMMANDS), n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f" (commands: {', '.join(_COMMANDS)})"
    _fail(f"unknown command {word!r}{hint} (see '{PROG} --help')")
    return EXIT_USAGE


def _run(argv: Sequence[str] | None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if not words:
        # No arguments: the overview, not an error about a missing command.
        build_parser("").print_help(sys.stdout)
        return EXIT_OK
    command = _command_in(words)
    if command is not None and command not in _COMMANDS:
        return _unknown_command(command)
    try:
        args = build_parser(command or "").parse_args(words)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    # Before anything is read or written: stdout redirected onto an input (`capstate audit LOG >> LOG`).
    from .outputs import refuse_stdout_overwrite

    refuse_stdout_overwrite(args)
    _, runner, _ = _COMMANDS[args.command]
    run: Callable[[argparse.Namespace], int] = getattr(_module(args.command), runner)
    code = run(args)
    # Flush here, not at interpreter exit, so a closed pipe is caught below and not reported by Python.
    sys.stdout.flush()
    return code


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise Interrupted("terminated (SIGTERM)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI on `argv` (default: sys.argv[1:]) and return the exit code."""
    # SIGTERM ends a run as Ctrl-C does: the same unwinding (temporary files removed, workers stopped,
    # `capture` telling an unknown outcome apart), the same one line, the same exit status.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _run(argv)
    except KeyboardInterrupt as exc:
        why = str(exc) if isinstance(exc, Interrupted) else "interrupted (Ctrl-C)"
        sys.stderr.write(f"{PROG}: {why}\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush cannot raise again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_PIPE
    except (ValueError, OSError) as exc:  # CapstateError, UsageError, HistoryError are ValueErrors
        _fail(str(exc))
        return EXIT_USAGE
    except Exception as exc:
        from .._errors import CapstateError

        if isinstance(exc, CapstateError):
            _fail(str(exc))
            return EXIT_USAGE
        # last resort: an engine bug must still be one line, not a traceback
        _fail(f"internal error ({type(exc).__name__}): {exc}")
        return EXIT_USAGE
    finally:
        signal.signal(signal.SIGTERM, previous)
