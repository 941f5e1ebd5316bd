"""One behaviour everywhere (issue 11, item 6): a byte-order mark, Ctrl-C and SIGTERM, an amount beyond
int64, `--payment`, and the small things a newcomer meets first (no arguments, did you mean, any case).

Every test runs the real `capstate` in a subprocess.
"""

from __future__ import annotations

import codecs
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from _requires import program

ROOT = Path(__file__).resolve().parents[1]
VIPPS = ROOT / "examples" / "histories" / "vipps-partial.jsonl"
PLAN = ROOT / "examples" / "plans" / "split-shipment.toml"
JSON_PLAN = ROOT / "examples" / "plans" / "partial-refunds.json"
BOM = codecs.BOM_UTF8
AT = "2026-01-08T09:00:00Z"


def cli(*args: str | Path, stdin: bytes | None = None, env: dict[str, str] | None = None,
        cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("CI", "FORCE_COLOR")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "capstate", *map(str, args)], cwd=cwd, env=full, timeout=120,
                          input=stdin.decode() if stdin is not None else None, capture_output=True, text=True,
                          check=False)


def with_bom(tmp_path: Path, source: Path, name: str | None = None) -> Path:
    out = tmp_path / (name or source.name)
    out.write_bytes(BOM + source.read_bytes())
    return out


# ------------------------------------------------------------------------------------ byte-order mark


def test_a_bom_is_ignored_by_every_reader(tmp_path: Path) -> None:
    args = ("--amount", "1000", "--key", "ship-2", "--at", AT, "--json")
    plain = cli("validate", "--provider", "vipps", "--history", VIPPS, *args)
    # A history, from a file and from stdin.
    bom = cli("validate", "--provider", "vipps", "--history", with_bom(tmp_path, VIPPS), *args)
    piped = cli("validate", "--provider", "vipps", "--history", "-", *args, stdin=BOM + VIPPS.read_bytes())
    assert plain.returncode == bom.returncode == piped.returncode == 0, bom.stderr + piped.stderr
    assert plain.stdout == bom.stdout == piped.stdout
    # Plans, TOML and JSON.
    for source in (PLAN, JSON_PLAN):
        expected = cli("simulate", source, "--json")
        got = cli("simulate", with_bom(tmp_path, source), "--json")
        assert (got.returncode, got.stdout, got.stderr) == (expected.returncode, expected.stdout, ""), source
    # A spec file.
    spec = with_bom(tmp_path, ROOT / "specs" / "bambora.toml", "mybank.toml")
    shown = cli("spec", spec, "--json")
    assert shown.returncode == 0, shown.stderr
    assert orjson.loads(shown.stdout)["name"] == "bambora"
    # A log for the audit.
    log = ROOT / "examples" / "logs" / "shop-2026-01.jsonl"
    expected_audit = orjson.loads(cli("audit", log, "--json").stdout)
    got_audit = orjson.loads(cli("audit", with_bom(tmp_path, log), "--json").stdout)
    assert got_audit["counts"] == expected_audit["counts"]
    # Credentials, TOML and JSON.
    for name, text in (("creds.toml", '[vipps]\nmerchant_serial_number = "123456"\n'),
                       ("creds.json", '{"vipps": {"merchant_serial_number": "123456"}}')):
        path = tmp_path / name
        path.write_bytes(BOM + text.encode())
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
        sent = cli("capture", "--provider", "vipps", "--history", VIPPS, "--amount", "1000", "--key", "ship-2",
                   "--at", AT, "--dry-run", "--credentials", path)
        assert sent.returncode == 0, sent.stderr
        assert "Merchant-Serial-Number: 123456" in sent.stdout


# --------------------------------------------------------------------------------- Ctrl-C and SIGTERM


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    """A named pipe with a writer that never writes: the audit blocks reading it, in every mode."""
    path = tmp_path / "log.jsonl"
    os.mkfifo(path)
    return path


MODES = [pytest.param([], id="one-process"), pytest.param(["--workers", "2"], id="workers"),
         pytest.param(["--dask", "local", "--workers", "2"], id="dask-local")]


