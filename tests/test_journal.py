"""The journal end to end, on real SQLite files and a real PostgreSQL schema, against a scripted HTTP server.

Each test asserts on the requests the server received: how many, under which key. The protocol of
DESIGN.md section 7: an intent is written before the request, settled after; an open intent reserves
its amount; a caller's key is checked before any I/O; a read-back credits an intent only on evidence.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from httpserver import Reply, ScriptedServer, scripted_server
from journals import BACKENDS, journal_url
from test_client import (
    BAMBORA_CAPTURE,
    BAMBORA_GET,
    NOW,
    T0,
    VIPPS_CAPTURE,
    Sleeps,
    bambora_body,
    bambora_client,
    vipps_body,
    vipps_client,
)

from capstate import Capture, Event, EventType, Payment
from capstate.providers.client import Outcome, Refused
from capstate.providers.journal import (
    Journal,
    JournalError,
    OperationFailed,
    OutcomeUnknown,
    Source,
    Status,
    derive_key,
)
from capstate.providers.journal._lifecycle import Intent
from capstate.providers.journal._store import Tx

V_REF, B_REF = "order-10001", "order-20001"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with journal_url(request.param, tmp_path) as u:
        yield u


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as srv:
        yield srv


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def journal(url: str, clock: Clock) -> Iterator[Journal]:
    with Journal(url, clock=clock, lease=timedelta(minutes=5)) as j:
        j.ingest([Event(V_REF, EventType.AUTHORIZED, T0, 100000, "NOK", provider="vipps"),
                  Event(B_REF, EventType.AUTHORIZED, T0, 100000, "NOK", provider="bambora")])
        yield j


def test_a_capture_writes_its_intent_sends_once_and_records_the_proven_event(journal: Journal,
                                                                           server: ScriptedServer) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=25000)))
    with vipps_client(server, Sleeps()) as client:
        out = journal.capture(V_REF, 25000, client=client)
    (req,) = server.requests
    assert req.headers["idempotency-key"] == derive_key(V_REF, "capture", 1) == out.intent.key  # type: ignore[union-attr]
    assert out.status is Status.DONE and out.sent and out.payment.captured == 25000
    shown = journal.show(V_REF)
    assert [(e["source"], e["intent"], e["event"]["type"]) for e in shown["events"]] == [
        ("import", None, "authorized"), ("own", 1, "captured")]
    assert journal.pending() == []


def test_two_parcels_of_one_price_are_two_intents_with_two_keys(journal: Journal, server: ScriptedServer) -> None:
    # Issue 10: a key derived from the amount made the second parcel a replay of the first.
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=25000)), Reply(200, vipps_body(captured=50000)))
    with vipps_client(server, Sleeps()) as client:
        journal.capture(V_REF, 25000, client=client)
        journal.capture(V_REF, 25000, client=client)
    keys = [r.headers["idempotency-key"] for r in server.requests]
    assert keys == [derive_key(V_REF, "capture", 1), derive_key(V_REF, "capture", 2)]
    assert journal.state(V_REF).base.captured == 50000


def test_a_caller_key_is_stored_replayed_and_checked_before_any_io(journal: Journal, server: ScriptedServer) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=25000)))
    with vipps_client(server, Sleeps()) as client:
        first = journal.capture(V_REF, 25000, key="parcel-1", client=client)
        again = journal.capture(V_REF, 25000, key="parcel-1", client=client)
        with pytest.raises(Refused) as conflict:
            journal.capture(V_REF, 30000, key="parcel-1", client=client)
    assert len(server.requests) == 1
    assert again.replayed and not again.sent and again.intent == first.intent
    assert [e.type for e in again.events] == [EventType.CAPTURED]
    assert conflict.value.codes == ("IDEMPOTENCY_KEY_CONFLICT",)


def test_an_unknown_outcome_keeps_the_intent_open_and_blocks_a_second_send(journal: Journal, server: ScriptedServer,
                                                                           clock: Clock) -> None:
    # Bambora has no idempotency: a timed-out capture whose read-back fails too is UNKNOWN.
    server.on("POST", BAMBORA_CAPTURE, Reply(201, bambora_body("Captured", [25000]), delay=1.0))
    server.on("GET", BAMBORA_GET, Reply(503, b"down", content_type="text/plain"))
    with bambora_client(server, Sleeps(), timeout=0.2) as client:
        with pytest.raises(OutcomeUnknown) as unknown:
            journal.capture(B_REF, 25000, client=client)
        posts = len(server.received("POST"))
        with pytest.raises(Refused) as second:
            journal.capture(B_REF, 10000, client=client)
        with pytest.raises(Refused) as cancel:
            journal.cancel(B_REF, client=client)
    assert posts == 1 and len(server.received("POST")) == 1
    assert unknown.value.intent.status is Status.UNKNOWN
    assert second.value.codes == ("CAPTURE_IN_FLIGHT",) and cancel.value.codes == ("CAPTURE_IN_FLIGHT",)
    assert journal.payment(B_REF).capturable == 75000  # the open intent reserves its amount
    # Recovery reads back (never resends to Bambora) once the back-off has passed.
    server.on("GET", BAMBORA_GET, Reply(200, bambora_body("Captured", [25000])))
    assert journal.recover(bambora_client(server, Sleeps())) == []  # still inside its back-off
    clock.now += timedelta(minutes=10)
    (rec,) = journal.recover(bambora_client(server, Sleeps()))
    assert rec.intent.status is Status.DONE and rec.action == "read back"
    assert len(server.received("POST")) == 1
    assert journal.state(B_REF).base.captured == 25000 and journal.pending() == []
    events = journal.show(B_REF)["events"]
    assert [(e["source"], e["intent"]) for e in events][-1] == ("readback", 1)


def test_growth_that_is_not_the_intents_amount_is_out_of_band_never_credited(journal: Journal,
                                                                             server: ScriptedServer,
                                                                             clock: Clock) -> None:
    # Issue 10: every POST failed, the read-back shows someone else's capture: it was booked as ours.
    server.on("POST", BAMBORA_CAPTURE, Reply(500, b"", content_type="text/plain"))
    server.on("GET", BAMBORA_GET, Reply(200, bambora_body("Captured", [40000])))
    with bambora_client(server, Sleeps()) as client, pytest.raises(OutcomeUnknown):
        journal.capture(B_REF, 25000, client=client)
    shown = journal.show(B_REF)
    last = shown["events"][-1]
    assert (last["source"], last["intent"], last["finding"]) == ("readback", None, "OUT_OF_BAND")
    assert last["event"]["amount"] == 40000 and "key" not in last["event"]
    (intent,) = journal.pending()
    assert intent.status is Status.UNKNOWN
    # Judged again on the new aggregate: no further growth and nothing in flight, so ours did not happen.
    clock.now += timedelta(minutes=10)
    (rec,) = journal.recover(bambora_client(server, Sleeps()))
    assert rec.intent.status is Status.FAILED and journal.payment(B_REF).capturable == 60000


def test_a_refusal_by_the_provider_fails_the_intent_and_releases_its_reservation(journal: Journal,
                                                                                 server: ScriptedServer) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(400, {"type": "about:blank", "title": "Capture amount too high",
                                                 "status": 400, "traceId": "t"}))
    with vipps_client(server, Sleeps()) as client, pytest.raises(OperationFailed) as failed:
        journal.capture(V_REF, 25000, key="parcel-1", client=client)
    assert failed.value.intent.status is Status.FAILED and journal.payment(V_REF).capturable == 100000
    # The same key and parameters: the same intent tried again, under the same key.
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=25000)))
    with vipps_client(server, Sleeps()) as client:
        out = journal.capture(V_REF, 25000, key="parcel-1", client=client)
    assert out.intent is not None and (out.intent.seq, out.intent.attempts, out.status) == (1, 2, Status.DONE)


def test_vipps_recovery_resends_the_identical_request_under_the_intents_key(url: str, server: ScriptedServer,
                                                                            clock: Clock) -> None:
    # A worker wrote its intent and died before its answer was recorded: pending, lease run out.
    with Journal(url, clock=clock, lease=timedelta(seconds=30)) as journal:
        journal.ingest([Event(V_REF, EventType.AUTHORIZED, T0, 100000, "NOK", provider="vipps")])
        server.on("POST", VIPPS_CAPTURE, Reply(500, b"", content_type="text/plain"))
        with vipps_client(server, Sleeps()) as client, pytest.raises(OutcomeUnknown):
            journal.capture(V_REF, 25000, key="parcel-1", client=client)
        server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=25000)))
        clock.now += timedelta(minutes=5)
        (rec,) = journal.recover(vipps_client(server, Sleeps()))
    assert rec.intent.status is Status.DONE and rec.action == "resent under the same key"
    assert {r.headers["idempotency-key"] for r in server.received("POST")} == {"parcel-1"}


def test_ingest_deduplicates_records_late_and_contradictory_events_and_credits_keys(journal: Journal,
                                                                                   server: ScriptedServer) -> None:
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=25000)))
    with vipps_client(server, Sleeps()) as client:
        out = journal.capture(V_REF, 25000, key="parcel-1", client=client)
    # The webhook of our own capture (same key): one fact, not two.
    hook = Event(V_REF, EventType.CAPTURED, NOW, 25000, "NOK", provider="vipps", key="parcel-1")
    late = Event(V_REF, EventType.REFUNDED, T0 + timedelta(minutes=1), 5000, "NOK", provider="vipps", key="r-1")
    over = Event(V_REF, EventType.CAPTURED, NOW + timedelta(hours=1), 90000, "NOK", provider="vipps", key="x-1")
    report = journal.ingest([hook, late, over, {"payment": V_REF, "type": "nonsense"}], source=Source.WEBHOOK)
    assert (report.recorded, report.duplicates, len(report.rejected)) == (2, 1, 1)
    assert sorted(code for _, code, _ in report.findings) == ["EXCEEDS_CAPTURABLE", "OUT_OF_ORDER"]
    assert journal.state(V_REF).base.captured == 115000  # recorded, never dropped
    assert out.intent is not None


def test_bad_urls_and_unknown_payments_are_one_line_errors(tmp_path: Path) -> None:
    for bad in ("", "mysql://x", f"sqlite:///{tmp_path}/no/such/dir/j.db", "sqlite://host/x.db"):
        with pytest.raises(JournalError):
            Journal(bad)
    with Journal(f"sqlite:///{tmp_path}/j.db") as j, pytest.raises(JournalError, match="not in the journal"):
        j.state("order-missing")


def test_a_postgres_password_never_reaches_an_error_or_the_url() -> None:
    from urllib.parse import urlsplit, urlunsplit

    from journals import postgres_base

    parts = urlsplit(postgres_base())
    netloc = f"{parts.username}:WRONG-s3cr3t@{parts.hostname}:{parts.port or 5432}"
    with pytest.raises(JournalError) as err:
        Journal(urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")))
    assert "WRONG-s3cr3t" not in str(err.value) and "***" in str(err.value)


def test_only_the_settle_commits_without_waiting_for_the_disk(url: str, server: ScriptedServer, clock: Clock,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Each intent's write, read inside its own transaction: the intent waits for the disk (FULL, `on`), the
    # settle does not (NORMAL, `off`), and the connection is durable again for the next intent.
    seen: list[tuple[str, str]] = []
    put_intent = Tx.put_intent

    def spy(tx: Tx, intent: Intent) -> None:
        tx._x("PRAGMA synchronous" if "sqlite" in url else "SHOW synchronous_commit")
        seen.append((intent.status.value, str(tx._cur.fetchone()[0])))
        put_intent(tx, intent)

    monkeypatch.setattr(Tx, "put_intent", spy)
    durable, lazy = ("2", "1") if "sqlite" in url else ("on", "off")
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=25000)), Reply(200, vipps_body(captured=50000)),
              Reply(200, vipps_body(captured=75000)))
    with Journal(url, clock=clock) as journal, vipps_client(server, Sleeps()) as client:
        journal.ingest([Event(V_REF, EventType.AUTHORIZED, T0, 100000, "NOK", provider="vipps")])
        journal.capture(V_REF, 25000, client=client)
        journal.capture(V_REF, 25000, client=client)
        assert seen == [("pending", durable), ("done", lazy)] * 2
        seen.clear()
        journal.durable_settle = True
        journal.capture(V_REF, 25000, client=client)
        assert seen == [("pending", durable), ("done", durable)]


def test_the_settle_replays_events_recorded_while_the_request_was_on_the_wire(journal: Journal, url: str,
                                                                             server: ScriptedServer) -> None:
    # Step (3) reuses step (1)'s replay only while the payment's events are unchanged: a webhook recorded by
    # another instance during the send is part of the payment the settle returns and records against.
    server.on("POST", VIPPS_CAPTURE, Reply(200, vipps_body(captured=25000)))
    refund = Event(V_REF, EventType.REFUNDED, NOW, 5000, "NOK", provider="vipps", key="r-1")
    with vipps_client(server, Sleeps()) as client, Journal(url) as other:
        send = client.capture

        def capture_meanwhile(payment: Payment, command: Capture) -> Outcome:
            out = send(payment, command)
            assert other.ingest([refund], source=Source.WEBHOOK).recorded == 1
            return out

        client.capture = capture_meanwhile  # type: ignore[method-assign]
        out = journal.capture(V_REF, 25000, client=client)
    assert (out.payment.captured, out.payment.refunded) == (25000, 5000)
    assert out.payment == journal.payment(V_REF)
