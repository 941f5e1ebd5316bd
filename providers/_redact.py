"""Masking credentials a provider (or a proxy in front of it) echoes back.

A gateway that answers a bad request with the request's own headers ("Authorization: Bearer ...") puts
the merchant's credentials into provider text: an error's title or detail, a failure reason, a state
string. Everything the executor shows, raises or logs passes through one `Redactor`, which knows every
credential value of the client's `Credentials` and every sensitive header it has sent, in each form a
server may echo it: as is, percent-encoded (either hex case, `+` for space), JSON-escaped (with PHP's
`\\/`), HTML-escaped, as a Python repr, and base64-encoded; a Basic credential is learnt whole, so its
base64 is masked too.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

import attrs
import orjson

from .._errors import ProviderError
from .._values import Event
from ._http import MASK, SENSITIVE_HEADERS, HttpRequest, RemoteStatus, Secret

# A credential shorter than this cannot be told from ordinary text ("ok", "200"); masking it would garble
# every message while protecting nothing a guess would not find. Real keys and tokens are far longer.
SHORTEST = 4
_HEX = re.compile(r"%[0-9A-F]{2}")


def encodings(secret: str) -> set[str]:
    """`secret` in every form a server might echo it in text."""
    forms = {secret, html.escape(secret), html.escape(secret, False), repr(secret)[1:-1], json.dumps(secret)[1:-1]}
    try:
        raw = secret.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no bytes on the wire, so only the text forms above
        raw = None
    if raw is not None:
        escaped = orjson.dumps(secret).decode()[1:-1]
        forms |= {escaped, escaped.replace("/", "\\/"), quote(secret, safe=""), quote_plus(secret)}
        for b64 in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            forms |= {b64.decode(), b64.decode().rstrip("=")}
    forms |= {_HEX.sub(lambda m: m.group().lower(), f) for f in list(forms)}
    return {f for f in forms if len(f) >= SHORTEST}


def _header_secrets(request: HttpRequest) -> set[str]:
    """The credential values a request carries: sensitive headers (whole, and after an auth scheme such as
    `Basic `) and its secret body fields (Pipwave's `api_key`)."""
    found: set[str] = set()
    for name, value in request.headers:
        if name.lower() in SENSITIVE_HEADERS:
            found.add(value)
            _, sep, rest = value.partition(" ")
            if sep and rest:
                found.add(rest)
    if request.secret_fields and request.body:
        try:
            obj = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            obj = None
        if isinstance(obj, dict):
            found |= {str(obj[k]) for k in request.secret_fields if isinstance(obj.get(k), str | int)}
    return found


class Redactor:
    """Masks known credentials in text. Immutable: `learn` returns a new one when a request carries a
    credential not known yet (a Basic header built from three fields, say)."""

    __slots__ = ("_forms", "_known")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._known = frozenset(s for s in secrets if isinstance(s, str) and len(s) >= SHORTEST)
        forms: set[str] = set()
        for s in self._known:
            forms |= encodings(s)
        # Longest first: a form that contains another (the base64 of "token@merchant:secret" and the token) is
        # masked whole, not left with a hole in it.
        self._forms = tuple(sorted(forms, key=lambda f: (-len(f), f)))

    @classmethod
    def of(cls, credentials: Any) -> Redactor:
        """A redactor for every `Secret` (and every field kept out of repr) of an attrs `Credentials`."""
        secrets: list[str] = []
        if attrs.has(type(credentials)):
            for f in attrs.fields(type(credentials)):
                value = getattr(credentials, f.name)
                if isinstance(value, Secret):
                    secrets.append(value.reveal())
                elif not f.repr and isinstance(value, str):
                    secrets.append(value)
        return cls(secrets)

    def learn(self, request: HttpRequest) -> Redactor:
        new = _header_secrets(request) - self._known
        return self if not new else Redactor(self._known | new)

    def text(self, value: str) -> str:
        for form in self._forms:
            if form in value:
                value = value.replace(form, MASK)
        return value

    def maybe(self, value: str | None) -> str | None:
        return None if value is None else self.text(value)

    def error(self, exc: ProviderError) -> ProviderError:
        """`exc` with every text field masked, in place (its type and extra fields are kept)."""
        exc.reason = self.text(exc.reason)
        exc.title, exc.detail, exc.error_id = self.maybe(exc.title), self.maybe(exc.detail), self.maybe(exc.error_id)
        exc.args = tuple(self.text(a) if isinstance(a, str) else a for a in exc.args)
        return exc

    def event(self, event: Event) -> Event:
        if event.reason is None or self.text(event.reason) == event.reason:
            return event
        return attrs.evolve(event, reason=self.text(event.reason))

    def remote(self, status: RemoteStatus) -> RemoteStatus:
        """The provider's own strings in a read-back (its state, its currency) masked."""
        state, currency = self.text(status.state), self.maybe(status.currency)
        if (state, currency) == (status.state, status.currency):
            return status
        return attrs.evolve(status, state=state, currency=currency)

    def __repr__(self) -> str:
        return f"Redactor({len(self._known)} credential(s))"
