"""Regression tests from the review of the I/O layer (providers/): each one failed before its fix.

Over real sockets (tests/httpserver.py) where the bug was in the executor, on the parsers directly where it
was in a parser. Provider rules cited beside each test (research/providers.md).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import test_client
from httpserver import Reply, ScriptedServer, scripted_server
from test_client import (
    HG_ID,
    NOW,
    SECRETS,
    VIPPS_CAPTURE,
    Sleeps,
    authorized,
    bambora_body,
    bambora_client,
    hellgate_body,
    policy,
    script_by_action,
    vipps_body,
    vipps_client,
    vipps_creds,
)

import capstate
from capstate import Cancel, Capture, CommandError, Event, EventType, Payment, ProviderError, Refund
from capstate.providers import HttpResponse, RequestError, bambora, hellgate, pipwave, vipps
from capstate.providers import client as executor
from capstate.providers.client import AsyncCaptureClient, CaptureClient
from capstate.providers.retry import RetryPolicy

ROOT = Path(__file__).resolve().parents[1]
server, sleeps = test_client.server, test_client.sleeps  # the same fixtures
GZIP_LIE = {"Content-Encoding": "gzip"}  # a body that says gzip and is not: httpx raises DecodingError


# ------------------------------------------------------------------------ answers httpx cannot read


def test_an_undecodable_capture_answer_is_an_unknown_outcome_read_back(server: ScriptedServer,
                                                                      sleeps: Sleeps) -> None:
    # Before: httpx.DecodingError escaped the executor (it is not an httpx.TransportError).
    server.on("POST", VIPPS_CAPTURE, Reply(200, b"not gzip at all", headers=GZIP_LIE))
    server.on("GET", "/epayment/v1/payments/order-10001", Reply(200, vipps_body(captured=25000)))
    with vipps_client(server, sleeps) as client:
        out = client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=25000))
    # The status line arrived but the body did not: the capture may have happened, so the same key is sent
    # again (Vipps deduplicates it) and, the last attempt being no clearer, the payment is read back.
    assert out.payment.captured == 25000 and out.reconciled
    keys = {r.headers["idempotency-key"] for r in server.received("POST")}
    assert len(keys) == 1


def test_an_undecodable_answer_to_a_provider_without_idempotency_is_never_resent_blindly(
        server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", "/payments/order-20001/capture/", Reply(201, b"\x00garbage", headers=GZIP_LIE))
    server.on("GET", "/payments/order-20001/", Reply(200, bambora_body("Captured", [100000])))
    with bambora_client(server, sleeps) as client:
        out = client.capture(authorized("bambora", "order-20001"), Capture(at=NOW))
    assert [r.method for r in server.requests] == ["POST", "GET"]
    assert out.payment.captured == 100000 and out.reconciled


def test_an_oversized_answer_is_cut_off_and_treated_as_no_answer(server: ScriptedServer, sleeps: Sleeps) -> None:
    # A proxy or a broken provider streaming megabytes must not be read whole into memory.
    huge = b"{" + b" " * (executor.MAX_RESPONSE_BYTES + 10) + b"}"
    server.on("POST", "/payments/order-20001/capture/", Reply(201, huge))
    server.on("GET", "/payments/order-20001/", Reply(200, bambora_body("Authorized", [])))
    with bambora_client(server, sleeps) as client, pytest.raises(ProviderError) as err:
        client.capture(authorized("bambora", "order-20001"), Capture(at=NOW))
    assert "too large" in str(err.value)


def test_the_async_client_turns_undecodable_answers_into_typed_outcomes(server: ScriptedServer) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(200, b"not gzip", headers=GZIP_LIE))
    server.on("GET", "/epayment/v1/payments/order-10001", Reply(200, vipps_body(captured=0)))

    async def nosleep(seconds: float) -> None:
        pass

    async def run() -> Any:
        async with AsyncCaptureClient("vipps", vipps_creds(server), retry=policy(Sleeps(), attempts=2),
                                      sleep=nosleep, clock=lambda: NOW) as client:
            return await client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=100))

    with pytest.raises(ProviderError) as err:
        asyncio.run(run())
    assert "DecodingError" in str(err.value) or "undecodable" in str(err.value)


def test_cli_capture_reports_an_undecodable_answer_on_one_line(server: ScriptedServer, tmp_path: Path) -> None:
    url = _journal(tmp_path, {"payment": "order-20001", "type": "authorized", "at": "2026-01-05T10:00:00Z",
                              "amount": 100000, "currency": "NOK", "provider": "bambora"})
    creds = tmp_path / "creds.toml"
    creds.write_text(f'[bambora]\nbase_url = "{server.url}"\n')
    creds.chmod(0o600)
    server.on("POST", "/payments/order-20001/capture/", Reply(201, b"garbage", headers=GZIP_LIE))
    server.on("GET", "/payments/order-20001/", Reply(200, b"garbage", headers=GZIP_LIE))
    env = {"PATH": "/usr/bin:/bin", "CAPSTATE_BAMBORA_ACCESS_TOKEN": "tok", "CAPSTATE_BAMBORA_SECRET_TOKEN": "sec",
           "CAPSTATE_BAMBORA_MERCHANT_NUMBER": "T0001"}
    out = subprocess.run([sys.executable, "-m", "capstate", "capture", "--journal", url, "--payment", "order-20001",
                          "--amount", "100", "--attempts", "2", "--credentials", str(creds)], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert "Traceback" not in out.stderr
    assert out.returncode == 3 and out.stderr.count("\n") == 1 and "outcome unknown" in out.stderr
    assert len(server.received("POST")) == 1  # never resent without knowing


def _journal(tmp_path: Path, *events: dict[str, object]) -> str:
    """A real SQLite journal holding `events` (sending goes through the journal: capture --journal)."""
    from datetime import UTC, timedelta
    from datetime import datetime as dt

    from capstate.providers.journal import Journal

    def at(e: dict[str, object]) -> dt:
        return dt.fromisoformat(str(e["at"]).replace("Z", "+00:00"))

    # The journal decides at the real now: the history moves so its first event was two days ago.
    items = list(events)
    shift = dt.now(UTC) - timedelta(days=2) - at(items[0])
    url = f"sqlite:///{tmp_path / 'capstate.db'}"
    with Journal(url) as journal:
        assert journal.ingest([{**e, "at": (at(e) + shift).isoformat()} for e in items]).rejected == ()
    return url


# --------------------------------------------------------------- Hellgate: asynchronous refunds and voids
# "Asynchronous: the refund goes processing -> completed | failed, and payment.amount.refunded is updated"
# (https://developer.hellgate.io/payments/management/refund, research §3.5); void answers "Cancel accepted"
# with status voiding (https://developer.hellgate.io/products/commerce/v2/api-reference/payments_modifications/void).

HG_REFUND = f"/payments/{HG_ID}/refund"
HG_VOID = f"/payments/{HG_ID}/void"
HG_GET = f"/payments/{HG_ID}"


def hg_captured(amount: int = 100000) -> Payment:
    p = authorized("hellgate", HG_ID, currency="EUR")
    p = capstate.apply(p, Event(HG_ID, EventType.CAPTURE_REQUESTED, NOW, amount))
    return capstate.apply(p, Event(HG_ID, EventType.CAPTURED, NOW, amount))


def hg_refunded_body(refunded: int) -> dict[str, Any]:
    body = hellgate_body("captured", 100000)
    body["amount"]["refunded"] = refunded
    return body


def hg_client(server: ScriptedServer, sleeps: Sleeps, **kw: Any) -> CaptureClient:
    creds = hellgate.Credentials(api_key=SECRETS[4], base_url=server.url)
    return CaptureClient("hellgate", creds, retry=policy(sleeps, **kw), clock=lambda: NOW)


def test_hellgate_refund_timeout_with_an_unchanged_refunded_amount_is_not_resent(server: ScriptedServer,
                                                                                sleeps: Sleeps) -> None:
    # Before: the GET showed amount.refunded unchanged, the executor took it as "did not happen" and sent
    # the refund again; but an accepted refund is still `processing` and does not show yet: two refunds.
    server.on("POST", HG_REFUND, Reply(200, {"id": "rf-1", "status": "processing"}, delay=2.0))
    server.on("GET", HG_GET, Reply(200, hg_refunded_body(0)))
    creds = hellgate.Credentials(api_key=SECRETS[4], base_url=server.url)
    with (CaptureClient("hellgate", creds, retry=policy(sleeps), clock=lambda: NOW, timeout=0.3) as client,
          pytest.raises(ProviderError) as err):
        client.refund(hg_captured(), Refund(at=NOW, amount=30000))
    assert len(server.received("POST", HG_REFUND)) == 1
    assert err.value.reconcile


def test_hellgate_processing_refund_is_polled_until_the_refunded_amount_shows_it(server: ScriptedServer,
                                                                                sleeps: Sleeps) -> None:
    server.on("POST", HG_REFUND, Reply(200, {"id": "rf-1", "status": "processing"}))
    server.on("GET", HG_GET, Reply(200, hg_refunded_body(0)), Reply(200, hg_refunded_body(30000)))
    with hg_client(server, sleeps, poll_interval=1.5) as client:
        out = client.refund(hg_captured(), Refund(at=NOW, amount=30000))
    assert out.payment.refunded == 30000 and out.reconciled
    assert [e.type for e in out.events] == [EventType.REFUNDED] and out.events[0].amount == 30000
    assert len(server.received("POST")) == 1 and len(server.received("GET")) == 2 and sleeps == [1.5]


def test_hellgate_refund_still_processing_after_the_polls_is_a_typed_unsettled_outcome(
        server: ScriptedServer, sleeps: Sleeps) -> None:
    # Before: the payment came back unchanged with no sign that a refund was accepted.
    server.on("POST", HG_REFUND, Reply(200, {"id": "rf-1", "status": "processing"}))
    server.on("GET", HG_GET, Reply(200, hg_refunded_body(0)))
    with (hg_client(server, sleeps, polls=3) as client,
          pytest.raises(executor.Unsettled) as err):
        client.refund(hg_captured(), Refund(at=NOW, amount=30000))
    assert err.value.op == "refund" and err.value.amount == 30000 and err.value.reconcile
    assert not err.value.retryable and "processing" in str(err.value)
    assert len(server.received("POST")) == 1 and len(server.received("GET")) == 3


def test_hellgate_voiding_is_polled_until_voided(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", HG_VOID, Reply(200, hellgate_body("voiding")))
    server.on("GET", HG_GET, Reply(200, hellgate_body("voiding")), Reply(200, hellgate_body("voided")))
    with hg_client(server, sleeps) as client:
        out = client.cancel(authorized("hellgate", HG_ID, currency="EUR"), Cancel(at=NOW))
    assert out.payment.state in {"cancelled", "voided"} and out.payment.cancelled == 100000
    assert [e.type for e in out.events] == [EventType.CANCELLED]


def test_hellgate_void_still_voiding_is_a_typed_unsettled_outcome(server: ScriptedServer, sleeps: Sleeps) -> None:
    server.on("POST", HG_VOID, Reply(200, hellgate_body("voiding")))
    server.on("GET", HG_GET, Reply(200, hellgate_body("voiding")))
    with (hg_client(server, sleeps, polls=2) as client,
          pytest.raises(executor.Unsettled) as err):
        client.cancel(authorized("hellgate", HG_ID, currency="EUR"), Cancel(at=NOW))
    assert err.value.op == "cancel" and len(server.received("POST")) == 1


# ------------------------------------------------------------------------- Pipwave requery amounts
# requery.md: `amount` "The payment checkout amount" (sample 123), `total_amount` (126.6, with the processing
# fee and tax), `final_amount` "Final amount for this transaction (after potential chargeback / refund /
# adjustments)" (sample 126.6 = total_amount). https://docs.pipwave.com/api_list/requery.html

def pw_answer(**fields: Any) -> HttpResponse:
    body = {"status": "200", "currency_code": "MYR", "amount": "123.00", **fields}
    return HttpResponse(200, {"Content-Type": "application/json"}, json.dumps(body).encode())


def myr(amount: int = 12300) -> Payment:
    return Payment.authorized_for(capstate.load_spec("pipwave"), "ORDER-1", amount=amount, currency="MYR", at=NOW)


def test_pipwave_refunded_is_not_inferred_from_final_amount_with_fees() -> None:
    # The documented sample: amount 123, total 126.6. A refund of 2.00 leaves final_amount 124.6, and
    # amount - final_amount is -1.60: before, a NEGATIVE refunded amount.
    status = pipwave.parse_requery(pw_answer(total_amount="126.60", final_amount="124.60",
                                             transaction_status="25"), myr())
    assert status.refunded is None


def test_pipwave_refunded_is_not_inferred_after_a_partial_capture() -> None:
    # 50.00 authorized, 40.00 captured, 5.00 refunded: final_amount 35.00. Before: refunded 15.00 (the
    # uncaptured 10.00 counted as refunded).
    captured = capstate.apply(myr(5000), Event("ORDER-1", EventType.CAPTURED, NOW, 4000))
    status = pipwave.parse_requery(pw_answer(amount="50.00", final_amount="35.00", transaction_status="25"),
                                   captured)
    assert status.refunded is None


def test_pipwave_captured_is_not_final_amount_when_fees_are_on_top() -> None:
    # Paid: final_amount 126.60 is the total with fee and tax, not the 123.00 the merchant authorized.
    status = pipwave.parse_requery(pw_answer(total_amount="126.60", final_amount="126.60", transaction_status="10"),
                                   myr())
    assert status.captured is None
    plain = pipwave.parse_requery(pw_answer(final_amount="123.00", transaction_status="10"), myr())
    assert plain.captured == 12300


@pytest.mark.parametrize("field", ["amount", "final_amount", "total_amount"])
@pytest.mark.parametrize("value", ["-1.00", -1, "1000000000.00"])
def test_pipwave_requery_refuses_negative_or_out_of_range_amounts(field: str, value: Any) -> None:
    # decimal(11,2): at most 9 integer digits; an amount is never negative.
    with pytest.raises(ProviderError) as err:
        pipwave.parse_requery(pw_answer(**{"final_amount": "123.00", "transaction_status": "10", field: value}),
                              myr())
    assert err.value.reconcile


def test_pipwave_refund_timeout_with_fees_is_never_resent(server: ScriptedServer, sleeps: Sleeps) -> None:
    # Before: requery showed refunded -1.60 (< 0 = "did not happen") and the refund was sent again.
    answers = {"refund": [Reply(500, b"", content_type="text/plain")],
               "requery": [Reply(200, {"status": 200, "transaction_status": 25, "amount": "123.00",
                                       "total_amount": "126.60", "final_amount": "124.60",
                                       "currency_code": "MYR"})]}
    script_by_action(server, "/payment", answers)
    creds = pipwave.Credentials(api_key=SECRETS[5], api_secret=SECRETS[6], url=server.url + "/payment")
    paid = capstate.apply(myr(), Event("ORDER-1", EventType.CAPTURED, NOW, 12300))
    with (CaptureClient("pipwave", creds, retry=policy(sleeps), clock=lambda: NOW) as client,
          pytest.raises(ProviderError) as err):
        client.refund(paid, Refund(at=NOW, amount=200))
    assert [r.json()["action"] for r in server.requests] == ["refund", "requery"]
    assert err.value.reconcile



# ------------------------------------------------------------------- Bambora: the `merchant` query of GET
# swagger GET /{payment}/: query `merchant`, "Only neccessary if the merchant authentication token is for
# another merchant in the same corporate hierarchy" (bambora-payments-api-beta-swagger.json).

def test_bambora_read_back_names_the_payments_merchant_for_a_corporate_token(server: ScriptedServer,
                                                                            sleeps: Sleeps) -> None:
    server.on("POST", "/payments/order-20001/capture/", Reply(201, b"", delay=2.0))
    server.on("GET", "/payments/order-20001/", Reply(200, bambora_body("Captured", [100000])))
    creds = bambora.Credentials(access_token=SECRETS[2], merchant_number="T0001", secret_token=SECRETS[3],
                                base_url=server.url, payment_merchant="T99&x/y")
    with CaptureClient("bambora", creds, retry=policy(sleeps), clock=lambda: NOW, timeout=0.3) as client:
        out = client.capture(authorized("bambora", "order-20001"), Capture(at=NOW))
    assert out.payment.captured == 100000
    assert [r.path for r in server.requests] == ["/payments/order-20001/capture/",
                                                 "/payments/order-20001/?merchant=T99%26x%2Fy"]


@pytest.mark.parametrize("bad", ["", "T1\r\nX: y", " T1", "T\u00e91"])
def test_bambora_payment_merchant_is_validated(bad: str) -> None:
    with pytest.raises(RequestError):
        bambora.Credentials(access_token="t", merchant_number="T1", secret_token="s", payment_merchant=bad)


# ------------------------------------------------------------------------------- bounded waits and CLI


@pytest.mark.parametrize("field", ["base", "cap", "max_retry_after", "poll_interval"])
def test_retry_policy_refuses_infinite_waits(field: str) -> None:
    # Before: accepted; a Retry-After of 10**24 s with max_retry_after=inf then overflowed time.sleep.
    with pytest.raises(ValueError, match="finite"):
        RetryPolicy(**{field: float("inf")})


@pytest.mark.parametrize("timeout", [float("inf"), 1e12, 0, -1.0])
def test_the_executor_refuses_a_timeout_the_socket_cannot_take(timeout: float) -> None:
    # Before: inf / 1e12 raised OverflowError from the socket at the first send.

    class Nowhere:
        url = "http://127.0.0.1:9"

    with pytest.raises(CommandError, match="timeout"):
        CaptureClient("vipps", vipps_creds(Nowhere()), timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize(("option", "value"), [("--timeout", "inf"), ("--timeout", "1e12"),
                                                ("--attempts", "1000000")])
def test_cli_capture_bounds_timeout_and_attempts(tmp_path: Path, option: str, value: str) -> None:
    # Before: --timeout inf ended in "internal error (OverflowError)"; --attempts 1000000 retried for days.
    url = _journal(tmp_path, {"payment": "order-20001", "type": "authorized", "at": "2026-01-05T10:00:00Z",
                              "amount": 100000, "currency": "NOK", "provider": "bambora"})
    env = {"PATH": "/usr/bin:/bin", "CAPSTATE_BAMBORA_ACCESS_TOKEN": "tok", "CAPSTATE_BAMBORA_SECRET_TOKEN": "sec",
           "CAPSTATE_BAMBORA_MERCHANT_NUMBER": "T0001", "CAPSTATE_BAMBORA_BASE_URL": "http://127.0.0.1:9"}
    out = subprocess.run([sys.executable, "-m", "capstate", "capture", "--journal", url, "--payment", "order-20001",
                          "--amount", "100", option, value],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert out.returncode == 2 and out.stderr.startswith(f"capstate: error: {option} ")
    assert out.stderr.count("\n") == 1 and "internal error" not in out.stderr


# --------------------------------------------------------------------------- secrets echoed in answers


def test_a_pipwave_requery_echoing_the_api_key_never_shows_it(server: ScriptedServer, sleeps: Sleeps) -> None:
    # requery.md: the response carries `api_key`, "Pipwave-assigned merchant's API key"; the request side
    # masks it (body and x-api-key header), so must every view of the answer. Before: repr(outcome) held it.
    echoed = {"status": 200, "api_key": SECRETS[5], "transaction_status": 10, "amount": "500.00",
              "final_amount": "500.00", "currency_code": "NOK"}
    script_by_action(server, "/payment", {"capture-payment": [Reply(500, b"", content_type="text/plain")],
                                          "requery": [Reply(200, echoed)]})
    creds = pipwave.Credentials(api_key=SECRETS[5], api_secret=SECRETS[6], url=server.url + "/payment")
    with CaptureClient("pipwave", creds, retry=policy(sleeps), clock=lambda: NOW) as client:
        out = client.capture(authorized("pipwave", "ORDER-1"), Capture(at=NOW, amount=50000))
    assert out.payment.captured == 50000 and out.response is not None
    for view in (repr(out), str(out.response), repr(out.response), f"{out.response}"):
        assert SECRETS[5] not in view and "[REDACTED]" in view
    assert json.loads(out.response.body)["api_key"] == SECRETS[5]  # the raw bytes stay exact


def test_cli_capture_escapes_control_characters_from_the_provider(server: ScriptedServer, tmp_path: Path) -> None:
    # A problem title is the provider's (or a proxy's) text: before, ESC sequences in it reached the
    # terminal as is (retitle, clear screen), in the error line and in --verbose log lines.
    title = "Capture period expired\x1b]0;pwned\x07\x1b[2J"
    server.on("POST", "/epayment/v1/payments/order-10001/capture",
              Reply(400, {"type": "about:blank", "title": title, "status": 400, "traceId": "t\x1b[31m"}))
    creds = tmp_path / "creds.toml"
    creds.write_text(f'[vipps]\nbase_url = "{server.url}"\n')
    creds.chmod(0o600)
    history = ROOT / "examples" / "histories" / "vipps-partial.jsonl"
    url = _journal(tmp_path, *(json.loads(line) for line in history.read_text().splitlines()))
    env = {"PATH": "/usr/bin:/bin", "CAPSTATE_VIPPS_ACCESS_TOKEN": "tok", "CAPSTATE_VIPPS_SUBSCRIPTION_KEY": "sub",
           "CAPSTATE_VIPPS_MERCHANT_SERIAL_NUMBER": "123456"}
    out = subprocess.run([sys.executable, "-m", "capstate", "capture", "--journal", url, "--payment", "order-10001",
                          "--amount", "100", "--key", "k", "--credentials", str(creds), "--verbose"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert out.returncode == 1, out.stderr
    assert "\x1b" not in out.stderr and "\x07" not in out.stderr
    assert "Capture period expired\\x1b]0;pwned\\x07\\x1b[2J" in out.stderr.splitlines()[-1]


# ------------------------------------------------------- an earlier unclear attempt is not forgotten


def test_vipps_timeout_then_rate_limited_to_the_end_reads_back_before_giving_up(server: ScriptedServer,
                                                                                sleeps: Sleeps) -> None:
    # Attempt 1 timed out (the capture may have happened); attempts 2-4 got 429. Before: the executor gave up
    # with reconcile=False ("nothing happened") judging by the LAST answer only, never reading back; the
    # capture had happened.
    limited = Reply(429, {"type": "about:blank", "title": "Too Many Requests", "status": 429, "traceId": "t"})
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=25000), delay=2.0), limited)
    server.on("GET", "/epayment/v1/payments/order-10001", Reply(200, vipps_body(captured=25000)))
    with CaptureClient("vipps", vipps_creds(server), retry=policy(sleeps), clock=lambda: NOW,
                       timeout=0.3) as client:
        out = client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=25000))
    assert out.payment.captured == 25000 and out.reconciled
    assert len(server.received("POST")) == 4 and len(server.received("GET")) == 1


def test_vipps_timeout_then_a_refusal_is_not_reported_as_nothing_happened(server: ScriptedServer,
                                                                          sleeps: Sleeps) -> None:
    # Attempt 1 timed out; the resend is refused (400 "Capture amount too high": the first one captured).
    # Before: raised as a plain refusal (reconcile False), never reading back.
    too_high = Reply(400, {"type": "about:blank", "title": "Capture amount too high", "status": 400,
                           "traceId": "t"})
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=100000), delay=2.0), too_high)
    server.on("GET", "/epayment/v1/payments/order-10001", Reply(200, vipps_body(captured=100000)))
    with CaptureClient("vipps", vipps_creds(server), retry=policy(sleeps), clock=lambda: NOW,
                       timeout=0.3) as client:
        out = client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=100000))
    assert out.payment.captured == 100000 and out.reconciled
    assert len(server.received("POST")) == 2


def test_vipps_refusal_after_an_unclear_attempt_that_did_not_capture_stays_a_refusal(
        server: ScriptedServer, sleeps: Sleeps) -> None:
    too_high = Reply(400, {"type": "about:blank", "title": "Capture period expired", "status": 400,
                           "traceId": "t"})
    server.on("POST", VIPPS_CAPTURE, Reply(500, b"oops", content_type="text/plain"), too_high)
    server.on("GET", "/epayment/v1/payments/order-10001", Reply(200, vipps_body(captured=0)))
    with vipps_client(server, sleeps) as client, pytest.raises(ProviderError) as err:
        client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=100000))
    assert err.value.title == "Capture period expired" and not err.value.reconcile
    assert len(server.received("GET")) == 1


# ------------------------------------------------------------------ amounts beyond int64 in every parser
# Every provider types amounts as int64 (Bambora swagger `format: int64`, Vipps Amount.value int64); JSON
# lets a body carry 2**63 (orjson reads up to 2**64 - 1), which no provider can have meant.

BEYOND = 2**63


def _raw(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(status, {"Content-Type": "application/json"}, json.dumps(body).encode())


def test_bambora_get_refuses_amounts_beyond_int64_or_of_the_wrong_type() -> None:
    p = authorized("bambora", "order-20001")
    for bad in (BEYOND, 1000.0, "1000", -1):
        with pytest.raises(ProviderError):
            bambora.parse_get(_raw(200, {**bambora_body("Authorized", []), "amount": bad}), p)
    with pytest.raises(ProviderError):  # each capture fits, the sum does not
        bambora.parse_get(_raw(200, bambora_body("Captured", [2**62, 2**62])), p)


def test_vipps_and_hellgate_refuse_amounts_beyond_int64() -> None:
    with pytest.raises(ProviderError):
        vipps.parse_get(_raw(200, vipps_body(captured=BEYOND)), authorized("vipps", "order-10001"))
    with pytest.raises(ProviderError):
        hellgate.parse_get(_raw(200, hellgate_body("captured", BEYOND)), authorized("hellgate", HG_ID, currency="EUR"))


# ------------------------------------------------------------------------ capture CLI: never lose a fact


def _cli(args: list[str], env_extra: dict[str, str]) -> subprocess.Popen[str]:
    env = {"PATH": "/usr/bin:/bin", **env_extra}
    # Ctrl-C reaches a foreground command with SIGINT at its default; a shell's background job (a CI runner
    # may be one) starts children with SIGINT ignored, and then Python never raises KeyboardInterrupt.
    return subprocess.Popen([sys.executable, "-m", "capstate", "capture", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509


def _hellgate_history(tmp_path: Path, server: ScriptedServer) -> list[str]:
    url = _journal(tmp_path, {"payment": HG_ID, "type": "authorized", "at": "2026-01-05T10:00:00Z",
                              "amount": 5000, "currency": "EUR", "provider": "hellgate"})
    return ["--journal", url, "--payment", HG_ID]


def _intents(args: list[str]) -> list[str]:
    from capstate.providers.journal import Journal

    with Journal(args[1]) as journal:
        return [i.status.value for i in journal.state(HG_ID).intents]


def test_cli_wait_that_fails_still_prints_the_requested_capture(server: ScriptedServer, tmp_path: Path) -> None:
    # Before: the capture_requested event was lost (stdout empty) when the polling GET failed, so the history
    # still said `authorized` and the next run would decide the same capture again.
    body = {"id": HG_ID, "status": "capturing", "currency_code": "EUR", "amount": {"authorized": 5000}}
    server.on("POST", f"/payments/{HG_ID}/capture", Reply(200, body))
    server.on("GET", f"/payments/{HG_ID}", Reply(404, {"message": "gone"}))
    args = _hellgate_history(tmp_path, server)
    proc = _cli([*args, "--wait", "--attempts", "1"],
                {"CAPSTATE_HELLGATE_API_KEY": "k", "CAPSTATE_HELLGATE_BASE_URL": server.url})
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    assert [json.loads(line)["type"] for line in stdout.splitlines()] == ["capture_requested"]
    assert "Traceback" not in stderr and "waiting for its result failed" in stderr.splitlines()[-1]
    assert _intents(args) == ["done"]  # the capture was requested, and the journal says so (reconcile polls it)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_cli_interrupted_mid_capture_says_the_outcome_is_unknown(server: ScriptedServer, tmp_path: Path,
                                                                 signum: int) -> None:
    # Before: Ctrl-C while the capture was on the wire exited 130 without a word, and SIGTERM (a service manager
    # stopping the run) or SIGHUP (its terminal closed) killed it silently (exit -15, -1): the operator could not
    # tell a capture that never left from one that may have happened.
    server.on("POST", f"/payments/{HG_ID}/capture", Reply(200, {}, delay=30.0))
    args = _hellgate_history(tmp_path, server)
    proc = _cli(args, {"CAPSTATE_HELLGATE_API_KEY": "k", "CAPSTATE_HELLGATE_BASE_URL": server.url})
    deadline = time.monotonic() + 30
    while not server.received("POST") and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 3 and stdout == "", (proc.returncode, stderr)
    assert stderr.count("\n") == 1 and "interrupted" in stderr and "UNKNOWN" in stderr
    assert _intents(args) == ["pending"]  # the intent stays open: reconcile settles it, nothing resends it


@pytest.mark.parametrize("status", ["voiding", "processing"])
def test_hellgate_capture_timeout_is_not_recorded_as_requested_from_another_in_flight_status(
        server: ScriptedServer, sleeps: Sleeps, status: str) -> None:
    # Only `capturing` shows a capture at work ("the payment object, now in capturing status", capture page).
    # Before: `voiding` (a void running) or `processing` (an automatic-capture flow) recorded OUR capture as
    # requested, and the payment went to `capturing` in the history.
    server.on("POST", f"/payments/{HG_ID}/capture", Reply(200, hellgate_body("capturing"), delay=2.0))
    server.on("GET", HG_GET, Reply(200, hellgate_body(status)))
    creds = hellgate.Credentials(api_key=SECRETS[4], base_url=server.url)
    with (CaptureClient("hellgate", creds, retry=policy(sleeps, attempts=2), clock=lambda: NOW, timeout=0.3)
          as client, pytest.raises(ProviderError) as err):
        client.capture(authorized("hellgate", HG_ID, currency="EUR"), Capture(at=NOW))
    assert err.value.reconcile and len(server.received("POST")) == 1


def test_pipwave_processing_without_require_capture_is_not_read_as_nothing_captured(
        server: ScriptedServer, sleeps: Sleeps) -> None:
    # transaction_status 5 "Processing" is where a capture runs (confirm-payment moves processing -> paid);
    # only `require_capture: true` ("Does this transaction require capture?") says none has happened.
    # Before: Processing alone read as captured 0, and a timed-out capture was sent again.
    answers = {"capture-payment": [Reply(500, b"", content_type="text/plain")],
               "requery": [Reply(200, {"status": 200, "transaction_status": 5, "amount": "1000.00",
                                       "currency_code": "NOK", "require_capture": False})]}
    script_by_action(server, "/payment", answers)
    creds = pipwave.Credentials(api_key=SECRETS[5], api_secret=SECRETS[6], url=server.url + "/payment")
    with (CaptureClient("pipwave", creds, retry=policy(sleeps), clock=lambda: NOW) as client,
          pytest.raises(ProviderError) as err):
        client.capture(authorized("pipwave", "ORDER-1"), Capture(at=NOW, amount=50000))
    assert [r.json()["action"] for r in server.requests] == ["capture-payment", "requery"]
    assert err.value.reconcile


def test_a_naive_clock_is_refused_before_anything_is_sent(server: ScriptedServer, sleeps: Sleeps) -> None:
    # Before: a naive clock went unnoticed until a Retry-After HTTP-date was compared with it (TypeError
    # escaped, after the capture was sent), and Pipwave signed a local-time timestamp as if it were UTC.


    server.on("POST", VIPPS_CAPTURE, Reply(429, {"title": "Too Many Requests", "status": 429},
                                           headers={"Retry-After": "Mon, 05 Jan 2026 13:00:01 GMT"}))
    with (CaptureClient("vipps", vipps_creds(server), retry=policy(sleeps), clock=lambda: datetime(2026, 1, 5, 13))
          as client, pytest.raises(CommandError, match="timezone")):
        client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=100))
    assert server.requests == []


@pytest.mark.parametrize("code", [458, ["MYR"], True, ""])
def test_pipwave_requery_currency_code_of_the_wrong_type_is_an_error(code: Any) -> None:
    # currency_code is "string (3) ... ISO 4217" (requery.md). Before: anything not a string was ignored and
    # the payment's own currency assumed.
    with pytest.raises(ProviderError):
        pipwave.parse_requery(pw_answer(currency_code=code, final_amount="123.00", transaction_status="10"), myr())


@pytest.mark.parametrize("fee", ["processing_fee_amount", "tax_amount", "shipping_amount", "handling_amount"])
def test_pipwave_captured_is_unknown_when_a_fee_is_reported_without_a_total(fee: str) -> None:
    # requery.md lists the fee, tax, shipping and handling amounts beside `amount`; with one of them and no
    # total_amount, final_amount may include it. Before: final_amount was taken as the captured amount.
    status = pipwave.parse_requery(pw_answer(final_amount="124.20", transaction_status="10", **{fee: "1.20"}),
                                   myr())
    assert status.captured is None


def test_pipwave_cancel_timeout_with_requery_cancelled_is_applied_not_resent(server: ScriptedServer,
                                                                            sleeps: Sleeps) -> None:
    # transaction_status 2 "Cancelled" (payment_status_code.md) proves the cancel. Before: requery reported
    # no cancelled amount at all, so every unclear cancel ended in "reconcile" by hand.
    answers = {"cancel-payment": [Reply(500, b"", content_type="text/plain")],
               "requery": [Reply(200, {"status": 200, "transaction_status": 2, "amount": "1000.00",
                                       "currency_code": "NOK", "require_capture": False})]}
    script_by_action(server, "/payment", answers)
    creds = pipwave.Credentials(api_key=SECRETS[5], api_secret=SECRETS[6], url=server.url + "/payment")
    with CaptureClient("pipwave", creds, retry=policy(sleeps), clock=lambda: NOW) as client:
        out = client.cancel(authorized("pipwave", "ORDER-1"), Cancel(at=NOW))
    assert [r.json()["action"] for r in server.requests] == ["cancel-payment", "requery"]
    assert out.payment.cancelled == 100000 and out.reconciled


# ------------------------------------------------------------------------ second review


@pytest.mark.parametrize("amount", [2**63, 2**64 - 1, 2**64, 2**70])
@pytest.mark.parametrize("provider", ["bambora", "hellgate"])
def test_builders_refuse_amounts_beyond_int64(provider: str, amount: int) -> None:
    # Bambora's Capture/Refund `amount` is int64 (swagger); 2**63 went out as is, and from 2**64 orjson raised an
    # untyped TypeError ("Integer exceeds 64-bit range") out of a builder that promises RequestError.
    module = {"bambora": bambora, "hellgate": hellgate}[provider]
    creds = (bambora.Credentials(access_token="tok", merchant_number="T1", secret_token="s") if provider == "bambora"
             else hellgate.Credentials(api_key="k"))
    reference = HG_ID if provider == "hellgate" else "order-1"
    # decide refuses such amounts (AMOUNT_INVALID); the builders are a second line for a caller that skips it,
    # so the history is recorded leniently, as an audit would read it.
    def record(payment: Payment, etype: EventType, value: int) -> Payment:
        return capstate.observe(payment, Event(reference, etype, NOW, value, "EUR"))[0]

    p = record(Payment.new(capstate.load_spec(provider), reference), EventType.AUTHORIZED, amount + 1)
    assert p.authorized == amount + 1
    assert capstate.decide(p, Capture(at=NOW, amount=amount, currency="EUR")).codes == (
        capstate.Code.AMOUNT_INVALID,)
    with pytest.raises(RequestError) as err:
        module.build_capture(p, Capture(at=NOW, amount=amount, currency="EUR"), creds)
    assert err.value.field == "amount"
    paid = record(p, EventType.CAPTURE_REQUESTED, amount + 1) if provider == "hellgate" else p
    paid = record(paid, EventType.CAPTURED, amount + 1)
    with pytest.raises(RequestError):
        module.build_refund(paid, Refund(at=NOW, amount=amount), creds)
    # int64's largest still goes out exactly, never through a float
    ok = module.build_capture(p, Capture(at=NOW, amount=2**63 - 1, currency="EUR"), creds)
    assert ok.json()["amount"] == 2**63 - 1 and b"9223372036854775807" in ok.body


def test_cli_capture_beyond_int64_is_one_line_exit_2(tmp_path: Path) -> None:
    history = tmp_path / "h.jsonl"
    history.write_text(json.dumps({"payment": "order-1", "type": "authorized", "at": "2026-01-05T10:00:00Z",
                                   "amount": 2**64 - 1, "currency": "EUR", "provider": "bambora"}) + "\n")
    proc = _cli(["--provider", "bambora", "--history", str(history), "--at", "2026-01-06T09:00:00Z", "--dry-run"],
                {"CAPSTATE_BAMBORA_MERCHANT_NUMBER": "T1"})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, (out, err)
    assert out == "" and err.count("\n") == 1 and "int64" in err and "Traceback" not in err


@pytest.mark.parametrize("digits", [400, 5000])
def test_a_huge_retry_after_after_a_sent_capture_is_a_typed_outcome(server: ScriptedServer, sleeps: Sleeps,
                                                                    digits: int) -> None:
    # float(int("9" * 400)) raised OverflowError and int("9" * 5000) ValueError (the int-string limit), out of
    # the executor AFTER the capture went out and got a 5xx: untyped, and the CLI said "internal error", exit 2
    # (bad input) where the outcome was unknown. Now it means "wait longer than allowed": stop, read back.
    huge = {"Retry-After": "9" * digits}
    server.on("POST", "/payments/order-20001/capture/", Reply(503, b"", headers=huge))
    server.on("GET", "/payments/order-20001/", Reply(200, bambora_body("Authorized")))
    with bambora_client(server, sleeps) as client, pytest.raises(ProviderError) as info:
        client.capture(authorized("bambora", "order-20001"), Capture(at=NOW, amount=25000))
    assert info.value.status == 503 and "longer than 30 s" in str(info.value)
    assert len(server.received("POST")) == 1 and len(server.received("GET")) == 1 and sleeps == []
    server.on("POST", VIPPS_CAPTURE, Reply(503, b"", headers=huge))
    server.on("GET", "/epayment/v1/payments/order-10001", Reply(200, vipps_body(captured=25000)))
    with vipps_client(server, sleeps) as client:
        out = client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=25000, key="ship-1"))
    assert out.reconciled and out.payment.captured == 25000  # the unclear 503 was read back, not left untyped


def test_an_injected_client_that_follows_redirects_never_sends_a_capture_elsewhere(server: ScriptedServer,
                                                                                   sleeps: Sleeps) -> None:
    # With httpx.Client(follow_redirects=True) injected, a 307 re-POSTed the Hellgate capture to another origin,
    # X-API-Key included (httpx strips only Authorization), and recorded that origin's answer as the capture.
    with scripted_server() as elsewhere:
        elsewhere.on("POST", "/steal", Reply(200, hellgate_body("capturing")))
        elsewhere.on("POST", "/vipps", Reply(200, vipps_body(captured=25000)))
        server.on("POST", f"/payments/{HG_ID}/capture", Reply(307, b"", headers={"Location": elsewhere.url + "/steal"}))
        server.on("POST", VIPPS_CAPTURE, Reply(308, b"", headers={"Location": elsewhere.url + "/vipps"}))
        hg = hellgate.Credentials(api_key=SECRETS[4], base_url=server.url)
        with httpx.Client(follow_redirects=True) as http, pytest.raises(ProviderError) as info:
            CaptureClient("hellgate", hg, client=http, retry=policy(sleeps), clock=lambda: NOW).capture(
                authorized("hellgate", HG_ID, currency="EUR"), Capture(at=NOW))
        assert info.value.status == 307

        async def run() -> None:
            async with httpx.AsyncClient(follow_redirects=True) as http:
                client = AsyncCaptureClient("vipps", vipps_creds(server), client=http, retry=policy(sleeps),
                                            clock=lambda: NOW)
                await client.capture(authorized("vipps", "order-10001"), Capture(at=NOW, amount=25000))

        with pytest.raises(ProviderError) as info:
            asyncio.run(run())
        assert info.value.status == 308
        assert elsewhere.requests == []  # neither the capture nor a credential left for the other origin
