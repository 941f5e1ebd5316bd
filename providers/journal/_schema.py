"""The journal's schema: one definition, versioned migrations, for SQLite and PostgreSQL alike.

Rules:
- Every table is prefixed `capstate_`, so a journal can share a PostgreSQL schema with the service's own.
- Migrations only ever append: version N is the list of statements that turns N-1 into N. A database
  whose version is newer than the code refuses to open (an old worker must not write a newer layout).
- Times are TEXT in one fixed-width UTC form (`2026-01-05T12:00:00.000000Z`), so they sort as text and
  read back exactly on both backends; amounts are BIGINT minor units.
- `{serial}` is the one dialect difference: an auto-increment id, to order events as they were recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime

META = "capstate_journal_meta"

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: payments, their events with provenance, and operation intents.
    (
        f"CREATE TABLE {META} (version INTEGER NOT NULL)",
        f"INSERT INTO {META} (version) VALUES (0)",
        """CREATE TABLE capstate_payments (
            reference TEXT PRIMARY KEY,
            provider TEXT NOT NULL,
            next_seq INTEGER NOT NULL DEFAULT 1,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE capstate_events (
            id {serial},
            payment TEXT NOT NULL REFERENCES capstate_payments (reference),
            dedup TEXT NOT NULL,
            type TEXT NOT NULL,
            at TEXT NOT NULL,
            body TEXT NOT NULL,
            source TEXT NOT NULL,
            intent INTEGER,
            finding TEXT,
            note TEXT,
            recorded_at TEXT NOT NULL,
            UNIQUE (payment, dedup)
        )""",
        """CREATE TABLE capstate_intents (
            payment TEXT NOT NULL REFERENCES capstate_payments (reference),
            seq INTEGER NOT NULL,
            op TEXT NOT NULL,
            requested BIGINT,
            amount BIGINT NOT NULL,
            currency TEXT,
            key TEXT NOT NULL,
            caller_key INTEGER NOT NULL,
            final INTEGER NOT NULL,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            lease_until TEXT NOT NULL,
            owner TEXT NOT NULL,
            next_attempt_at TEXT,
            error TEXT,
            settled_at TEXT,
            PRIMARY KEY (payment, seq),
            UNIQUE (payment, key)
        )""",
        "CREATE INDEX capstate_intents_open ON capstate_intents (status, lease_until)",
    ),
)
VERSION = len(MIGRATIONS)


def ts(value: datetime) -> str:
    """A time as the journal stores it (aware in, UTC text out)."""
    if value.utcoffset() is None:
        raise ValueError(f"the journal stores timezone-aware times only, got {value!r}")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
