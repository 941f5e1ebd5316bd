"""One decision for `capstate validate` and `capstate capture`: the same arguments give the same verdict.

Both commands read their options, the spec and the history through `decide_capture`, with the same
rules: the instant defaults to now (and is printed), it may not come before the history's latest event,
a key is derived exactly as `capture` sends it when none is given (capstate._keys), and the reference
is the history's, checked by the spec's own guards. `capture` then sends what `validate` only shows.

With `--journal URL --payment REF` the payment comes from the journal instead (a `Basis` built by
capstate.providers.cli_journal): its events plus the reservations of intents still open, judged by the
journal's own rule (`_lifecycle.begin`: in-flight operations, caller keys, keys derived from the intent),
so `validate --journal` says what `capture --journal` would do, and neither writes the rule twice.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime

from attrs import frozen

from .._engine import decide
from .._keys import with_derived_key
from .._spec import Spec
from .._values import Capture, Decision, Payment
from .history import Replayed, replay_history
from .options import UsageError, check_currency, load_with_sets, parse_amount, parse_at

# (payment, the capture as given) -> (the decision, whether capstate derived its key)
Judge = Callable[[Payment, Capture], tuple[Decision, bool]]


def judge_history(payment: Payment, given: Capture) -> tuple[Decision, bool]:
    """A history's rule: the key `capture` would derive (capstate._keys), then the engine's decision."""
    command = with_derived_key(payment, given)
    return decide(payment, command), command.key != given.key


@frozen
class Basis:
    """What a capture is decided against: the spec, the payment (`history.payment`), the rule that judges it,
    and one line saying where it came from (`validate` prints it)."""

    spec: Spec
    history: Replayed
    judge: Judge
    origin: str


@frozen
class Decided:
    """A capture decided from command-line arguments, with what was filled in for the user."""

    spec: Spec
    history: Replayed
    decision: Decision
    at_given: bool
    amount_given: bool
    key_derived: bool
    origin: str = ""

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


def history_basis(args: argparse.Namespace) -> Basis:
    """`--provider` and `--history` (with `--set` and `--payment`): the payment replayed from its history."""
    spec = load_with_sets(args.provider, args.sets)
    history = replay_history(spec, args.history, payment=getattr(args, "payment", None))
    return Basis(spec, history, judge_history,
                 f"history of {history.events} event(s), latest at line {history.latest_line}")


def default_instant(now: datetime, latest: datetime) -> datetime:
    """The instant a decision is made at when no --at is given: `now` in whole seconds, as it is printed and
    a user may pass it back as --at; but `now` itself when whole seconds would put it before the history's
    latest fact, recorded earlier in the same second (a journal stamps its facts to the microsecond, and its
    export is a history)."""
    whole = now.replace(microsecond=0)
    return now if whole < latest <= now else whole


def decide_capture(args: argparse.Namespace, *, now: datetime | None = None, basis: Basis | None = None) -> Decided:
    """Decide the capture the options describe, against `basis` (default: `--history` under `--provider`).

    Raises UsageError, SpecError or HistoryError for bad input (the CLI's exit 2).
    """
    amount, at, currency = capture_command(args)
    if basis is None:
        basis = history_basis(args)
    history = basis.history
    at_given = at is not None
    if at is None:
        at = now if now is not None else default_instant(datetime.now(UTC), history.latest_at)
    if at < history.latest_at and (at_given or history.latest_line):
        # A decision rests on every fact in the history, so it cannot come before the last of them. (A journal's
        # facts are stamped by the clocks of the hosts that recorded them: "now" a little behind one of them is
        # skew, not a user's mistake, and the journal decides at its own now under the lock anyway.)
        where = f"line {history.latest_line}" if history.latest_line else history.latest_at.isoformat()
        raise UsageError(f"--at {args.at or 'now'} is before the history's latest event ({where}); "
                         f"a capture is decided after the facts it rests on")
    given = Capture(at=at, amount=amount, currency=currency, key=args.key, final=args.final)
    decision, key_derived = basis.judge(history.payment, given)
    return Decided(basis.spec, history, decision, at_given, amount is not None, key_derived, basis.origin)
