"""The control API under `/_emulator` (JSON; documented in docs/emulator.md).

- `POST /payments` {"provider","reference","amount","currency","flow"?,"at"?} -> 201 ledger; 409 if it exists
- `GET /payments/{provider}/{reference}` -> the payment's provider-side ledger
- `GET /clock`, `POST /clock` {"set": RFC 3339} | {"advance": "7d"} (| {"frozen": bool}) -> {"now", "frozen"}
- `POST /faults` {"provider","op","kind","count","seconds"?,"retry_after"?} -> 201; `GET /faults`; `DELETE /faults`
- `POST /hellgate/settle` {"reference"?, "outcome": "captured"|"failed"}
- `POST /reset`; `GET /health`

Every error is `{"error": "one line"}` with 400, 404 or 409. Values are checked here, by type: a float
amount, a bool count or an unknown field is a 400 naming the field, never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..._money import INT64_MAX
from ..._time import format_instant, parse_duration, parse_instant
from ..._values import Flow
from ._base import ControlError
from ._core import FAULT_OPS, MAX_FAULT_COUNT, MAX_FAULT_SECONDS, Emulator, Fault, FaultKind

MAX_CONTROL_BODY = 16 * 1024
log = logging.getLogger("capstate.emulator")


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.splitlines())}, status)


async def _object(request: Request, allowed: frozenset[str], *, empty_ok: bool = False) -> dict[str, Any]:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CONTROL_BODY:
            raise ControlError(f"the body is larger than {MAX_CONTROL_BODY} bytes", 413)
    if not body and empty_ok:
        return {}
    try:
        obj = orjson.loads(bytes(body))
    except orjson.JSONDecodeError:
        raise ControlError("the body is not JSON") from None
    if not isinstance(obj, dict):
        raise ControlError("the body must be a JSON object")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ControlError(f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return obj


def _str(obj: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise ControlError(f"{name!r} is required")
        return None
    if not isinstance(value, str) or not value:
        raise ControlError(f"{name!r} must be a non-empty string, got {orjson.dumps(value).decode()[:40]}")
    return value


def _int(obj: Mapping[str, Any], name: str, *, required: bool = True, low: int = 0, high: int = INT64_MAX
         ) -> int | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise ControlError(f"{name!r} is required")
        return None
    if type(value) is not int or not low <= value <= high:
        raise ControlError(f"{name!r} must be an integer from {low} to {high}, got "
                           f"{orjson.dumps(value).decode()[:40]}")
    return value


def _instant(text: str, name: str) -> Any:
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise ControlError(f"{name!r}: {exc}") from None


def control_routes(emulator: Emulator, wall: Callable[[], float]) -> list[Route]:
    def now() -> Any:
        return emulator.now(wall())

    def guarded(fn: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                result: Response = await fn(request)
            except ControlError as exc:
                return _error(str(exc), exc.status)
            except Exception as exc:  # an emulator bug: one line here and in the log, never a traceback
                log.error("control %s %s: internal error %s: %s", request.method, request.url.path,
                          type(exc).__name__, exc)
                return _error(f"emulator internal error ({type(exc).__name__})", 500)
            return result
        return endpoint

    def ledger(provider: str, reference: str) -> dict[str, Any]:
        entry = emulator.entry(provider, reference, now())
        if entry is None:
            raise ControlError(f"no {provider} payment {reference!r}", 404)
        return entry.ledger(emulator.plugins[provider])

    async def seed(request: Request) -> Response:
        obj = await _object(request, frozenset({"provider", "reference", "amount", "currency", "flow", "at"}))
        provider = _str(obj, "provider")
        reference = _str(obj, "reference")
        amount = _int(obj, "amount", low=1)
        currency = _str(obj, "currency")
        flow_text = _str(obj, "flow", required=False)
        at_text = _str(obj, "at", required=False)
        assert provider is not None and reference is not None and amount is not None and currency is not None
        if flow_text is not None and flow_text not in ("manual", "automatic"):
            raise ControlError(f"'flow' must be 'manual' or 'automatic', got {flow_text!r}")
        at = _instant(at_text, "at") if at_text is not None else now()
        if at > now():
            raise ControlError(f"'at' {at_text} is after the emulator's clock ({format_instant(now())})")
        entry = emulator.seed(provider, reference, amount, currency, at=at,
                              flow=Flow(flow_text) if flow_text is not None else None)
        return JSONResponse(entry.ledger(emulator.plugins[provider]), 201)

    async def payment(request: Request) -> Response:
        provider = unquote(request.path_params["provider"])
        reference = unquote(request.path_params["reference"])
        if provider not in emulator.plugins:
            raise ControlError(f"provider {provider!r} is not emulated here", 404)
        return JSONResponse(ledger(provider, reference))

    def clock_view() -> dict[str, Any]:
        return {"now": format_instant(now()), "frozen": emulator.clock.frozen}

    async def get_clock(request: Request) -> Response:
        emulator.tick(now())
        return JSONResponse(clock_view())

    async def set_clock(request: Request) -> Response:
        obj = await _object(request, frozenset({"set", "advance", "frozen"}))
        if "set" in obj and "advance" in obj:
            raise ControlError("give 'set' or 'advance', not both")
        frozen = obj.get("frozen")
        if frozen is not None and not isinstance(frozen, bool):
            raise ControlError("'frozen' must be true or false")
        target = now()
        if "set" in obj:
            text = _str(obj, "set")
            assert text is not None
            target = _instant(text, "set")
        elif "advance" in obj:
            text = _str(obj, "advance")
            assert text is not None
            try:
                target = target + parse_duration(text)
            except ValueError as exc:
                raise ControlError(f"'advance': {exc}") from None
            except OverflowError:
                raise ControlError(f"'advance': {text!r} would take the clock past the calendar") from None
        elif frozen is None:
            raise ControlError("give 'set' (RFC 3339), 'advance' (a duration like '7d') or 'frozen'")
        try:
            emulator.set_clock(target, wall(), frozen=frozen)
        except OverflowError:
            raise ControlError("the clock would leave the calendar") from None
        return JSONResponse(clock_view())

    async def add_fault(request: Request) -> Response:
        obj = await _object(request, frozenset({"provider", "op", "kind", "count", "seconds", "retry_after"}))
        provider = _str(obj, "provider")
        op = _str(obj, "op")
        kind_text = _str(obj, "kind")
        count = _int(obj, "count", required=False, low=1, high=MAX_FAULT_COUNT)
        retry_after = _int(obj, "retry_after", required=False, low=0, high=86_400)
        assert provider is not None and op is not None and kind_text is not None
        if op not in FAULT_OPS:
            raise ControlError(f"'op' must be one of {', '.join(FAULT_OPS)}, got {op!r}")
        try:
            kind = FaultKind(kind_text)
        except ValueError:
            raise ControlError(f"'kind' must be one of {', '.join(k.value for k in FaultKind)}, "
                               f"got {kind_text!r}") from None
        seconds = obj.get("seconds")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                                    or not 0 <= seconds <= MAX_FAULT_SECONDS):
            raise ControlError(f"'seconds' must be a number from 0 to {MAX_FAULT_SECONDS:g}")
        if kind is FaultKind.LATENCY and seconds is None:
            raise ControlError("a latency fault needs 'seconds'")
        fault = Fault(provider, op, kind, count if count is not None else 1,
                      float(seconds) if seconds is not None else None, retry_after)
        emulator.add_fault(fault)
        return JSONResponse(fault.to_dict(), 201)

    async def list_faults(request: Request) -> Response:
        return JSONResponse({"faults": [f.to_dict() for f in emulator.faults]})

    async def clear_faults(request: Request) -> Response:
        emulator.faults.clear()
        return JSONResponse({"faults": []})

    async def settle(request: Request) -> Response:
        if "hellgate" not in emulator.plugins:
            raise ControlError("hellgate is not emulated here", 404)
        obj = await _object(request, frozenset({"reference", "outcome"}))
        reference = _str(obj, "reference", required=False)
        outcome = _str(obj, "outcome")
        assert outcome is not None
        settled = emulator.settle("hellgate", reference, outcome, now())
        return JSONResponse({"settled": [e.reference for e in settled]})

    async def reset(request: Request) -> Response:
        await _object(request, frozenset(), empty_ok=True)
        emulator.reset()
        return JSONResponse({"reset": True})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "providers": sorted(emulator.plugins), **clock_view(),
                             "payments": len(emulator.entries)})

    async def unknown(request: Request) -> Response:
        return _error(f"no control route {request.method} {request.url.path}", 404)

    return [
        Route("/payments", guarded(seed), methods=["POST"]),
        Route("/payments/{provider}/{reference:path}", guarded(payment), methods=["GET"]),
        Route("/clock", guarded(get_clock), methods=["GET"]),
        Route("/clock", guarded(set_clock), methods=["POST"]),
        Route("/faults", guarded(add_fault), methods=["POST"]),
        Route("/faults", guarded(list_faults), methods=["GET"]),
        Route("/faults", guarded(clear_faults), methods=["DELETE"]),
        Route("/hellgate/settle", guarded(settle), methods=["POST"]),
        Route("/reset", guarded(reset), methods=["POST"]),
        Route("/health", guarded(health), methods=["GET"]),
        Route("/{rest:path}", guarded(unknown), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
