"""Secrets never appear in a repr, a str, an exception or a log record.

Every provider's credentials carry long, recognizable secret strings (provider_cases.SECRETS). Every request
every module builds, every error they raise and everything logged while building, sending (through a real
httpx.Client) and parsing is scanned for them. The raw request headers DO hold them - they must, to
authenticate - which shows the scan finds a secret where one is.
"""

from __future__ import annotations

import base64
import copy
import html
import logging
import pickle
import urllib.parse
from datetime import timedelta

import attrs
import httpx
import orjson
import pytest
from provider_cases import (
    BAMBORA_CREDS,
    BAMBORA_SECRET,
    BAMBORA_TOKEN,
    HELLGATE_CREDS,
    HELLGATE_ID,
    HELLGATE_KEY,
    PIPWAVE_CREDS,
    PIPWAVE_KEY,
    PIPWAVE_SECRET,
    SECRETS,
    T0,
    TS,
    VIPPS_CREDS,
    VIPPS_SUBKEY,
    VIPPS_TOKEN,
    all_requests,
    as_httpx,
    authorized,
    response,
)

import capstate
from capstate.providers import HttpRequest, HttpResponse, RequestError, Secret, bambora, hellgate, pipwave, vipps
from capstate.providers.client import CaptureClient

CREDENTIALS = [VIPPS_CREDS, BAMBORA_CREDS, HELLGATE_CREDS, PIPWAVE_CREDS]


def leaks(text: str) -> list[str]:
    """The secrets (or their Basic-auth encoding) found in `text`."""
    found = [s for s in SECRETS if s in text]
    basic = BAMBORA_CREDS.authorization().removeprefix("Basic ")
    return found + ([basic] if basic in text else [])


@pytest.mark.parametrize("creds", CREDENTIALS, ids=lambda c: type(c).__module__.rsplit(".", 1)[-1])
def test_credentials_never_show_their_secrets(creds: object) -> None:
    views = [repr(creds), str(creds), f"{creds}", f"{creds!r}", repr(attrs.asdict(creds)),  # type: ignore[arg-type]
             repr(attrs.astuple(creds)), repr(attrs.evolve(creds))]  # type: ignore[arg-type]
    for view in views:
        assert leaks(view) == [], view
    with pytest.raises(TypeError):
        pickle.dumps(creds)
    assert copy.deepcopy(creds) == creds  # copies share the immutable secret; nothing is written out


def test_a_secret_masks_itself_everywhere() -> None:
    s = Secret("hunter2-very-secret")
    assert "hunter2" not in f"{s} {s!r} {s!s} {s:>40} {[s]} {({'k': s})}"
    assert s.reveal() == "hunter2-very-secret" and s == Secret("hunter2-very-secret") and s != "hunter2-very-secret"
    with pytest.raises(TypeError):
        hash(s)


def test_every_request_is_redacted_in_repr_and_redacted_view() -> None:
    raw_hits = 0
    for name, request in all_requests():
        raw = "".join(v for _, v in request.headers) + request.body.decode()
        raw_hits += bool(leaks(raw))
        red = request.redacted()
        for view in (repr(request), str(request), red.url, repr(red.headers), red.body.decode(), repr(red)):
            assert leaks(view) == [], (name, view)
        # the redacted view keeps everything else: a curl rendering of it is still the real request
        assert (red.method, red.url) == (request.method, request.url)
        assert [k for k, _ in red.headers] == [k for k, _ in request.headers]
    assert raw_hits == 16  # every request authenticates, so every raw request holds a secret


def test_response_headers_are_redacted_in_repr() -> None:
    answer = HttpResponse(401, {"Authorization": f"Bearer {VIPPS_TOKEN}", "WWW-Authenticate": "Bearer"}, b"")
    assert VIPPS_TOKEN not in repr(answer) and answer.headers["authorization"] == f"Bearer {VIPPS_TOKEN}"


