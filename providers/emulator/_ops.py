"""Helpers every provider plug-in shares: decide-then-commit, and comparing credentials."""

from __future__ import annotations

import hmac

from ..._values import Command, Decision
from ._base import Context
from ._core import Entry


def execute(ctx: Context, entry: Entry, command: Command) -> Decision:
    """`decide` the command on the payment; when allowed, commit the event it records. The decision says
    which: a refusal commits nothing, and an allowed decision with no event (an identical replay under a
    key the spec already saw) commits nothing either."""
    decision = ctx.decide(entry, command)
    if decision.allowed and decision.event is not None:
        ctx.commit(entry, decision.event)
    return decision


def same(given: str, expected: str) -> bool:
    """Whether a presented credential equals the expected one, in constant time."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))
