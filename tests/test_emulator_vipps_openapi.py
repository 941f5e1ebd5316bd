"""Every answer the Vipps emulator gives validates against Vipps's own ePayment OpenAPI document
(shared/provider-specs/vipps-epayment-openapi.yaml, v1.4.1) with openapi-core: successes, refusals, auth
failures, malformed input, unknown routes and injected faults, collected from a real `capstate emulate` while
raw requests and capstate's own CaptureClient run against it.

Where the document declares the operation and status, openapi-core validates the whole response (status,
media type, body); where it declares no such status (401, 404 on a GET, 405, 413, 429, 500, an unknown path),
the body is validated against its `Problem` schema. `POST /accesstoken/get` is in the Access Token API, not
this document: its answer is checked against AuthorizationTokenResponse (all strings; deno-sdk types).

The temporary copy of the document differs from the original in two documented places only: the one remote
$ref (as tests/test_contract_vipps_openapi.py does), and `PaymentEvent.required`, which still lists
`paymentAction`, a property removed in v1.2.1 (research/providers.md §2.9 item 2), in place of `name`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from openapi_core import Config, OpenAPI
from test_contract_vipps_openapi import ORDER_MANAGEMENT, REMOTE_REF, SPEC, SPECS, WireRequest, WireResponse
from vipps_emulator import CLIENT_ID, SUBSCRIPTION_KEY, Emulator, serving

from capstate import Cancel, Capture, Refund
from capstate.providers import HttpResponse
from capstate.providers.client import CaptureClient
from capstate.providers.retry import RetryPolicy

PROBLEM = "application/problem+json"
QUIRK = "        - paymentAction\n"
TOKEN_SCHEMA = {"type": "object", "additionalProperties": False,
                "required": ["token_type", "expires_in", "ext_expires_in", "expires_on", "not_before", "resource",
                             "access_token"],
                "properties": {name: {"type": "string", "minLength": 1} for name in (
                    "token_type", "expires_in", "ext_expires_in", "expires_on", "not_before", "resource",
                    "access_token")}}


@pytest.fixture(scope="module")
def spec_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    text = (SPECS / SPEC).read_text(encoding="utf-8")
    assert text.count(REMOTE_REF) == 1 and text.count(QUIRK) == 1, "the document changed; review this test"
    start = text.index("    PaymentEvent:\n")
    assert start < text.index(QUIRK) < text.index("    Problem:\n"), "paymentAction is no longer PaymentEvent's"
    folder = tmp_path_factory.mktemp("vipps-spec")
    (folder / ORDER_MANAGEMENT).write_bytes((SPECS / ORDER_MANAGEMENT).read_bytes())
    patched = text.replace(REMOTE_REF, f"./{ORDER_MANAGEMENT}").replace(QUIRK, "        - name\n")
    (folder / SPEC).write_text(patched, encoding="utf-8")
    return folder / SPEC


@pytest.fixture(scope="module")
def api(spec_copy: Path) -> OpenAPI:
    return OpenAPI.from_file_path(str(spec_copy), config=Config(extra_media_type_deserializers={PROBLEM: json.loads}))


@pytest.fixture(scope="module")
def document(spec_copy: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(spec_copy.read_text(encoding="utf-8"))
    return loaded


class Recorder:
    """An httpx event hook keeping every (request, response) pair that went through a client."""

    def __init__(self) -> None:
        self.pairs: list[tuple[httpx.Request, httpx.Response]] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        self.pairs.append((response.request, response))


@pytest.fixture(scope="module")
def answers() -> Iterator[list[tuple[httpx.Request, httpx.Response]]]:
    """Every request/answer pair of a session that reaches each kind of answer the emulator gives."""
    rec = Recorder()
    with serving() as base:
        emu = Emulator(base)
        emu.http = httpx.Client(timeout=30.0, event_hooks={"response": [rec]})
        try:
            _session(emu)
            _executor(emu, rec)
        finally:
            emu.close()
    yield rec.pairs


def _session(emu: Emulator) -> None:
    cap = "/epayment/v1/payments/oa-00001/capture"
    emu.create("oa-00001", 49900, description="the whole flow")
    emu.create("oa-00001", 49900, description="the whole flow")  # replayed
    emu.call("POST", "/epayment/v1/payments", key="oa-create-2", json={"reference": "oa-00002"})  # 400
    emu.create("oa-00003", 1000, userFlow="QR", returnUrl=None, metadata={"order": "3"},
               profile={"scope": "name"})
    emu.create("oa-00004", 1000, userFlow="PUSH_MESSAGE", customer={"phoneNumber": "4791234567"})
    emu.create("oa-00005", 50)  # "Amount too small"
    emu.call("GET", "/epayment/v1/payments/oa-00001")
    emu.call("GET", "/epayment/v1/payments/oa-00001/events")
    emu.call("POST", "/epayment/v1/payments/oa-00004/cancel", key="oa-term")  # TERMINATED before approval
    emu.approve("oa-00001")
    emu.approve("oa-00003")
    emu.approve("oa-00001")  # 400: not CREATED
    emu.call("POST", cap, key="oa-k1", json={"modificationAmount": {"currency": "NOK", "value": 10000}})
    emu.call("POST", cap, key="oa-k1", json={"modificationAmount": {"currency": "NOK", "value": 10000}})
    emu.call("POST", cap, key="oa-k1", json={"modificationAmount": {"currency": "NOK", "value": 999}})  # 409
    emu.call("POST", cap, key="oa-k2", json={"modificationAmount": {"currency": "NOK", "value": 99999}})  # 400
    emu.call("POST", cap, key="oa-k3", content=b"{not json")
    emu.call("POST", cap, key="oa-k4", json={"modificationAmount": {"currency": "NOK", "value": 1.5}})
    emu.call("POST", "/epayment/v1/payments/oa-00001/refund", key="oa-r1",
             json={"modificationAmount": {"currency": "NOK", "value": 2500}})
    emu.call("POST", "/epayment/v1/payments/oa-00001/refund", key="oa-r2",
             json={"modificationAmount": {"currency": "NOK", "value": 99999}})  # 400 Not enough refundable
    emu.call("POST", "/epayment/v1/payments/oa-00001/cancel", key="oa-c1")
    emu.call("POST", "/epayment/v1/payments/missing-1/capture", key="oa-m",
             json={"modificationAmount": {"currency": "NOK", "value": 100}})  # 404
    emu.call("POST", "/epayment/v1/payments/oa-00001/cancel", key="oa-c2", content=b"x" * 70_000)  # 413
    emu.call("GET", "/epayment/v1/payments/oa-00001")
    emu.call("GET", "/epayment/v1/payments/oa-00003")
    emu.call("GET", "/epayment/v1/payments/oa-00004")
    emu.call("GET", "/epayment/v1/payments/oa-00001/events")
    emu.call("GET", "/epayment/v1/payments/missing-1")  # 404 on a GET: undeclared
    emu.call("DELETE", "/epayment/v1/payments/oa-00001")  # 405
    emu.call("GET", "/epayment/v9/nothing")  # 404 no route
    get = emu.url + "/epayment/v1/payments/oa-00001"
    emu.http.get(get, headers={**emu.headers(), "Authorization": "Bearer x"})  # 401
    emu.http.get(get, headers={**emu.headers(), "Merchant-Serial-Number": "9999"})  # 403
    emu.http.post(emu.url + "/accesstoken/get", headers={"client_id": CLIENT_ID, "client_secret": "no",
                                                          "Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY})
    emu.token(fresh=True)
    for kind, extra in (("500_before_commit", {}), ("429", {"retry_after": 2}), ("409_in_flight", {})):
        emu.fault("capture", kind, **extra)
        emu.call("POST", "/epayment/v1/payments/oa-00003/capture", key=f"oa-f-{kind}",
                 json={"modificationAmount": {"currency": "NOK", "value": 100}})
    emu.clear_faults()


def _executor(emu: Emulator, rec: Recorder) -> None:
    """capstate's CaptureClient through a recording client, faults included."""
    p = emu.authorized("oa-00010", 5000)
    now = datetime.now(UTC)
    http = httpx.Client(timeout=10.0, event_hooks={"response": [rec]})
    retry = RetryPolicy(attempts=4, base=0.01, cap=0.02, jitter=False, sleep=lambda s: None)
    with CaptureClient("vipps", emu.credentials(), client=http, retry=retry) as c:
        emu.fault("capture", "500_after_commit")
        p = c.capture(p, Capture(at=now, amount=1000)).payment
        emu.fault("refund", "409_in_flight")
        p = c.refund(p, Refund(amount=400, at=now)).payment
        p = c.cancel(p, Cancel(at=now)).payment
        c.fetch(p)
    http.close()


