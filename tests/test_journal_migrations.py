"""Schema migrations: a journal written by the previous schema (version 1, built here with its own statements
and rows, as a capstate of that version wrote them) is upgraded in place when opened, on SQLite and on the real
PostgreSQL server: its facts and intents kept, the in-flight index backfilled, the inbox added. A read
(`validate --journal`) never migrates it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from journals import BACKENDS, journal_url

from capstate import Event, EventType
from capstate.providers.journal import Journal, JournalError
from capstate.providers.journal._lifecycle import dedup_key
from capstate.providers.journal._postgres import PostgresStore
from capstate.providers.journal._schema import MIGRATIONS, VERSION, ts
from capstate.providers.journal._store import SqliteStore

NOW = datetime.now(UTC).replace(microsecond=0)
HG = "3f1c2a8e-6b1d-4c9e-9a55-0f7e2d8c1b2a"  # a Hellgate payment whose capture is in flight (capturing)
VP = "order-30001"  # a Vipps payment with an intent left pending past its lease
DONE = "order-30002"  # a Vipps payment captured and settled


def _event(payment: str, etype: EventType, hours_ago: float, amount: int, *, provider: str,
           key: str | None = None) -> Event:
    return Event(payment, etype, NOW - timedelta(hours=hours_ago), amount, "EUR" if provider == "hellgate" else "NOK",
                 provider=provider, key=key)


def _write_v1(execute: Any, serial: str) -> None:
    """Version 1's statements and the rows a version-1 capstate wrote (every column as it stored them)."""
    for statement in MIGRATIONS[0]:
        execute(statement.replace("{serial}", serial))
    execute("UPDATE capstate_journal_meta SET version = 1")
    for reference, provider in ((HG, "hellgate"), (VP, "vipps"), (DONE, "vipps")):
        execute("INSERT INTO capstate_payments (reference, provider, next_seq, created_at) VALUES (?, ?, 2, ?)",
                (reference, provider, ts(NOW)))
    events = [_event(HG, EventType.AUTHORIZED, 3, 5000, provider="hellgate"),
              _event(HG, EventType.CAPTURE_REQUESTED, 2, 5000, provider="hellgate", key="cs-hg"),
              _event(VP, EventType.AUTHORIZED, 3, 100000, provider="vipps"),
              _event(DONE, EventType.AUTHORIZED, 3, 100000, provider="vipps"),
              _event(DONE, EventType.CAPTURED, 2, 100000, provider="vipps", key="cs-done")]
    for e in events:
        execute("INSERT INTO capstate_events (payment, dedup, type, at, body, source, intent, finding, note, "
                "recorded_at) VALUES (?, ?, ?, ?, ?, 'import', NULL, NULL, NULL, ?)",
                (e.payment, dedup_key(e), e.type.value, ts(e.at), e.to_json().decode(), ts(NOW)))
    execute("INSERT INTO capstate_intents (payment, seq, op, requested, amount, currency, key, caller_key, final, "
            "status, attempts, created_at, lease_until, owner, next_attempt_at, error, settled_at) VALUES "
            "(?, 1, 'capture', 25000, 25000, 'NOK', 'parcel-1', 1, 0, 'pending', 1, ?, ?, 'old-host:1', NULL, "
            "NULL, NULL)", (VP, ts(NOW - timedelta(hours=1)), ts(NOW - timedelta(minutes=55))))


@pytest.fixture(params=BACKENDS)
def v1(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with journal_url(request.param, tmp_path) as url:
        if url.startswith("sqlite:"):
            db = sqlite3.connect(url.removeprefix("sqlite:///"))
            with db:
                _write_v1(lambda sql, params=(): db.execute(sql, params), SqliteStore.SERIAL)
            db.close()
        else:
            import psycopg

            with psycopg.connect(url) as db:
                _write_v1(lambda sql, params=(): db.execute(sql.replace("?", "%s"), params), PostgresStore.SERIAL)
        yield url


def _version(url: str) -> int:
    if url.startswith("sqlite:"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return int(db.execute("SELECT version FROM capstate_journal_meta").fetchone()[0])
        finally:
            db.close()
    import psycopg

    with psycopg.connect(url) as db:
        row = db.execute("SELECT version FROM capstate_journal_meta").fetchone()
        assert row is not None
        return int(row[0])


def test_a_version_1_journal_is_upgraded_in_place_with_its_facts_and_intents(v1: str) -> None:
    assert VERSION == 2 and _version(v1) == 1
    with Journal(v1) as journal:
        assert _version(v1) == VERSION
        # Facts and intents as version 1 wrote them.
        assert journal.state(HG).base.pending == 5000 and journal.state(DONE).base.captured == 100000
        (intent,) = journal.pending()
        assert (intent.payment, intent.status.value, intent.key, intent.amount) == (VP, "pending", "parcel-1", 25000)
        # The new indexes answer reconcile's two questions: the payment in flight (backfilled), the intent due.
        assert journal.in_flight() == [(HG, "hellgate")]
        assert [(i.payment, p) for i, p in journal.due()] == [(VP, "vipps")]
        assert journal.inbox() == []
    with Journal(v1) as again:  # opening an up-to-date journal changes nothing
        assert _version(v1) == VERSION and again.in_flight() == [(HG, "hellgate")]


def test_a_read_never_migrates_an_old_journal(v1: str) -> None:
    with pytest.raises(JournalError, match="schema version 1"):
        Journal(v1, readonly=True)
    assert _version(v1) == 1


def test_a_journal_newer_than_the_code_refuses_to_open(v1: str) -> None:
    with Journal(v1):
        pass
    if v1.startswith("sqlite:"):
        db = sqlite3.connect(v1.removeprefix("sqlite:///"))
        with db:
            db.execute("UPDATE capstate_journal_meta SET version = 99")
        db.close()
    else:
        import psycopg

        with psycopg.connect(v1) as db:
            db.execute("UPDATE capstate_journal_meta SET version = 99")
    with pytest.raises(JournalError, match="newer than this capstate"):
        Journal(v1)
