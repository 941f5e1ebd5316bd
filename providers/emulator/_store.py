"""`--state FILE.db`: the emulator's payments, ledgers, clock and counters in SQLite, so a restart of
`capstate emulate` carries on where it stopped.

One row per payment holds its JSON (events, requests, the plug-in's extra); the payment's aggregate is
not stored but rebuilt by replaying its events on the spec at load, so a file can never hold an aggregate
its own history contradicts. Faults are not stored: they are armed by a test for its own next requests.
Writes happen in the emulator's one event loop; each is its own short transaction (WAL journal).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from ..._time import format_instant
from ._base import ControlError
from ._core import Entry

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS payments (
    provider TEXT NOT NULL, reference TEXT NOT NULL, body BLOB NOT NULL, PRIMARY KEY (provider, reference));
"""


class SqliteStore:
    """The state file. Raises ControlError when the file is not an emulator state file."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            row = self.db.execute("SELECT version FROM meta WHERE id = 1").fetchone()
        except sqlite3.DatabaseError as exc:
            raise ControlError(f"--state {self.path}: not an emulator state file ({exc})") from None
        if row is not None and row[0] != SCHEMA_VERSION:
            raise ControlError(f"--state {self.path}: state version {row[0]}, this emulator reads {SCHEMA_VERSION}")

    def save_entry(self, entry: Entry) -> None:
        body = {"provider": entry.provider, "reference": entry.reference,
                "events": [e.to_dict() for e in entry.events], "requests": [r.to_dict() for r in entry.requests],
                "extra": entry.extra,
                "settle_due": format_instant(entry.settle_due) if entry.settle_due is not None else None}
        self.db.execute("INSERT OR REPLACE INTO payments (provider, reference, body) VALUES (?, ?, ?)",
                        (entry.provider, entry.reference, orjson.dumps(body)))

    def save_meta(self, meta: Mapping[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (id, version, body) VALUES (1, ?, ?)",
                        (SCHEMA_VERSION, orjson.dumps(meta)))

    def load(self) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        try:
            rows = [orjson.loads(body) for (body,) in self.db.execute("SELECT body FROM payments ORDER BY rowid")]
            meta = self.db.execute("SELECT body FROM meta WHERE id = 1").fetchone()
        except (sqlite3.DatabaseError, orjson.JSONDecodeError) as exc:
            raise ControlError(f"--state {self.path}: unreadable ({exc})") from None
        return rows, (orjson.loads(meta[0]) if meta is not None else None)

    def clear(self) -> None:
        self.db.execute("DELETE FROM payments")

    def close(self) -> None:
        self.db.close()
