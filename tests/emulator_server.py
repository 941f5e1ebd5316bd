"""A real `capstate emulate` server for tests: uvicorn on 127.0.0.1, a free port, in a background thread.

    with running(["bambora"]) as emu:
        emu.seed("bambora", "order-1", 1000, "EUR")
        creds = emu.bambora_credentials()
        ...
        emu.ledger("bambora", "order-1")

The requests go over real sockets (timeouts and dropped connections are real); `emu.emulator` is the
core behind the app, for assertions that need more than the control API. Pytest fixtures are in
conftest-free form so that any test module can import `running` (or the `emulator_server` fixture).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

uvicorn = pytest.importorskip("uvicorn", reason="the emulator needs the 'emulator' extra (uvicorn)")

from capstate.providers import bambora, hellgate, pipwave  # noqa: E402
from capstate.providers.emulator import app as emulator_app  # noqa: E402


class RunningEmulator:
    def __init__(self, server: Any, port: int, asgi: Any):
        self.server = server
        self.url = f"http://127.0.0.1:{port}"
        self.asgi = asgi
        self.emulator = asgi.state.emulator
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def control(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.http.request(method, "/_emulator" + path, json=body)

    def seed(self, provider: str, reference: str, amount: int, currency: str, **extra: Any) -> dict[str, Any]:
        r = self.control("POST", "/payments", {"provider": provider, "reference": reference, "amount": amount,
                                               "currency": currency, **extra})
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    def ledger(self, provider: str, reference: str) -> dict[str, Any]:
        r = self.control("GET", f"/payments/{provider}/{reference}")
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def fault(self, provider: str, op: str, kind: str, count: int = 1, **extra: Any) -> None:
        r = self.control("POST", "/faults", {"provider": provider, "op": op, "kind": kind, "count": count, **extra})
        assert r.status_code == 201, r.text

    def bambora_credentials(self, **override: str) -> bambora.Credentials:
        c = {**self.emulator.credentials["bambora"], **override}
        return bambora.Credentials(access_token=c["access_token"], merchant_number=c["merchant_number"],
                                   secret_token=c["secret_token"], base_url=self.url + "/bambora")

    def hellgate_credentials(self, **override: str) -> hellgate.Credentials:
        c = {**self.emulator.credentials["hellgate"], **override}
        return hellgate.Credentials(api_key=c["api_key"], base_url=self.url + "/hellgate")

    def pipwave_credentials(self, **override: str) -> pipwave.Credentials:
        c = {**self.emulator.credentials["pipwave"], **override}
        return pipwave.Credentials(api_key=c["api_key"], api_secret=c["api_secret"], url=self.url + "/pipwave")

    def credentials(self, provider: str) -> Any:
        return getattr(self, f"{provider}_credentials")()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def running(providers: list[str] | None = None, **options: Any) -> Iterator[RunningEmulator]:
    """Serve `capstate.providers.emulator.app(providers, **options)` on 127.0.0.1 until the block ends."""
    asgi = emulator_app(providers, **options)
    # IPPROTO_TCP named, as `capstate emulate` does: asyncio sets TCP_NODELAY only on sockets that say it,
    # and without it every response waited ~40 ms for the client's delayed ACK (_cli/emulate.py `_bind`).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(asgi, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the emulator did not start")
        time.sleep(0.01)
    emu = RunningEmulator(server, port, asgi)
    try:
        yield emu
    finally:
        emu.http.close()
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def emulator_server() -> Iterator[RunningEmulator]:
    """All available providers on a frozen virtual clock at 2026-01-05T12:00:00Z."""
    from datetime import UTC, datetime

    with running(clock=datetime(2026, 1, 5, 12, tzinfo=UTC), frozen=True) as emu:
        yield emu
