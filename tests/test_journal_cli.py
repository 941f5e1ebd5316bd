"""The journal's commands as real subprocesses: exit codes, one-line errors, --json, and the files they read.

Sending commands go to a scripted HTTP server on 127.0.0.1 (the credentials' base URL); the journal is a
real SQLite file (the drills run the same commands on PostgreSQL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from httpserver import Reply, ScriptedServer, scripted_server
from test_cli_capture import ROOT, SECRETS, VIPPS_HISTORY, credentials_file, vipps_body

REF = "order-10001"
CAPTURE = f"/epayment/v1/payments/{REF}/capture"


def run(*args: str, journal: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPSTATE_")}
    env.update(SECRETS)
    env["CAPSTATE_VIPPS_MERCHANT_SERIAL_NUMBER"] = "123456"
    if journal is not None:
        env["CAPSTATE_JOURNAL"] = journal
    out = subprocess.run([sys.executable, "-m", "capstate", *args], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120, check=False, input=stdin)
    assert "Traceback" not in out.stderr, out.stderr
    return out


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as srv:
        yield srv


@pytest.fixture
def journal(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'capstate.db'}"
    assert run("journal", "init", journal=url).returncode == 0
    # The shipped example history is from January 2026: its authorization is re-dated to now, so that the
    # journal (which decides at the real time) is inside Vipps's 180 days.
    lines = []
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    for n, line in enumerate(VIPPS_HISTORY.read_text().splitlines()):
        event = json.loads(line)
        event["at"] = (now - timedelta(hours=2 - n)).strftime("%Y-%m-%dT%H:%M:%SZ")
        lines.append(json.dumps(event))
    imported = run("journal", "import", "-", "--json", journal=url, stdin="\n".join(lines) + "\n")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["recorded"] == len(lines)
    return url


def test_import_is_idempotent_and_reports_bad_lines(journal: str, tmp_path: Path) -> None:
    # The original history: its keyed capture is the same fact (by key); its authorization, stamped at
    # another time, is a second one, recorded with the spec's objection, not dropped.
    again = run("journal", "import", str(VIPPS_HISTORY), "--json", journal=journal)
    doc = json.loads(again.stdout)
    assert again.returncode == 0 and (doc["recorded"], doc["duplicates"]) == (1, 1)
    assert [f["code"] for f in doc["findings"]] == ["INVALID_STATE"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"payment": "order-10001", "type": "captured"}\nnot json\n')
    out = run("journal", "import", str(bad), journal=journal)
    assert out.returncode == 1 and out.stderr.count("rejected") == 3  # two lines, and the summary


def test_capture_through_the_journal_then_show_pending_export_and_audit(journal: str, server: ScriptedServer,
                                                                        tmp_path: Path) -> None:
    server.on("POST", CAPTURE, Reply(200, vipps_body(75000)))
    creds = credentials_file(tmp_path, "vipps", server.url)
    out = run("capture", "--payment", REF, "--amount", "50000", "--key", "ship-2", "--credentials", creds, "--json",
              journal=journal)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["intent"]["status"] == "done" and doc["payment"]["captured"] == 75000 and doc["sent"]
    # The same key again: the stored outcome, nothing sent.
    again = run("capture", "--payment", REF, "--amount", "50000", "--key", "ship-2", "--credentials", creds,
                "--json", journal=journal)
    assert again.returncode == 0 and json.loads(again.stdout)["replayed"] and len(server.requests) == 1
    # Another amount under it: refused before any I/O, exit 1.
    conflict = run("capture", "--payment", REF, "--amount", "100", "--key", "ship-2", "--credentials", creds,
                   journal=journal)
    assert conflict.returncode == 1 and "IDEMPOTENCY_KEY_CONFLICT" in conflict.stderr and len(server.requests) == 1
    shown = json.loads(run("journal", "show", REF, "--json", journal=journal).stdout)
    assert [(e["source"], e["event"]["type"]) for e in shown["events"]][-1] == ("own", "captured")
    assert run("journal", "pending", journal=journal).returncode == 0
    exported = run("journal", "export", journal=journal).stdout.splitlines()
    assert [json.loads(line)["type"] for line in exported] == ["authorized", "captured", "captured"]
    audited = run("audit", "--journal", journal, "--json")
    assert audited.returncode == 0 and json.loads(audited.stdout)["events"] == 3


def test_an_unknown_outcome_exits_3_stays_pending_and_is_audited(journal: str, server: ScriptedServer,
                                                                 tmp_path: Path) -> None:
    server.on("POST", CAPTURE, Reply(500, b"", content_type="text/plain"))
    creds = credentials_file(tmp_path, "vipps", server.url)
    out = run("capture", "--payment", REF, "--amount", "10000", "--attempts", "1", "--lease", "1s",
              "--credentials", creds, journal=journal)
    assert out.returncode == 3 and out.stderr.count("\n") == 1 and "reconcile" in out.stderr
    pending = run("journal", "pending", "--json", journal=journal)
    assert pending.returncode == 1 and json.loads(pending.stdout)["open"][0]["status"] == "unknown"
    import time

    time.sleep(1.1)
    audited = run("audit", "--journal", journal, "--json")
    assert audited.returncode == 1 and json.loads(audited.stdout)["counts"] == {"INTENT_UNSETTLED": 1}
    # Its back-off has not passed: reconcile leaves it, and says some intent is still unknown.
    left = run("reconcile", "--credentials", creds, "--json", journal=journal)
    assert left.returncode == 1 and json.loads(left.stdout)["recovered"] == []


@pytest.mark.parametrize(("args", "message"), [
    (["journal", "show", "order-nope"], "not in the journal"),
    (["reconcile", "--older-than", "2 minutes"], "--older-than"),
    (["capture", "--payment", REF, "--amount", "1.5"], "amount"),
    (["capture", "--payment", REF, "--history", "x.jsonl"], "--dry-run"),
    (["refund", "--payment", REF, "--amount", "-3"], "amount"),
])
def test_bad_input_is_one_line_exit_2(journal: str, args: list[str], message: str) -> None:
    out = run(*args, journal=journal)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, out.stderr


def test_no_journal_is_one_line_exit_2(tmp_path: Path) -> None:
    out = run("journal", "pending")
    assert out.returncode == 2 and "CAPSTATE_JOURNAL" in out.stderr and out.stderr.count("\n") == 1
    out = run("journal", "pending", "--journal", "mysql://nope")
    assert out.returncode == 2 and out.stderr.count("\n") == 1


def test_cancel_and_refund_go_through_the_journal(journal: str, server: ScriptedServer, tmp_path: Path) -> None:
    server.on("POST", f"/epayment/v1/payments/{REF}/refund", Reply(200, vipps_body(25000) | {
        "aggregate": {**vipps_body(25000)["aggregate"], "refundedAmount": {"currency": "NOK", "value": 5000}}}))
    server.on("POST", f"/epayment/v1/payments/{REF}/cancel", Reply(200, vipps_body(25000) | {
        "aggregate": {**vipps_body(25000)["aggregate"], "refundedAmount": {"currency": "NOK", "value": 5000},
                      "cancelledAmount": {"currency": "NOK", "value": 75000}}}))
    creds = credentials_file(tmp_path, "vipps", server.url)
    refund = run("refund", "--payment", REF, "--amount", "5000", "--credentials", creds, "--json", journal=journal)
    assert refund.returncode == 0, refund.stderr
    cancel = run("cancel", "--payment", REF, "--credentials", creds, "--json", journal=journal)
    assert cancel.returncode == 0, cancel.stderr
    summary = json.loads(cancel.stdout)["payment"]
    assert (summary["refunded"], summary["cancelled"]) == (5000, 75000)
    keys = [r.headers["idempotency-key"] for r in server.requests]
    assert len(set(keys)) == 2  # one derived key per intent


def test_a_vipps_event_export_is_imported_once_in_any_order(tmp_path: Path) -> None:
    # The inbox takes a provider's own export too (issue 10, item 4): every PaymentEvent that is a fact is
    # recorded once, by the payment it names; importing it again, or its lines reversed, adds nothing.
    url = f"sqlite:///{tmp_path / 'capstate.db'}"
    export = ROOT / "examples" / "logs" / "vipps-events-2026-01.jsonl"
    first = run("journal", "import", str(export), "--format", "vipps-events", "--json", journal=url)
    doc = json.loads(first.stdout)
    # The shipped export is the audit's example, dirty on purpose: one line is no PaymentEvent (rejected, exit 1),
    # one refund exceeds what was captured (recorded with its finding, not dropped), one event is there twice.
    assert first.returncode == 1 and doc["recorded"] == 12 and doc["duplicates"] == 1, first.stdout
    assert [r["where"].rsplit(":", 1)[1] for r in doc["rejected"]] == ["18"]
    assert [f["code"] for f in doc["findings"]] == ["REFUND_EXCEEDS_CAPTURED"]
    reversed_export = tmp_path / "reversed.jsonl"
    reversed_export.write_text("\n".join(reversed(export.read_text().splitlines())) + "\n")
    again = json.loads(run("journal", "import", str(export), str(reversed_export), "--format", "vipps-events",
                           "--json", journal=url).stdout)
    assert again["recorded"] == 0 and again["duplicates"] == 2 * (doc["recorded"] + doc["duplicates"])
    exported = run("journal", "export", journal=url).stdout.splitlines()
    assert len(exported) == doc["recorded"]
    assert {json.loads(line)["provider"] for line in exported} == {"vipps"}
