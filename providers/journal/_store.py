"""The journal's storage: thin adapters that load and store rows, holding no rule of their own.

`open_store(url)` picks the backend by URL: `sqlite:///path/capstate.db` (the standard library's sqlite3;
WAL; every writing transaction `BEGIN IMMEDIATE`, so writers are serialized per database) or
`postgresql://...` (psycopg 3; the payment's row locked with `SELECT ... FOR UPDATE`, so writers are
serialized per payment, across service instances).

A `Tx` lives for one short transaction. Nothing in this module (or its callers, by contract) makes a
network call while one is open: the intent row, not a database lock, is what keeps a second worker from
sending while a request is on the wire.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from ..._codes import Code
from ..._errors import CapstateError
from ..._values import Event
from ._inbox import Delivery
from ._lifecycle import Intent, Recorded, Source, Status
from ._schema import META, MIGRATIONS, VERSION, parse_ts, ts

# How long a writer waits for SQLite's database lock before giving up (the lock is held for a few
# statements at a time, never across a request, so a long wait means something is badly wrong).
SQLITE_BUSY_MS = 60_000


class JournalError(CapstateError, ValueError):
    """A journal URL that cannot be opened, a schema newer than this capstate, a payment it does not hold."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


_INTENT_COLUMNS = ("payment, seq, op, requested, amount, currency, key, caller_key, final, status, attempts, "
                   "created_at, lease_until, owner, next_attempt_at, error, settled_at")


def _opt_ts(value: datetime | None) -> str | None:
    return ts(value) if value is not None else None


def _opt_parse(value: str | None) -> datetime | None:
    return parse_ts(value) if value is not None else None


def intent_from_row(row: Sequence[Any]) -> Intent:
    (payment, seq, op, requested, amount, currency, key, caller_key, final, status, attempts, created_at,
     lease_until, owner, next_attempt_at, error, settled_at) = row
    return Intent(payment, int(seq), op, None if requested is None else int(requested), int(amount), currency, key,
                  bool(caller_key), bool(final), Status(status), int(attempts), parse_ts(created_at),
                  parse_ts(lease_until), owner, _opt_parse(next_attempt_at), error, _opt_parse(settled_at))


