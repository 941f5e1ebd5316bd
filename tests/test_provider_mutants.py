"""Tests written to kill mutants of the provider modules that the rest of the suite let survive.

Each test names the mutation it kills. They use the real parts: the parsers on the documented answer
shapes, the executor over the scripted 127.0.0.1 server (tests/httpserver.py), and the documented
webhook test vector (research/providers.md §2.8).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import timedelta

import pytest
from httpserver import Reply, ScriptedServer, scripted_server
from provider_cases import (
    PIPWAVE_CREDS,
    PIPWAVE_KEY,
    PIPWAVE_SECRET,
    T0,
    TS,
    VIPPS_CREDS,
    authorized,
    capture,
    response,
)
from test_vipps import BODY as W_BODY
from test_vipps import DATE as W_DATE
from test_vipps import HASH as W_HASH
from test_vipps import PATH as W_PATH
from test_vipps import SECRET as W_SECRET
from test_vipps import SIG as W_SIG

import capstate
from capstate import Cancel, Capture, Event, EventType, ProviderError, apply
from capstate.providers import RequestError, bambora, pipwave, vipps
from capstate.providers.client import CaptureClient, derive_key
from capstate.providers.retry import Recovery, RetryPolicy


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


# research/providers.md §2.8: the documented webhook test vector, as test_vipps spells it
W_NOW = capstate.Event.from_dict({"payment": "x", "type": "expired", "at": "2023-03-30T08:38:32Z"}).at


def webhook_headers(signature: str = W_SIG, date: str = W_DATE) -> dict[str, str]:
    return {"x-ms-date": date, "x-ms-content-sha256": W_HASH, "Host": "webhook.site",
            "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature}"}


def compare_digest_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Every (expected, claimed) pair the real hmac.compare_digest is called with from here on."""
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return compared


def test_vipps_webhook_signature_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Mutant: `hmac.compare_digest(expected, claimed)` -> `expected != claimed`. Same verdicts, but a
    # short-circuiting comparison leaks how many leading bytes of a forged signature are right (DESIGN §5:
    # "Webhook and IPN signatures are ... verified ... with hmac.compare_digest").
    compared = compare_digest_calls(monkeypatch)
    forged = "B" + W_SIG[1:]
    with pytest.raises(capstate.SignatureError, match="signature does not match"):
        vipps.verify_webhook(secret=W_SECRET, method="POST", path_and_query=W_PATH,
                             headers=webhook_headers(forged), body=W_BODY, now=W_NOW)
    assert (W_SIG.encode(), forged.encode()) in compared


def test_vipps_webhook_default_tolerance_is_five_minutes() -> None:
    # Mutant: DEFAULT_TOLERANCE widened (5 -> 15 minutes). Every other test passes `tolerance=` itself, so a
    # caller relying on the default silently accepted replays three times older than documented.
    def verify(now_offset_s: int) -> None:
        vipps.verify_webhook(secret=W_SECRET, method="POST", path_and_query=W_PATH, headers=webhook_headers(),
                             body=W_BODY, now=W_NOW + timedelta(seconds=now_offset_s))

    verify(4 * 60 + 59)
    verify(-(4 * 60 + 59))
    for offset in (5 * 60 + 1, -(5 * 60 + 1), 14 * 60):
        with pytest.raises(capstate.SignatureError, match="tolerance"):
            verify(offset)


def test_vipps_webhook_with_a_zoneless_date_is_a_signature_error_not_a_crash() -> None:
    # Mutant: the "x-ms-date has no time zone" check removed. RFC 5322's "-0000" parses to a naive datetime,
    # and comparing it with `now` raised TypeError out of the verifier instead of a SignatureError.
    date = "Thu, 30 Mar 2023 08:38:32 -0000"
    sig = vipps.signature(W_SECRET, method="POST", path_and_query=W_PATH, date=date, host="webhook.site",
                          body_hash=W_HASH)
    with pytest.raises(capstate.SignatureError, match="no time zone"):
        vipps.verify_webhook(secret=W_SECRET, method="POST", path_and_query=W_PATH,
                             headers=webhook_headers(sig, date), body=W_BODY, now=W_NOW)


# ----------------------------------------------------------------------------------------------- Pipwave


def pipwave_ipn(api_key: str = PIPWAVE_KEY, signature: str | None = None) -> dict[str, object]:
    """An IPN as instant_payment_notification.md lists it, signed with our secret over its seven fields."""
    body: dict[str, object] = {"status": 200, "api_key": api_key, "notification_id": "n-1", "type": "payment",
                               "timestamp": TS, "pw_id": "PW9", "txn_id": "ORDER-1", "amount": "50.00",
                               "currency_code": "MYR", "transaction_status": 10}
    body["signature"] = signature or pipwave.signature({k: body.get(k) for k in pipwave.IPN_FIELDS},
                                                       PIPWAVE_SECRET)
    return body


