"""One decision for `capstate validate` and `capstate capture`: the same arguments give the same verdict.

Both commands read their options, the spec and the history through `decide_capture`, with the same
rules: the instant defaults to now (and is printed), it may not come before the history's latest event,
a key is derived exactly as `capture` sends it when none is given (capstate._keys), and the reference
is the history's, checked by the spec's own guards. `capture` then sends what `validate` only shows.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from attrs import frozen

from .._engine import decide
from .._keys import with_derived_key
from .._spec import Spec
from .._values import Capture, Decision
from .history import Replayed, replay_history
from .options import UsageError, check_currency, load_with_sets, parse_amount, parse_at


@frozen
class Decided:
    """A capture decided from command-line arguments, with what was filled in for the user."""

    spec: Spec
    history: Replayed
    decision: Decision
    at_given: bool
    amount_given: bool
    key_derived: bool

    @property
    def command(self) -> Capture:
        cmd = self.decision.command
        assert isinstance(cmd, Capture)
        return cmd


def capture_command(args: argparse.Namespace) -> tuple[int | None, datetime | None, str | None]:
    """The cheap option checks (amount, --at, currency) first, so a typo never waits for a long history."""
    amount = parse_amount(args.amount) if args.amount is not None else None
    at = parse_at(args.at) if args.at is not None else None
    currency = check_currency(args.currency) if args.currency is not None else None
    return amount, at, currency


def decide_capture(args: argparse.Namespace, *, now: datetime | None = None) -> Decided:
    """Replay `--history` under `--provider` and decide the capture the options describe.

    Raises UsageError, SpecError or HistoryError for bad input (the CLI's exit 2).
    """
    amount, at, currency = capture_command(args)
    spec = load_with_sets(args.provider, args.sets)
    history = replay_history(spec, args.history, payment=getattr(args, "payment", None))
    at_given = at is not None
    if at is None:
        # Whole seconds: the instant is printed, and a user may pass it back as --at.
        at = now if now is not None else datetime.now(UTC).replace(microsecond=0)
    if at < history.latest_at:
        # A decision rests on every fact in the history, so it cannot come before the last of them.
        raise UsageError(f"--at {args.at or 'now'} is before the history's latest event (line {history.latest_line}); "
                         f"a capture is decided after the facts it rests on")
    given = Capture(at=at, amount=amount, currency=currency, key=args.key, final=args.final)
    command = with_derived_key(history.payment, given)
    decision = decide(history.payment, command)
    return Decided(spec, history, decision, at_given, amount is not None, command.key != given.key)
