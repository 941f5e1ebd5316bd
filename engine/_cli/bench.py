"""The `capstate bench` subcommand: its options, and the call into `capstate.bench`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from .options import UsageError


def configure(sub: argparse.ArgumentParser) -> None:
    from .. import bench
    from ..bench import MIN_ROUNDS

    sub.add_argument("--quick", action="store_true",
                     help="a small log (20,000 events) instead of 1,000,000: seconds, not minutes")
    sub.add_argument("--rounds", type=int, default=MIN_ROUNDS, metavar="N",
                     help=f"rounds per measure; the figure is their median (at least {MIN_ROUNDS})")
    sub.add_argument("--seed", type=int, default=4, metavar="N", help="seed of the synthetic log")
    sub.add_argument("--open-log", type=_size, default=None, metavar="SIZE",
                     help="size of the generated log of open authorizations for (e), e.g. 1GB (default "
                          f"{bench.OPEN_LOG_FULL // 10**9} GB, {bench.OPEN_LOG_QUICK // 10**6} MB with --quick)")


def cmd_bench(args: argparse.Namespace) -> int:
    from .. import bench

    if args.rounds < bench.MIN_ROUNDS:
        raise UsageError(f"--rounds {args.rounds}: a median needs at least {bench.MIN_ROUNDS} rounds")

    def say(text: str) -> None:
        # Progress goes to stderr, so that --json output stays one clean object on stdout.
        sys.stderr.write(f"bench: {text}\n")
        sys.stderr.flush()

    def journal(**kw: object) -> dict[str, object] | None:
        from ..providers import bench_journal  # lazy: httpx, sqlite3 and a `capstate emulate` process

        return bench_journal.measure(**kw)  # type: ignore[arg-type]

    return bench.run(quick=args.quick, rounds=args.rounds, seed=args.seed, as_json=args.json, say=say,
                     open_log=args.open_log, extra=_emulator_rows, journal=journal)


def _emulator_rows(quick: bool, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """The emulator's row (capstate.providers: loaded only here), or none without the 'emulator' extra."""
    try:
        from ..providers.emulator import load
    except ModuleNotFoundError as exc:
        say(f"emulator row skipped: {exc.name} is not installed (pip install 'capstate[emulator]')")
        return []
    try:
        return load.bench_rows(quick, say)
    except RuntimeError as exc:
        say(f"emulator row skipped: {exc}")
        return []


def _size(text: str) -> int:
    from .audit import parse_size

    size = parse_size(text)
    if size is None:
        raise argparse.ArgumentTypeError("--open-log needs a size, such as 8MB or 1GB")
    return size
