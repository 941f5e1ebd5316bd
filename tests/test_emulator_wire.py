"""The emulator's wire: Bambora answers validate against Bambora's own Swagger definitions, and bad input of
every kind (malformed JSON, wrong types, huge bodies, bad auth, unknown routes, bad control requests) gets
the provider's error shape or a one-line control error, never a traceback or a 500."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from _requires import provider_spec
from emulator_server import RunningEmulator, running
from jsonschema import Draft4Validator

from capstate.providers import pipwave

T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
SWAGGER = Path(__file__).resolve().parents[1].parent / "shared" / "provider-specs" / \
    "bambora-payments-api-beta-swagger.json"


@pytest.fixture(scope="module")
def emu() -> Iterator[RunningEmulator]:
    with running(["bambora", "hellgate", "pipwave"], clock=T0, frozen=True) as server:
        yield server


def bambora_headers(emu: RunningEmulator, secret: str | None = None) -> dict[str, str]:
    c = emu.emulator.credentials["bambora"]
    raw = f"{c['access_token']}@{c['merchant_number']}:{secret or c['secret_token']}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode(), "API-Version": "1"}


def hellgate_headers(emu: RunningEmulator) -> dict[str, str]:
    return {"X-API-Key": emu.emulator.credentials["hellgate"]["api_key"]}


def signed(emu: RunningEmulator, fields: dict[str, Any], secret: str | None = None) -> dict[str, Any]:
    c = emu.emulator.credentials["pipwave"]
    body = {"timestamp": 1767614400, "api_key": c["api_key"], **fields}
    body["signature"] = pipwave.signature(body, secret or c["api_secret"])
    return body


# ------------------------------------------------------------------------------------- Bambora schema


def test_every_bambora_answer_validates_against_the_swagger(emu: RunningEmulator) -> None:
    swagger = json.loads(provider_spec(SWAGGER.name).read_text(encoding="utf-8"))

    def check(response: httpx.Response, definition: str) -> None:
        schema = {"$ref": f"#/definitions/{definition}", "definitions": swagger["definitions"]}
        errors = list(Draft4Validator(schema).iter_errors(response.json()))
        assert not errors, (response.text, errors[0].message)

    emu.seed("bambora", "schema-1", 2000, "DKK")
    emu.seed("bambora", "schema-2", 2000, "DKK")
    h = bambora_headers(emu)
    answers = [(emu.http.post("/bambora/payments/schema-1/capture/", json={"amount": 500, "comment": "one"},
                              headers=h), "PaymentResponse", 201),
               (emu.http.get("/bambora/payments/schema-1/", headers=h), "PaymentResponse", 200),
               (emu.http.post("/bambora/payments/schema-1/refund/", json={"amount": 100}, headers=h),
                "PaymentResponse", 201),
               (emu.http.post("/bambora/payments/schema-2/cancel/", headers=h), "PaymentResponse", 200),
               (emu.http.post("/bambora/payments/schema-1/capture/", json={"amount": 1}, headers=h), "Error", 422),
               (emu.http.post("/bambora/payments/schema-1/capture/", json={}, headers=h), "Error", 400),
               (emu.http.get("/bambora/payments/nope/", headers=h), "Error", 404),
               (emu.http.get("/bambora/payments/schema-1/"), "Error", 401),
               (emu.http.get("/bambora/payments/schema-1/", headers=bambora_headers(emu, "wrong")), "Error", 403)]
    for response, definition, status in answers:
        assert response.status_code == status, response.text
        check(response, definition)
        if status >= 400:
            assert response.json()["status"] == status
    # The validator can fail: a body without `state` is not a PaymentResponse.
    with pytest.raises(AssertionError):
        check(httpx.Response(200, json={"payment": "x"}), "PaymentResponse")


# ---------------------------------------------------------------------------------------- bad input

BAD_BODIES = [b"{", b"[]", b'"x"', b'{"amount": "300"}', b'{"amount": 3.5}', b'{"amount": -1}', b'{"amount": true}',
              b'{"amount": 99999999999999999999999}', b'{"amount": 1, "comment": 7}', b"\xff\xfe", b"null"]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_bambora_malformed_bodies_are_its_400(emu: RunningEmulator, body: bytes) -> None:
    emu.seed("bambora", f"bad-{uuid.uuid4().hex[:8]}", 1000, "EUR")
    r = emu.http.post("/bambora/payments/x/capture/", content=body, headers=bambora_headers(emu))
    assert r.status_code == 400
    assert set(r.json()) == {"type", "title", "detail", "status"} and r.json()["type"] == "about:blank"


HELLGATE_BAD = [*BAD_BODIES, b'{"reference": ""}', b'{"amount": 5, "reference": "x"}',
                b'{"amount": 5, "currency_code": "eur", "reference": "x"}']


@pytest.mark.parametrize("body", HELLGATE_BAD)
def test_hellgate_malformed_bodies_are_its_400(emu: RunningEmulator, body: bytes) -> None:
    r = emu.http.post(f"/hellgate/payments/{uuid.uuid4()}/capture", content=body, headers=hellgate_headers(emu))
    assert r.status_code == 400
    assert r.json()["code"] == "bad_request" and r.json()["message"]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_pipwave_malformed_bodies_are_its_9001(emu: RunningEmulator, body: bytes) -> None:
    r = emu.http.post("/pipwave", content=body, headers={"x-api-key": emu.emulator.credentials["pipwave"]["api_key"]})
    assert r.status_code == 200 and r.json()["status"] in {"9001", "403"}


def test_auth_failures_are_each_providers_401_and_403(emu: RunningEmulator) -> None:
    pid = uuid.uuid4()
    assert emu.http.get(f"/hellgate/payments/{pid}").status_code == 401
    assert emu.http.get(f"/hellgate/payments/{pid}", headers={"X-API-Key": "nope"}).status_code == 403
    assert emu.http.get("/bambora/payments/x/", headers={"Authorization": "Bearer x", "API-Version": "1"}
                        ).status_code == 401
    key = emu.emulator.credentials["pipwave"]["api_key"]
    emu.seed("pipwave", "sig-1", 1000, "MYR")
    bad_sig = signed(emu, {"action": "requery", "txn_id": "sig-1"}, secret="not-the-secret")
    assert emu.http.post("/pipwave", json=bad_sig, headers={"x-api-key": key}).json()["status"] == "401"
    good = signed(emu, {"action": "requery", "txn_id": "sig-1"})
    assert emu.http.post("/pipwave", json=good, headers={"x-api-key": "other"}).json()["status"] == "403"
    assert emu.http.post("/pipwave", json=good, headers={"x-api-key": key}).json()["status"] == "200"
    tampered = {**good, "txn_id": "sig-2"}
    assert emu.http.post("/pipwave", json=tampered, headers={"x-api-key": key}).json()["status"] == "401"
    unknown = signed(emu, {"action": "explode", "txn_id": "sig-1"})
    assert emu.http.post("/pipwave", json=unknown, headers={"x-api-key": key}).json()["status"] == "404"


def test_unknown_payments_and_routes(emu: RunningEmulator) -> None:
    assert emu.http.get(f"/hellgate/payments/{uuid.uuid4()}", headers=hellgate_headers(emu)).status_code == 404
    assert emu.http.get("/hellgate/payments/not-a-uuid", headers=hellgate_headers(emu)).status_code == 400
    r = emu.http.get("/bambora/nowhere", headers=bambora_headers(emu))
    assert r.status_code == 404 and r.json()["status"] == 404
    r = emu.http.get("/bambora/payments/x/capture/", headers=bambora_headers(emu))
    assert r.status_code == 405 and r.json()["status"] == 405
    r = emu.http.get("/elsewhere/thing")
    assert r.status_code == 404 and list(r.json()) == ["error"]
    key = emu.emulator.credentials["pipwave"]["api_key"]
    r = emu.http.post("/pipwave", json=signed(emu, {"action": "requery", "txn_id": "nobody"}),
                      headers={"x-api-key": key})
    assert r.json()["status"] == "9001"


@pytest.mark.parametrize("path", ["/bambora/payments/x/capture/",
                                  "/hellgate/payments/5fc96c5f-16f2-49f8-b8ce-db6110cefea4/capture", "/pipwave"])
def test_huge_bodies_are_refused_with_the_providers_413(emu: RunningEmulator, path: str) -> None:
    r = emu.http.post(path, content=b"{" + b" " * 200_000 + b"}", headers={**bambora_headers(emu),
                                                                            **hellgate_headers(emu)})
    assert r.status_code in (401, 413) and r.headers["content-type"].startswith("application/")
    r = emu.http.post(path, content=b"{" + b" " * 200_000 + b"}", headers={
        **bambora_headers(emu), **hellgate_headers(emu), "x-api-key": emu.emulator.credentials["pipwave"]["api_key"]})
    assert r.status_code == 413


def seed(**fields: object) -> bytes:
    return orjson.dumps({"provider": "bambora", "reference": "c", "amount": 1, "currency": "EUR", **fields})


BAD_CONTROL = [
    ("POST", "/payments", b"{", 400), ("POST", "/payments", b"[]", 400),
    ("POST", "/payments", seed(amount=1.5), 400), ("POST", "/payments", seed(amount=True), 400),
    ("POST", "/payments", seed(currency="EURO"), 400), ("POST", "/payments", seed(provider="nope"), 400),
    ("POST", "/payments", seed(extra=1), 400), ("POST", "/payments", seed(at="yesterday"), 400),
    ("POST", "/payments", seed(flow="sometimes"), 400),
    ("GET", "/payments/bambora/never", b"", 404), ("GET", "/payments/nope/never", b"", 404),
    ("POST", "/clock", orjson.dumps({"advance": "soon"}), 400), ("POST", "/clock", orjson.dumps({}), 400),
    ("POST", "/clock", orjson.dumps({"set": "2020-01-01T00:00:00Z"}), 409),
    ("POST", "/clock", orjson.dumps({"advance": "99999999999d"}), 400),
    ("POST", "/faults", orjson.dumps({"provider": "bambora", "op": "capture", "kind": "boom"}), 400),
    ("POST", "/faults", orjson.dumps({"provider": "bambora", "op": "fly", "kind": "429"}), 400),
    ("POST", "/faults", orjson.dumps({"provider": "bambora", "op": "capture", "kind": "latency"}), 400),
    ("POST", "/faults", orjson.dumps({"provider": "bambora", "op": "capture", "kind": "429", "count": 0}), 400),
    ("POST", "/hellgate/settle", orjson.dumps({"outcome": "maybe"}), 400),
    ("POST", "/hellgate/settle", orjson.dumps({"reference": "none", "outcome": "captured"}), 404),
    ("GET", "/nothing/here", b"", 404), ("POST", "/reset", b"[1]", 400),
    ("POST", "/payments", b"x" * 40_000, 413),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD_CONTROL)
def test_bad_control_requests_are_one_line_errors(emu: RunningEmulator, method: str, path: str, body: bytes,
                                                  status: int) -> None:
    r = emu.http.request(method, "/_emulator" + path, content=body)
    assert r.status_code == status, r.text
    assert list(r.json()) == ["error"] and "\n" not in r.json()["error"] and r.json()["error"]


def test_seeding_twice_is_409(emu: RunningEmulator) -> None:
    emu.seed("bambora", "twice", 100, "EUR")
    r = emu.control("POST", "/payments", {"provider": "bambora", "reference": "twice", "amount": 100,
                                          "currency": "EUR"})
    assert r.status_code == 409
