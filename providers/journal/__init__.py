"""capstate.providers.journal: exactly-once captures, cancels and refunds through a durable journal.

`Journal(url)` keeps payments, their canonical events (with provenance) and operation intents in SQLite
(`sqlite:///path.db`, the default) or PostgreSQL (`postgresql://...`, `pip install "capstate[postgres]"`).
The rules live in `_lifecycle` (pure), the storage in `_store` / `_postgres` (thin), the sequencing in
`_journal`. See docs/journal.md for the guarantees and how to run `capstate reconcile`.
"""

from ._journal import (
    DEFAULT_LEASE,
    ENV,
    IngestReport,
    Journal,
    JournalOutcome,
    OperationFailed,
    OutcomeUnknown,
    Recovery,
)
from ._lifecycle import Intent, Recorded, Source, State, Status, derive_key
from ._store import JournalError

__all__ = [
    "DEFAULT_LEASE",
    "ENV",
    "IngestReport",
    "Intent",
    "Journal",
    "JournalError",
    "JournalOutcome",
    "OperationFailed",
    "OutcomeUnknown",
    "Recorded",
    "Recovery",
    "Source",
    "State",
    "Status",
    "derive_key",
]
