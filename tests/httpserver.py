"""A real HTTP server on 127.0.0.1 for executor tests: scripted answers, every request recorded.

The executor is tested over real sockets, not a mock transport, so timeouts, connection handling and
the bytes on the wire are the ones production sees. Each route (method + path) answers from its own
queue of `Reply`s; the last reply repeats once the queue is down to it. An unscripted request gets
599 so a test notices it (and it is recorded like any other).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

UNSCRIPTED = 599


@dataclass(frozen=True)
class Reply:
    """One scripted answer. `delay` seconds pass before anything is written (a slow provider)."""

    status: int
    body: bytes | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    content_type: str = "application/json"

    def payload(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Recorded:
    """A request as the server received it."""

    method: str
    path: str  # the raw request target, percent-encoding intact
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._routes: dict[tuple[str, str], list[Reply]] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorded = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                reply = server._take(recorded)
                # A slow answer, cut short when the server stops so a test never waits on it.
                if reply.delay and server._closing.wait(reply.delay):
                    return
                payload = reply.payload()
                try:
                    self.send_response(reply.status)
                    if payload:
                        self.send_header("Content-Type", reply.content_type)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up (its timeout): exactly what a timeout test provokes.
                    pass

            do_GET = do_POST = do_PUT = do_DELETE = _handle  # noqa: N815 - http.server's naming

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="scripted-http", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def on(self, method: str, path: str, *replies: Reply) -> None:
        """Answer `method path` (path without the query) with `replies` in order, repeating the last."""
        if not replies:
            raise ValueError("give at least one reply")
        with self._lock:
            self._routes[(method.upper(), path)] = list(replies)

    def received(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests
                    if (method is None or r.method == method) and (path is None or urlsplit(r.path).path == path)]

    def _take(self, recorded: Recorded) -> Reply:
        with self._lock:
            self.requests.append(recorded)
            queue = self._routes.get((recorded.method, urlsplit(recorded.path).path))
            if not queue:
                return Reply(UNSCRIPTED, {"error": f"unscripted {recorded.method} {recorded.path}"})
            return queue.pop(0) if len(queue) > 1 else queue[0]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def scripted_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
