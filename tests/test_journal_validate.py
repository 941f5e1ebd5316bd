"""`capstate validate --journal URL --payment REF`: the journal's payment decided exactly as `capture --journal`
decides it (its events plus the reservations of intents still open), read only: nothing written to the
journal, nothing sent. Real subprocesses, real SQLite files and the real PostgreSQL server."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from httpserver import Reply, ScriptedServer, scripted_server
from journals import BACKENDS, journal_url

from capstate.providers.client import CaptureClient
from capstate.providers.journal import Journal, OutcomeUnknown
from capstate.providers.retry import RetryPolicy

ROOT = Path(__file__).resolve().parents[1]
REF = "order-20001"
TABLES = ("capstate_journal_meta", "capstate_payments", "capstate_events", "capstate_intents")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # No provider credentials at all: validate never needs them, because it never talks to the provider.
    base = {k: v for k, v in os.environ.items() if not k.startswith("CAPSTATE_")}
    out = subprocess.run([sys.executable, "-m", "capstate", *args], capture_output=True, text=True,
                         env={**base, **(env or {})}, cwd=ROOT, timeout=120, check=False)
    assert "Traceback" not in out.stderr, out.stderr
    return out


def at(hours_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def dump(url: str) -> list[Any]:
    """Every row of every journal table, in a fixed order: what 'nothing was written' is checked against."""
    if url.startswith("sqlite:"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return [db.execute(f"SELECT * FROM {t} ORDER BY 1, 2" if t != TABLES[0] else f"SELECT * FROM {t}")
                    .fetchall() for t in TABLES]
        finally:
            db.close()
    import psycopg

    with psycopg.connect(url) as db:
        return [db.execute(f"SELECT * FROM {t} ORDER BY 1, 2" if t != TABLES[0] else f"SELECT * FROM {t}")
                .fetchall() for t in TABLES]


@pytest.fixture(params=BACKENDS)
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A journal holding one Vipps payment: authorized 100000 NOK, 25000 captured under key ship-1."""
    with journal_url(request.param, tmp_path) as url, Journal(url) as j:
        report = j.ingest([
            {"payment": REF, "type": "authorized", "at": at(3), "amount": 100000, "currency": "NOK",
             "provider": "vipps"},
            {"payment": REF, "type": "captured", "at": at(2), "amount": 25000, "currency": "NOK",
             "provider": "vipps", "key": "ship-1"}])
        assert report.recorded == 2 and report.rejected == ()
        yield url


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as srv:
        yield srv


def validate(url: str, *args: str, as_json: bool = True) -> tuple[int, Any]:
    out = cli("validate", "--journal", url, "--payment", REF, *args, *(["--json"] if as_json else []))
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout) if as_json else out.stdout


def open_capture(url: str, server: ScriptedServer, amount: int, key: str) -> None:
    """A capture whose outcome is unknown (the provider held the request past the timeout, and the read-back
    failed): its intent stays open and reserves `amount`."""
    server.on("POST", f"/epayment/v1/payments/{REF}/capture", Reply(200, {}, delay=2.0))
    server.on("GET", f"/epayment/v1/payments/{REF}", Reply(500, b""))
    from capstate.providers import vipps

    creds = vipps.Credentials(access_token="tok", subscription_key="sub", merchant_serial_number="123456",
                              base_url=server.url)
    with Journal(url) as j, CaptureClient("vipps", creds, retry=RetryPolicy(attempts=1), timeout=0.3) as client:
        with pytest.raises(OutcomeUnknown):
            j.capture(REF, amount, key=key, client=client)
        assert [i.status.value for i in j.state(REF).intents] == ["unknown"]


