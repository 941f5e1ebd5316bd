"""PostgreSQL: several service instances share one journal; writers of one payment are serialized by
`SELECT ... FOR UPDATE` on its row, writers of different payments run side by side.

psycopg 3 is an optional extra (`pip install "capstate[postgres]"`), imported only when a
`postgresql://` journal is opened. The password never appears in an error or a repr.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ._store import JournalError, Tx, _migrate

# Any constant: the transaction-scoped advisory lock that keeps two instances from migrating at once.
_MIGRATION_LOCK = 0x63617073  # "caps"


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class PostgresStore:
    SERIAL = "BIGSERIAL PRIMARY KEY"

    def __init__(self, url: str, *, readonly: bool = False):
        self.url = redact(url)
        try:
            import psycopg
        except ImportError:
            raise JournalError('a postgresql:// journal needs psycopg 3: pip install "capstate[postgres]"') from None
        self._psycopg: Any = psycopg
        try:
            self._db = psycopg.connect(url, autocommit=False)
        except psycopg.Error as exc:
            raise JournalError(f"journal {self.url}: cannot connect: {_first_line(exc)}") from None
        # One connection, one transaction at a time; a Journal shared by threads takes turns on it.
        self._mutex = threading.Lock()
        if readonly:
            try:
                # Every transaction of this session is READ ONLY: the server refuses any write.
                with self._db.cursor() as cur:
                    cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                self._db.commit()
            except psycopg.Error as exc:
                raise JournalError(f"journal {self.url}: {_first_line(exc)}") from None
            with self._transaction() as tx:
                _migrate(tx, self.SERIAL, "SELECT to_regclass(?)", readonly=True)
            return
        with self._transaction() as tx:
            tx._x("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
            _migrate(tx, self.SERIAL, "SELECT to_regclass(?)")

    @contextmanager
    def _transaction(self, lock: str | None = None, *, durable: bool = True) -> Iterator[Tx]:
        with self._mutex:
            try:
                with self._db.transaction(), self._db.cursor() as cur:
                    tx = Tx(cur, "%s", row_locks=True)
                    if not durable:
                        # This transaction only: COMMIT returns before its WAL record is flushed. The WAL is
                        # flushed in order (a later synchronous commit flushes this one too), so a crash loses
                        # a suffix of commits, each whole: "as if those transactions had been aborted cleanly".
                        tx._x("SET LOCAL synchronous_commit = off")
                    if lock is not None:
                        # The payment row is the lock. A payment not yet in the journal has no row: its first
                        # writer inserts one and locks it then (Tx.lock after add_payment).
                        tx.lock(lock)
                    yield tx
            except self._psycopg.Error as exc:
                raise JournalError(f"journal {self.url}: {_first_line(exc)}") from None

    def locked(self, reference: str, *, durable: bool = True) -> AbstractContextManager[Tx]:
        return self._transaction(lock=reference, durable=durable)

    def reading(self) -> AbstractContextManager[Tx]:
        return self._transaction()

    def close(self) -> None:
        self._db.close()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