class Tx:
    """One transaction's reads and writes, in SQL both backends speak (`?` placeholders, rewritten)."""

    def __init__(self, cursor: Cursor, placeholder: str, *, row_locks: bool = False):
        self._cur = cursor
        self._ph = placeholder
        self._row_locks = row_locks

    def _x(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self._ph != "?":
            sql = sql.replace("?", self._ph)
        return self._cur.execute(sql, tuple(params))

    # -- payments

    def payment(self, reference: str) -> tuple[str, int] | None:
        """(provider, next intent sequence), or None for a payment the journal does not hold."""
        self._x("SELECT provider, next_seq FROM capstate_payments WHERE reference = ?", (reference,))
        row = self._cur.fetchone()
        return (row[0], int(row[1])) if row is not None else None

    def lock(self, reference: str) -> None:
        """Lock the payment's row (PostgreSQL); SQLite's BEGIN IMMEDIATE already locked the database."""
        if self._row_locks:
            self._x("SELECT reference FROM capstate_payments WHERE reference = ? FOR UPDATE", (reference,))

    def add_payment(self, reference: str, provider: str, now: datetime) -> None:
        self._x("INSERT INTO capstate_payments (reference, provider, next_seq, created_at) VALUES (?, ?, 1, ?) "
                "ON CONFLICT (reference) DO NOTHING", (reference, provider, ts(now)))

    def set_next_seq(self, reference: str, seq: int) -> None:
        self._x("UPDATE capstate_payments SET next_seq = ? WHERE reference = ?", (seq, reference))

    def references(self, after: str = "", limit: int = 1000) -> list[tuple[str, str]]:
        self._x("SELECT reference, provider FROM capstate_payments WHERE reference > ? ORDER BY reference LIMIT ?",
                (after, limit))
        return [(r[0], r[1]) for r in self._cur.fetchall()]

    def set_in_flight(self, reference: str, flag: bool) -> None:
        """Keep the in-flight index (schema 2): whether the payment has an operation in flight at the provider."""
        self._x("UPDATE capstate_payments SET in_flight = ? WHERE reference = ? AND in_flight <> ?",
                (int(flag), reference, int(flag)))

    def in_flight(self) -> list[tuple[str, str]]:
        """(reference, provider) of every payment flagged in flight, through the partial index."""
        self._x("SELECT reference, provider FROM capstate_payments WHERE in_flight = 1 ORDER BY reference")
        return [(r[0], r[1]) for r in self._cur.fetchall()]

    # -- events

    def events(self, reference: str) -> list[tuple[int, Recorded, datetime]]:
        """(id, recorded event, recorded_at), in the order the facts happened (`at`), then recorded."""
        self._x("SELECT id, body, source, intent, finding, note, recorded_at FROM capstate_events "
                "WHERE payment = ? ORDER BY at, id", (reference,))
        out = []
        for row in self._cur.fetchall():
            event = Event.from_json(row[1])
            rec = Recorded(event, Source(row[2]), None if row[3] is None else int(row[3]),
                           Code(row[4]) if row[4] is not None else None, row[5])
            out.append((int(row[0]), rec, parse_ts(row[6])))
        return out

    def marked(self, reference: str) -> tuple[int, bool, tuple[int, int]] | None:
        """(next intent sequence, in flight, (how many events, the highest id)) of a payment, in one statement;
        None for a payment the journal does not hold. Events are only ever inserted, each under its payment's
        lock, so an unchanged mark under that lock means an unchanged history."""
        self._x("SELECT p.next_seq, p.in_flight, COUNT(e.id), COALESCE(MAX(e.id), 0) FROM capstate_payments p "
                "LEFT JOIN capstate_events e ON e.payment = p.reference WHERE p.reference = ? "
                "GROUP BY p.next_seq, p.in_flight", (reference,))
        row = self._cur.fetchone()
        return (int(row[0]), bool(row[1]), (int(row[2]), int(row[3]))) if row is not None else None

    def add_event(self, rec: Recorded, dedup: str, now: datetime) -> bool:
        """Record an event once; False when an event with the same identity is already there."""
        e = rec.event
        self._x("INSERT INTO capstate_events (payment, dedup, type, at, body, source, intent, finding, note, "
                "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (payment, dedup) DO NOTHING",
                (e.payment, dedup, e.type.value, ts(e.at), e.to_json().decode(), rec.source.value, rec.intent,
                 rec.finding.value if rec.finding is not None else None, rec.note, ts(now)))
        return bool(self._cur.rowcount == 1)

    # -- intents

    def intents(self, reference: str) -> list[Intent]:
        self._x(f"SELECT {_INTENT_COLUMNS} FROM capstate_intents WHERE payment = ? ORDER BY seq", (reference,))
        return [intent_from_row(r) for r in self._cur.fetchall()]

    def open_intents(self) -> list[Intent]:
        self._x(f"SELECT {_INTENT_COLUMNS} FROM capstate_intents WHERE status IN (?, ?) ORDER BY created_at, "
                "payment, seq", (Status.PENDING.value, Status.UNKNOWN.value))
        return [intent_from_row(r) for r in self._cur.fetchall()]

    def due_intents(self, cutoff: datetime) -> list[Intent]:
        """Open intents whose lease ran out by `cutoff`, through the index on (status, lease_until): O(open
        intents), whatever the number of payments."""
        self._x(f"SELECT {_INTENT_COLUMNS} FROM capstate_intents WHERE status IN ('pending', 'unknown') AND "
                "lease_until <= ? ORDER BY lease_until, payment, seq", (ts(cutoff),))
        return [intent_from_row(r) for r in self._cur.fetchall()]

    def provider_of(self, reference: str) -> str | None:
        row = self.payment(reference)
        return row[0] if row is not None else None

    # -- inbox

    def add_inbox(self, d: Delivery, event_id: str | None, now: datetime) -> bool:
        """Keep one notification once; False when the same delivery is already there."""
        self._x("INSERT INTO capstate_inbox (provider, dedup, payment, status, sent_at, body, event, finding, note, "
                "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (provider, dedup) DO NOTHING",
                (d.provider, d.dedup, d.payment, d.status, ts(d.sent_at), d.body, event_id,
                 d.finding.value if d.finding is not None else None, d.note, ts(now)))
        return bool(self._cur.rowcount == 1)

    def last_sent(self, provider: str, payment: str) -> datetime | None:
        self._x("SELECT MAX(sent_at) FROM capstate_inbox WHERE provider = ? AND payment = ?", (provider, payment))
        row = self._cur.fetchone()
        return parse_ts(row[0]) if row is not None and row[0] is not None else None

    def inbox(self, payment: str | None = None) -> list[dict[str, Any]]:
        """Notifications kept (all, or one payment's), in the order they were sent."""
        where, params = ("WHERE payment = ?", (payment,)) if payment is not None else ("", ())
        self._x(f"SELECT id, provider, payment, status, sent_at, body, event, finding, note, recorded_at "
                f"FROM capstate_inbox {where} ORDER BY sent_at, id", params)
        keys = ("id", "provider", "payment", "status", "sent_at", "body", "event", "finding", "note", "recorded_at")
        return [dict(zip(keys, row, strict=True)) for row in self._cur.fetchall()]

    def put_intent(self, i: Intent) -> None:
        self._x(f"INSERT INTO capstate_intents ({_INTENT_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (payment, seq) DO UPDATE SET "
                "op = excluded.op, requested = excluded.requested, amount = excluded.amount, "
                "currency = excluded.currency, key = excluded.key, caller_key = excluded.caller_key, "
                "final = excluded.final, status = excluded.status, attempts = excluded.attempts, "
                "created_at = excluded.created_at, lease_until = excluded.lease_until, owner = excluded.owner, "
                "next_attempt_at = excluded.next_attempt_at, error = excluded.error, settled_at = excluded.settled_at",
                (i.payment, i.seq, i.op, i.requested, i.amount, i.currency, i.key, int(i.caller_key), int(i.final),
                 i.status.value, i.attempts, ts(i.created_at), ts(i.lease_until), i.owner,
                 _opt_ts(i.next_attempt_at), i.error, _opt_ts(i.settled_at)))


class Store(Protocol):
    """What the journal needs from a backend."""

    url: str

    def locked(self, reference: str, *, durable: bool = True) -> AbstractContextManager[Tx]:
        """A write transaction holding the lock that serializes writers of `reference`. `durable=False`
        commits without waiting for the disk: after a power cut (not a killed process) the transaction
        may be lost, with every later one that was not durable either (the log is replayed in order), never
        half of it. Only the settle step uses it (docs/journal.md, "Durability")."""

    def reading(self) -> AbstractContextManager[Tx]:
        """A read-only transaction (a consistent snapshot on both backends)."""

    def close(self) -> None: ...


def _migrate(tx: Tx, serial: str, exists_sql: str, *, readonly: bool = False) -> int:
    """Bring the schema to VERSION inside the caller's transaction; returns the version found (-1: none).
    `exists_sql` answers one row, non-null when the meta table exists (asked, not tried: a failed
    statement would abort a PostgreSQL transaction). `readonly` only checks that the schema is current."""
    tx._x(exists_sql, (META,))
    row = tx._cur.fetchone()
    found = -1
    if row is not None and row[0] is not None:
        tx._x(f"SELECT version FROM {META}")
        got = tx._cur.fetchone()
        found = int(got[0]) if got is not None else 0
    if found > VERSION:
        raise JournalError(f"the journal's schema is version {found}, newer than this capstate's {VERSION}: "
                           f"upgrade capstate")
    if readonly:
        if found < VERSION:
            what = "holds no journal" if found < 0 else f"has schema version {found}"
            raise JournalError(f"the journal {what} (this capstate's is {VERSION}); a read never creates or "
                               f"migrates it: run `capstate journal init`")
        return found
    for version in range(max(found, 0), VERSION):
        for statement in MIGRATIONS[version]:
            tx._x(statement.replace("{serial}", serial))
        tx._x(f"UPDATE {META} SET version = ?", (version + 1,))
    return found


# ------------------------------------------------------------------------------------------- SQLite


class SqliteStore:
    """SQLite: one file, WAL, writers serialized by `BEGIN IMMEDIATE`, FULL sync (a committed intent
    survives a power cut, not only a killed process)."""

    SERIAL = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, url: str, path: str, *, readonly: bool = False):
        self.url = url
        self.path = path
        if path != ":memory:" and not Path(path).parent.is_dir():
            raise JournalError(f"journal {url}: directory {Path(path).parent} does not exist")
        if readonly and not Path(path).is_file():
            # A read (validate) must not leave an empty journal behind a mistyped path.
            raise JournalError(f"journal {url}: no such file (create it with `capstate journal init`)")
        try:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=SQLITE_BUSY_MS / 1000,
                                       check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")
            if readonly:
                # Every write through this connection fails: the reader cannot change the journal by mistake.
                self._db.execute("PRAGMA query_only = ON")
            else:
                self._db.execute("PRAGMA journal_mode = WAL")
                self._db.execute("PRAGMA synchronous = FULL")
            self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise JournalError(f"journal {url}: {exc}") from None
        with self._transaction("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE") as tx:
            _migrate(tx, self.SERIAL, "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
                     readonly=readonly)

    @contextmanager
    def _transaction(self, begin: str, *, durable: bool = True) -> Iterator[Tx]:
        cur = self._db.cursor()
        try:
            if not durable:
                # Per connection, read when the transaction commits: NORMAL appends to the WAL without an
                # fsync. A later FULL commit syncs the whole WAL, this one included, and recovery replays a
                # WAL only up to its first torn frame: a power cut loses a suffix of commits, never a hole.
                cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute(begin)
        except sqlite3.Error as exc:
            self._restore_sync(cur, durable)
            cur.close()
            raise JournalError(f"journal {self.url}: {exc}") from None
        try:
            yield Tx(cur, "?")
        except BaseException:
            self._db.rollback()
            raise
        else:
            self._db.commit()
        finally:
            self._restore_sync(cur, durable)
            cur.close()

    @staticmethod
    def _restore_sync(cur: sqlite3.Cursor, durable: bool) -> None:
        if not durable:
            cur.execute("PRAGMA synchronous = FULL")

    def locked(self, reference: str, *, durable: bool = True) -> AbstractContextManager[Tx]:
        # SQLite has no row locks: the write lock of BEGIN IMMEDIATE covers every payment at once.
        return self._transaction("BEGIN IMMEDIATE", durable=durable)

    def reading(self) -> AbstractContextManager[Tx]:
        return self._transaction("BEGIN DEFERRED")

    def close(self) -> None:
        self._db.close()


def open_store(url: str, *, readonly: bool = False) -> Store:
    """The backend for `url`. Raises JournalError for a URL it cannot serve. `readonly`: a store that
    neither creates, migrates nor writes the journal (its schema must be current)."""
    if not isinstance(url, str) or not url:
        raise JournalError("a journal URL is sqlite:///path/capstate.db or postgresql://...")
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        if parts.netloc not in ("", "localhost"):
            raise JournalError(f"journal {url}: a sqlite URL has no host (sqlite:///relative.db or "
                               f"sqlite:////absolute/path.db)")
        path = unquote(parts.path)[1:] if parts.path.startswith("/") else unquote(parts.path)
        if not path:
            raise JournalError(f"journal {url}: no database path")
        return SqliteStore(url, path, readonly=readonly)
    if parts.scheme in ("postgresql", "postgres"):
        from ._postgres import PostgresStore

        return PostgresStore(url, readonly=readonly)
    raise JournalError(f"journal URL {url.split(':', 1)[0]!r}: expected sqlite:///path.db or postgresql://...")