def test_pipwave_ipn_signature_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Mutant: `hmac.compare_digest(expected, claimed)` -> `expected != claimed` (DESIGN §5).
    compared = compare_digest_calls(monkeypatch)
    good = str(pipwave_ipn()["signature"])
    forged = ("0" if good[0] != "0" else "1") + good[1:]
    with pytest.raises(capstate.SignatureError, match="signature does not match"):
        pipwave.verify_ipn(pipwave_ipn(signature=forged), PIPWAVE_CREDS, now=T0)
    assert (good.encode(), forged.encode()) in compared


def test_pipwave_ipn_correctly_signed_for_another_api_key_is_refused() -> None:
    # Mutant: the "is it for our API key" check removed. The existing test changes `api_key` AFTER signing,
    # so the signature check alone refused it; an IPN signed over another key (with the same secret) passed.
    with pytest.raises(capstate.SignatureError, match="another API key"):
        pipwave.verify_ipn(pipwave_ipn(api_key="someone-elses-key"), PIPWAVE_CREDS, now=T0)


def test_pipwave_ipn_timestamp_tolerance_is_exact() -> None:
    # Mutant: the skew compared with twice the tolerance. The existing test is an hour off with a five-minute
    # tolerance, so any widening under 12x survived it.
    five = timedelta(minutes=5)
    pipwave.verify_ipn(pipwave_ipn(), PIPWAVE_CREDS, now=T0 + five, tolerance=five)
    pipwave.verify_ipn(pipwave_ipn(), PIPWAVE_CREDS, now=T0 - five, tolerance=five)
    for now in (T0 + five + timedelta(seconds=1), T0 - five - timedelta(seconds=1), T0 + 2 * five):
        with pytest.raises(capstate.SignatureError, match="timestamp"):
            pipwave.verify_ipn(pipwave_ipn(), PIPWAVE_CREDS, now=now, tolerance=five)


# ------------------------------------------------- shared parts: _build, _http, client.derive_key, retry


def test_vipps_a_recorded_key_for_another_amount_is_no_replay() -> None:
    # Mutant: is_replay() ignoring the amount. A 200 that shows no new capture, for a key that earlier
    # captured a DIFFERENT amount, was taken for an idempotent replay of this capture: no event, no error.
    payment = authorized("vipps", V_REF, 100000, "NOK")
    first = capture(25000, "NOK", "ship-1")
    paid = capstate.apply(payment, vipps.parse_capture(response(200, modification(captured=25000)), payment,
                                                       first)[0])
    with pytest.raises(ProviderError, match="reconcile") as err:
        vipps.parse_capture(response(200, modification(captured=25000)), paid, capture(10000, "NOK", "ship-1"))
    assert err.value.reconcile


def test_bambora_a_json_true_is_no_amount() -> None:
    # Mutant: is_minor_units() accepting any int subclass. JSON `true` decodes to a bool, which is an int
    # equal to 1: a 201 with `"amount": true` proved a capture of 1 minor unit.
    payment = authorized("bambora", B_REF, 100000, "NOK")
    answer = response(201, {**bambora_payment("Captured", None), "captures": [{"amount": True}]})
    with pytest.raises(ProviderError, match="not an integer of minor units") as err:
        bambora.parse_capture(answer, payment, capture(1, "NOK"))
    assert err.value.reconcile


@pytest.mark.parametrize("smuggled", [25000.0, True])
def test_a_builder_refuses_a_non_int_amount_that_got_past_the_command(smuggled: object) -> None:
    # Mutant: command_money() without its `type(amount) is not int` check. Capture refuses a float at
    # construction, but _build.py promises the builder checks again ("a builder can be called without a
    # decision"); without it a smuggled float escaped as an untyped TypeError from Money, not a RequestError.
    payment = authorized("vipps", V_REF, 100000, "NOK")
    cmd = capture(25000, "NOK", "k-1")
    object.__setattr__(cmd, "amount", smuggled)  # what a hand-built or unpickled command could carry
    with pytest.raises(RequestError) as err:
        vipps.build_capture(payment, cmd, VIPPS_CREDS)
    assert err.value.field == "amount"


def test_a_derived_key_never_depends_on_the_amount() -> None:
    # Mutant: the amount put back into derive_key() (issue 10). Two parcels of different prices decided from
    # one stale history then got two keys, and both captured; now they share the key of the operation's
    # identity (reference, op, sequence), so Vipps replays or refuses the second instead of capturing it.
    payment = authorized("vipps", V_REF, 100000, "NOK")
    assert derive_key(payment, "capture") == derive_key(payment, "capture")
    assert derive_key(payment, "capture") != derive_key(payment, "refund") != derive_key(payment, "cancel")
    assert payment.authorized_at is not None
    after = apply(payment, Event(V_REF, EventType.CAPTURED, payment.authorized_at, 25000, "NOK", key="k-1"))
    assert derive_key(after, "capture") != derive_key(payment, "capture")


def test_a_provider_without_a_rule_is_read_back_before_any_resend() -> None:
    # Mutant: DEFAULT_RULE made RESEND. A provider module capstate has no rule for (passed to CaptureClient
    # as a module) must be assumed to have no idempotency, or a timed-out capture would be sent twice.
    rule = RetryPolicy().rule("some-new-provider")
    assert rule.recovery is Recovery.RECONCILE
