"""Pipwave IPNs into the journal's inbox: signed with the real signer, verified with `pipwave.verify_ipn`, kept
once each, turned into a canonical event only where the signed fields prove one with its amount (Cancelled),
and kept with a finding where they say money moved by an amount they do not give. On SQLite and PostgreSQL,
through `Journal.ingest` and through `capstate journal ingest --format pipwave-ipn` as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from journals import BACKENDS, journal_url

from capstate.providers import pipwave
from capstate.providers.journal import Journal

ROOT = Path(__file__).resolve().parents[1]
KEY, SECRET = "pw-KEY-123", "pw-SECRET-456"
CREDS = pipwave.Credentials(api_key=KEY, api_secret=SECRET)
REF = "ORDER-77"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def signed(status: int, *, at: datetime = T0, amount: str = "499.00", txn_id: str | None = REF,
           **unsigned: Any) -> dict[str, Any]:
    """An IPN body as Pipwave sends it, signed over the seven documented fields with the real signer."""
    body: dict[str, Any] = {"status": 200, "api_key": KEY, "notification_id": "n-1", "type": "payment",
                            "timestamp": int(at.timestamp()), "pw_id": "PW9", "txn_id": txn_id or "",
                            "amount": amount, "final_amount": amount, "currency_code": "MYR",
                            "transaction_status": status}
    body["signature"] = pipwave.signature({k: body[k] for k in pipwave.IPN_FIELDS}, SECRET)
    body.update(unsigned)
    return body


def verified(body: dict[str, Any]) -> pipwave.Ipn:
    return pipwave.verify_ipn(body, CREDS, now=datetime.now(UTC), tolerance=None)


@pytest.fixture(params=BACKENDS)
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    """A Pipwave payment authorized for 49900 MYR (the IPN's checkout amount)."""
    with journal_url(request.param, tmp_path) as url, Journal(url) as j:
        assert j.ingest([{"payment": REF, "type": "authorized", "at": (T0 - timedelta(hours=2)).isoformat(),
                          "amount": 49900, "currency": "MYR", "provider": "pipwave"}]).recorded == 1
        yield j


def kinds(j: Journal) -> list[tuple[str, int | None]]:
    return [(e["event"]["type"], e["event"].get("amount")) for e in j.show(REF)["events"]]


def test_a_cancelled_ipn_records_the_cancellation_once_however_often_it_is_delivered(journal: Journal) -> None:
    body = signed(2)
    first = journal.ingest([verified(body)])
    assert (first.recorded, first.duplicates, first.findings) == (1, 0, ())
    # Pipwave redelivers every 5 minutes until it reads "OK": the same body is a duplicate; a re-signed one (new
    # timestamp) is a second delivery kept in the inbox, but the same fact: still one cancellation.
    again = journal.ingest([verified(body), verified(signed(2, at=T0 + timedelta(minutes=5)))])
    assert (again.recorded, again.duplicates) == (1, 1)
    assert kinds(journal) == [("authorized", 49900), ("cancelled", 49900)]
    assert journal.state(REF).base.cancelled == 49900 and journal.state(REF).base.capturable == 0
    inbox = journal.inbox(REF)
    assert [d["status"] for d in inbox] == ["2 Cancelled", "2 Cancelled"]
    assert inbox[0]["event"] is not None and json.loads(inbox[0]["body"])["amount"] == 49900
    assert KEY not in json.dumps(inbox)  # the api_key is a credential: never kept


def test_paid_and_refunds_never_become_a_guessed_amount(journal: Journal) -> None:
    # Paid with no capture in the journal: money moved by an amount the IPN does not give (a gateway without
    # partial capture captures in full; with it, anything up to the checkout amount): kept with OUT_OF_BAND.
    paid = journal.ingest([verified(signed(10, at=T0))])
    assert paid.recorded == 1 and [f[1] for f in paid.findings] == ["OUT_OF_BAND"]
    partial = journal.ingest([verified(signed(25, at=T0 + timedelta(minutes=1)))])
    assert [f[1] for f in partial.findings] == ["OUT_OF_BAND"]
    assert kinds(journal) == [("authorized", 49900)]  # no event was invented
    assert journal.state(REF).base.captured == 0
    # The unsigned fields say "captured 499.00": never read.
    forged = journal.ingest([verified(signed(10, at=T0 + timedelta(minutes=2), final_amount="1.00"))])
    assert forged.recorded == 1 and kinds(journal) == [("authorized", 49900)]


def test_paid_after_our_capture_is_a_confirmation_and_a_late_pending_is_out_of_order(journal: Journal) -> None:
    journal.ingest([{"payment": REF, "type": "captured", "at": T0.isoformat(), "amount": 20000, "currency": "MYR",
                     "provider": "pipwave", "key": "cs-1"}])
    paid = journal.ingest([verified(signed(10, at=T0 + timedelta(minutes=1)))])
    assert paid.recorded == 1 and paid.findings == ()
    assert "captured 20000" in journal.inbox(REF)[0]["note"]
    # Out of order: Processing, sent before the Paid already kept, arrives after it.
    late = journal.ingest([verified(signed(5, at=T0 - timedelta(minutes=30)))])
    assert [f[1] for f in late.findings] == ["OUT_OF_ORDER"]
    # Full refund of a capture the journal sees partly refunded: the amount is not in the IPN: a finding.
    refund = journal.ingest([verified(signed(20, at=T0 + timedelta(minutes=3)))])
    assert [f[1] for f in refund.findings] == ["OUT_OF_BAND"]
    assert journal.state(REF).base.refunded == 0 and len(journal.inbox(REF)) == 3


def test_a_contradictory_cancel_is_recorded_with_its_finding(journal: Journal) -> None:
    # Cancelled after the journal recorded a capture (cancel-payment works only before one): recorded, with the
    # spec's objection, never dropped. An IPN sent before it, delivered after, is OUT_OF_ORDER.
    journal.ingest([{"payment": REF, "type": "captured", "at": T0.isoformat(), "amount": 49900, "currency": "MYR",
                     "provider": "pipwave"}])
    out = journal.ingest([verified(signed(2, at=T0 + timedelta(minutes=1)))])
    assert out.recorded == 1 and out.findings and out.findings[0][1] != "OUT_OF_ORDER"
    assert ("cancelled", 49900) in kinds(journal)
    events = journal.show(REF)["events"]
    assert events[-1]["finding"] is not None and events[-1]["source"] == "webhook"


def test_an_ipn_for_an_unknown_or_foreign_payment_is_kept_with_a_finding(journal: Journal) -> None:
    out = journal.ingest([verified(signed(10, txn_id="ORDER-NOT-HERE")), verified(signed(10, txn_id=None)),
                          verified(signed(10, amount="12.00"))])
    assert out.recorded == 3 and [f[1] for f in out.findings] == ["OUT_OF_BAND"] * 3
    assert len(journal.inbox()) == 3 and kinds(journal) == [("authorized", 49900)]


def test_journal_ingest_verifies_the_ipn_in_a_real_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'capstate.db'}"
    with Journal(url) as j:
        j.ingest([{"payment": REF, "type": "authorized", "at": (T0 - timedelta(hours=2)).isoformat(),
                   "amount": 49900, "currency": "MYR", "provider": "pipwave"}])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAPSTATE_")}
    env |= {"CAPSTATE_PIPWAVE_API_KEY": KEY, "CAPSTATE_PIPWAVE_API_SECRET": SECRET, "CAPSTATE_JOURNAL": url}

    def ingest(body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([sys.executable, "-m", "capstate", "journal", "ingest", "-", "--format", "pipwave-ipn",
                              "--json"], input=json.dumps(body), capture_output=True, text=True, env=env, cwd=ROOT,
                             timeout=60, check=False)
        assert "Traceback" not in out.stderr
        return out

    now = datetime.now(UTC)
    body = signed(2, at=now)
    first, again = ingest(body), ingest(body)
    assert first.returncode == 0 and json.loads(first.stdout)["recorded"] == 1, first.stderr
    assert again.returncode == 0 and json.loads(again.stdout)["duplicates"] == 1
    forged = ingest({**body, "amount": "1.00"})
    assert forged.returncode == 2 and "signature does not match" in forged.stderr and forged.stderr.count("\n") == 1
    stale = ingest(signed(2, at=now - timedelta(days=2)))
    assert stale.returncode == 2 and "IPN rejected" in stale.stderr
    assert SECRET not in first.stdout + first.stderr + forged.stderr
    with Journal(url) as j:
        assert len(j.inbox(REF)) == 1 and j.state(REF).base.cancelled == 49900