def _template(document: dict[str, Any], path: str) -> str | None:
    for template in document["paths"]:
        if re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", template), path):
            return template
    return None


def test_every_answer_validates_against_the_vipps_document(api: OpenAPI, document: dict[str, Any],
                                                           answers: list[tuple[httpx.Request, httpx.Response]]
                                                           ) -> None:
    problem_schema = document["components"]["schemas"]["Problem"]
    full, by_problem, tokens = 0, 0, 0
    statuses: set[int] = set()
    for request, response in answers:
        path = request.url.path
        if path.startswith("/_emulator/"):
            continue  # the control API is the emulator's own, not Vipps's
        assert path.startswith("/vipps/"), path
        path = path.removeprefix("/vipps")
        statuses.add(response.status_code)
        assert response.status_code < 500 or response.headers["content-type"] == PROBLEM
        if path == "/accesstoken/get":
            schema = TOKEN_SCHEMA if response.status_code == 200 else problem_schema
            jsonschema.validate(response.json(), schema)
            tokens += 1
            continue
        template = _template(document, path)
        declared = template is not None and request.method.lower() in document["paths"][template] and str(
            response.status_code) in document["paths"][template][request.method.lower()]["responses"]
        if declared:
            # As Vipps's server sees it: the document's own server, no emulator prefix.
            wire = httpx.Request(request.method, "https://apitest.vipps.no" + path, headers=request.headers,
                                 content=request.content)
            answer = HttpResponse(response.status_code, list(response.headers.multi_items()), response.content)
            api.validate_response(WireRequest(wire), WireResponse(answer))
            full += 1
        else:
            assert response.headers["content-type"].startswith(PROBLEM), (path, response.status_code)
            jsonschema.validate(response.json(), problem_schema)
            by_problem += 1
    assert {200, 201, 400, 401, 403, 404, 405, 409, 413, 429, 500} <= statuses, sorted(statuses)
    assert full >= 30 and by_problem >= 6 and tokens >= 3, (full, by_problem, tokens)


def test_the_validator_is_able_to_fail(api: OpenAPI, answers: list[tuple[httpx.Request, httpx.Response]]) -> None:
    # A recorded capture answer without its aggregate must be refused by the same validation.
    request, response = next((q, r) for q, r in answers
                             if q.url.path.endswith("/capture") and r.status_code == 200)
    body = response.json()
    del body["aggregate"]
    wire = httpx.Request("POST", "https://apitest.vipps.no" + request.url.path.removeprefix("/vipps"),
                         headers=request.headers, content=request.content)
    broken = HttpResponse(200, {"Content-Type": PROBLEM}, json.dumps(body).encode())
    with pytest.raises(Exception) as err:
        api.validate_response(WireRequest(wire), WireResponse(broken))
    assert type(err.value).__module__.startswith("openapi_core")
