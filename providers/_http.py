"""Wire values shared by every provider module: requests, responses, secrets, and the safety checks
that put untrusted strings into a URL path or a header.

Rules this module keeps:

1. A request is a value (`HttpRequest`); building one does no I/O. Its repr is redacted, so a request
   can be logged or shown in a failing test without leaking the credentials its headers must carry.
2. A string reaches a URL path only through `path_segment`: validated, then percent-encoded with
   `quote(safe="")`. Characters that a proxy or framework may decode and re-route on (`/`, `\\`, `?`,
   `#`, `%`), control characters and the dot segments `.`/`..` are refused outright, because encoding
   them is not enough: many servers decode `%2F` before routing. Spaces and other Unicode are encoded
   (UTF-8, `%20`), which RFC 3986 makes unambiguous; a provider whose charset excludes them refuses them
   through its own rule first.
3. A string reaches a header only through `header_value`: visible ASCII, space and tab, no leading
   or trailing whitespace. CR, LF and NUL can therefore never split a header.
4. A secret is a `Secret`: its repr and str are a fixed mask; `reveal()` is the one way to read it.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard
from urllib.parse import quote, unquote

import httpx
import orjson
from attrs import field, frozen

from .._errors import ProviderError, RequestError
from .._money import INT64_MAX
from .._policy import IdentifierRule

MASK = "[REDACTED]"

# Headers whose value is (or embeds) a credential. Lower-case names.
SENSITIVE_HEADERS = frozenset({"authorization", "ocp-apim-subscription-key", "x-api-key", "proxy-authorization"})

# ------------------------------------------------------------------------------------------- secrets


class Secret:
    """A credential string that never shows itself: repr and str give a fixed mask.

    Equality compares the hidden values (so two credentials objects compare as expected); hashing is
    refused, so a secret cannot end up as a dict key that a debugger would print.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise RequestError(f"a secret must be a string, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The secret itself. Call it only where the value goes on the wire or into a MAC."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    __hash__ = None  # type: ignore[assignment]

    def __copy__(self) -> Secret:
        return self  # immutable: a copy may share it, and copying writes nothing out

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> Any:
        # Pickling would write the value out; refuse rather than leak it into a cache or a queue.
        raise TypeError("a Secret cannot be pickled")


def to_secret(value: str | Secret) -> Secret:
    """attrs converter: wrap a plain string; keep a Secret."""
    return value if isinstance(value, Secret) else Secret(value)


# --------------------------------------------------------------------------------- paths and headers

# Characters refused in any path segment, whatever the provider's own charset: each can change the
# target at the client or at a server that decodes before routing (rule 2 above).
_PATH_UNSAFE = re.compile(r"[/\\?#%\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]")
_HEADER_SAFE = re.compile(r"[\x20-\x7e\t]*")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: methods and header names


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")


def path_segment(value: object, *, what: str, rule: IdentifierRule | None = None,
                 pattern: str | None = None) -> str:
    """`value` validated and percent-encoded as ONE URL path segment.

    `rule` is the provider's length/charset rule (from its spec's Policy); `pattern`, an extra regular
    expression the whole value must match. Raises RequestError naming `what`.
    """
    if not isinstance(value, str):
        raise RequestError(f"must be a string, got {type(value).__name__}", field=what)
    if rule is not None:
        problem = rule.problem(value)
        if problem:
            raise RequestError(problem, field=what)
    if not value:
        raise RequestError("must not be empty", field=what)
    if value in {".", ".."}:
        raise RequestError(f"{value!r} is a dot segment; it would change the request path", field=what)
    # NFKC folds look-alikes (FULLWIDTH SOLIDUS U+FF0F, FULLWIDTH FULL STOP U+FF0E) into "/" and ".";
    # a server that normalizes would route on the folded form, so it must be as safe as the raw one.
    folded = unicodedata.normalize("NFKC", value)
    if folded in {".", ".."}:
        raise RequestError(f"{value!r} folds to a dot segment; it could change the request path", field=what)
    bad = _PATH_UNSAFE.search(value) or _PATH_UNSAFE.search(folded)
    if bad:
        raise RequestError(f"{_shown(value)} contains {bad.group()!r}, which could change the request target",
                           field=what)
    if pattern is not None and not re.fullmatch(pattern, value):
        raise RequestError(f"{_shown(value)} does not match {pattern}", field=what)
    return quote(value, safe="")


def header_value(value: object, *, what: str, rule: IdentifierRule | None = None, secret: bool = False) -> str:
    """`value` checked for use as an HTTP header value: visible ASCII, space and tab, no leading or
    trailing whitespace (so never CR, LF or NUL). Raises RequestError naming `what`; with `secret`, the
    message never echoes the value."""
    if not isinstance(value, str):
        raise RequestError(f"must be a string, got {type(value).__name__}", field=what)
    shown = "the value" if secret else _shown(value)
    if not value:
        raise RequestError("must not be empty", field=what)
    if not _HEADER_SAFE.fullmatch(value):
        raise RequestError(f"{shown} holds a character that is not allowed in an HTTP header "
                           "(CR, LF, NUL, other controls, or non-ASCII)", field=what)
    if value != value.strip():
        raise RequestError(f"{shown} has leading or trailing whitespace", field=what)
    problem = rule.problem(value) if rule is not None else None
    if problem:
        raise RequestError(f"breaks the format {rule.describe()}" if secret and rule else problem, field=what)
    return value


def base_url(value: str, *, what: str = "base_url") -> str:
    """A provider base URL: absolute https (or http on a loopback host, for local mocks), no query,
    fragment or credentials; returned without a trailing slash."""
    if not isinstance(value, str) or not value:
        raise RequestError("must be a non-empty string", field=what)
    if "@" in value:
        # "user:password@host" holds a credential: refuse it without echoing any part of the URL (every other
        # message below quotes the value, which would put the password on stderr or in a log).
        raise RequestError("must not contain '@': credentials in a URL would be sent and shown; "
                           "give scheme://host[:port][/path] only", field=what)
    if _SPACE_OR_CONTROL.search(value):
        raise RequestError(f"{_shown(value)} contains a space or control character", field=what)
    # An EMPTY query or fragment ("https://h?", "https://h/#") parses as none, yet every path a builder
    # appends would land in it: the POST would go to "/". A backslash is a "/" to WHATWG parsers (curl
    # users of --dry-run), and dot segments are resolved away: each would send elsewhere than written.
    if any(c in value for c in "?#\\"):
        raise RequestError(f"{_shown(value)} must be scheme://host[:port][/path] only, without '?', '#' or '\\'",
                           field=what)
    if any(unquote(seg) in {".", ".."} for seg in value.split("://", 1)[-1].split("/")[1:]):
        raise RequestError(f"{_shown(value)} has a '.' or '..' path segment", field=what)
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise RequestError(f"{_shown(value)} is not a URL ({exc})", field=what) from None
    loopback = url.host in {"127.0.0.1", "localhost", "::1"}
    if url.scheme != "https" and not (url.scheme == "http" and loopback):
        raise RequestError(f"{_shown(value)} must be https (http only on a loopback host)", field=what)
    if not url.host or url.query or url.fragment or url.userinfo:
        raise RequestError(f"{_shown(value)} must be scheme://host[:port][/path] only", field=what)
    return value.rstrip("/")


# ------------------------------------------------------------------------------------------ requests


def _headers(value: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in value)


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


def _redact_headers(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    return tuple((k, MASK if k.lower() in SENSITIVE_HEADERS else v) for k, v in headers)


@frozen(repr=False)
class HttpRequest:
    """One HTTP request, exactly as it goes on the wire.

    `headers` is a tuple of (name, value) pairs in send order. `secret_fields` names top-level JSON
    body fields that hold a credential (Pipwave's `api_key`); `redacted()` masks them and every
    sensitive header. repr() is always the redacted view.
    """

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = field(converter=_headers, default=())
    body: bytes = b""
    secret_fields: tuple[str, ...] = field(default=(), converter=_names)

    def __attrs_post_init__(self) -> None:
        # Defence in depth: whoever built this value, it cannot carry a split header or a second target.
        if not _TOKEN.fullmatch(self.method):
            raise RequestError(f"{_shown(self.method)} is not an HTTP method", field="method")
        if _SPACE_OR_CONTROL.search(self.url):
            raise RequestError("the URL holds a space or control character", field="url")
        for name, value in self.headers:
            if not _TOKEN.fullmatch(name):
                raise RequestError(f"{_shown(name)} is not a header name", field="headers")
            if not _HEADER_SAFE.fullmatch(value) or value != value.strip():
                raise RequestError(f"the value of {name} is not a safe header value", field="headers")
        if type(self.body) is not bytes:
            raise RequestError(f"the body must be bytes, got {type(self.body).__name__}", field="body")

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    def json(self) -> Any:
        """The body decoded as JSON (None when empty)."""
        return orjson.loads(self.body) if self.body else None

    def redacted(self) -> HttpRequest:
        """A copy safe to print or log: credentials in headers and body replaced by a mask."""
        body = self.body
        if self.secret_fields and body:
            try:
                obj = orjson.loads(body)
            except orjson.JSONDecodeError:
                obj = None
                body = MASK.encode()  # a body we cannot take apart may hold the secret: hide it whole
            if isinstance(obj, dict):
                body = orjson.dumps({k: (MASK if k in self.secret_fields else v) for k, v in obj.items()})
        return HttpRequest(self.method, self.url, _redact_headers(self.headers), body, self.secret_fields)

    def __repr__(self) -> str:
        r = self.redacted()
        return f"HttpRequest({r.method!r}, {r.url!r}, headers={r.headers!r}, body={r.body!r})"

    __str__ = __repr__


class Headers(Mapping[str, str]):
    """Response headers with case-insensitive lookup; the last value wins for a repeated name."""

    __slots__ = ("_items", "_map")

    def __init__(self, items: Iterable[tuple[str, str]] | Mapping[str, str] = ()) -> None:
        pairs = tuple(items.items()) if isinstance(items, Mapping) else tuple(items)
        self._items = tuple((str(k), str(v)) for k, v in pairs)
        self._map = {k.lower(): v for k, v in self._items}

    def __getitem__(self, key: str) -> str:
        return self._map[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._map

    def __iter__(self) -> Any:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and other._map == self._map

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._map.items())))

    def __repr__(self) -> str:
        return f"Headers({list(_redact_headers(self._items))!r})"

    def items_raw(self) -> tuple[tuple[str, str], ...]:
        return self._items