def test_validate_decides_the_journal_s_payment_with_validate_s_shapes_and_exit_codes(journal: str) -> None:
    code, doc = validate(journal, "--amount", "75000")
    assert code == 0 and doc["allowed"] is True and set(doc) == {"allowed", "violations", "warnings", "capture",
                                                                  "after"}
    assert doc["after"]["captured"] == 100000 and doc["capture"]["key_derived"] is True
    code, doc = validate(journal, "--amount", "75001")
    assert code == 1 and [v["code"] for v in doc["violations"]] == ["EXCEEDS_CAPTURABLE"]
    # The same verdict as a history of the same events (journal export), for the same instant and key.
    exported = subprocess.run([sys.executable, "-m", "capstate", "journal", "export", "--journal", journal],
                              capture_output=True, check=True, cwd=ROOT).stdout
    for amount in ("75000", "75001"):
        when = at(0)
        _, mine = validate(journal, "--amount", amount, "--key", "ship-2", "--at", when)
        history = subprocess.run([sys.executable, "-m", "capstate", "validate", "--provider", "vipps", "--history",
                                  "-", "--amount", amount, "--key", "ship-2", "--at", when, "--json"],
                                 input=exported, capture_output=True, check=False, cwd=ROOT)
        assert json.loads(history.stdout) == mine
    text = cli("validate", "--journal", journal, "--payment", REF, "--amount", "1000")
    assert text.returncode == 0 and "ALLOWED" in text.stdout and "0 open intent(s)" in text.stdout


def test_an_open_intent_reserves_its_amount_and_is_in_flight_as_capture_says(journal: str,
                                                                             server: ScriptedServer) -> None:
    open_capture(journal, server, 30000, "ship-2")
    sent = len(server.requests)
    # 100000 - 25000 captured - 30000 in flight: 45000 is all that is left, and capture says the same.
    code, doc = validate(journal, "--amount", "45001")
    assert code == 1 and "CAPTURE_IN_FLIGHT" in [v["code"] for v in doc["violations"]]
    capture = cli("capture", "--journal", journal, "--payment", REF, "--amount", "45001", "--json")
    assert capture.returncode == 1 and "nothing was sent" in capture.stderr
    assert json.loads(capture.stdout)["decision"]["violations"] == doc["violations"]
    # The open intent's own key: in flight (capture would never send it again); with another amount: a conflict.
    code, doc = validate(journal, "--amount", "30000", "--key", "ship-2")
    assert code == 1 and [v["code"] for v in doc["violations"]] == ["CAPTURE_IN_FLIGHT"]
    code, doc = validate(journal, "--amount", "1000", "--key", "ship-2")
    assert code == 1 and [v["code"] for v in doc["violations"]] == ["IDEMPOTENCY_KEY_CONFLICT"]
    # A key already done is a replay: allowed, nothing would move.
    code, doc = validate(journal, "--amount", "25000", "--key", "ship-1")
    assert code == 0 and doc["allowed"] is True
    text = cli("validate", "--journal", journal, "--payment", REF, "--amount", "1000")
    assert "1 open intent(s); #1 capture 30000 unknown" in text.stdout
    assert len(server.requests) == sent  # validate and the refused capture sent nothing


def test_validate_writes_nothing_to_the_journal(journal: str, server: ScriptedServer) -> None:
    open_capture(journal, server, 30000, "ship-2")
    before = dump(journal)
    for args in (["--amount", "1000"], ["--amount", "99999"], ["--key", "ship-2", "--amount", "30000"], []):
        validate(journal, *args)
    assert dump(journal) == before


def test_the_journal_comes_from_capstate_journal_when_no_history_is_given(journal: str) -> None:
    out = cli("validate", "--payment", REF, "--amount", "75000", "--json", env={"CAPSTATE_JOURNAL": journal})
    assert out.returncode == 0 and json.loads(out.stdout)["allowed"] is True


def test_bad_input_is_one_line_and_exit_2(journal: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.db"
    for args, message in (
            (["--journal", journal, "--payment", "order-99999"], "not in the journal"),
            (["--journal", journal], "--payment REF is required"),
            (["--journal", journal, "--payment", REF, "--history", "x.jsonl"], "not read with --journal"),
            (["--journal", journal, "--payment", REF, "--provider", "bambora"], "is a vipps payment"),
            (["--journal", journal, "--payment", REF, "--amount", "1.5"], "never decimals"),
            (["--journal", f"sqlite:///{missing}", "--payment", REF], "no such file"),
            (["--amount", "100"], "--journal URL --payment REF")):
        out = cli("validate", *args)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, (args, out.stderr)
    assert not missing.exists()  # a read never creates a journal
