"""One worker process of the journal drills (tests/test_journal_drills.py): a real process that captures
through the journal against `capstate emulate`, as a service instance would.

    python tests/drill_worker.py --journal URL --provider bambora --refs r1,r2 --parcels 30000,30000,40000

For each payment (in an order of its own) it tries every parcel, each under the parcel's own key, and
retries while another worker's intent is open. `--crash POINT` kills this process with SIGKILL at one
point of the protocol, to leave what a real crash leaves:
- `before-send`: the intent is written, no request has left;
- `after-commit`: the provider answered (it committed), the journal has not recorded it yet.
`--snapshot DIR` (SQLite) copies the journal's files to DIR just before the first request leaves: what a
power cut after that point leaves on disk when no later commit waited for the disk (the settle does not).
Credentials come from the environment (CAPSTATE_<PROVIDER>_<FIELD>), as for the CLI. It prints one JSON
line of counts.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

import orjson

from capstate import Capture, Payment
from capstate.providers.cli_capture import load_credentials
from capstate.providers.client import CaptureClient, Outcome, Refused, provider_module
from capstate.providers.journal import Journal, OperationFailed, OutcomeUnknown
from capstate.providers.retry import RetryPolicy

IN_FLIGHT = {"CAPTURE_IN_FLIGHT", "OPERATION_IN_FLIGHT"}


class CrashingClient(CaptureClient):
    """A CaptureClient that SIGKILLs its own process at one point: a real crash, not an exception."""

    crash: str | None = None
    snapshot: tuple[Path, Path] | None = None  # (journal file, directory to copy it to)

    def capture(self, payment: Payment, command: Capture) -> Outcome:
        if self.snapshot is not None:
            # No transaction is open here and this is the only writer: the files are the durable state.
            db, into = self.snapshot
            into.mkdir()
            for suffix in ("", "-wal"):
                shutil.copyfile(f"{db}{suffix}", into / f"{db.name}{suffix}")
            self.snapshot = None
        if self.crash == "before-send":
            os.kill(os.getpid(), signal.SIGKILL)
        out = super().capture(payment, command)
        if self.crash == "after-commit":
            os.kill(os.getpid(), signal.SIGKILL)
        return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--journal", required=True)
    ap.add_argument("--provider", required=True)
    ap.add_argument("--refs", required=True)
    ap.add_argument("--parcels", required=True)
    ap.add_argument("--crash", choices=("before-send", "after-commit"))
    ap.add_argument("--snapshot", type=Path)
    ap.add_argument("--lease", type=float, default=300.0)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--tries", type=int, default=60)
    args = ap.parse_args()
    module = provider_module(args.provider)
    creds = load_credentials(module, None, os.environ)
    retry = RetryPolicy(attempts=4, base=0.05, cap=0.2, poll_interval=0.05, polls=3)
    counts: dict[str, int] = {}

    def count(what: str) -> None:
        counts[what] = counts.get(what, 0) + 1

    rng = random.Random(os.getpid())
    refs = args.refs.split(",")
    rng.shuffle(refs)
    parcels = [int(p) for p in args.parcels.split(",")]
    from datetime import timedelta

    with Journal(args.journal, lease=timedelta(seconds=args.lease)) as journal, \
            CrashingClient(module, creds, retry=retry, timeout=args.timeout) as client:
        client.crash = args.crash
        if args.snapshot is not None:
            client.snapshot = (Path(args.journal.removeprefix("sqlite:///")), args.snapshot)
        for ref in refs:
            order = list(enumerate(parcels, start=1))
            rng.shuffle(order)
            for n, amount in order:
                for _ in range(args.tries):
                    try:
                        out = journal.capture(ref, amount, key=f"{ref}-parcel-{n}", client=client)
                    except Refused as exc:
                        if IN_FLIGHT & set(exc.codes):
                            count("in_flight_wait")
                            time.sleep(0.02 + rng.random() * 0.03)
                            continue
                        count("refused:" + ",".join(exc.codes))
                    except OperationFailed:
                        count("failed")
                    except OutcomeUnknown:
                        count("unknown")
                    else:
                        count("replayed" if out.replayed else "done")
                    break
                else:
                    count("gave_up_waiting")
    sys.stdout.buffer.write(orjson.dumps(counts) + b"\n")
    return 0




if __name__ == "__main__":
    sys.exit(main())