def _to_headers(value: Headers | Mapping[str, str] | Iterable[tuple[str, str]]) -> Headers:
    return value if isinstance(value, Headers) else Headers(value)


# Top-level JSON fields of a RESPONSE that echo a credential: Pipwave's requery and IPN carry `api_key`
# ("Pipwave-assigned merchant's API key", requery.md), Vipps's webhook registration answers `secret`.
SENSITIVE_BODY_FIELDS = frozenset({"api_key", "api_secret", "secret", "access_token", "subscription_key"})


def _redact_body(body: bytes) -> bytes:
    """`body` with the values of SENSITIVE_BODY_FIELDS masked (top level of a JSON object). A body that is
    not JSON is shown as is: it cannot hold a credential field by name."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if isinstance(obj, dict) and SENSITIVE_BODY_FIELDS.intersection(obj):
        return orjson.dumps({k: (MASK if k in SENSITIVE_BODY_FIELDS else v) for k, v in obj.items()})
    return body


@frozen(repr=False)
class HttpResponse:
    """One HTTP response: status, headers (case-insensitive), raw body bytes. Its repr masks credential
    headers and the credential fields a provider echoes in a JSON body."""

    status: int
    headers: Headers = field(converter=_to_headers, factory=Headers)
    body: bytes = b""

    def __repr__(self) -> str:
        return f"HttpResponse(status={self.status!r}, headers={self.headers!r}, body={_redact_body(self.body)!r})"

    __str__ = __repr__

    @property
    def media_type(self) -> str:
        """The Content-Type without parameters, lower-case ("application/problem+json")."""
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


# ------------------------------------------------------------------------------------ remote status


@frozen
class RemoteStatus:
    """What the provider says a payment looks like now: the answer to "did my capture happen?".

    Amounts are integer minor units of `currency`; None where the provider does not report one.
    `state` is the provider's own state string, verbatim. `in_flight` says an operation is still
    running at the provider (Bambora `operationInProgress`, Hellgate `capturing`/`voiding`).
    """

    provider: str
    reference: str
    state: str
    currency: str | None
    authorized: int | None
    captured: int | None
    cancelled: int | None = None
    refunded: int | None = None
    in_flight: bool = False


# --------------------------------------------------------------------------------------- JSON bodies


def json_body(obj: Any) -> bytes:
    return orjson.dumps(obj)


def request_object(body: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object (the emulator's side of every wire). Raises RequestError."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestError("the body is not valid JSON", field="body") from None
    if not isinstance(obj, dict):
        raise RequestError("the body must be a JSON object", field="body")
    return obj


def decode_json(response: HttpResponse, *, provider: str) -> Any:
    """The response body as JSON, or a ProviderError that says the provider sent something else.

    An undecodable 2xx body leaves the outcome unknown, so that error asks for reconciliation.
    """
    try:
        return orjson.loads(response.body)
    except orjson.JSONDecodeError:
        ok = 200 <= response.status < 300
        raise ProviderError(
            f"the response body is not JSON ({len(response.body)} bytes, {response.media_type or 'no content type'})",
            provider=provider, status=response.status, retryable=response.status >= 500,
            reconcile=ok or response.status >= 500) from None


def error_body(response: HttpResponse, *, provider: str) -> Mapping[str, Any]:
    """The JSON object of an error answer, or {} when there is none (a proxy's HTML 502 page): the status
    code must still decide, so an undecodable error body is not itself an error."""
    try:
        obj = decode_json(response, provider=provider)
    except ProviderError:
        return {}
    return obj if isinstance(obj, dict) else {}


def malformed(provider: str, response: HttpResponse, what: str) -> ProviderError:
    """A 2xx answer that does not say what the documentation says it says: outcome unknown."""
    return ProviderError(f"unexpected response: {what}", provider=provider, status=response.status,
                         reconcile=True)




def is_minor_units(value: object) -> TypeGuard[int]:
    """Whether a decoded JSON value is an amount in minor units: an int (not a bool, not a float), 0..int64."""
    return type(value) is int and 0 <= value <= INT64_MAX


def minor_amount(obj: Mapping[str, Any], key: str, *, provider: str, response: HttpResponse) -> int:
    """An integer minor-unit amount from a decoded JSON object, or a ProviderError (never a float)."""
    value = obj.get(key)
    if not is_minor_units(value):
        raise malformed(provider, response, f"{key!r} is {value!r}, not a non-negative integer of minor units")
    return value
