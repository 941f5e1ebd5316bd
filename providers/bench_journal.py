"""`capstate bench`'s journal row: captures per second through Journal + CaptureClient against a real
`capstate emulate` process, and the journal's overhead as a ratio to the bare client in the same run.

Each round seeds fresh Bambora payments at the emulator (not timed), then times one capture per payment
with the bare client (the payment built from its authorization) and, on other payments, through the
journal (SQLite in a temporary directory: two short transactions around the same request, the intent's
commit durable, the settle's not waiting for the disk: docs/journal.md "Durability"). The figure
is the median of the rounds. Application code, like the CLI: it starts a process and reads the clock.
"""

from __future__ import annotations

import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from .._spec import load_spec
from .._values import Capture, Event, Payment
from . import bambora
from .client import CaptureClient
from .journal import Journal

QUICK_CAPTURES, FULL_CAPTURES = 25, 200
AMOUNT = 10000


def _emulator() -> tuple[subprocess.Popen[str], str] | None:
    proc = subprocess.Popen([sys.executable, "-m", "capstate", "emulate", "--port", "0", "--provider", "bambora"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    match = re.search(r"listening on (\S+)", proc.stdout.readline())
    if match is None:  # the emulator extra is not installed, or the server did not start
        proc.kill()
        proc.wait()
        return None
    return proc, match.group(1)


def measure(*, quick: bool, rounds: int, say: Callable[[str], None]) -> dict[str, Any] | None:
    """{"journal_cps", "bare_cps", "overhead", "captures", "commit_ms"}, or None when the emulator cannot run."""
    started = _emulator()
    if started is None:
        return None
    proc, url = started
    n = QUICK_CAPTURES if quick else FULL_CAPTURES
    spec = load_spec("bambora")
    creds = bambora.Credentials(access_token="emulator-token", merchant_number="T000000001",
                                secret_token="emulator-secret", base_url=f"{url}/bambora")
    bare_s: list[float] = []
    journal_s: list[float] = []
    try:
        with httpx.Client(base_url=url, timeout=30) as control, CaptureClient("bambora", creds) as client, \
                tempfile.TemporaryDirectory(prefix="capstate-bench-journal-") as tmp, \
                Journal(f"sqlite:///{tmp}/journal.db") as journal:

            def seed() -> list[Event]:
                out = []
                for _ in range(n):
                    ref = f"bench-{uuid.uuid4().hex[:16]}"
                    r = control.post("/_emulator/payments", json={"provider": "bambora", "reference": ref,
                                                                  "amount": 100000, "currency": "NOK"})
                    r.raise_for_status()
                    out.append(Event.from_dict({**r.json()["events"][0], "provider": "bambora"}))
                return out

            say(f"journal: {rounds} rounds of {n} captures, bare client then journal + client, against "
                f"capstate emulate")
            for _ in range(rounds):
                bare = [Payment.authorized_for(spec, e.payment, amount=e.amount or 0, currency=e.currency or "NOK",
                                               at=e.at) for e in seed()]
                t0 = time.perf_counter()
                for p in bare:
                    assert p.authorized_at is not None
                    client.capture(p, Capture(at=p.authorized_at, amount=AMOUNT))
                bare_s.append(time.perf_counter() - t0)
                events = seed()
                journal.ingest(events)
                t0 = time.perf_counter()
                for e in events:
                    journal.capture(e.payment, AMOUNT, client=client)
                journal_s.append(time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(10)
    bare_t, journal_t = statistics.median(bare_s), statistics.median(journal_s)
    return {"captures": n, "bare_cps": n / bare_t, "journal_cps": n / journal_t, "overhead": journal_t / bare_t,
            "commit_ms": durable_commit_ms(rounds)}


def durable_commit_ms(rounds: int, commits: int = 50) -> float:
    """The median time of one durable SQLite commit (WAL, synchronous FULL, as the journal's intent), in the
    same kind of temporary directory: what a capture through the journal costs at least on this disk (its
    intent is on disk before the request leaves), whatever the journal does around it."""
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="capstate-bench-commit-") as tmp:
        db = sqlite3.connect(f"{tmp}/commit.db", isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("CREATE TABLE t (n INTEGER)")
            for _ in range(rounds):
                t0 = time.perf_counter()
                for i in range(commits):
                    db.execute("BEGIN IMMEDIATE")
                    db.execute("INSERT INTO t VALUES (?)", (i,))
                    db.execute("COMMIT")
                times.append((time.perf_counter() - t0) / commits)
        finally:
            db.close()
    return statistics.median(times) * 1000
