"""The Vipps emulator's own rules over HTTP: idempotency as Vipps does it, authentication, the clock's lapses,
signed webhooks to a real receiver, persistence, and bad input that always gets Vipps's problem shape.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import jsonschema
import orjson
import pytest
import yaml
from httpserver import Reply, ScriptedServer, scripted_server
from openapi_schema_validator import OAS30Validator
from test_contract_vipps_openapi import SPEC, SPECS
from vipps_emulator import MSN, SUBSCRIPTION_KEY, Emulator, serving

from capstate.providers.vipps.webhooks import verify_webhook

SECRET = "webhook-secret-3f9a1c"
PROBLEM_FIELDS = {"type", "title", "status", "traceId", "detail"}


@pytest.fixture(scope="module")
def receiver() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        server.on("POST", "/hooks/vipps", Reply(200))
        yield server


@pytest.fixture(scope="module")
def emulator(receiver: ScriptedServer) -> Iterator[Emulator]:
    url = receiver.url + "/hooks/vipps?shop=1"
    with serving("--set", f"vipps.webhook_url={url}", "--set", f"vipps.webhook_secret={SECRET}") as base:
        emu = Emulator(base)
        try:
            yield emu
        finally:
            emu.close()


def path(ref: str, op: str = "") -> str:
    return f"/epayment/v1/payments/{ref}" + (f"/{op}" if op else "")


def amount(value: int, currency: str = "NOK") -> dict[str, object]:
    return {"modificationAmount": {"currency": currency, "value": value}}


def is_problem(answer: httpx.Response, status: int) -> dict[str, object]:
    body = answer.json()
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert set(body) >= PROBLEM_FIELDS and body["status"] == status
    return dict(body)


# ----------------------------------------------------------------------------------------- idempotency


def test_an_identical_retry_gets_the_stored_answer_byte_for_byte(emulator: Emulator) -> None:
    emulator.authorized("idem-0001")
    first = emulator.call("POST", path("idem-0001", "capture"), key="k-1", json=amount(300))
    later = emulator.call("POST", path("idem-0001", "capture"), key="k-2", json=amount(200))
    assert later.json()["aggregate"]["capturedAmount"]["value"] == 500
    # The same key and body again, after another capture moved the aggregate: the ORIGINAL answer (captured
    # 300), not the payment as it is now, and nothing moves.
    again = emulator.call("POST", path("idem-0001", "capture"), key="k-1",
                          content=b'{ "modificationAmount" : {"value": 300, "currency": "NOK"} }')
    assert (again.status_code, again.content) == (200, first.content)
    assert emulator.ledger("idem-0001")["captured"] == 500


def test_the_same_key_with_another_body_is_409(emulator: Emulator) -> None:
    emulator.authorized("idem-0002")
    assert emulator.call("POST", path("idem-0002", "capture"), key="k-1", json=amount(300)).status_code == 200
    conflict = is_problem(emulator.call("POST", path("idem-0002", "capture"), key="k-1", json=amount(301)), 409)
    assert conflict["title"] == "Capture idempotency conflict"
    other_op = is_problem(emulator.call("POST", path("idem-0002", "refund"), key="k-1", json=amount(300)), 409)
    assert other_op["title"] == "Idempotency error"
    assert emulator.ledger("idem-0002")["captured"] == 300 and emulator.ledger("idem-0002")["refunded"] == 0


def test_keys_are_scoped_per_payment(emulator: Emulator) -> None:
    emulator.authorized("idem-0003")
    emulator.authorized("idem-0004")
    for ref in ("idem-0003", "idem-0004"):
        answer = emulator.call("POST", path(ref, "capture"), key="shared-key", json=amount(100))
        assert answer.status_code == 200 and answer.json()["reference"] == ref
    assert emulator.ledger("idem-0004")["captured"] == 100


def test_a_refusal_is_replayed_too(emulator: Emulator) -> None:
    emulator.authorized("idem-0005")
    refused = is_problem(emulator.call("POST", path("idem-0005", "capture"), key="k-big", json=amount(5000)), 400)
    again = emulator.call("POST", path("idem-0005", "capture"), key="k-big", json=amount(5000))
    assert again.json() == refused  # the same problem, trace id included: it is the stored answer
    events = [e["name"] for e in emulator.call("GET", path("idem-0005", "events")).json()]
    assert events == ["CREATED", "AUTHORIZED", "CAPTURED"]  # the one failed attempt, logged once


def test_create_is_idempotent_per_merchant(emulator: Emulator) -> None:
    first = emulator.create("idem-0006")
    again = emulator.create("idem-0006")
    assert (first.status_code, again.status_code, again.content) == (201, 201, first.content)
    body = {"amount": {"currency": "NOK", "value": 999}, "paymentMethod": {"type": "WALLET"},
            "reference": "idem-0006", "userFlow": "WEB_REDIRECT", "returnUrl": "https://example.com/r"}
    assert is_problem(emulator.call("POST", "/epayment/v1/payments", key="create-idem-0006", json=body),
                      409)["title"] == "Idempotency error"
    assert is_problem(emulator.call("POST", "/epayment/v1/payments", key="another-key", json=body),
                      409)["title"] == "Duplicate reference"


# -------------------------------------------------------------------------------------- authentication


def test_credentials_are_checked_as_vipps_checks_them(emulator: Emulator) -> None:
    emulator.authorized("auth-0001")
    url = emulator.url + path("auth-0001")
    good = emulator.headers()
    assert emulator.http.get(url, headers=good).status_code == 200
    for change, status in (({"Authorization": "Bearer emu.not-issued"}, 401), ({"Authorization": ""}, 401),
                           ({"Ocp-Apim-Subscription-Key": "wrong"}, 401), ({"Merchant-Serial-Number": "654321"}, 403),
                           ({"Merchant-Serial-Number": "12"}, 400)):
        is_problem(emulator.http.get(url, headers={**good, **change}), status)
    token = emulator.http.post(emulator.url + "/accesstoken/get", headers={
        "client_id": "emulator-client-id", "client_secret": "wrong", "Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY})
    is_problem(token, 401)
    missing = emulator.http.post(emulator.url + "/accesstoken/get", headers={"client_id": "emulator-client-id"})
    is_problem(missing, 401)


# ------------------------------------------------------------------------------- the clock and webhooks


def _webhooks(receiver: ScriptedServer, reference: str, names: list[str], timeout: float = 20.0
              ) -> list[dict[str, object]]:
    """The webhooks for `reference` once they include `names`, each verified with the receiving side's code."""
    deadline = time.monotonic() + timeout
    while True:
        got = []
        for req in receiver.received("POST", "/hooks/vipps"):
            verify_webhook(secret=SECRET, method="POST", path_and_query=req.path, headers=req.headers, body=req.body,
                           now=datetime.now(UTC))
            event = orjson.loads(req.body)
            if event["reference"] == reference:
                got.append(event)
        if [e["name"] for e in got] == names or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_signed_webhooks_reach_a_real_receiver(emulator: Emulator, receiver: ScriptedServer) -> None:
    emulator.authorized("hook-0001")
    emulator.call("POST", path("hook-0001", "capture"), key="h-1", json=amount(300))
    emulator.call("POST", path("hook-0001", "cancel"), key="h-2")
    emulator.call("POST", path("hook-0001", "refund"), key="h-3", json=amount(100))
    names = ["CREATED", "AUTHORIZED", "CAPTURED", "CANCELLED", "REFUNDED"]
    got = _webhooks(receiver, "hook-0001", names)
    assert [e["name"] for e in got] == names
    assert all(e["msn"] == MSN and e["success"] is True for e in got)
    assert [e["amount"]["value"] for e in got] == [1000, 1000, 300, 700, 100]
    assert [e["idempotencyKey"] for e in got][2:] == ["h-1", "h-2", "h-3"]
    # Each body is a WebhookEvent of the ePayment document (nullable idempotencyKey: OpenAPI 3.0 semantics).
    document = yaml.safe_load((SPECS / SPEC).read_text(encoding="utf-8"))
    validator = OAS30Validator({"$ref": "#/components/schemas/WebhookEvent", "components": document["components"]})
    for event in got:
        validator.validate(event)
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({**got[0], "amount": {"currency": "SEK", "value": 1}})