def test_errors_never_carry_secrets() -> None:
    errors: list[BaseException] = []
    vp = authorized("vipps", "order-10001", 100000, "NOK")
    for bad in (f"{VIPPS_TOKEN}\r\n", f"{VIPPS_TOKEN}\x00"):
        creds = vipps.Credentials(access_token=bad, subscription_key=bad, merchant_serial_number="1234")
        with pytest.raises(RequestError) as err:
            vipps.build_get(vp, creds)
        errors.append(err.value)
    with pytest.raises(RequestError) as err:
        pipwave.build_requery(authorized("pipwave", "ORDER-1", 100, "MYR"),
                              pipwave.Credentials(api_key=PIPWAVE_KEY * 4, api_secret=PIPWAVE_SECRET), timestamp=TS)
    errors.append(err.value)
    with pytest.raises(RequestError) as err:
        bambora.build_get(authorized("bambora", "o-1", 100, "EUR"),
                          bambora.Credentials(access_token="tok:en", merchant_number="T1",
                                              secret_token=SECRETS[3]))
    errors.append(err.value)
    for module in (vipps, bambora, hellgate, pipwave):
        for status in (400, 401, 403, 409, 500, 502):
            errors.append(module.parse_error(response(status, {"type": "x", "title": "t", "status": "401"})))
    with pytest.raises(capstate.SignatureError) as sig:
        vipps.verify_webhook(secret=SECRETS[0], method="POST", path_and_query="/", body=b"{}", now=T0,
                             headers={"x-ms-date": "Mon, 05 Jan 2026 12:00:00 GMT", "host": "h",
                                      "x-ms-content-sha256": vipps.content_hash(b"{}"),
                                      "authorization": "HMAC-SHA256 SignedHeaders=x-ms-date;host;"
                                                       "x-ms-content-sha256&Signature=AAAA"})
    errors.append(sig.value)
    with pytest.raises(capstate.SignatureError) as sig:
        pipwave.verify_ipn({"signature": "0" * 40, "timestamp": TS, "api_key": PIPWAVE_KEY}, PIPWAVE_CREDS,
                           now=T0, tolerance=timedelta(minutes=5))
    errors.append(sig.value)
    for e in errors:
        assert leaks(f"{e} {e!r} {e.args!r} {vars(e)!r}") == [], e


def test_log_records_never_carry_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("capstate.test")
    for name, request in all_requests():
        log.info("built %s: %r", name, request)  # the natural way to log a request: its repr

        def answer(wire: httpx.Request) -> httpx.Response:
            return httpx.Response(500, json={"title": "Internal error", "status": 500}, request=wire)

        with httpx.Client(transport=httpx.MockTransport(answer)) as client:
            reply = client.send(as_httpx(request))
        module = {"vipps": vipps, "bambora": bambora, "hellgate": hellgate, "pipwave": pipwave}[name.split()[0]]
        err = module.parse_error(HttpResponse(reply.status_code, reply.headers.items(), reply.content))
        log.warning("provider error: %s", err)
        log.debug("provider error repr: %r", err)
    assert len(caplog.records) >= 48
    for record in caplog.records:
        assert leaks(record.getMessage()) == [], record.getMessage()
        assert leaks(repr(record.args)) == [], record.args


def test_httprequest_equality_ignores_nothing_that_goes_on_the_wire() -> None:
    # Redaction is a view: two requests differing only in a secret are different requests.
    _, a = next(iter(all_requests()))
    b = HttpRequest(a.method, a.url, tuple((k, v + "x") if k == "Authorization" else (k, v) for k, v in a.headers),
                    a.body)
    assert a != b and repr(a) == repr(b)


def test_a_body_that_cannot_be_taken_apart_is_hidden_whole() -> None:
    request = HttpRequest("POST", "https://api.pipwave.com/payment", (("x-api-key", PIPWAVE_KEY),),
                          f"api_key={PIPWAVE_KEY}&action=requery".encode(), secret_fields=("api_key",))
    assert leaks(repr(request)) == [] and request.redacted().body == b"[REDACTED]"


