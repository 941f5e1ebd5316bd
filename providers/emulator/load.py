"""A load run against a live emulator: N concurrent clients, each driving whole payments through capstate's
own `CaptureClient`, then every payment's ledger compared with what its client believes.

Used by tests/test_emulator_load.py (0 unexpected errors, ledger totals = client totals) and by the
emulator row of `capstate bench` (operations/s and p50/p99 latency on loopback). It only talks HTTP to
the `base_url` it is given, so the emulator can run in another process.

Per payment (providers taken in turn): seed it (control API), capture half, read it back, refund a part,
refund again where the spec allows more than one refund, read it back `reads` more times, and read its
ledger; every fifth payment is cancelled instead of captured; Hellgate's capture is settled through the
control API and polled with `refresh`. An "operation" is one HTTP request, control requests included.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
from attrs import define, field

from ..._spec import load_spec
from ..._values import Cancel, Capture, Payment, Refund
from .. import bambora, hellgate, pipwave, vipps
from ..client import CaptureClient
from ..retry import RetryPolicy
from . import vipps as emulated_vipps

AMOUNT = 10_000
CURRENCY = "EUR"
T0 = datetime(2026, 1, 5, 12, tzinfo=UTC)


@define
class LoadReport:
    payments: int = 0
    operations: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(factory=list)
    errors: list[str] = field(factory=list)
    client_totals: dict[str, int] = field(factory=lambda: {"captured": 0, "refunded": 0, "cancelled": 0})
    ledger_totals: dict[str, int] = field(factory=lambda: {"captured": 0, "refunded": 0, "cancelled": 0})
    mismatches: list[str] = field(factory=list)

    @property
    def ops_per_second(self) -> float:
        return self.operations / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Latency in milliseconds at quantile `q` (0..1) over every request."""
        if not self.latencies:
            return 0.0
        if len(self.latencies) == 1:
            return self.latencies[0] * 1000
        cuts = statistics.quantiles(self.latencies, n=1000, method="inclusive")
        return cuts[min(int(q * 1000) - 1, len(cuts) - 1)] * 1000


def credentials(base_url: str, provider: str) -> Any:
    """The emulator's default credentials for `provider`, pointed at `base_url`."""
    if provider == "bambora":
        return bambora.Credentials(access_token="emulator-token", merchant_number="T000000001",
                                   secret_token="emulator-secret", base_url=f"{base_url}/bambora")
    if provider == "hellgate":
        return hellgate.Credentials(api_key="emulator-hellgate-key", base_url=f"{base_url}/hellgate")
    if provider == "pipwave":
        return pipwave.Credentials(api_key="emulator-key", api_secret="emulator-secret", url=f"{base_url}/pipwave")
    if provider == "vipps":
        # Vipps authenticates with a bearer token from its own POST /accesstoken/get (emulator/vipps.py).
        creds = emulated_vipps.EMULATOR.credentials
        answer = httpx.post(f"{base_url}/vipps/accesstoken/get", timeout=30, headers={
            "client_id": creds["client_id"], "client_secret": creds["client_secret"],
            "Ocp-Apim-Subscription-Key": creds["subscription_key"]})
        answer.raise_for_status()
        return vipps.Credentials(access_token=answer.json()["access_token"], subscription_key=creds["subscription_key"],
                                 merchant_serial_number=creds["merchant_serial_number"], base_url=f"{base_url}/vipps")
    raise ValueError(f"no load script for {provider!r}")


