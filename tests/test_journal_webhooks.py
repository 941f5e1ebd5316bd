"""The inbox end to end: `capstate emulate` (a real process) POSTs signed Vipps webhooks to a real receiver on
127.0.0.1, which hands each delivery to `Journal.ingest_vipps_webhook`, as a shop's endpoint would.

The webhook of our own capture carries the intent's key: it is the same fact as the answer, recorded
once. Deliveries come in any order, may be repeated, and a forged one is refused by its signature.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from drills import Emulator, emulator
from journals import journal_url

from capstate import Event, SignatureError
from capstate.providers.client import CaptureClient
from capstate.providers.journal import Journal, Source
from capstate.providers.vipps import epayment as vipps

pytest.importorskip("uvicorn", reason="the webhook drill runs `capstate emulate` (the 'emulator' extra)")

SECRET = "webhook-secret-for-the-drill"


class Receiver:
    """A real HTTP endpoint that keeps each delivery exactly as received."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.deliveries.append((self.path, dict(self.headers.items()), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/vipps"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def emu(receiver: Receiver) -> Iterator[Emulator]:
    with emulator("--set", f"vipps.webhook_url={receiver.url}", "--set", f"vipps.webhook_secret={SECRET}") as e:
        yield e


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_webhooks_are_recorded_once_in_any_order_and_forgeries_refused(emu: Emulator, receiver: Receiver,
                                                                        backend: str, tmp_path: Path) -> None:
    ref = f"hook-{uuid.uuid4().hex[:12]}"
    ledger = emu.seed("vipps", ref, 100000, "NOK")
    creds = vipps.Credentials(access_token=emu.vipps_token(), subscription_key="emulator-subscription-key",
                              merchant_serial_number="123456", base_url=f"{emu.url}/vipps")
    with journal_url(backend, tmp_path) as url, Journal(url) as journal, CaptureClient("vipps", creds) as client:
        journal.ingest([Event.from_dict({**ledger["events"][0], "provider": "vipps"})])
        journal.capture(ref, 30000, key="parcel-1", client=client)
        journal.capture(ref, 40000, key="parcel-2", client=client)
        mine = []
        for _ in range(200):
            mine = [d for d in receiver.deliveries if ref.encode() in d[2]]
            if len(mine) >= 2:
                break
            time.sleep(0.05)
        captures = [d for d in mine if b'"CAPTURED"' in d[2]]
        assert len(captures) == 2, mine
        # Late (reversed), and each delivered twice (Vipps retries until it gets a 2xx).
        reports = [journal.ingest_vipps_webhook(body, headers=headers, secret=SECRET, path_and_query=path)
                   for path, headers, body in [*reversed(captures), *captures]]
        assert [(r.recorded, r.duplicates) for r in reports] == [(0, 1)] * 4
        shown = journal.show(ref)
        assert [e["event"]["type"] for e in shown["events"]].count("captured") == 2
        assert journal.state(ref).base.captured == emu.ledger("vipps", ref)["captured"] == 70000
        # A forged body under a genuine signature is refused before anything is recorded.
        path, headers, body = captures[0]
        with pytest.raises(SignatureError):
            # Either parcel's webhook may have arrived first: both amounts are forged.
            journal.ingest_vipps_webhook(body.replace(b"30000", b"90000").replace(b"40000", b"90000"), headers=headers,
                                         secret=SECRET, path_and_query=path)
        # An event the journal has not seen (someone refunded in the Vipps portal): recorded, as a webhook.
        outside = journal.ingest([{**Event.from_dict({**ledger["events"][0], "provider": "vipps"}).to_dict(),
                                   "type": "refunded", "amount": 5000, "key": "portal-1"}], source=Source.WEBHOOK)
        assert outside.recorded == 1 and journal.state(ref).base.refunded == 5000
