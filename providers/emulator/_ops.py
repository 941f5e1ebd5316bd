"""Helpers every provider plug-in shares: decide-then-commit, and comparing credentials."""

from __future__ import annotations

import hmac

from ..._errors import RequestError
from ..._values import Command, Decision
from .._http import request_object
from ._base import Context, WireRequest
from ._core import Entry


def execute(ctx: Context, entry: Entry, command: Command) -> Decision:
    """`decide` the command on the payment; when allowed, commit the event it records. The decision says
    which: a refusal commits nothing, and an allowed decision with no event (an identical replay under a
    key the spec already saw) commits nothing either."""
    decision = ctx.decide(entry, command)
    if decision.allowed and decision.event is not None:
        ctx.commit(entry, decision.event)
    return decision


def body_problem(request: WireRequest) -> str | None:
    """Why an operation documented without a body (Bambora cancel, Hellgate void) cannot take this one: an
    empty body is fine, anything sent must at least be a JSON object."""
    if not request.body.strip():
        return None
    try:
        request_object(request.body)
    except RequestError as exc:
        return exc.reason
    return None


def same(given: str, expected: str) -> bool:
    """Whether a presented credential equals the expected one, in constant time."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))
