"""Every provider parser, fed a documented answer with one field (or the whole body) replaced by any JSON value,
raises only typed capstate errors, and a RemoteStatus it returns carries only integer minor units (0..int64)
or None: never a float, a negative amount, a string or a KeyError/TypeError/ValueError.

The shapes are the documented ones (research/providers.md §1.3/1.5 Bambora PaymentResponse, §2.3/2.5 Vipps
ModificationResponse and GetPaymentResponse, §3.3 Hellgate payment object, §4.6 Pipwave requery).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from provider_cases import HELLGATE_ID, T0, authorized, captured

import capstate
from capstate import Cancel, CapstateError, Capture, EventType, Refund
from capstate._money import INT64_MAX
from capstate.providers import HttpResponse, RemoteStatus, bambora, hellgate, pipwave, vipps

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
    response = HttpResponse(status, {"Content-Type": "application/json"}, raw)
    for call in calls:
        with contextlib.suppress(CapstateError):
            _check(call(response))
