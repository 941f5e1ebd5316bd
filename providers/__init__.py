"""capstate.providers: the thin I/O layer (request builders, response parsers, the HTTP executor).

Imports flow one way: providers -> capstate. The engine never imports this package.

Every provider module (`bambora`, `hellgate`, `pipwave`, `vipps`) offers the same names, so an executor
can treat them alike: `NAME`, a frozen `Credentials` class whose secrets never show, pure builders
`build_capture/build_cancel/build_refund/build_get` (Pipwave: `build_requery`, with `timestamp` passed
in) returning an `HttpRequest`, and parsers `parse_capture/parse_cancel/parse_refund` returning canonical
events, `parse_get` returning a `RemoteStatus`, and `parse_error` returning a `ProviderError`.
Builders raise `RequestError` (nothing was sent); parsers raise `ProviderError` (`retryable`, `reconcile`).
"""

from .._errors import ProviderError, RequestError, SignatureError
from ._http import MASK, Headers, HttpRequest, HttpResponse, RemoteStatus, Secret

__all__ = [
    "MASK",
    "Headers",
    "HttpRequest",
    "HttpResponse",
    "ProviderError",
    "RemoteStatus",
    "RequestError",
    "Secret",
    "SignatureError",
]