@pytest.mark.parametrize("url", ["https://merchant:{pw}@api.vipps.no", "http://merchant:{pw}@10.0.0.1",
                                 "https://merchant:{pw}@api.vipps.no/ x", "https://m:{pw}@[::1",
                                 "https://merchant:{pw}@api.vipps.no?", "https://{pw}@api.vipps.no",
                                 "ftp://merchant:{pw}@api.vipps.no"])
def test_a_base_url_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    # Each refusal quoted the URL, userinfo and all: "'https://merchant:<password>@api.vipps.no' must be
    # scheme://host[:port][/path] only", printed by `capstate capture` on stderr (found in the second review).
    password = "pw-9f3e"  # short, as URL passwords often are: a long one was cut off by the 40-character preview
    bad = url.format(pw=password)
    cases = [lambda: vipps.Credentials(access_token="t", subscription_key="s", merchant_serial_number="1234",
                                       base_url=bad),
             lambda: bambora.Credentials(access_token="t", merchant_number="T1", secret_token="s", base_url=bad),
             lambda: hellgate.Credentials(api_key="k", base_url=bad),
             lambda: pipwave.Credentials(api_key="k", api_secret="s", url=bad)]
    for case in cases:
        with pytest.raises(RequestError) as err:
            case()
        assert err.value.field in {"base_url", "url"}
        assert password not in f"{err.value} {err.value!r} {err.value.args!r}", err.value


def _echoes(secret: str) -> str:
    forms = (secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
             orjson.dumps(secret).decode().replace("/", "\\/"), html.escape(secret),
             base64.b64encode(secret.encode()).decode())
    return " ".join(f"<{form}>" for form in forms)


BASIC = BAMBORA_CREDS.authorization().removeprefix("Basic ")
OWN = {"vipps": (VIPPS_CREDS, "order-10001", "NOK", (VIPPS_TOKEN, VIPPS_SUBKEY)),
       "bambora": (BAMBORA_CREDS, "ORDER-1", "DKK", (BAMBORA_TOKEN, BAMBORA_SECRET, BASIC)),
       "hellgate": (HELLGATE_CREDS, HELLGATE_ID, "EUR", (HELLGATE_KEY,)),
       "pipwave": (PIPWAVE_CREDS, "ORDER-1", "MYR", (PIPWAVE_KEY, PIPWAVE_SECRET))}


@pytest.mark.parametrize("name", list(OWN))
def test_the_executor_masks_credentials_a_server_echoes(name: str, caplog: pytest.LogCaptureFixture) -> None:
    # Before: errors, failure reasons and log records carried whatever the provider (or a proxy) echoed.
    caplog.set_level(logging.DEBUG)
    creds, reference, currency, secrets = OWN[name]
    echoed = " ".join(_echoes(s) for s in secrets)
    payment = authorized(name, reference, 1000, currency)

    def answer(wire: httpx.Request) -> httpx.Response:
        # Pipwave answers its errors with HTTP 200 and a status code in the body (appendix/api_status_code.md).
        body = {"type": "x", "title": echoed, "detail": echoed, "message": echoed, "code": echoed, "status": "9001"}
        return httpx.Response(200 if name == "pipwave" else 400, json=body, request=wire)

    with httpx.Client(transport=httpx.MockTransport(answer)) as http, \
            CaptureClient(name, creds, client=http, clock=lambda: T0) as client:
        with pytest.raises(capstate.ProviderError) as err:
            client.capture(payment, capstate.Capture(at=T0, amount=100, key="k-1"))
        response = client._core.provider.received(HttpResponse(400, {}, echoed.encode()))
    e = err.value
    shown = [f"{e} {e!r} {e.args!r} {vars(e)!r}", repr(response), *(r.getMessage() for r in caplog.records)]
    assert "[REDACTED]" in shown[0]
    for text in shown:
        for secret in secrets:
            for form in _echoes(secret).split(" "):
                assert form not in text, (form, text)


def test_a_redactor_ignores_values_too_short_to_tell_from_text() -> None:
    from capstate.providers._redact import Redactor

    r = Redactor(["ok", "s3cr3t-value"])
    assert r.text("ok: s3cr3t-value") == "ok: [REDACTED]"
