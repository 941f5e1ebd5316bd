"""The Vipps emulator as the tests use it: `capstate emulate --provider vipps` started as a real process on
127.0.0.1 (port 0), and a small client for its wire and its control API.

The process is the real thing a developer starts from the README; every test talks to it over sockets.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx

import capstate
from capstate import Payment
from capstate.providers import vipps

CLIENT_ID = "emulator-client-id"
CLIENT_SECRET = "emulator-client-secret"
SUBSCRIPTION_KEY = "emulator-subscription-key"
MSN = "123456"
START_TIMEOUT = 60.0


@contextmanager
def serving(*args: str) -> Iterator[str]:
    """`capstate emulate --provider vipps --port 0 ARGS`; yields the base URL it prints, stops it with SIGTERM."""
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "capstate", "emulate", "--provider", "vipps", "--port", "0",
                                 *args], stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            if "listening on " not in first:
                proc.wait(10)
                err.seek(0)
                raise AssertionError(f"capstate emulate did not start: {first!r} {err.read()[-2000:]}")
            yield first.split("listening on ", 1)[1].split()[0]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


class Emulator:
    """The emulator at `base`: Vipps calls (`/vipps`) and control calls (`/_emulator`)."""

    def __init__(self, base: str):
        self.base = base
        self.url = base + "/vipps"
        self.http = httpx.Client(timeout=30.0)
        self._token: str | None = None

    def close(self) -> None:
        self.http.close()

    # -- Vipps

    def token(self, *, fresh: bool = False) -> str:
        if self._token is None or fresh:
            answer = self.http.post(self.url + "/accesstoken/get", headers={
                "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY})
            assert answer.status_code == 200, answer.text
            self._token = answer.json()["access_token"]
        assert self._token is not None
        return self._token

    def headers(self, key: str | None = None) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.token()}", "Ocp-Apim-Subscription-Key": SUBSCRIPTION_KEY,
               "Merchant-Serial-Number": MSN}
        if key is not None:
            out["Idempotency-Key"] = key
        return out

    def credentials(self) -> vipps.Credentials:
        return vipps.Credentials(access_token=self.token(), subscription_key=SUBSCRIPTION_KEY,
                                 merchant_serial_number=MSN, base_url=self.url)

    def call(self, method: str, path: str, *, key: str | None = None, json: Any = None,
             content: bytes | None = None) -> httpx.Response:
        return self.http.request(method, self.url + path, headers=self.headers(key), json=json, content=content)

    def create(self, reference: str, amount: int = 1000, currency: str = "NOK", **extra: Any) -> httpx.Response:
        body = {"amount": {"currency": currency, "value": amount}, "paymentMethod": {"type": "WALLET"},
                "reference": reference, "userFlow": "WEB_REDIRECT", "returnUrl": "https://example.com/return", **extra}
        return self.call("POST", "/epayment/v1/payments", key=f"create-{reference}", json=body)

    def approve(self, reference: str) -> httpx.Response:
        return self.call("POST", f"/epayment/v1/test/payments/{reference}/approve",
                         json={"customer": {"phoneNumber": "4791234567"}})

    def authorized(self, reference: str, amount: int = 1000, currency: str = "NOK") -> Payment:
        """Create and force-approve `reference` over the wire; the merchant's own view of it (the engine's
        Payment, authorized at the emulator's time)."""
        made = self.create(reference, amount, currency)
        assert made.status_code == 201, made.text
        approved = self.approve(reference)
        assert approved.status_code == 200, approved.text
        at = datetime.fromisoformat(self.ledger(reference)["events"][0]["at"].replace("Z", "+00:00"))
        return Payment.authorized_for(capstate.load_spec("vipps"), reference, amount=amount, currency=currency, at=at)

    # -- control

    def ledger(self, reference: str) -> dict[str, Any]:
        answer = self.http.get(f"{self.base}/_emulator/payments/vipps/{reference}")
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def ledger_or_none(self, reference: str) -> dict[str, Any] | None:
        answer = self.http.get(f"{self.base}/_emulator/payments/vipps/{reference}")
        return answer.json() if answer.status_code == 200 else None  # type: ignore[no-any-return]

    def fault(self, op: str, kind: str, *, count: int = 1, **extra: Any) -> None:
        answer = self.http.post(f"{self.base}/_emulator/faults", json={"provider": "vipps", "op": op, "kind": kind,
                                                                         "count": count, **extra})
        assert answer.status_code == 201, answer.text

    def clear_faults(self) -> None:
        self.http.delete(f"{self.base}/_emulator/faults")

    def advance(self, duration: str) -> None:
        answer = self.http.post(f"{self.base}/_emulator/clock", json={"advance": duration})
        assert answer.status_code == 200, answer.text


def summary(ledger: dict[str, Any]) -> dict[str, Any]:
    """The ledger's aggregate in `Payment.summary()` form."""
    return {k: ledger[k] for k in ("state", "authorized", "captured", "cancelled", "refunded")}