def test_the_clock_lapses_authorizations_and_unapproved_payments(emulator: Emulator, receiver: ScriptedServer) -> None:
    emulator.authorized("lapse-0001")
    emulator.call("POST", path("lapse-0001", "capture"), key="l-1", json=amount(400))
    assert emulator.create("lapse-0002").status_code == 201  # never approved
    # Both lapse on the clock alone, with nobody reading them: the webhooks say so.
    emulator.advance("181d")
    assert [e["name"] for e in _webhooks(receiver, "lapse-0002", ["CREATED", "EXPIRED"])] == ["CREATED", "EXPIRED"]
    lapsed = _webhooks(receiver, "lapse-0001", ["CREATED", "AUTHORIZED", "CAPTURED", "CANCELLED"])
    assert lapsed[-1]["name"] == "CANCELLED" and lapsed[-1]["amount"]["value"] == 600
    assert lapsed[-1]["idempotencyKey"] is None
    # Tokens live an hour of the emulator's time: the old one is gone.
    old = emulator.headers()
    is_problem(emulator.http.get(emulator.url + path("lapse-0001"), headers=old), 401)
    emulator.token(fresh=True)
    view = emulator.call("GET", path("lapse-0001")).json()
    assert (view["state"], view["aggregate"]["cancelledAmount"]["value"]) == ("AUTHORIZED", 600)
    assert emulator.ledger("lapse-0001")["state"] == "captured"  # the engine's state: captured, rest expired
    late = is_problem(emulator.call("POST", path("lapse-0001", "capture"), key="l-2", json=amount(100)), 400)
    assert late["title"] == "Capture period expired"
    assert emulator.call("GET", path("lapse-0002")).json()["state"] == "EXPIRED"
    refused = is_problem(emulator.approve("lapse-0002"), 400)
    assert refused["title"] == "Payment cannot be approved"


