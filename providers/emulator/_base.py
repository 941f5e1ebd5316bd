"""The plug-in interface of the emulator: what a provider module declares, and what it is given.

A provider plug-in is a subclass of `ProviderEmulator` in `capstate.providers.emulator.<name>` with a
module-level `EMULATOR` instance. It declares:

- `name` (the spec's name and the URL prefix `/<name>`), and `credentials`: the test credentials it
  accepts by default (a mapping of field -> value; `app(credentials=...)` overrides them);
- `routes`: `Route(method, path, op, parse, execute)` values. `path` is relative to the prefix, segments
  in braces are parameters (`/payments/{payment}/capture/`), matched on the raw path and percent-decoded
  one segment at a time (so `%2F` never splits a segment). `op` is what faults and the ledger call it:
  `capture`, `cancel`, `refund`, `get`, or any other word (`create`, `token`, ...);
- `authenticate(ctx, request, route)`: None when the credentials are right, else the provider's 401/403;
- `problem(kind, message)`: every generic error in the provider's own shape (`Problem` names them: a
  malformed body, unknown payment, unknown route, a body too large, an injected 500/429/409 ...);
- `refused(ctx, call, decision)`: a refusal by `capstate.decide` as the provider's own error;
- optionally `observe(ctx, entry, events)`: called after every commit on one of its payments, including
  the clock's expiry and Hellgate's settlement (the Vipps webhooks hang here, through `ctx.defer`);
- optionally `settings`: emulator-only `--set` keys it takes (`hellgate.settle_after=30s`), each with a parser.

Each request then goes: match a route -> `authenticate` -> `route.parse(ctx, request)`, which returns a
`Call` (the payment's reference, the idempotency key, the amount and the parsed body) or an `Answer`
for a malformed request -> a fault, if one is armed for (provider, op) -> `route.execute(ctx, call)`,
which reads and commits through the `Context`, and returns the `Answer`. The framework records the
request in the payment's ledger (committed = whether events were added) and applies the fault.

Rules: a plug-in never does I/O and never reads a clock (`ctx.now` is the virtual clock); it commits
only through `ctx.commit`, which applies each event with `capstate.apply`, so the ledger can never hold
a history the spec refuses; and it never answers 500 itself (the framework does, for a fault or a bug).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import unquote

import orjson
from attrs import field, frozen

from ..._engine import decide
from ..._errors import CapstateError
from ..._spec import Spec
from ..._values import Command, Decision, Event, Payment
from .._http import Headers

if TYPE_CHECKING:
    from ._core import Emulator, Entry

JSON = "application/json"


class ControlError(CapstateError, ValueError):
    """A bad control request (or seed): `status` is 400, 404 or 409; the message is one line."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class Problem(StrEnum):
    """The generic errors every provider answers in its own shape (`ProviderEmulator.problem`)."""

    MALFORMED = "malformed"  # 400: not JSON, wrong types, missing fields
    UNAUTHORIZED = "unauthorized"  # 401: credentials missing or unreadable
    FORBIDDEN = "forbidden"  # 403: credentials wrong
    NOT_FOUND = "not_found"  # 404: unknown payment
    NO_ROUTE = "no_route"  # 404: no such path under the provider's prefix
    METHOD = "method"  # 405: the path exists, not with this method
    TOO_LARGE = "too_large"  # 413: a body past the size limit
    SERVER_ERROR = "server_error"  # 500: injected by a fault (or an emulator bug)
    RATE_LIMITED = "rate_limited"  # 429: injected by a fault
    IN_FLIGHT = "in_flight"  # 409: injected by a fault: "another operation is modifying the payment"


@frozen
class WireRequest:
    """A request as the plug-in sees it. `params`: the route's path parameters, percent-decoded;
    `headers`: case-insensitive; `body`: the raw bytes (already bounded by the size limit)."""

    method: str
    path: str
    params: Mapping[str, str] = field(factory=dict)
    query: Mapping[str, str] = field(factory=dict)
    headers: Headers = field(factory=Headers)
    body: bytes = b""

    def json(self) -> Any:
        """The body as JSON; raises ValueError (orjson.JSONDecodeError) when it is not."""
        return orjson.loads(self.body)


