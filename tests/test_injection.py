"""Injection suite: references, keys and credentials built to move a request elsewhere or smuggle a header.

For every provider and every hostile string, the outcome is one of two, never a third:
- a RequestError naming the field (nothing was built, nothing can be sent), or
- a request whose scheme, host, path and query are exactly the intended ones, with the string as ONE
  percent-encoded path segment (or, for Pipwave, verbatim inside the JSON body), and whose headers are
  exactly the intended ones. This is checked on the request as httpx parses it AND as it arrives through a
  real httpx.Client (DESIGN.md §5: "/, ?, #, .. and CR/LF can never change the request target or inject a
  header").
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote

import httpx
import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from provider_cases import (
    BAMBORA_CREDS,
    HELLGATE_CREDS,
    HELLGATE_ID,
    PIPWAVE_CREDS,
    T0,
    TS,
    VIPPS_CREDS,
    sent_through_httpx,
)

import capstate
from capstate import Capture
from capstate.providers import HttpRequest, RequestError, bambora, hellgate, pipwave, vipps

HOSTILE = [
    "../", "../../admin", "..", ".", "./x", "a/b", "/etc/passwd", "a\\b", "a?x=1", "?x=", "order-1?capture=all",
    "a#frag", "#", "%2F", "a%2Fb", "%2e%2e", "..%2F", "%252F", "a b", " ", "ü", "订单-12345678", "a\r\nX-Evil: 1",
    "order-1\r\n", "\n", "a\x00b", "a\tb", "x" * 2001, "a\uff0fb", "\uff0e\uff0e", "a\u2028b", "\x7f", "a\x85b",
    "http://evil.example/", "@evil.example", "order-1;x=1", "",
]

# provider -> (build a capture for this reference, the URL that reference must produce if it is accepted)
CURRENCY = {"vipps": "NOK", "bambora": "EUR", "hellgate": "EUR", "pipwave": "MYR"}


def _payment(provider: str, reference: str) -> capstate.Payment:
    # Payment.new never validates: the builder must be the last line of defence.
    p = capstate.Payment.new(capstate.load_spec(provider), reference)
    return capstate.Payment(p.spec, reference, "authorized", CURRENCY[provider], authorized=100000)


def build(provider: str, reference: str, key: str | None = "key-1") -> HttpRequest:
    p = _payment(provider, reference)
    cmd = Capture(at=T0, amount=10000, currency=CURRENCY[provider], key=key)
    if provider == "vipps":
        return vipps.build_capture(p, cmd, VIPPS_CREDS)
    if provider == "bambora":
        return bambora.build_capture(p, cmd, BAMBORA_CREDS)
    if provider == "hellgate":
        return hellgate.build_capture(p, cmd, HELLGATE_CREDS)
    return pipwave.build_capture(p, cmd, PIPWAVE_CREDS, timestamp=TS)


EXPECTED: dict[str, Callable[[str], str]] = {
    "vipps": lambda r: f"https://apitest.vipps.no/epayment/v1/payments/{quote(r, safe='')}/capture",
    "bambora": lambda r: f"https://api-beta.bambora.com/payments/{quote(r, safe='')}/capture/",
    "hellgate": lambda r: f"https://sandbox.hellgate.io/payments/{quote(r, safe='')}/capture",
    "pipwave": lambda r: "https://staging-api.pipwave.com/payment",
}
HEADER_NAMES = {
    "vipps": ["authorization", "ocp-apim-subscription-key", "merchant-serial-number", "idempotency-key",
              "content-type"],
    "bambora": ["authorization", "api-version", "content-type"],
    "hellgate": ["x-api-key", "content-type", "x-idempotency-key"],
    "pipwave": ["x-api-key", "content-type"],
}


def assert_safe(provider: str, reference: str, key: str | None = "key-1") -> str:
    """Build, then check the two allowed outcomes. Returns "refused" or "built"."""
    try:
        request = build(provider, reference, key)
    except RequestError as err:
        assert err.field in {"reference", "txn_id", "key"}, err
        assert "\r" not in str(err) and "\n" not in str(err) and len(str(err)) < 300
        return "refused"
    expected = httpx.URL(EXPECTED[provider](reference))
    for url in (httpx.URL(request.url), sent_through_httpx(request).url):
        assert (url.scheme, url.host, url.port, url.raw_path, url.query, url.fragment) == (
            expected.scheme, expected.host, expected.port, expected.raw_path, b"", "")
    names = [k.lower() for k, _ in request.headers]
    assert names == HEADER_NAMES[provider]
    assert all("\r" not in v and "\n" not in v and "\x00" not in v for _, v in request.headers)
    wire = sent_through_httpx(request)
    assert sorted(set(wire.headers.keys()) - {"host", "content-length"}) == sorted(names)
    if provider == "pipwave":
        assert orjson.loads(request.body)["txn_id"] == reference
    else:
        # .../payments/{segment}/capture (Bambora: .../capture/, hence the trailing empty part)
        parts = url.raw_path.decode().split("/")
        segment = parts[-3] if provider == "bambora" else parts[-2]
        assert segment == quote(reference, safe="")
    return "built"


@pytest.mark.parametrize("reference", HOSTILE, ids=[repr(h)[:30] for h in HOSTILE])
@pytest.mark.parametrize("provider", ["vipps", "bambora", "hellgate", "pipwave"])
def test_hostile_references(provider: str, reference: str) -> None:
    outcome = assert_safe(provider, reference)
    # Strings that would move a URL target are refused wherever they would reach a path.
    target_movers = any(c in reference for c in "/\\?#%\r\n\x00") or reference in {"", ".", ".."} or (
        "\uff0f" in reference or reference == "\uff0e\uff0e")
    if provider != "pipwave" and target_movers:
        assert outcome == "refused"
    if len(reference) > 2000 or any(c in reference for c in "\r\n\x00\x7f\x85\u2028"):
        assert outcome == "refused"  # every provider: too long for any rule, or a control character


def test_only_bambora_accepts_spaces_and_unicode_and_encodes_them() -> None:
    # Bambora's reference has no documented charset (swagger: maxLength 2000); Vipps is ^[a-zA-Z0-9-]{8,50}$
    # and Hellgate's a UUID, so both refuse.
    for ref in ("a b", "ü", "订单-12345678"):
        assert assert_safe("bambora", ref) == "built"
        assert assert_safe("vipps", ref) == "refused"
        assert assert_safe("hellgate", ref) == "refused"
    assert build("bambora", "a b").url.endswith("/payments/a%20b/capture/")
    assert build("bambora", "ü").url.endswith("/payments/%C3%BC/capture/")


def test_legitimate_references_are_built() -> None:
    assert assert_safe("vipps", "acme-shop-123-order123abc") == "built"
    assert assert_safe("hellgate", HELLGATE_ID) == "built"
    assert assert_safe("bambora", "order-1.v2_x~y") == "built"
    assert assert_safe("pipwave", "ORDER-1/2?#") == "built"  # in the JSON body, never in the URL


@pytest.mark.parametrize("key", ["a\r\nX-Evil: 1", "k\n", "k\x00", "é", "k" * 256, "", " k", "k ", "a\tb"])
@pytest.mark.parametrize("provider", ["vipps", "hellgate"])
def test_hostile_idempotency_keys_never_inject_a_header(provider: str, key: str) -> None:
    reference = "acme-shop-123-order123abc" if provider == "vipps" else HELLGATE_ID
    assert assert_safe(provider, reference, key) == "refused"


@pytest.mark.parametrize("bad", ["tok\r\nX-Evil: 1", "tok\n", "tok\x00", "tøk", " tok"])
def test_hostile_credentials_never_inject_a_header(bad: str) -> None:
    vp = _payment("vipps", "acme-shop-123-order123abc")
    hp = _payment("hellgate", HELLGATE_ID)
    pp = _payment("pipwave", "ORDER-1")
    cases = [
        lambda: vipps.build_get(vp, vipps.Credentials(access_token=bad, subscription_key="s",
                                                      merchant_serial_number="1234")),
        lambda: vipps.build_get(vp, vipps.Credentials(access_token="t", subscription_key=bad,
                                                      merchant_serial_number="1234")),
        lambda: hellgate.build_get(hp, hellgate.Credentials(api_key=bad)),
        lambda: pipwave.build_requery(pp, pipwave.Credentials(api_key=bad, api_secret="s"), timestamp=TS),
        lambda: bambora.build_get(_payment("bambora", "o-1"),
                                  bambora.Credentials(access_token=bad, merchant_number="T1", secret_token="s")),
    ]
    for case in cases:
        with pytest.raises(RequestError) as err:
            case()
        assert bad not in str(err.value)


@pytest.mark.parametrize("url", ["https://api.vipps.no/?x=1", "https://api.vipps.no/#f", "ftp://api.vipps.no",
                                 "http://api.vipps.no", "https://user:pw@api.vipps.no", "https://api.vipps.no\r\n",
                                 "api.vipps.no", "https:// api.vipps.no",
                                 # an EMPTY query or fragment parses as none, yet swallowed the whole path:
                                 # "https://h#" + "/epayment/..." POSTed to "/" (found in the second review)
                                 "https://api.vipps.no?", "https://api.vipps.no/?", "https://api.vipps.no#",
                                 "https://api.vipps.no/#", "https://evil.example\\.api.vipps.no",
                                 "https://api.vipps.no/x/..", "https://api.vipps.no/../admin",
                                 "https://api.vipps.no/%2e%2e/admin", "https://api.vipps.no/./x"])
def test_base_urls_that_could_misroute_are_refused(url: str) -> None:
    with pytest.raises(RequestError, match="base_url"):
        vipps.Credentials(access_token="t", subscription_key="s", merchant_serial_number="1234", base_url=url)
    with pytest.raises(RequestError, match="url"):
        pipwave.Credentials(api_key="k", api_secret="s", url=url)


@pytest.mark.parametrize("url", ["https://api.vipps.no", "https://api.vipps.no/", "https://gw.example/vipps/",
                                 "http://127.0.0.1:4010", "https://gw.example/a.b/x..y"])
def test_plain_base_urls_still_build_exactly_their_path(url: str) -> None:
    creds = vipps.Credentials(access_token="t", subscription_key="s", merchant_serial_number="1234", base_url=url)
    request = vipps.build_get(_payment("vipps", "acme-shop-123-order123abc"), creds)
    wire = sent_through_httpx(request).url
    assert wire.query == b"" and wire.fragment == ""
    assert wire.raw_path.decode() == httpx.URL(url).path.rstrip("/") + "/epayment/v1/payments/acme-shop-123-order123abc"


def test_loopback_http_is_allowed_for_local_mocks() -> None:
    creds = vipps.Credentials(access_token="t", subscription_key="s", merchant_serial_number="1234",
                              base_url="http://127.0.0.1:4010/")
    assert vipps.build_get(_payment("vipps", "acme-shop-123-order123abc"), creds).url == (
        "http://127.0.0.1:4010/epayment/v1/payments/acme-shop-123-order123abc")


@given(reference=st.one_of(st.text(max_size=60), st.sampled_from(HOSTILE),
                           st.text(alphabet="./\\?#%&=;@:+ \r\n\t\x00-aZ9\uff0f\uff0e", max_size=12)),
       provider=st.sampled_from(["vipps", "bambora", "hellgate", "pipwave"]))
def test_any_string_is_refused_or_lands_in_exactly_one_segment(reference: str, provider: str) -> None:
    assert_safe(provider, reference)


@pytest.mark.parametrize(("method", "url", "headers"), [
    ("POST", "https://h.example/a", (("X-Key", "v\r\nX-Evil: 1"),)),
    ("POST", "https://h.example/a", (("X-Key\r\nX-Evil", "v"),)),
    ("POST", "https://h.example/a", (("X-Key", "v\x00"),)),
    ("POST", "https://h.example/a", (("X-Key", "ü"),)),
    ("POST", "https://h.example/a b", ()),
    ("POST", "https://h.example/a\r\nHost: evil", ()),
    ("PO ST", "https://h.example/a", ()),
])
def test_an_http_request_value_cannot_hold_a_split_header_or_target(method: str, url: str,
                                                                    headers: tuple[tuple[str, str], ...]) -> None:
    # Defence in depth: even an HttpRequest built by hand, not by a provider module, is refused.
    with pytest.raises(RequestError):
        HttpRequest(method, url, headers, b"")
