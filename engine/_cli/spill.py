"""The on-disk store an audit bounded by `--max-memory` spills open payments to: one SQLite file.

The engine keeps no file of its own (`capstate._audit.OpenStore` is the interface); this application
module gives it a temporary SQLite database, deleted when the audit ends. Durability is not wanted
(the file dies with the run), so the journal and fsyncs are off, which keeps a spill a sequential write.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterator
from types import TracebackType


class SqliteStore:
    """An OpenStore in a temporary SQLite file (payment -> packed record), removed on close."""

    def __init__(self, directory: str | None = None) -> None:
        self._where = directory
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._db: sqlite3.Connection | None = None
        self.spilled = 0  # pairs written over the run (the bench reports it)

    def _open(self) -> sqlite3.Connection:
        # Created on the first spill: an audit that stays within its budget never touches the disk.
        self._dir = tempfile.TemporaryDirectory(prefix="capstate-spill-", dir=self._where)
        db = self._db = sqlite3.connect(os.path.join(self._dir.name, "open-payments.sqlite"), isolation_level=None)
        db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-16384;"
            "CREATE TABLE open (ref TEXT PRIMARY KEY, rec BLOB NOT NULL) WITHOUT ROWID;")
        return db

    def put(self, items: list[tuple[str, bytes]]) -> None:
        db = self._db or self._open()
        db.execute("BEGIN")
        db.executemany("INSERT INTO open (ref, rec) VALUES (?, ?)", items)
        db.execute("COMMIT")
        self.spilled += len(items)

    def take(self, ref: str) -> bytes | None:
        if self._db is None:
            return None
        row = self._db.execute("DELETE FROM open WHERE ref = ? RETURNING rec", (ref,)).fetchone()
        return None if row is None else bytes(row[0])

    def drain(self) -> Iterator[tuple[str, bytes]]:
        if self._db is None:
            return
        for ref, rec in self._db.execute("SELECT ref, rec FROM open"):
            yield ref, bytes(rec)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        if self._dir is not None:
            self._dir.cleanup()

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