def _group(pid: int) -> list[str]:
    out = subprocess.run([program("ps", "apt-get install procps"), "-o", "pid=", "-g", str(pid)],
                         capture_output=True, text=True, check=False)
    return out.stdout.split()


def _interrupt(proc: subprocess.Popen[bytes], how: str) -> tuple[bytes, bytes]:
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # a terminal sends it to the whole foreground group
    else:
        proc.send_signal(signal.SIGTERM)  # a supervisor sends it to the process it started
    return proc.communicate(timeout=60)


def _one_line_and_no_orphans(proc: subprocess.Popen[bytes], how: str, out: bytes, err: bytes) -> None:
    assert proc.returncode == 130, err
    line = "capstate: interrupted (Ctrl-C)\n" if how == "ctrl-c" else "capstate: terminated (SIGTERM)\n"
    assert err.decode() == line
    assert out == b""
    deadline = time.monotonic() + 10
    while len(_group(proc.pid)) > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    ps = program("ps", "apt-get install procps")
    alive = subprocess.run([ps, "-o", "pid=,stat=", "-g", str(proc.pid)], capture_output=True, text=True,
                           check=False).stdout.split("\n")
    assert not [row for row in alive if row.strip() and "Z" not in row.split()[-1]], alive


def _audit(args: list[str]) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    return subprocess.Popen([sys.executable, "-m", "capstate", "audit", *args, "--json"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_audit_interrupted_while_reading_a_pipe_prints_one_line_and_exits_130(
        fifo: Path, mode: list[str], how: str) -> None:
    # A pipe is read whole by the first process (workers and a cluster need a file they can split), so
    # in every mode the audit is one process blocked on the pipe when the signal comes.
    if "--dask" in mode:
        pytest.importorskip("distributed", reason="--dask needs the dask extra")
    program("ps", "apt-get install procps")
    writer = os.open(fifo, os.O_RDWR)
    try:
        proc = _audit([str(fifo), *mode])
        time.sleep(1.5)  # start-up and the open of the pipe
        assert proc.poll() is None, proc.communicate()
        assert len(_group(proc.pid)) == 1, _group(proc.pid)
        out, err = _interrupt(proc, how)
    finally:
        os.close(writer)
    _one_line_and_no_orphans(proc, how, out, err)


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_an_audit_interrupted_while_its_workers_run_prints_one_line_and_exits_130(
        tmp_path: Path, how: str) -> None:
    from capstate.bench import write_log  # the bench's log: ~100 bytes a line, 10% breaking a rule

    program("ps", "apt-get install procps")
    log = write_log(str(tmp_path), payments=100_000, seed=7)  # 500,000 lines: seconds of work for 2 workers
    proc = _audit([log.path, "--workers", "2"])
    deadline = time.monotonic() + 60
    # The parent audits a share itself, beside the worker it forked: two processes.
    while len(_group(proc.pid)) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the audit ended before its worker was seen"
    assert len(_group(proc.pid)) >= 2, _group(proc.pid)
    out, err = _interrupt(proc, how)
    _one_line_and_no_orphans(proc, how, out, err)


# ------------------------------------------------------------------------------------------ amounts


def test_an_amount_beyond_int64_is_amount_invalid_with_and_without_json(tmp_path: Path) -> None:
    huge = "99999999999999999999"
    bambora = tmp_path / "bambora.jsonl"  # no amount_max: only int64 bounds the amount
    bambora.write_text('{"payment":"T1","type":"authorized","at":"2026-01-12T09:00:00Z","amount":49900,'
                       '"currency":"DKK","provider":"bambora"}\n')
    for provider, history in (("vipps", VIPPS), ("bambora", bambora)):
        args = ("validate", "--provider", provider, "--history", history, "--amount", huge, "--key", "k",
                "--at", "2026-01-13T00:00:00Z")
        human, doc = cli(*args), cli(*args, "--json")
        assert human.returncode == doc.returncode == 1, human.stderr + doc.stderr
        assert "AMOUNT_INVALID" in human.stdout
        parsed = json.loads(doc.stdout)  # the standard library reads an integer beyond int64 exactly
        assert "AMOUNT_INVALID" in [v["code"] for v in parsed["violations"]]
        assert str(parsed["capture"]["amount"]) == huge


# -------------------------------------------------------------------------------------------- --payment


def test_payment_picks_one_history_out_of_a_log(tmp_path: Path) -> None:
    other = '{"payment":"order-2","type":"authorized","at":"2026-01-06T10:00:00Z","amount":500,"currency":"NOK"}'
    log = tmp_path / "log.jsonl"
    lines = VIPPS.read_text().splitlines()
    log.write_text("\n".join([lines[0], other, lines[1]]) + "\n")
    mixed = cli("validate", "--provider", "vipps", "--history", log, "--amount", "1000", "--at", AT)
    assert mixed.returncode == 2
    assert "pick one with --payment REF" in mixed.stderr
    one = cli("validate", "--provider", "vipps", "--history", log, "--payment", "order-10001", "--amount", "1000",
              "--key", "ship-2", "--at", AT, "--json")
    assert one.returncode == 0, one.stderr
    assert orjson.loads(one.stdout)["after"]["captured"] == 26000
    none = cli("validate", "--provider", "vipps", "--history", log, "--payment", "order-3", "--at", AT)
    assert none.returncode == 2 and "no events for payment 'order-3'" in none.stderr


# ------------------------------------------------------------------------------------------ first run


def test_no_arguments_prints_help_and_version_works() -> None:
    bare = cli()
    assert bare.returncode == 0 and bare.stderr == ""
    assert bare.stdout.startswith("usage: capstate") and "validate" in bare.stdout and "simulate" in bare.stdout
    version = cli("--version")
    assert version.returncode == 0 and version.stdout.startswith("capstate 0.")


def test_did_you_mean_for_commands_and_providers() -> None:
    r = cli("valdate")
    assert r.returncode == 2 and "did you mean 'validate'?" in r.stderr and len(r.stderr.splitlines()) == 1
    r = cli("spec", "vips")
    assert r.returncode == 2 and "did you mean 'vipps'?" in r.stderr
    r = cli("capture", "--provider", "bambra", "--history", VIPPS, "--dry-run")
    assert r.returncode == 2 and "did you mean 'bambora'?" in r.stderr


def test_provider_names_and_currencies_in_any_case() -> None:
    upper = cli("validate", "--provider", "VIPPS", "--history", VIPPS, "--amount", "1000", "--key", "ship-2",
                "--currency", "nok", "--at", AT, "--json")
    lower = cli("validate", "--provider", "vipps", "--history", VIPPS, "--amount", "1000", "--key", "ship-2",
                "--currency", "NOK", "--at", AT, "--json")
    assert upper.returncode == 0 and upper.stdout == lower.stdout
    sim = cli("simulate", PLAN, "--provider", "Vipps,BAMBORA", "--json")
    assert list(orjson.loads(sim.stdout)["results"]) == ["vipps", "bambora"]


def test_a_plan_from_stdin_with_format() -> None:
    expected = cli("simulate", PLAN, "--json")
    piped = cli("simulate", "-", "--format", "toml", "--json", stdin=PLAN.read_bytes())
    assert (piped.returncode, piped.stdout) == (expected.returncode, expected.stdout)
    as_json = cli("simulate", "-", "--format", "json", "--json", stdin=JSON_PLAN.read_bytes())
    assert as_json.stdout == cli("simulate", JSON_PLAN, "--json").stdout
    missing = cli("simulate", "-", stdin=PLAN.read_bytes())
    assert missing.returncode == 2 and "give --format toml or json" in missing.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_shell_completion_is_generated_from_the_parser(shell: str) -> None:
    r = cli("completion", shell)
    assert r.returncode == 0, r.stderr
    for word in ("validate", "simulate", "audit", "--history", "--provider", "--guards", "explain"):
        assert word in r.stdout, word
    if shell == "bash":
        # The script must at least parse in the shell it is for.
        bash = program("bash", "the GNU shell")
        check = subprocess.run([bash, "-n"], input=r.stdout, text=True, capture_output=True, check=False)
        assert check.returncode == 0, check.stderr
