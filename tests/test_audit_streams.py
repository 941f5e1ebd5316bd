"""An input that can be read only once (a named pipe, `<(zcat log.gz)`) is audited whole.

The audit reads each input several times (the format sniff, the digest, the audit, the HTML timelines);
read in place, a pipe lost the lines the first reader consumed ("is empty: nothing to audit", or a report
missing its first lines). Each runs the real `capstate` in a subprocess, fed by a real writer.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest

from capstate.bench import write_log


def _audit(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    return subprocess.run([sys.executable, "-m", "capstate", "audit", *map(str, args), "--json"],
                          env=env, capture_output=True, timeout=300, check=False)


def _feed(fifo: Path, data: bytes) -> threading.Thread:
    def write() -> None:
        with open(fifo, "wb") as f:  # blocks until the audit opens the pipe
            f.write(data)

    t = threading.Thread(target=write, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize(("compress", "workers"), [(False, "1"), (True, "1"), (False, "2")],
                         ids=["plain", "gzip", "plain-2-workers"])
def test_a_pipe_is_audited_as_the_file_it_carries(tmp_path: Path, compress: bool, workers: str) -> None:
    log = Path(write_log(str(tmp_path), payments=2_000, seed=3).path)  # 10,000 lines, well past a sniff
    data = log.read_bytes()
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    sent = gzip.compress(data) if compress else data
    writer = _feed(fifo, sent)
    piped = _audit(fifo, "--workers", workers)
    writer.join(timeout=10)
    direct = _audit(log)
    assert direct.returncode == 1, direct.stderr  # the bench log breaks rules
    assert piped.returncode == 1, piped.stderr
    mine, theirs = orjson.loads(piped.stdout), orjson.loads(direct.stdout)
    assert mine["counts"] == theirs["counts"]
    # Every finding, at the same line (the file's name differs: the pipe's is the pipe's).
    assert [(v["line"], v["code"]) for v in mine["violations"]] == [
        (v["line"], v["code"]) for v in theirs["violations"]]
    inputs = mine["inputs"]
    assert inputs[0]["name"] == str(fifo)
    assert inputs[0]["size"] == len(sent)


def test_an_empty_pipe_is_said_to_be_empty(tmp_path: Path) -> None:
    fifo = tmp_path / "empty.jsonl"
    os.mkfifo(fifo)
    writer = _feed(fifo, b"")
    done = _audit(fifo)
    writer.join(timeout=10)
    assert done.returncode == 2
    assert done.stderr.decode() == f"capstate: error: {fifo} is empty: nothing to audit\n"
