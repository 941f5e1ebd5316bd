"""`capstate emulate`: a stateful offline emulator of the providers' capture APIs.

    from capstate.providers.emulator import app
    asgi = app(providers=["bambora", "hellgate"], state="emulator.db")   # a Starlette app; mount or serve it

One HTTP server, each provider under its prefix (`/bambora`, `/hellgate`, `/pipwave`, `/vipps`), speaking
the provider's own requests and answers. Every operation is `decide`d on the provider's spec and
`apply`d to its payment; a refusal becomes the provider's own error. A virtual clock fires expiry as
`simulate` does; faults are injected for the next N matching requests; `/_emulator` is the control API.
docs/emulator.md documents the wire, the control API, the credentials and what is not emulated.

Layout:
- `_base.py`: the plug-in interface (`ProviderEmulator`, `Route`, `Call`, `Answer`, `Context`, `Problem`);
- `_core.py`: the pure core (`Emulator`: payments, ledgers, clock, faults; `route` then `run`), no I/O;
- `_store.py`: `--state FILE.db` (SQLite); `_asgi.py`, `_control.py`: the Starlette app and control API;
- one module per provider (`bambora.py`, `hellgate.py`, `pipwave.py`, ...), each with an `EMULATOR`.

Adding a provider: write `capstate/providers/emulator/<name>.py` with a `ProviderEmulator` subclass and a
module-level `EMULATOR = <Class>()` (see `_base.py` for what it declares), put the request parsing and
answer building of the wire format in `capstate/providers/<name>.py` beside its builders and parsers,
and add the name to `PROVIDERS` below. `app()` mounts every registered provider whose module imports;
a name listed whose module is absent is skipped (and refused only when asked for by name).

Starlette and uvicorn are the optional extra `capstate[emulator]`; `import capstate` and
`import capstate.providers` never load them, and the pure core (`_core`, `_base`, the plug-ins) does not
either: only `app()` does.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..._errors import CapstateError
from ..._spec import Spec, load_spec
from ._base import (
    Answer,
    Call,
    Context,
    ControlError,
    Problem,
    ProviderEmulator,
    Route,
    WireRequest,
)
from ._core import MAX_BODY, Clock, Emulator, Entry, Fault, FaultKind, Record, Reply

if TYPE_CHECKING:
    from starlette.applications import Starlette

# Every provider the emulator knows, in mount order. A module missing from this tree is skipped by `all`.
PROVIDERS = ("vipps", "bambora", "hellgate", "pipwave")

__all__ = [
    "MAX_BODY",
    "PROVIDERS",
    "Answer",
    "Call",
    "Clock",
    "Context",
    "ControlError",
    "Emulator",
    "Entry",
    "Fault",
    "FaultKind",
    "Problem",
    "ProviderEmulator",
    "Record",
    "Reply",
    "Route",
    "WireRequest",
    "app",
    "available",
    "build",
    "plugin",
]


def plugin(name: str) -> ProviderEmulator:
    """The plug-in of provider `name`. Raises ControlError when it is unknown or not in this build."""
    if name not in PROVIDERS:
        raise ControlError(f"unknown provider {name!r} (known: {', '.join(PROVIDERS)})")
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        raise ControlError(f"the {name} emulator is not part of this build") from None
    emulator: ProviderEmulator = module.EMULATOR
    return emulator


def available() -> tuple[str, ...]:
    """The registered providers whose plug-in module is present."""
    out = []
    for name in PROVIDERS:
        try:
            plugin(name)
        except ControlError:
            continue
        out.append(name)
    return tuple(out)


def build(providers: Iterable[str] | None = None, *, overrides: Mapping[str, Mapping[str, Any]] | None = None,
          settings: Mapping[str, Mapping[str, Any]] | None = None,
          credentials: Mapping[str, Mapping[str, str]] | None = None, state: str | Path | None = None,
          clock: datetime | None = None, frozen: bool = False, max_body: int = MAX_BODY,
          wall: Callable[[], float] = time.time) -> Emulator:
    """The pure emulator core, without HTTP: `providers` (default: all available), spec `overrides` per
    provider (policy keys, as `--set`), emulator `settings` per provider (`{"hellgate": {"settle_after":
    timedelta}}`), `credentials` replacing the defaults, `state` a SQLite file, `clock` the virtual start
    (default: now), `frozen` to stop it running. Raises ControlError or SpecError."""
    names = list(providers) if providers is not None else list(available())
    if not names:
        raise ControlError("no provider to emulate")
    plugins = {name: plugin(name) for name in dict.fromkeys(names)}
    specs: dict[str, Spec] = {}
    for name in plugins:
        given = (overrides or {}).get(name)
        specs[name] = load_spec(name, overrides=given) if given else load_spec(name)
    parsed: dict[str, dict[str, Any]] = {}
    for name, values in (settings or {}).items():
        if name not in plugins:
            raise ControlError(f"settings for {name!r}, which is not emulated here")
        for key, value in values.items():
            parser = plugins[name].settings.get(key)
            if parser is None:
                raise ControlError(f"{name} has no emulator setting {key!r}")
            try:
                parsed.setdefault(name, {})[key] = parser(value)
            except ValueError as exc:
                raise ControlError(f"{name}.{key}: {exc}") from None
    if clock is not None and clock.utcoffset() is None:
        raise ControlError("the clock must be timezone-aware")
    start = clock if clock is not None else datetime.fromtimestamp(wall(), UTC).replace(microsecond=0)
    store = None
    if state is not None:
        from ._store import SqliteStore

        store = SqliteStore(state)
    try:
        return Emulator(plugins, specs, clock=Clock(start, wall(), frozen), credentials=credentials,
                        settings=parsed, store=store, max_body=max_body)
    except (CapstateError, KeyError, TypeError, ValueError) as exc:
        if store is not None:
            store.close()
        if isinstance(exc, ControlError):
            raise
        raise ControlError(f"--state {state}: the stored state does not load: {exc}") from None


def app(providers: Iterable[str] | None = None, *, verbose: bool = False, wall: Callable[[], float] = time.time,
        **options: Any) -> Starlette:
    """The emulator as a Starlette ASGI app, to serve with uvicorn or mount in-process (httpx's
    ASGITransport, another Starlette app). Options as `build`. `app.state.emulator` is the core."""
    from ._asgi import build_app

    return build_app(build(providers, wall=wall, **options), wall=wall, verbose=verbose)
