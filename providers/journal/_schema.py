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
    # 2: what `reconcile` reads without scanning every payment, and the inbox of provider notifications.
    (
        # A payment with an operation in flight at the provider (Hellgate `capturing`: pending > 0), kept by
        # every write that records its events; a partial index holds only those, so reconcile finds them in
        # O(in flight), not O(payments). Backfilled conservatively (any capture_requested): a payment wrongly
        # flagged is read once and cleared.
        "ALTER TABLE capstate_payments ADD COLUMN in_flight INTEGER NOT NULL DEFAULT 0",
        "UPDATE capstate_payments SET in_flight = 1 WHERE reference IN "
        "(SELECT payment FROM capstate_events WHERE type = 'capture_requested')",
        "CREATE INDEX capstate_payments_in_flight ON capstate_payments (reference) WHERE in_flight = 1",
        # (Open intents past their lease are read through version 1's capstate_intents_open (status, lease_until).)
        # Verified notifications (Pipwave IPNs) as delivered, once each (`dedup`), with what they were mapped to
        # (`event`: the canonical event recorded, if any) and the finding they raised. A notification whose
        # amount proves nothing is kept here with its finding instead of becoming a guessed event.
        """CREATE TABLE capstate_inbox (
            id {serial},
            provider TEXT NOT NULL,
            dedup TEXT NOT NULL,
            payment TEXT,
            status TEXT NOT NULL,
            sent_at TEXT NOT NULL,
            body TEXT NOT NULL,
            event TEXT,
            finding TEXT,
            note TEXT,
            recorded_at TEXT NOT NULL,
            UNIQUE (provider, dedup)
        )""",
        "CREATE INDEX capstate_inbox_payment ON capstate_inbox (payment, sent_at)",
    ),
)
VERSION = len(MIGRATIONS)


_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def ts(value: datetime) -> str:
    """A time as the journal stores it (aware in, UTC text out)."""
    if value.utcoffset() is None:
        raise ValueError(f"the journal stores timezone-aware times only, got {value!r}")
    # isoformat writes what strftime(_FORMAT) did (4-digit year, 6-digit fraction), several times faster.
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_ts(text: str) -> datetime:
    """A time as `ts` wrote it. The fixed-width form goes through `fromisoformat` (~40x faster than
    strptime; a capture reads several); anything else through the same strptime as
    always, so what is accepted or refused does not change."""
    if len(text) == 27 and text[10] == "T" and text[19] == "." and text[26] == "Z":
        return datetime.fromisoformat(text)
    return datetime.strptime(text, _FORMAT).replace(tzinfo=UTC)
