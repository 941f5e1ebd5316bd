"""Tests written to kill mutants of the provider modules that the rest of the suite let survive.

Each test names the mutation it kills. They use the real parts: the parsers on the documented answer
shapes, the executor over the scripted 127.0.0.1 server (tests/httpserver.py), and the documented
webhook test vector (research/providers.md §2.8).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from httpserver import Reply, ScriptedServer, scripted_server
from provider_cases import (
    T0,
    authorized,
    capture,
    response,
)

from capstate import Cancel, Capture, ProviderError
from capstate.providers import bambora, vipps
from capstate.providers.client import CaptureClient
from capstate.providers.retry import RetryPolicy


class Sleeps(list[float]):
    """The injected sleep: records every wait, never waits."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as srv:
        yield srv


def policy(sleeps: Sleeps) -> RetryPolicy:
    return RetryPolicy(sleep=sleeps, random=lambda: 0.0, base=0.5, cap=8.0)


# ----------------------------------------------------------------------------------------------- Bambora

B_REF = "order-30001"
B_CAPTURE = f"/payments/{B_REF}/capture/"
B_GET = f"/payments/{B_REF}/"


def bambora_payment(state: str, captures: list[int] | None) -> dict[str, object]:
    body: dict[str, object] = {"region": "emea_0", "merchant": "T0001", "payment": B_REF, "state": state,
                               "currency": "NOK", "amount": 100000, "operationInProgress": False}
    if captures is not None:
        body["captures"] = [{"amount": a} for a in captures]
    return body


def bambora_client(server: ScriptedServer, sleeps: Sleeps) -> CaptureClient:
    creds = bambora.Credentials(access_token="tok", merchant_number="T0001", secret_token="sec",
                                base_url=server.url)
    return CaptureClient("bambora", creds, retry=policy(sleeps), clock=lambda: T0)


def test_bambora_a_201_showing_more_captured_than_asked_asks_to_reconcile() -> None:
    # Mutant: `total - before != amount` -> `<`: a 201 whose captures total MORE than was asked was recorded
    # as the capture asked for, and the money Bambora really took went unrecorded.
    payment = authorized("bambora", B_REF, 100000, "NOK")
    answer = response(201, bambora_payment("Captured", [60000]))
    with pytest.raises(ProviderError, match="captures total 60000") as err:
        bambora.parse_capture(answer, payment, capture(50000, "NOK"))
    assert err.value.reconcile


def test_bambora_a_captured_read_back_without_a_captures_list_is_never_read_as_nothing_captured(
        server: ScriptedServer) -> None:
    # Mutant: "Captured" added to the states that prove nothing was captured. After a 500 the read-back then
    # said "captured 0", the executor concluded the capture had not happened, and sent it a second time.
    sleeps = Sleeps()
    server.on("POST", B_CAPTURE, Reply(500, b"", content_type="text/plain"), Reply(201, bambora_payment(
        "Captured", [25000])))
    server.on("GET", B_GET, Reply(200, bambora_payment("Captured", None)))
    with bambora_client(server, sleeps) as client, pytest.raises(ProviderError) as err:
        client.capture(authorized("bambora", B_REF, 100000, "NOK"), Capture(at=T0, amount=25000))
    assert [r.method for r in server.requests] == ["POST", "GET"]
    assert err.value.reconcile and "outcome unknown" in str(err.value)


# ------------------------------------------------------------------------------------------------- Vipps

V_REF = "order-10001"


def modification(*, captured: int = 0, cancelled: int = 0, state: str = "AUTHORIZED") -> dict[str, object]:
    def amt(value: int) -> dict[str, object]:
        return {"currency": "NOK", "value": value}
    return {"amount": amt(100000), "state": state, "pspReference": "psp-1", "reference": V_REF,
            "aggregate": {"authorizedAmount": amt(100000), "capturedAmount": amt(captured),
                          "cancelledAmount": amt(cancelled), "refundedAmount": amt(0)}}


def test_vipps_a_200_whose_aggregate_did_not_move_is_no_replay_unless_the_history_has_the_key() -> None:
    # Mutant: the replay check reduced to `delta == 0`. A 200 that shows no capture, for a key the history
    # has never seen succeed, was taken for an idempotent replay: no event, no error, money unaccounted for.
    payment = authorized("vipps", V_REF, 100000, "NOK")
    with pytest.raises(ProviderError, match="reconcile") as err:
        vipps.parse_capture(response(200, modification(captured=0)), payment, capture(25000, "NOK", "never-sent"))
    assert err.value.reconcile


def test_vipps_a_cancel_that_released_less_than_the_remainder_asks_to_reconcile() -> None:
    # Mutant: `delta == remainder` dropped. "Cancelling a payment will always cancel the entire remaining
    # not-captured amount" (operations/cancel.md): a smaller release is not our cancel, and was recorded as one.
    payment = authorized("vipps", V_REF, 100000, "NOK")
    with pytest.raises(ProviderError, match="not by the remainder 100000") as err:
        vipps.parse_cancel(response(200, modification(cancelled=30000)), payment, Cancel(at=T0, key="c-1"))
    assert err.value.reconcile
