"""Vipps MobilePay Webhooks: verify the HMAC-SHA256 signature of an inbound notification. Pure: `now` is an
argument, never read from a clock.

The scheme (Azure-style), from vippsas/webhooks-api request-authentication.md (research/providers.md §2.8):

- headers `x-ms-date`, `x-ms-content-sha256` = base64(SHA-256(raw body)), `host`, and
  `Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<sig>`;
- string to sign: `METHOD + "\\n" + pathAndQuery + "\\n" + x-ms-date + ";" + host + ";" + contentHash`;
- `sig` = base64(HMAC-SHA256(key = the UTF-8 bytes of the secret AS GIVEN, not base64-decoded)).

"Verify the content hash as well": a valid signature over a hash that does not match the body proves
nothing about the body. Every comparison uses `hmac.compare_digest`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

from ..._errors import CommandError, SignatureError
from .._http import Headers, Secret

SIGNED_HEADERS = "x-ms-date;host;x-ms-content-sha256"
SCHEME = "HMAC-SHA256"
DEFAULT_TOLERANCE = timedelta(minutes=5)


def content_hash(body: bytes) -> str:
    """base64(SHA-256(body)): the `x-ms-content-sha256` value."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def signature(secret: str | Secret, *, method: str, path_and_query: str, date: str, host: str, body_hash: str) -> str:
    """The base64 HMAC-SHA256 signature Vipps puts in `Authorization` for these inputs."""
    key = (secret.reveal() if isinstance(secret, Secret) else secret).encode("utf-8")
    message = f"{method.upper()}\n{path_and_query}\n{date};{host};{body_hash}".encode()
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode("ascii")


def _signature_from(authorization: str) -> str:
    scheme, _, params = authorization.partition(" ")
    if scheme != SCHEME:
        raise SignatureError(f"Authorization scheme is {scheme[:20]!r}, not {SCHEME}", provider="vipps")
    fields: dict[str, str] = {}
    for part in params.split("&"):
        name, sep, value = part.partition("=")
        if not sep:
            raise SignatureError("Authorization parameters are not name=value pairs", provider="vipps")
        fields[name.strip()] = value.strip()
    if fields.get("SignedHeaders") != SIGNED_HEADERS:
        raise SignatureError(f"SignedHeaders must be {SIGNED_HEADERS!r}", provider="vipps")
    sig = fields.get("Signature")
    if not sig:
        raise SignatureError("Authorization has no Signature", provider="vipps")
    return sig


def verify_webhook(*, secret: str | Secret, method: str, path_and_query: str,
                   headers: Headers | Mapping[str, str] | Iterable[tuple[str, str]], body: bytes,
                   now: datetime, tolerance: timedelta = DEFAULT_TOLERANCE) -> None:
    """Accept a webhook only if its content hash, signature and date all check out.

    `path_and_query` is the request target exactly as received (`/hook?x=1`); `headers` the received
    headers (any case); `now` a timezone-aware datetime; `tolerance` how far `x-ms-date` may be from `now`
    either way. Returns None; raises SignatureError saying which check failed (never the secret).
    """
    if now.utcoffset() is None:
        raise CommandError(f"now must be a timezone-aware datetime, got {now!r}")
    h = headers if isinstance(headers, Headers) else Headers(headers)
    missing = [n for n in ("x-ms-date", "x-ms-content-sha256", "host", "authorization") if not h.get(n)]
    if missing:
        raise SignatureError(f"missing header {missing[0]}", provider="vipps")
    if not isinstance(body, bytes | bytearray):
        raise SignatureError("the body must be the raw bytes received", provider="vipps")
    claimed_hash = h["x-ms-content-sha256"]
    if not hmac.compare_digest(content_hash(bytes(body)).encode(), claimed_hash.encode("utf-8", "replace")):
        raise SignatureError("x-ms-content-sha256 does not match the body", provider="vipps")
    claimed_sig = _signature_from(h["authorization"])
    expected = signature(secret, method=method, path_and_query=path_and_query, date=h["x-ms-date"], host=h["host"],
                         body_hash=claimed_hash)
    if not hmac.compare_digest(expected.encode(), claimed_sig.encode("utf-8", "replace")):
        raise SignatureError("the HMAC-SHA256 signature does not match", provider="vipps")
    try:
        sent = parsedate_to_datetime(h["x-ms-date"])
    except (TypeError, ValueError):
        raise SignatureError(f"x-ms-date {h['x-ms-date'][:40]!r} is not an HTTP date", provider="vipps") from None
    if sent.utcoffset() is None:
        raise SignatureError("x-ms-date has no time zone", provider="vipps")
    skew = abs(now - sent)
    if skew > tolerance:
        raise SignatureError(f"x-ms-date is {skew} away from now, beyond the tolerance {tolerance}",
                             provider="vipps")


def signed_headers(secret: str | Secret, *, method: str, path_and_query: str, host: str, body: bytes,
                   now: datetime) -> tuple[tuple[str, str], ...]:
    """The headers Vipps sends with a webhook whose raw body is `body`: the sending side of `verify_webhook`
    (request-authentication.md). `host` is the Host header as the receiver will see it (`host:port` when the
    URL has a port); `now` a timezone-aware datetime, written as the HTTP date `x-ms-date`."""
    if now.utcoffset() is None:
        raise CommandError(f"now must be a timezone-aware datetime, got {now!r}")
    date = format_datetime(now.astimezone(UTC), usegmt=True)
    body_hash = content_hash(body)
    sig = signature(secret, method=method, path_and_query=path_and_query, date=date, host=host, body_hash=body_hash)
    return (("x-ms-date", date), ("x-ms-content-sha256", body_hash), ("host", host),
            ("Authorization", f"{SCHEME} SignedHeaders={SIGNED_HEADERS}&Signature={sig}"))