def test_a_cancel_before_approval_terminates_the_payment(emulator: Emulator) -> None:
    assert emulator.create("term-0001").status_code == 201
    cancelled = emulator.call("POST", path("term-0001", "cancel"), key="t-1")
    assert (cancelled.status_code, cancelled.json()["state"]) == (200, "TERMINATED")
    assert emulator.ledger("term-0001")["state"] == "cancelled"
    refused = is_problem(emulator.call("POST", path("term-0001", "capture"), key="t-2", json=amount(100)), 400)
    assert refused["title"] == "Cannot capture a cancelled payment"
    assert is_problem(emulator.approve("term-0001"), 400)["title"] == "Payment cannot be approved"
    names = [e["name"] for e in emulator.call("GET", path("term-0001", "events")).json()]
    assert names == ["CREATED", "TERMINATED", "CAPTURED"]


# ------------------------------------------------------------------------------------------ bad input

BAD = [
    ("POST", "/epayment/v1/payments/bad-0001/capture", b"{", 400),
    ("POST", "/epayment/v1/payments/bad-0001/capture", b'{"modificationAmount": {"currency": "NOK", "value": "1"}}',
     400),
    ("POST", "/epayment/v1/payments/bad-0001/capture", b'{"modificationAmount": {"currency": "NOK", "value": 1.5}}',
     400),
    ("POST", "/epayment/v1/payments/bad-0001/capture", b'{"modificationAmount": {"currency": "NOK", "value": 1e400}}',
     400),
    ("POST", "/epayment/v1/payments/bad-0001/capture", b"[]", 400),
    ("POST", "/epayment/v1/payments/bad-0001/capture", b"\xff\xfe", 400),
    ("POST", "/epayment/v1/payments/bad-0001/capture", b" " * 200_000, 413),
    ("POST", "/epayment/v1/payments/bad-0001/cancel", b'{"cancelTransactionOnly": "no"}', 400),
    ("POST", "/epayment/v1/payments", b'{"reference": 5}', 400),
    ("POST", "/epayment/v1/payments/no_such_ref!/capture", b'{"modificationAmount": {"currency": "NOK", "value": 100}}',
     400),
    ("POST", "/epayment/v1/payments/unknown-0001/capture", b'{"modificationAmount": {"currency": "NOK", "value": 100}}',
     404),
    ("GET", "/epayment/v1/payments/unknown-0001", b"", 404),
    ("GET", "/epayment/v1/payments/a%2Fb%2Fc%2Fd", b"", 400),
    ("GET", "/epayment/v1/payments/%ff%fe%fd%fc%fb", b"", 400),
    ("DELETE", "/epayment/v1/payments/bad-0001", b"", 405),
    ("GET", "/epayment/v2/whatever", b"", 404),
    ("POST", "/epayment/v1/test/payments/bad-0001/approve", b'{"customer": {"phoneNumber": 4791234567}}', 400),
]


@pytest.mark.parametrize(("method", "target", "body", "status"), BAD)
def test_bad_input_gets_a_vipps_problem_never_a_traceback(emulator: Emulator, method: str, target: str, body: bytes,
                                                          status: int) -> None:
    if emulator.ledger_or_none("bad-0001") is None:
        emulator.authorized("bad-0001")
    answer = emulator.http.request(method, emulator.url + target, headers={
        **emulator.headers("bad-key"), "Content-Type": "application/json"}, content=body)
    problem = is_problem(answer, status)
    assert "Traceback" not in answer.text
    assert isinstance(problem["title"], str) and problem["title"]


# ----------------------------------------------------------------------------------------- persistence


def test_the_state_file_keeps_payments_keys_and_tokens_across_a_restart(tmp_path: Path) -> None:
    state = str(tmp_path / "vipps.db")
    with serving("--state", state) as base:
        emu = Emulator(base)
        emu.authorized("keep-0001")
        first = emu.call("POST", path("keep-0001", "capture"), key="p-1", json=amount(300))
        token = emu.token()
        emu.close()
    with serving("--state", state) as base:
        emu = Emulator(base)
        emu._token = token  # the token issued before the restart still works
        again = emu.call("POST", path("keep-0001", "capture"), key="p-1", json=amount(300))
        assert (again.status_code, again.content) == (200, first.content)
        assert emu.ledger("keep-0001")["captured"] == 300
        emu.close()


@pytest.mark.parametrize("setting", ["vipps.webhook_url=ftp://shop.example/hook", "vipps.webhook_secret=",
                                     "vipps.token_lifetime=forever"])
def test_a_bad_vipps_setting_is_one_line_and_exit_2(setting: str) -> None:
    run = subprocess.run([sys.executable, "-m", "capstate", "emulate", "--provider", "vipps", "--port", "0",
                          "--set", setting], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and setting.partition("=")[0] in run.stderr and "Traceback" not in run.stderr
