"""Real journals for tests: a fresh SQLite file, or a fresh schema on the real PostgreSQL server.

PostgreSQL comes from CAPSTATE_TEST_POSTGRES (a libpq URL). Without it, or without a server behind it,
a PostgreSQL test skips with the reason, and FAILS under CI=true, where .ci/run starts a server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from _requires import absent
from _requires import postgres_url as postgres_base

BACKENDS = ("sqlite", "postgresql")


@contextmanager
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped afterwards."""
    base = postgres_base()
    try:
        import psycopg
    except ImportError:
        absent("needs psycopg: pip install 'capstate[postgres]'")
        raise AssertionError("unreachable") from None
    schema = f"capstate_t_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(base, autocommit=True)
    except psycopg.Error as exc:
        absent(f"needs a PostgreSQL server at CAPSTATE_TEST_POSTGRES: {str(exc).strip().splitlines()[0]}")
        raise AssertionError("unreachable") from None
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in base else "?"
        try:
            yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def journal_url(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / f'journal-{uuid.uuid4().hex[:8]}.db'}"
    else:
        with postgres_url() as url:
            yield url
