"""`capstate emulate`: serve the emulator (capstate.providers.emulator) with uvicorn until SIGINT/SIGTERM.

The emulator package, Starlette and uvicorn are imported only when this command runs, so no other command
(and no `import capstate`) loads them. Every bad option is one line on stderr and exit 2 (through main).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import socket
import sys
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from .._errors import CapstateError
from .._spec import shipped
from .options import UsageError, _toml_value, parse_at, split_set

DEFAULT_PORT = 8700


def configure(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--provider", default="all", metavar="NAME,...|all",
                     help="the providers to emulate, comma-separated (default: all available)")
    sub.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    sub.add_argument("--port", type=int, default=DEFAULT_PORT, metavar="N",
                     help=f"port to bind (default {DEFAULT_PORT}; 0 picks a free one)")
    sub.add_argument("--state", metavar="FILE.db", help="keep the state in this SQLite file across restarts "
                                                        "(default: in memory)")
    sub.add_argument("--clock", metavar="T", help="RFC 3339 start of the virtual clock (default: now); "
                                                  "it runs at real speed from there")
    sub.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="a policy override (hellgate.authorization_validity=7d; unprefixed: every provider) "
                          "or an emulator setting (hellgate.settle_after=30s)")
    sub.add_argument("--verbose", action="store_true", help="log every request to stderr")


def _providers(text: str, available: tuple[str, ...]) -> list[str]:
    if text.strip() == "all":
        return list(available)
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise UsageError(f"--provider {text!r}: expected NAME,NAME or all")
    for name in names:
        if name not in available:
            raise UsageError(f"--provider {name!r}: not emulated (available: {', '.join(available)})")
    return list(dict.fromkeys(names))


def split_sets(items: list[str], providers: list[str], settings: dict[str, Any]
               ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """`--set` items as (policy overrides, emulator settings), each per provider. `settings` maps a provider
    to its plug-in's setting parsers. An unprefixed policy key applies to every provider emulated."""
    overrides: dict[str, dict[str, Any]] = {}
    emulator: dict[str, dict[str, Any]] = {}
    for item in items:
        key, value = split_set(item, "hellgate.settle_after=30s")
        head, dot, rest = key.partition(".")
        if dot and head in shipped():
            if head not in providers:
                raise UsageError(f"--set {item!r}: {head!r} is not emulated here")
            targets, name = [head], rest
        else:
            targets, name = providers, key
        for provider in targets:
            parsers = settings.get(provider, {})
            if name in parsers:
                try:
                    emulator.setdefault(provider, {})[name] = parsers[name](value)
                except ValueError as exc:
                    raise UsageError(f"--set {item!r}: {exc}") from None
            elif targets is providers and name in _all_settings(settings):
                continue  # an unprefixed setting of another provider: not a policy key of this one
            else:
                overrides.setdefault(provider, {})[name] = _toml_value(value)
    return overrides, emulator


def _all_settings(settings: dict[str, Any]) -> set[str]:
    return {name for parsers in settings.values() for name in parsers}


def _check_host(host: str) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise UsageError(f"--host {host!r}: an IP address (127.0.0.1, ::1, 0.0.0.0) or localhost") from None
    return host


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: must be 0..65535")
    host = _check_host(args.host)
    clock: datetime | None = parse_at(args.clock, "--clock") if args.clock is not None else None
    try:
        import uvicorn

        from ..providers import emulator
    except ModuleNotFoundError as exc:
        raise UsageError(f"capstate emulate needs the 'emulator' extra (pip install 'capstate[emulator]'): "
                         f"{exc.name} is missing") from None
    names = _providers(args.provider, emulator.available())
    overrides, settings = split_sets(args.sets, names, {n: dict(emulator.plugin(n).settings) for n in names})
    try:
        asgi = emulator.app(names, overrides=overrides, settings=settings, state=args.state, clock=clock,
                            verbose=args.verbose)
    except emulator.ControlError as exc:
        raise UsageError(str(exc)) from None
    except CapstateError as exc:
        raise UsageError(f"--set: {exc}") from None
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="capstate emulate: %(message)s", stream=sys.stderr)
    sock = _bind(host, args.port)
    config = uvicorn.Config(asgi, log_level="info" if args.verbose else "warning", access_log=args.verbose,
                            lifespan="on")
    server = _Server(config)
    port = sock.getsockname()[1]
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    lines = [f"capstate emulate: listening on {base} (Ctrl-C stops)"]
    lines += [f"  {name:9} {base}/{name}" for name in names]
    lines.append(f"  control   {base}/_emulator   (GET {base}/_emulator/health)")
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    try:
        server.run(sockets=[sock])
    except SystemExit:
        raise UsageError("the server could not start (see the line above)") from None
    finally:
        sock.close()
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound here so that a port in use is one clear line, and the URL printed is the
    real one when --port 0 picks a free port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # The protocol named: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on connections whose
    # socket says IPPROTO_TCP, and with it on, uvicorn's response waited for the client's delayed ACK:
    # ~44 ms a request on loopback instead of ~0.7 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def _server_class() -> type[Any]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, but a SIGINT or SIGTERM is a clean stop (exit 0): uvicorn finishes the requests
        in flight, then would raise the signal again in this process, which the CLI does not want."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    captured = getattr(self, "_captured_signals", None)
                    if isinstance(captured, list):
                        captured.clear()

    return Server


def _Server(config: Any) -> Any:  # noqa: N802 - reads as the class it builds
    return _server_class()(config)
