"""The HTTP side of the emulator: a Starlette app around the pure core (`_core.Emulator`).

It reads each body (refusing it past the size limit before reading it whole), asks the core to route and
run the request at the virtual clock's now, and carries out what the core decided: sleep for a latency
fault, hold the answer past the client's timeout, or drop the connection after the commit. Everything
under `/_emulator` is the control API (`_control.py`); everything under `/<provider>` goes to that
provider's plug-in; anything else is a control-style 404. An emulator bug becomes the provider's 500 and
one log line, never a traceback on the wire.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from .._http import Headers
from ._base import Answer, Problem
from ._control import control_routes
from ._core import Emulator, FaultKind, Reply

log = logging.getLogger("capstate.emulator")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


class _TooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused past `limit` bytes (the declared Content-Length first, then what arrives)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def to_response(answer: Answer) -> Response:
    headers = {k: v for k, v in answer.headers}
    return Response(answer.body, answer.status, headers=headers, media_type=answer.content_type)


class _Dropped(Response):
    """Commit done, then the connection closes before a complete answer: the status line and headers go
    out with a Content-Length the body never reaches, and the app returns; the server then closes the
    connection, and the client sees it end mid-answer. (ASGI cannot close a socket before a response
    starts: the server would write a 500 of its own.)"""

    def __init__(self) -> None:
        super().__init__(b"", 200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"1024")]})
        await send({"type": "http.response.body", "body": b'{"dropped', "more_body": True})


class _QuietDrops(logging.Filter):
    """uvicorn logs "ASGI callable returned without completing response" when a `drop_after_commit` fault
    ends an answer on purpose; that is the fault working, not an error worth a line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


_QUIET = _QuietDrops()


def build_app(emulator: Emulator, *, wall: Callable[[], float] = time.time, verbose: bool = False) -> Starlette:
    """The Starlette app serving `emulator`. `wall` is the wall clock the virtual clock runs from."""

    async def provider_endpoint(request: Request) -> Response:
        raw = request.scope.get("raw_path") or request.scope["path"].encode()
        raw_path = raw.decode("latin-1").split("?", 1)[0]
        head, _, rest = raw_path.lstrip("/").partition("/")
        if head not in emulator.plugins:
            return JSONResponse({"error": f"no route {request.method} {raw_path}: providers are under "
                                          f"{', '.join('/' + p for p in emulator.plugins)}, control under /_emulator"},
                                404)
        plugin = emulator.plugins[head]
        try:
            body = await read_body(request, emulator.max_body)
        except _TooLarge:
            return to_response(plugin.problem(Problem.TOO_LARGE, f"the body is larger than {emulator.max_body} bytes"))
        except ClientDisconnect:
            return Response(status_code=400)
        query = dict(parse_qsl(request.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        headers = Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]])
        try:
            dispatch = emulator.route(head, request.method, "/" + rest, headers=headers, body=body, query=query,
                                      now=emulator.now(wall()))
            if dispatch.fault is not None and dispatch.fault.kind is FaultKind.LATENCY:
                await asyncio.sleep(dispatch.fault.seconds or 0.0)
            reply = emulator.run(dispatch, emulator.now(wall()))
        except Exception as exc:  # an emulator bug: the provider's 500, one log line, never a traceback
            log.error("%s %s %s: internal error %s: %s", head, request.method, raw_path, type(exc).__name__, exc)
            return to_response(plugin.problem(Problem.SERVER_ERROR, f"emulator internal error ({type(exc).__name__})"))
        if verbose:
            log.info("%s %s %s -> %d%s", head, request.method, raw_path, reply.answer.status,
                     f" [fault {dispatch.fault.kind.value}]" if dispatch.fault is not None else "")
        return await _send(reply)

    # Deferred jobs (webhooks) run one at a time in the order they were queued, as Vipps delivers: "in
    # order per registered webhook", a later notification waiting for the earlier one (api-guide.md;
    # research/providers.md 2.8). Each in its own task, they raced: a payment's CANCELLED reached the
    # receiver before its CAPTURED. The lock hands itself on to waiters in FIFO order.
    deliveries = asyncio.Lock()

    def schedule(jobs: Iterable[Callable[[], Any]]) -> None:
        for job in jobs:
            task = asyncio.get_running_loop().create_task(_run_deferred(job, deliveries))
            _background.add(task)
            task.add_done_callback(_background.discard)

    async def _send(reply: Reply) -> Response:
        schedule(reply.deferred)
        if reply.hold:
            await asyncio.sleep(reply.hold)
        if reply.drop:
            return _Dropped()
        return to_response(reply.answer)

    _background: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> Any:
        yield
        for task in list(_background):
            task.cancel()
        if emulator.store is not None:
            emulator.store.close()

    uvicorn_log = logging.getLogger("uvicorn.error")
    if _QUIET not in uvicorn_log.filters:
        uvicorn_log.addFilter(_QUIET)
    routes = [Mount("/_emulator", routes=control_routes(emulator, wall, lambda: schedule(emulator.drain()))),
              Route("/{rest:path}", provider_endpoint, methods=METHODS)]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.emulator = emulator
    return app


async def _run_deferred(job: Callable[[], Any], turn: asyncio.Lock) -> None:
    async with turn:
        try:
            await job()
        except Exception as exc:  # a webhook that cannot be delivered must not stop the emulator
            log.warning("deferred job failed: %s: %s", type(exc).__name__, exc)
