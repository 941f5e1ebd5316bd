"""Real processes for the journal drills: `capstate emulate` as a subprocess, and its control API.

The emulator is started with `--port 0` and its URL read from the line it prints; the credentials the
workers and `capstate reconcile` use reach them through the environment, as in production.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PROVIDERS = ("bambora", "hellgate", "pipwave", "vipps")
# The emulator's default credentials (providers/emulator/<provider>.py), as CAPSTATE_<PROVIDER>_<FIELD>.
_CREDENTIALS = {
    "bambora": {"ACCESS_TOKEN": "emulator-token", "MERCHANT_NUMBER": "T000000001", "SECRET_TOKEN": "emulator-secret"},
    "hellgate": {"API_KEY": "emulator-hellgate-key"},
    "pipwave": {"API_KEY": "emulator-key", "API_SECRET": "emulator-secret"},
    "vipps": {"SUBSCRIPTION_KEY": "emulator-subscription-key", "MERCHANT_SERIAL_NUMBER": "123456"},
}
_BASE_FIELD = {"bambora": "BASE_URL", "hellgate": "BASE_URL", "pipwave": "URL", "vipps": "BASE_URL"}


class Emulator:
    def __init__(self, url: str, process: subprocess.Popen[str]):
        self.url = url
        self.process = process
        self.http = httpx.Client(base_url=url, timeout=30)
        self._vipps_token: str | None = None

    def vipps_token(self) -> str:
        """An access token from the emulator's `POST /accesstoken/get`, as a Vipps merchant gets one."""
        if self._vipps_token is None:
            r = self.http.post("/vipps/accesstoken/get", headers={
                "client_id": "emulator-client-id", "client_secret": "emulator-client-secret",
                "Ocp-Apim-Subscription-Key": _CREDENTIALS["vipps"]["SUBSCRIPTION_KEY"]})
            assert r.status_code == 200, r.text
            self._vipps_token = r.json()["access_token"]
        assert self._vipps_token is not None
        return self._vipps_token

    def control(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(method, "/_emulator" + path, json=body)
        assert r.status_code < 300, (r.status_code, r.text)
        return r.json()

    def seed(self, provider: str, reference: str, amount: int, currency: str) -> dict[str, Any]:
        out: dict[str, Any] = self.control("POST", "/payments", {"provider": provider, "reference": reference,
                                                                 "amount": amount, "currency": currency})
        return out

    def ledger(self, provider: str, reference: str) -> dict[str, Any]:
        out: dict[str, Any] = self.control("GET", f"/payments/{provider}/{reference}")
        return out

    def fault(self, provider: str, op: str, kind: str, count: int = 1, **extra: Any) -> None:
        self.control("POST", "/faults", {"provider": provider, "op": op, "kind": kind, "count": count, **extra})

    def env(self) -> dict[str, str]:
        """The environment of a worker or a `capstate` command: every provider's credentials and base URL."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("CAPSTATE_") or k.startswith(
            ("CAPSTATE_TEST_", "CAPSTATE_HYPOTHESIS"))}
        for provider, fields in _CREDENTIALS.items():
            for name, value in fields.items():
                base[f"CAPSTATE_{provider.upper()}_{name}"] = value
            base[f"CAPSTATE_{provider.upper()}_{_BASE_FIELD[provider]}"] = f"{self.url}/{provider}"
        base["CAPSTATE_VIPPS_ACCESS_TOKEN"] = self.vipps_token()
        return base


@contextmanager
def emulator(*extra: str) -> Iterator[Emulator]:
    proc = subprocess.Popen([sys.executable, "-m", "capstate", "emulate", "--port", "0", "--provider",
                             ",".join(PROVIDERS), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (\S+)", line)
        if match is None:
            err = proc.stderr.read() if proc.stderr is not None else ""
            pytest.fail(f"capstate emulate did not start: {line!r} {err[-500:]!r}")
        emu = Emulator(match.group(1), proc)
        for _ in range(100):
            try:
                emu.control("GET", "/health")
                break
            except (httpx.HTTPError, AssertionError):
                time.sleep(0.05)
        yield emu
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