@frozen
class Answer:
    """What the emulator sends back: status, body bytes, extra headers."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = JSON

    @classmethod
    def json(cls, status: int, obj: Any, *, content_type: str = JSON,
             headers: tuple[tuple[str, str], ...] = ()) -> Answer:
        return cls(status, orjson.dumps(obj), headers, content_type)

    def header(self, name: str) -> str | None:
        low = name.lower()
        return next((v for k, v in self.headers if k.lower() == low), None)


@frozen
class Call:
    """A parsed, authenticated operation on one payment (or on none: `reference` None, e.g. a token).

    `key` and `amount` go into the ledger's request record; `data` is whatever the route's `execute`
    needs from the body (the parsed fields). `op` overrides the route's op, for a provider whose one URL
    carries every action (Pipwave's `action` field): faults and the ledger then see the real operation."""

    reference: str | None
    key: str | None = None
    amount: int | None = None
    data: Mapping[str, Any] = field(factory=dict)
    op: str | None = None


Parse = Callable[["Context", WireRequest], "Call | Answer"]
Execute = Callable[["Context", Call], Answer]


@frozen
class Route:
    method: str
    path: str
    op: str
    parse: Parse
    execute: Execute
    pattern: re.Pattern[str] = field(init=False, eq=False, repr=False)
    names: tuple[str, ...] = field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        names: list[str] = []
        parts: list[str] = []
        for segment in self.path.split("/"):
            m = re.fullmatch(r"\{(\w+)\}", segment)
            if m:
                names.append(m.group(1))
                parts.append("([^/]+)")
            else:
                parts.append(re.escape(segment))
        object.__setattr__(self, "pattern", re.compile("/".join(parts)))
        object.__setattr__(self, "names", tuple(names))

    def match(self, raw_path: str) -> dict[str, str] | None:
        """The decoded parameters when `raw_path` (still percent-encoded) is this route's path."""
        m = self.pattern.fullmatch(raw_path)
        if m is None:
            return None
        return {name: unquote(value, errors="strict") for name, value in zip(self.names, m.groups(), strict=True)}


class Context:
    """What a plug-in reaches: the virtual clock, its spec, its payments, commits and deferred work."""

    def __init__(self, emulator: Emulator, provider: str, now: datetime):
        self.emulator = emulator
        self.provider = provider
        self.now = now
        self.deferred: list[Callable[[], Awaitable[None]]] = []

    @property
    def spec(self) -> Spec:
        return self.emulator.specs[self.provider]

    @property
    def settings(self) -> Mapping[str, Any]:
        """The emulator-only settings given for this provider (`--set <provider>.<key>=...`)."""
        return self.emulator.settings.get(self.provider, {})

    @property
    def credentials(self) -> Mapping[str, str]:
        return self.emulator.credentials[self.provider]

    @property
    def data(self) -> dict[str, Any]:
        """A JSON-able dict the plug-in may keep provider-wide state in (persisted with `--state`)."""
        return self.emulator.provider_data.setdefault(self.provider, {})

    def entry(self, reference: str) -> Entry | None:
        """The payment `reference` of this provider, its expiry and settlements fired up to now."""
        return self.emulator.entry(self.provider, reference, self.now)

    def new_entry(self, reference: str) -> Entry:
        """A new payment in the spec's initial state (a Vipps create); raises ControlError 409 if it exists."""
        return self.emulator.new_entry(self.provider, reference, self.now)

    def decide(self, entry: Entry, command: Command) -> Decision:
        return decide(entry.payment, command)

    def commit(self, entry: Entry, *events: Event) -> Payment:
        """Apply `events` to the payment (raises InvalidTransition, leaving it unchanged) and record them."""
        return self.emulator.commit(entry, events, self.now, context=self)

    def defer(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run `job` after the answer has been sent (webhooks); its failures are logged, never raised."""
        self.deferred.append(job)


class ProviderEmulator:
    """Base of a provider plug-in; see the module docstring."""

    name: ClassVar[str]
    routes: Sequence[Route] = ()
    credentials: ClassVar[Mapping[str, str]] = {}
    settings: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}

    def authenticate(self, ctx: Context, request: WireRequest, route: Route) -> Answer | None:
        raise NotImplementedError

    def problem(self, kind: Problem, message: str, *, retry_after: int | None = None) -> Answer:
        raise NotImplementedError

    def refused(self, ctx: Context, call: Call, decision: Decision) -> Answer:
        raise NotImplementedError

    def observe(self, ctx: Context, entry: Entry, events: Sequence[Event]) -> None:
        """Called after every commit on one of this provider's payments. Default: nothing."""

    def due(self, ctx: Context, entry: Entry, now: datetime) -> None:
        """Called whenever the core fires what is due on a payment (every read, every clock move): a plug-in's
        own lapses that the spec does not model (a Vipps payment never approved). Default: nothing."""

    def view(self, entry: Entry) -> Mapping[str, Any]:
        """Extra provider-side fields for the control API's ledger (e.g. the provider's own state name)."""
        return {}


def problem_status(kind: Problem) -> int:
    """The HTTP status every provider uses for a generic problem (a plug-in may still choose its own)."""
    return {Problem.MALFORMED: 400, Problem.UNAUTHORIZED: 401, Problem.FORBIDDEN: 403, Problem.NOT_FOUND: 404,
            Problem.NO_ROUTE: 404, Problem.METHOD: 405, Problem.TOO_LARGE: 413, Problem.SERVER_ERROR: 500,
            Problem.RATE_LIMITED: 429, Problem.IN_FLIGHT: 409}[kind]
