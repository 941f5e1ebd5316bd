"""No command writes over a file it reads: `-o`, `--report` and a redirected stdout are compared with every
input by device and inode (stdin, symlinks and hard links included), through real subprocesses on real files."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from capstate._cli.main import build_parser
from capstate._cli.outputs import file_id, inputs_of

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "examples" / "logs" / "shop-2026-01.jsonl"
SPEC = ROOT / "specs" / "vipps.toml"


def capstate(*args: str, stdin: Path | None = None, stdout: Path | None = None, append: bool = True,
             cwd: Path = ROOT) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI with stdin and stdout redirected as a shell's `< FILE` and `>> FILE` (or `> FILE`) would."""
    with open(stdin, "rb") if stdin else open(os.devnull, "rb") as inp, \
            (open(stdout, "ab" if append else "wb") if stdout else open(os.devnull, "wb")) as out:
        done = subprocess.run([sys.executable, "-m", "capstate", *args], stdin=inp, stdout=out,
                              stderr=subprocess.PIPE, cwd=cwd, timeout=120, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, b"", done.stderr)


def refused(done: subprocess.CompletedProcess[bytes]) -> str:
    err = done.stderr.decode()
    assert done.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "refusing to write over an input" in err, err
    return err


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "log.jsonl"
    shutil.copy(LOG, path)
    return path


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "vipps.toml"
    shutil.copy(SPEC, path)
    return path


def test_audit_of_stdin_never_replaces_the_log_it_reads_with_its_report(log: Path) -> None:
    # Before: `capstate audit - --report LOG < LOG` replaced the log with the HTML report.
    before = log.read_bytes()
    err = refused(capstate("audit", "-", "--report", str(log), stdin=log))
    assert "stdin" in err and log.read_bytes() == before


def test_a_diagram_never_overwrites_its_spec(spec: Path, tmp_path: Path) -> None:
    # Before: `capstate diagram SPEC -o SPEC` wrote the mermaid text over the spec.
    before = spec.read_bytes()
    link = tmp_path / "link.toml"
    link.symlink_to(spec)
    hard = tmp_path / "hard.toml"
    os.link(spec, hard)
    for target in (spec, link, hard):
        refused(capstate("diagram", str(spec), "-o", str(target)))
    refused(capstate("diagram", str(link), "-o", str(spec)))
    assert spec.read_bytes() == before
    ok = capstate("diagram", str(spec), "-o", str(tmp_path / "out.mmd"))
    assert ok.returncode == 0 and "stateDiagram-v2" in (tmp_path / "out.mmd").read_text()


def test_an_audit_report_over_one_of_several_logs_is_refused(log: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.jsonl"
    shutil.copy(LOG, other)
    before = other.read_bytes()
    refused(capstate("audit", str(log), str(other), "--report", str(other)))
    assert other.read_bytes() == before


@pytest.mark.parametrize("command", [["audit", "{log}"], ["audit", "-"], ["spec", "{spec}"], ["check", "{spec}"],
                                     ["validate", "--provider", "vipps", "--history", "{log}"]])
def test_stdout_appended_to_an_input_is_refused(command: list[str], log: Path, spec: Path) -> None:
    # `capstate audit LOG >> LOG` appended the report to the log it was reading.
    args = [a.format(log=log, spec=spec) for a in command]
    target = spec if "{spec}" in command else log
    before = target.read_bytes()
    refused(capstate(*args, stdin=log if "-" in command else None, stdout=target))
    assert target.read_bytes() == before


def test_stdout_truncated_onto_an_input_says_the_shell_already_emptied_it(log: Path) -> None:
    err = refused(capstate("audit", str(log), stdout=log, append=False))
    assert "emptied already" in err


def test_outputs_that_are_not_inputs_are_written_as_before(log: Path, tmp_path: Path) -> None:
    report = tmp_path / "r.html"
    done = capstate("audit", str(log), "--report", str(report), stdout=tmp_path / "summary.txt")
    assert done.returncode in (0, 1), done.stderr
    assert report.read_text().startswith("<!DOCTYPE html>") and (tmp_path / "summary.txt").stat().st_size > 0
    # A terminal, a pipe or /dev/null is never "the same file" as another use of it.
    # (An empty input is an error of its own now: audit a real log into /dev/null.)
    assert capstate("audit", str(log), stdout=Path(os.devnull)).returncode in (0, 1)


def test_a_shipped_spec_counts_as_an_input_by_its_installed_file() -> None:
    # `capstate diagram vipps -o .../capstate/specs/vipps.toml` would write into the installed package.
    args = build_parser().parse_args(["diagram", "vipps", "-o", "x.mmd"])
    files = [path for _, path in inputs_of(args)]
    assert len(files) == 1 and file_id(files[0]) is not None and files[0].endswith("vipps.toml")
    sim = build_parser().parse_args(["simulate", "plan.toml", "--provider", "vipps,bambora"])
    assert [Path(p).name for o, p in inputs_of(sim) if o == "--provider"] == ["vipps.toml", "bambora.toml"]
    assert isinstance(args, argparse.Namespace)
