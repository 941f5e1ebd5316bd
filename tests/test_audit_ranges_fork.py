"""The byte-range workers are plain forks (`audit_run._run_ranges`): a worker's failure reaches the caller
as the exception it raised (or as a RuntimeError when it died without a word), and no worker is left
behind, a zombie or running, whether the run succeeds or fails."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from test_audit_parallel import generated_log

from capstate._cli import audit_ranges
from capstate._cli.audit_run import run_audit


@pytest.fixture
def log(tmp_path: Path) -> str:
    path = tmp_path / "log.jsonl"
    path.write_bytes(generated_log(400, seed=3))
    return str(path)


@pytest.fixture
def forked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids the audit forks."""
    pids: list[int] = []
    fork = os.fork

    def recording() -> int:
        pid = fork()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", recording)
    return pids


def gone(pid: int) -> bool:
    """Whether the child was reaped already (a zombie or a live child could still be waited for)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_workers_end_and_are_reaped(log: str, forked: list[int]) -> None:
    one = run_audit([log], spec=None)
    three = run_audit([log], spec=None, workers=3)
    assert three.violations == one.violations and three.events == one.events
    assert len(forked) == 2
    assert all(map(gone, forked))


def test_a_workers_exception_is_raised_here(log: str, forked: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> bytes:
        raise OSError(5, "the disk said no")

    monkeypatch.setattr(audit_ranges, "audit_range", boom)  # the forks inherit it
    with pytest.raises(OSError, match="the disk said no"):
        run_audit([log], spec=None, workers=2)
    assert forked and all(map(gone, forked))


def test_a_worker_that_dies_without_a_word(log: str, forked: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    def dies(*args: Any, **kwargs: Any) -> bytes:
        os._exit(3)

    monkeypatch.setattr(audit_ranges, "audit_range", dies)
    with pytest.raises(RuntimeError, match=r"ended without its result \(exit code 3\)"):
        run_audit([log], spec=None, workers=2)
    assert forked and all(map(gone, forked))


def test_a_failure_here_ends_the_workers(log: str, forked: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    def stuck(*args: Any, **kwargs: Any) -> bytes:
        os.read(os.pipe()[0], 1)  # never returns: only the parent's SIGTERM ends it
        raise AssertionError

    def fails(*args: Any, **kwargs: Any) -> list[tuple[int, int]]:
        raise KeyboardInterrupt

    monkeypatch.setattr(audit_ranges, "audit_range", stuck)
    monkeypatch.setattr(audit_ranges, "audit_pieces", fails)
    with pytest.raises(KeyboardInterrupt):
        run_audit([log], spec=None, workers=3)
    assert len(forked) == 2 and all(map(gone, forked))


def test_a_result_is_taken_before_its_worker_has_ended(log: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The parent stitches a worker's range as soon as the worker says its result is written, not when
    the worker's process has ended (after the kernel has unmapped its memory). Here each worker, once it
    has said so, waits (20 s at most) for the parent to have stitched its range before it ends, and notes
    whether it saw that: waiting for its end first, the parent would stitch only after the 20 s."""
    stitched = tmp_path / "stitched"
    seen = tmp_path / "seen"
    real_exit, stitch = os._exit, audit_ranges.stitch

    def exit_when_stitched(code: int) -> None:  # only a forked worker ends by os._exit
        for _ in range(2000):
            if stitched.exists():
                seen.write_text("yes")
                break
            time.sleep(0.01)
        real_exit(code)

    def stitching(*args: Any, **kwargs: Any) -> Any:
        out = stitch(*args, **kwargs)
        stitched.touch()
        return out

    monkeypatch.setattr(os, "_exit", exit_when_stitched)
    monkeypatch.setattr(audit_ranges, "stitch", stitching)
    two = run_audit([log], spec=None, workers=2)
    assert two.violations == run_audit([log], spec=None).violations
    assert seen.read_text() == "yes"
