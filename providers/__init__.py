"""capstate.providers: the thin I/O layer (request builders, response parsers, the HTTP executor).

Imports flow one way: providers -> capstate. The engine never imports this package.

Every provider module (`bambora`, `hellgate`, `pipwave`, `vipps`) offers the same names, so an executor
can treat them alike: `NAME`, a frozen `Credentials` class whose secrets never show, pure builders
`build_capture/build_cancel/build_refund/build_get` (Pipwave: `build_requery`, with `timestamp` passed
in) returning an `HttpRequest`, and parsers `parse_capture/parse_cancel/parse_refund` returning canonical
events, `parse_get` returning a `RemoteStatus`, and `parse_error` returning a `ProviderError`.
Builders raise `RequestError` (nothing was sent); parsers raise `ProviderError` (`retryable`, `reconcile`).
"""

from typing import TYPE_CHECKING, Any

from .._errors import ProviderError, RequestError, SignatureError
from ._http import MASK, Headers, HttpRequest, HttpResponse, RemoteStatus, Secret

if TYPE_CHECKING:
    from .journal import Journal


def __getattr__(name: str) -> Any:
    # The journal loads sqlite3 and the executor (httpx): only for whoever asks for it.
    if name == "Journal":
        from .journal import Journal

        return Journal
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MASK",
    "Headers",
    "HttpRequest",
    "HttpResponse",
    "Journal",
    "ProviderError",
    "RemoteStatus",
    "RequestError",
    "Secret",
    "SignatureError",
]
