"""Every provider-side parser, fed what a provider, a proxy or an attacker could send, answers soundly or raises
only its documented typed error, never a KeyError/TypeError/ValueError/UnicodeEncodeError:

- each provider's response parsers (parse_capture/get/cancel/refund/refresh/requery): ProviderError, and a
  RemoteStatus carries only integer minor units (0..int64) or None; `parse_error` always RETURNS a ProviderError;
- the Vipps event export (`records`, `to_canonical`): BadRecord / EventError, never an exception;
- Vipps webhooks and Pipwave IPNs: SignatureError for anything not signed as received (a signed IPN whose content
  is not as documented: ProviderError), a typed `Ipn` otherwise;
- request builders given text JSON cannot carry: RequestError.

The shapes are the documented ones (research/providers.md §1.3/1.5 Bambora PaymentResponse, §2.3/2.5 Vipps
ModificationResponse and GetPaymentResponse, §3.3 Hellgate payment object, §4.6 Pipwave requery).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from provider_cases import (
    BAMBORA_CREDS,
    HELLGATE_CREDS,
    HELLGATE_ID,
    PIPWAVE_CREDS,
    PIPWAVE_KEY,
    PIPWAVE_SECRET,
    T0,
    TS,
    VIPPS_CREDS,
    authorized,
    captured,
)

import capstate
from capstate import Cancel, Capture, CommandError, EventError, EventType, ProviderError, Refund, SignatureError
from capstate._money import INT64_MAX
from capstate.providers import HttpResponse, RemoteStatus, RequestError, bambora, hellgate, pipwave, vipps
from capstate.providers.vipps import events as vipps_events

# Values a money field must refuse, drawn often: negative, fractional, beyond int64, numbers as strings.
AMOUNTISH = st.sampled_from([-1, -100, 1.5, 100.0, 2**63, 2**64 - 1, "-1.00", "1e3", "1000000000.00", "10.001",
                             "100", 0])
JSON = AMOUNTISH | AMOUNTISH | st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["", "NOK", "EUR", "MYR", "DKK", "ZZZ", "10.00", "-1.00", "1e3", "Captured", "capturing",
                       "voided", "10", "25", "200", "AUTHORIZED"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8)


def _amount(value: int, currency: str) -> dict[str, Any]:
    return {"currency": currency, "value": value}


VIPPS = authorized("vipps", "order-10001", 100000, "NOK")
VIPPS_BODY = {"reference": "order-10001", "state": "AUTHORIZED", "amount": _amount(100000, "NOK"),
              "pspReference": "p", "aggregate": {"authorizedAmount": _amount(100000, "NOK"),
                                                 "capturedAmount": _amount(1000, "NOK"),
                                                 "cancelledAmount": _amount(0, "NOK"),
                                                 "refundedAmount": _amount(0, "NOK")}}
BAMBORA = authorized("bambora", "ref-1", 1000, "DKK")
BAMBORA_BODY = {"payment": "ref-1", "state": "Captured", "currency": "DKK", "amount": 1000,
                "captures": [{"amount": 1000}], "refunds": [], "operationInProgress": False}
HELLGATE = authorized("hellgate", HELLGATE_ID, 1000, "EUR")
HELLGATE_BODY = {"id": HELLGATE_ID, "status": "captured", "currency_code": "EUR",
                 "amount": {"authorized": 1000, "captured": 1000, "refunded": 0},
                 "failure_reasons": [{"classifier": "c", "message": "m"}]}
PIPWAVE = authorized("pipwave", "ORDER-1", 1000, "MYR")
PIPWAVE_BODY = {"status": "200", "message": "ok", "currency_code": "MYR", "transaction_status": "10",
                "amount": "10.00", "final_amount": "10.00", "total_amount": "10.00", "require_capture": False}


def _in_flight(p: capstate.Payment) -> capstate.Payment:
    return capstate.apply(p, capstate.Event(p.reference, EventType.CAPTURE_REQUESTED, T0, 1000))


def _calls(name: str) -> tuple[dict[str, Any], list[Callable[[HttpResponse], object]]]:
    cap = Capture(at=T0, amount=1000, currency=None, key="k-1")
    if name == "vipps":
        paid = captured(VIPPS, 1000)
        return VIPPS_BODY, [lambda r: vipps.parse_capture(r, VIPPS, Capture(at=T0, amount=1000, key="k-1")),
                            lambda r: vipps.parse_get(r, VIPPS), vipps.parse_error,
                            lambda r: vipps.parse_cancel(r, paid, Cancel(at=T0, key="k-2")),
                            lambda r: vipps.parse_refund(r, paid, Refund(at=T0, amount=100, key="k-3"))]
    if name == "bambora":
        paid = captured(BAMBORA, 1000)
        return BAMBORA_BODY, [lambda r: bambora.parse_capture(r, BAMBORA, cap), lambda r: bambora.parse_get(r, BAMBORA),
                              bambora.parse_error, lambda r: bambora.parse_cancel(r, BAMBORA, Cancel(at=T0)),
                              lambda r: bambora.parse_refund(r, paid, Refund(at=T0, amount=100))]
    if name == "hellgate":
        paid = captured(HELLGATE, 1000)
        return HELLGATE_BODY, [lambda r: hellgate.parse_capture(r, HELLGATE, cap),
                               lambda r: hellgate.parse_get(r, HELLGATE), hellgate.parse_error,
                               lambda r: hellgate.parse_refresh(r, _in_flight(HELLGATE), at=T0),
                               lambda r: hellgate.parse_cancel(r, HELLGATE, Cancel(at=T0)),
                               lambda r: hellgate.parse_refund(r, paid, Refund(at=T0, amount=100))]
    paid = captured(PIPWAVE, 1000)
    return PIPWAVE_BODY, [lambda r: pipwave.parse_capture(r, PIPWAVE, cap), lambda r: pipwave.parse_requery(r, PIPWAVE),
                          pipwave.parse_error, lambda r: pipwave.parse_cancel(r, PIPWAVE, Cancel(at=T0)),
                          lambda r: pipwave.parse_refund(r, paid, Refund(at=T0, amount=100))]


def _check(result: object) -> None:
    if isinstance(result, RemoteStatus):
        for name in ("authorized", "captured", "cancelled", "refunded"):
            value = getattr(result, name)
            assert value is None or (type(value) is int and 0 <= value <= INT64_MAX), (name, value)
    if isinstance(result, tuple):
        for event in result:
            assert event.amount is None or type(event.amount) is int


@pytest.mark.parametrize("provider", ["vipps", "bambora", "hellgate", "pipwave"])
@given(status=st.sampled_from([200, 200, 201, 202, 400, 409, 429, 500, 502]), where=st.data(), value=JSON)
def test_any_json_in_any_field_gives_a_typed_error_or_a_sound_answer(provider: str, status: int, where: st.DataObject,
                                                                      value: Any) -> None:
    base, calls = _calls(provider)
    body: Any = dict(base)
    path = where.draw(st.sampled_from([None, *[(k,) for k in base],
                                       *[(k, k2) for k, v in base.items() if isinstance(v, dict) for k2 in v]]))
    if path is None:
        body = value
    elif len(path) == 1:
        body[path[0]] = value
    else:
        body[path[0]] = {**body[path[0]], path[1]: value}
    try:
        raw = orjson.dumps(body)
    except TypeError:  # beyond 64 bits: orjson will not write it; the reader's side is checked below
        raw = repr(body).encode()
    _run_all(calls, HttpResponse(status, {"Content-Type": "application/json"}, raw))


def _run_all(calls: list[Callable[[HttpResponse], object]], response: HttpResponse) -> None:
    """Each parser answers soundly or raises ProviderError; `parse_error` (the third) always RETURNS one."""
    for i, call in enumerate(calls):
        if i == 2:
            assert isinstance(call(response), ProviderError)
            continue
        with contextlib.suppress(ProviderError):
            _check(call(response))


# Bodies no documented answer has: arbitrary bytes (a proxy's page, a cut-off body, invalid UTF-8), under any
# status and media type.
RAW = st.binary(max_size=80) | st.sampled_from([b"", b"<html>502 Bad Gateway</html>", b"{", b"[]", b"null", b"\xff\xfe",
                                                 b'{"status": "200"', b'"\\ud800"', b'{"status": 200}', b"OK"])


@pytest.mark.parametrize("provider", ["vipps", "bambora", "hellgate", "pipwave"])
@given(status=st.integers(100, 599) | st.sampled_from([200, 201, 204]), body=RAW,
       media=st.sampled_from(["application/json", "text/html", "application/problem+json", ""]))
def test_any_bytes_under_any_status_give_a_typed_error_or_a_sound_answer(provider: str, status: int, body: bytes,
                                                                         media: str) -> None:
    _, calls = _calls(provider)
    _run_all(calls, HttpResponse(status, {"Content-Type": media} if media else {}, body))


# --------------------------------------------------------------------------------- text with odd characters

ODD = ["\ud800", "\udfff", "\x00", "\r\n", "\u2028", "\ufeff", "\U0001f4b8", "é", "%2F", "..", "/"]
TEXT = (st.text(max_size=16) | st.sampled_from(ODD)
        | st.builds(str.__add__, st.text(max_size=8), st.sampled_from(ODD)))


# ---------------------------------------------------------------------------------------- Vipps exports

EXPORT = [{"reference": "acme-no-0001", "pspReference": "1", "name": name, "amount": {"currency": "NOK", "value": v},
           "timestamp": ts, "idempotencyKey": key, "success": True}
          for name, v, ts, key in [("AUTHORIZED", 10000, "2026-01-05T10:00:00Z", None),
                                   ("CAPTURED", 4000, "2026-01-06T10:00:00.1234567Z", "k-1"),
                                   ("REFUNDED", 1000, "2026-01-07T10:00:00+01:00", "k-2")]]


def _export_bytes(data: st.DataObject) -> bytes:
    """A valid export (pretty, compact, or one PaymentEvent per line) with a field replaced, bytes cut off or
    inserted: the shapes a hand-edited, truncated or concatenated export takes."""
    events = [dict(e) for e in EXPORT]
    if data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(events) - 1))
        events[i][data.draw(st.sampled_from([*events[i], "paymentAction"]))] = data.draw(JSON | TEXT)
    form = data.draw(st.sampled_from(["pretty", "compact", "lines"]))
    try:
        if form == "lines":
            raw = b"".join(orjson.dumps(e) + b"\n" for e in events)
        else:
            raw = orjson.dumps(events, option=orjson.OPT_INDENT_2 if form == "pretty" else 0)
    except TypeError:  # a lone surrogate or an int beyond 64 bits: orjson will not write it
        raw = repr(events).encode("utf-8", "surrogatepass")
    cut = data.draw(st.integers(0, len(raw)))
    edit = data.draw(st.sampled_from(["none", "cut", "insert", "append"]))
    if edit == "cut":
        raw = raw[:cut]
    elif edit == "insert":
        inserted = data.draw(st.sampled_from([b"]", b"[", b"{", b'"', b",", b"\\", b"\n", b"\xef\xbb\xbf", b"\xff"]))
        raw = raw[:cut] + inserted + raw[cut:]
    elif edit == "append":
        raw += data.draw(st.sampled_from([b"\n" + raw, b"garbage", b"\n]", b",{}"]))
    return raw


def _check_records(raw: bytes) -> None:
    got = list(vipps_events.records(io.BytesIO(raw)))
    lines = raw.count(b"\n") + 1
    for line, rec in got:
        assert type(line) is int and 1 <= line <= lines + 1, (line, lines)
        assert isinstance(rec, dict | vipps_events.BadRecord)
        if isinstance(rec, dict):
            with contextlib.suppress(EventError):
                capstate.Event.from_dict(rec)


@given(data=st.data())
def test_vipps_exports_yield_records_or_bad_records_only(data: st.DataObject) -> None:
    _check_records(_export_bytes(data))


@given(raw=st.binary(max_size=200))
def test_any_bytes_as_a_vipps_export_yield_records_or_bad_records_only(raw: bytes) -> None:
    _check_records(raw)
    _check_records(b"[" + raw)


@given(value=JSON | TEXT)
def test_any_json_as_a_payment_event_is_canonical_none_or_an_event_error(value: Any) -> None:
    for obj in (value, {**EXPORT[1], "amount": value}, {**EXPORT[1], "timestamp": value}, {**EXPORT[0], "name": value}):
        try:
            out = vipps_events.to_canonical(obj)
        except EventError:
            continue
        assert out is None or isinstance(out, dict)


# ------------------------------------------------------------------------------------------------ webhooks

W_SECRET = "webhook-secret-0f3e"
W_BODY = b'{"msn":"123456","reference":"acme-no-0001","name":"CAPTURED"}'
W_NOW = T0


def _signed_webhook() -> dict[str, Any]:
    date = "Mon, 05 Jan 2026 12:00:00 GMT"
    digest = vipps.content_hash(W_BODY)
    sig = vipps.signature(W_SECRET, method="POST", path_and_query="/hook?x=1", date=date, host="merchant.example",
                          body_hash=digest)
    return {"method": "POST", "path_and_query": "/hook?x=1", "body": W_BODY,
            "headers": {"x-ms-date": date, "x-ms-content-sha256": digest, "host": "merchant.example",
                        "authorization": f"HMAC-SHA256 SignedHeaders={vipps.webhooks.SIGNED_HEADERS}&Signature={sig}"}}


def test_the_unchanged_webhook_verifies() -> None:
    vipps.verify_webhook(secret=W_SECRET, now=W_NOW, **_signed_webhook())


@given(where=st.sampled_from(["method", "path_and_query", "body", "x-ms-date", "x-ms-content-sha256", "host",
                              "authorization", "drop"]), text=TEXT, raw=RAW)
def test_a_changed_webhook_is_a_signature_error(where: str, text: str, raw: bytes) -> None:
    request = _signed_webhook()
    if where in ("method", "path_and_query"):
        request[where] = text
    elif where == "body":
        request["body"] = raw
    elif where == "drop":
        request["headers"] = {k: v for k, v in request["headers"].items() if k != text[:1]}
    else:
        request["headers"][where] = text
    unchanged = request == _signed_webhook() or (where == "method" and text.upper() == "POST")
    try:
        vipps.verify_webhook(secret=W_SECRET, now=W_NOW, **request)
    except SignatureError:
        assert not unchanged
    else:
        assert unchanged


# ----------------------------------------------------------------------------------------------------- IPN


def _ipn(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"status": 200, "api_key": PIPWAVE_KEY, "notification_id": "n-1", "timestamp": TS,
                            "pw_id": "PW9", "txn_id": "ORDER-1", "amount": "50.00", "currency_code": "MYR",
                            "transaction_status": 10, "final_amount": "50.00", "require_capture": False}
    body["signature"] = pipwave.signature({k: body[k] for k in pipwave.IPN_FIELDS}, PIPWAVE_SECRET)
    body.update(changes)
    return body


@given(field=st.sampled_from([*pipwave.IPN_FIELDS, "signature", "final_amount", "require_capture"]),
       value=JSON | TEXT, resign=st.booleans())
def test_an_ipn_verifies_soundly_or_raises_only_its_typed_errors(field: str, value: Any, resign: bool) -> None:
    body = _ipn(**{field: value})
    if resign and field != "signature":
        # Correctly signed over a value nothing documents: the signature holds, the content may not.
        # A lone surrogate has no bytes to sign: signature() refuses it with its typed error (RequestError),
        # and the IPN goes out with its old signature, which verify_ipn must then refuse.
        with contextlib.suppress(RequestError):
            body["signature"] = pipwave.signature({k: body.get(k) for k in pipwave.IPN_FIELDS}, PIPWAVE_SECRET)
    try:
        got = pipwave.verify_ipn(body, PIPWAVE_CREDS, now=T0)
    except ProviderError:  # SignatureError is one; a signed IPN that is not as documented is another
        return
    assert type(got.amount) is int and 0 <= got.amount <= INT64_MAX and capstate.Money(got.amount, got.currency)
    assert got.timestamp == TS or resign


@given(payload=JSON)
def test_any_json_as_an_ipn_is_a_signature_error(payload: Any) -> None:
    with pytest.raises(SignatureError):
        pipwave.verify_ipn(payload, PIPWAVE_CREDS, now=T0)


# ------------------------------------------------------------------------ builders: text JSON cannot carry


@pytest.mark.parametrize("case", ["bambora-reference", "bambora-comment", "hellgate-description", "pipwave-reference",
                                  "pipwave-reason", "vipps-key"])
def test_a_lone_surrogate_in_a_request_is_a_request_error(case: str) -> None:
    # Before: UnicodeEncodeError (from quote() or a hash) or orjson's TypeError, outside every typed error.
    cap = Capture(at=T0, amount=100, key="k-1")
    calls: dict[str, Callable[[], object]] = {
        "bambora-reference": lambda: bambora.build_capture(authorized("bambora", "o-\ud800", 1000, "DKK"), cap,
                                                           BAMBORA_CREDS),
        "bambora-comment": lambda: bambora.build_capture(BAMBORA, cap, BAMBORA_CREDS, comment="x\ud800"),
        "hellgate-description": lambda: hellgate.build_capture(HELLGATE, cap, HELLGATE_CREDS, description="\udfff"),
        "pipwave-reference": lambda: pipwave.build_capture(authorized("pipwave", "O-\ud800", 1000, "MYR"), cap,
                                                           PIPWAVE_CREDS, timestamp=TS),
        "pipwave-reason": lambda: pipwave.build_cancel(PIPWAVE, Cancel(at=T0), PIPWAVE_CREDS, timestamp=TS,
                                                       reason="\ud800"),
        "vipps-key": lambda: vipps.build_capture(VIPPS, Capture(at=T0, amount=1000, key="k-\ud800"), VIPPS_CREDS),
    }
    # A command refuses a key no UTF-8 header can carry when it is made (CommandError, the engine's typed
    # error), before any builder sees it; everything else is the builder's RequestError.
    with pytest.raises(CommandError if case == "vipps-key" else RequestError):
        calls[case]()