class _Worker:
    def __init__(self, base_url: str, providers: Sequence[str], report: LoadReport, lock: threading.Lock,
                 reads: int):
        self.report, self.lock, self.reads = report, lock, reads
        self.latencies: list[float] = []
        self.ops = 0
        hooks: dict[str, list[Callable[..., Any]]] = {"request": [self._start], "response": [self._end]}
        self.http = httpx.Client(base_url=base_url, timeout=30, event_hooks=hooks)
        retry = RetryPolicy(base=0.01, cap=0.1, poll_interval=0.01, polls=5)
        self.clients = {p: CaptureClient(p, credentials(base_url, p), client=self.http, retry=retry,
                                         clock=lambda: T0) for p in providers}
        self.specs = {p: load_spec(p) for p in providers}

    def _start(self, request: httpx.Request) -> None:
        request.extensions["capstate_start"] = time.perf_counter()

    def _end(self, response: httpx.Response) -> None:
        started = response.request.extensions.get("capstate_start")
        if started is not None:
            self.latencies.append(time.perf_counter() - started)
        self.ops += 1

    def control(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        r = self.http.request(method, "/_emulator" + path, json=body)
        if r.status_code >= 300:
            raise RuntimeError(f"control {method} {path}: {r.status_code} {r.text[:200]}")
        out: dict[str, Any] = r.json()
        return out

    def payment(self, provider: str, reference: str, index: int) -> None:
        c = self.clients[provider]
        self.control("POST", "/payments", {"provider": provider, "reference": reference, "amount": AMOUNT,
                                           "currency": CURRENCY, "at": "2026-01-05T12:00:00Z"})
        p = Payment.authorized_for(self.specs[provider], reference, amount=AMOUNT, currency=CURRENCY, at=T0)
        if index % 5 == 4:
            p = c.cancel(p, Cancel(at=T0)).payment
        else:
            p = c.capture(p, Capture(at=T0, amount=AMOUNT // 2)).payment
            if p.pending:
                self.control("POST", "/hellgate/settle", {"reference": reference, "outcome": "captured"})
                p = c.refresh(p).payment
            c.fetch(p)
            p = c.refund(p, Refund(amount=1000, at=T0)).payment
            if p.spec.policy.max_refunds is None or p.refund_count < p.spec.policy.max_refunds:
                p = c.refund(p, Refund(amount=500, at=T0)).payment
        for _ in range(self.reads):
            c.fetch(p)
        ledger = self.control("GET", f"/payments/{provider}/{reference}")
        with self.lock:
            for name in ("captured", "refunded", "cancelled"):
                self.report.client_totals[name] += getattr(p, name)
                self.report.ledger_totals[name] += ledger[name]
            if any(getattr(p, n) != ledger[n] for n in ("captured", "refunded", "cancelled", "state")):
                self.report.mismatches.append(f"{provider} {reference}: client {p.summary()} ledger "
                                              f"{ {n: ledger[n] for n in ('state', 'captured', 'refunded')} }")

    def close(self) -> None:
        self.http.close()


def run(base_url: str, *, clients: int = 8, payments: int = 1000, providers: Sequence[str] = ("bambora", "hellgate",
        "pipwave", "vipps"), reads: int = 2, tag: str | None = None) -> LoadReport:
    """Drive `payments` payments over `clients` threads against the emulator at `base_url`."""
    report = LoadReport(payments=payments)
    lock = threading.Lock()
    workers = [_Worker(base_url, providers, report, lock, reads) for _ in range(clients)]
    prefix = tag or f"load-{time.time_ns():x}"

    def refs(i: int) -> tuple[str, str]:
        provider = providers[i % len(providers)]
        reference = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{prefix}-{i}")) if provider == "hellgate" else f"{prefix}-{i}"
        return provider, reference

    def work(w: _Worker, mine: range) -> None:
        for i in mine:
            provider, reference = refs(i)
            try:
                w.payment(provider, reference, i)
            except Exception as exc:  # counted and reported: a load run must finish and say what failed
                with lock:
                    report.errors.append(f"{provider} {reference}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(w, range(k, payments, clients))) for k, w in enumerate(workers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    report.seconds = time.perf_counter() - start
    for w in workers:
        report.latencies.extend(w.latencies)
        report.operations += w.ops
        w.close()
    return report


def summary(report: LoadReport) -> Mapping[str, Any]:
    return {"payments": report.payments, "operations": report.operations, "seconds": round(report.seconds, 3),
            "ops_per_second": round(report.ops_per_second, 1), "p50_ms": round(report.percentile(0.5), 3),
            "p99_ms": round(report.percentile(0.99), 3), "errors": len(report.errors),
            "mismatches": len(report.mismatches), "client_totals": report.client_totals,
            "ledger_totals": report.ledger_totals}


@contextmanager
def spawned(providers: Sequence[str] = ("bambora", "hellgate", "pipwave", "vipps"), *args: str) -> Iterator[str]:
    """`capstate emulate --port 0` in its own process (its own core: the clients do not share its GIL);
    yields the base URL, and stops it with SIGTERM."""
    proc = subprocess.Popen([sys.executable, "-m", "capstate", "emulate", "--port", "0", "--provider",
                             ",".join(providers), "--clock", "2026-01-05T12:00:00Z", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening on " not in line:
            err = proc.stderr.read() if proc.stderr is not None and proc.poll() is not None else ""
            raise RuntimeError(f"capstate emulate did not start: {line.strip()} {err.strip()}")
        url = line.split("listening on ", 1)[1].split()[0]
        deadline = time.monotonic() + 15
        while True:
            try:
                if httpx.get(url + "/_emulator/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("capstate emulate did not answer")
            time.sleep(0.05)
        yield url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _core_requests_per_second(rounds: int = 400) -> float:
    """The baseline: the pure core's capture + get on Bambora, in process, no sockets, no HTTP."""
    import base64

    from .._http import Headers
    from . import build

    emu = build(["bambora"], clock=T0, frozen=True)
    auth = Headers({"Authorization": "Basic " + base64.b64encode(b"emulator-token@T000000001:emulator-secret")
                    .decode(), "API-Version": "1"})
    for i in range(rounds):
        emu.seed("bambora", f"b{i}", AMOUNT, CURRENCY, at=T0)
    start = time.perf_counter()
    for i in range(rounds):
        emu.run(emu.route("bambora", "POST", f"/payments/b{i}/capture/", headers=auth, body=b'{"amount": 100}',
                          now=T0), T0)
        emu.run(emu.route("bambora", "GET", f"/payments/b{i}/", headers=auth, now=T0), T0)
    return 2 * rounds / (time.perf_counter() - start)


def bench_rows(quick: bool, say: Callable[[str], None]) -> list[dict[str, Any]]:
    """The emulator rows of `capstate bench`: operations/s over loopback with 8 clients, p50 and p99
    latency, against the pure core in process (the same run's baseline). Reported, never asserted."""
    from ...bench import Row

    payments = 24 if quick else 300
    say(f"emulator: 8 clients, {payments} payments over loopback (capstate emulate in its own process)")
    core = _core_requests_per_second(200 if quick else 2000)
    with spawned() as url:
        report = run(url, clients=8, payments=payments, reads=2)
    ops = report.ops_per_second
    note = f"{len(report.errors)} errors, {len(report.mismatches)} mismatches"
    rows = [Row("emu_ops", f"emulator operations/s, 8 clients ({report.operations:,} ops; {note})", "ops/s", ops,
                "reported", ops / core, "x in-process core", "REPORT"),
            Row("emu_p50", "emulator latency p50", "us", report.percentile(0.5) * 1000, "reported",
                report.percentile(0.5) * 1000 / (1e6 / core), "x core request", "REPORT"),
            Row("emu_p99", "emulator latency p99", "us", report.percentile(0.99) * 1000, "reported",
                report.percentile(0.99) * 1000 / (1e6 / core), "x core request", "REPORT"),
            Row("emu_core", "baseline: emulator core in process (capture + get)", "req/s", core, "", None, "")]
    return [r.to_dict() for r in rows]
