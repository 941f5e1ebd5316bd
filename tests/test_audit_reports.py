"""What every audit report says (docs/audit-reports.md): its provenance, the money at stake, severities,
"showing N of M"; the text report's layout, pinned by snapshots at 80 columns on a terminal and
unwrapped to a pipe; and the inputs an audit refuses (empty, no events, a Vipps export read as canonical).
All through the real `capstate` process."""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import orjson
import pytest
from audit_output import stable
from test_cli import assert_error, run_cli

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "examples" / "logs"
SHOP = LOGS / "shop-2026-01.jsonl"
VIPPS_JSONL = LOGS / "vipps-events-2026-01.jsonl"
VIPPS_DOC = LOGS / "vipps-events-acme-dk-20260103-4711.json"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"
# A finding line, as grep sees it: FILE:LINE: SEVERITY: CODE PAYMENT [at AT]: MESSAGE
FINDING = re.compile(r"^(?P<file>[^\s:]+):(?P<line>\d+): (?P<sev>violation|warning): (?P<code>[A-Z_]+) (?P<payment>\S+)"
                     r"( at \S+)?: .+$")


def _line(payment: str, etype: str, at: str, **fields: object) -> bytes:
    return orjson.dumps({"payment": payment, "type": etype, "at": at, "provider": "vipps", **fields}) + b"\n"


# ------------------------------------------------------------------------------------ provenance


def test_json_records_version_run_time_inputs_as_of_and_overrides(tmp_path: Path) -> None:
    gz = tmp_path / "shop.jsonl.gz"
    gz.write_bytes(gzip.compress(SHOP.read_bytes()))
    before = datetime.now(UTC).replace(microsecond=0)
    run = run_cli(tmp_path, "audit", gz, SHOP, "--json", "--set", "bambora.max_captures=2",
                  "--set", "vipps.authorization_validity.DKK=30d")
    after = datetime.now(UTC)
    report = run.json()
    assert run.code == 1 and report["capstate"] == version("capstate")
    assert before <= datetime.fromisoformat(report["started_at"]) <= after
    assert 0 < report["seconds"] < (after - before).total_seconds() + 1
    assert report["inputs"] == [
        {"name": str(gz), "format": "canonical", "size": gz.stat().st_size,
         "sha256": hashlib.sha256(gz.read_bytes()).hexdigest()},
        {"name": str(SHOP), "format": "canonical", "size": SHOP.stat().st_size,
         "sha256": hashlib.sha256(SHOP.read_bytes()).hexdigest()}]
    assert report["as_of"] == {"instant": "2026-01-20T09:00:00Z", "source": "latest event"}
    assert report["overrides"]["set"] == ["bambora.max_captures=2", "vipps.authorization_validity.DKK=30d"]
    specs = {s["name"]: s for s in report["overrides"]["specs"]}
    assert sorted(specs) == ["bambora", "hellgate", "pipwave", "vipps"]
    for name, spec in specs.items():
        assert spec["file"] == f"capstate/specs/{name}.toml" and spec["shipped"]
        assert spec["sha256"] == hashlib.sha256((ROOT / "specs" / f"{name}.toml").read_bytes()).hexdigest()
    assert specs["bambora"]["overrides"] == {"max_captures": {"spec": 1, "in_force": 2}}
    validity = specs["vipps"]["overrides"]["authorization_validity"]
    assert validity["spec"]["DKK"] != validity["in_force"]["DKK"] == "30d"
    assert specs["hellgate"]["overrides"] == {} and not specs["hellgate"]["judges_expiry"]
    assert any("hellgate: the authorization validity is unknown" in n for n in report["notes"])
    given = run_cli(tmp_path, "audit", SHOP, "--json", "--as-of", "2026-03-01T12:00:00+01:00").json()
    assert given["as_of"] == {"instant": "2026-03-01T11:00:00Z", "source": "--as-of"}


def test_a_spec_given_by_path_is_recorded_by_its_file(tmp_path: Path) -> None:
    mine = tmp_path / "my-vipps.toml"
    shutil.copy(ROOT / "specs" / "vipps.toml", mine)
    report = run_cli(tmp_path, "audit", VIPPS_JSONL, "--provider", mine, "--json").json()
    (spec,) = report["overrides"]["specs"]
    assert spec["file"] == str(mine) and spec["shipped"] is False
    assert spec["sha256"] == hashlib.sha256(mine.read_bytes()).hexdigest()


def test_stdin_is_named_sized_and_hashed(tmp_path: Path) -> None:
    data = SHOP.read_bytes()
    report = run_cli(tmp_path, "audit", "-", "--json", stdin=data).json()
    assert report["inputs"] == [{"name": "-", "format": "canonical", "size": len(data),
                                 "sha256": hashlib.sha256(data).hexdigest()}]


# ------------------------------------------------------------------------------------------ money


def test_money_per_code_and_currency_in_minor_units(tmp_path: Path) -> None:
    log = tmp_path / "money.jsonl"
    log.write_bytes(
        _line("p-nok", "authorized", "2026-01-05T10:00:00Z", amount=100_000, currency="NOK")
        + _line("p-nok", "captured", "2026-01-05T11:00:00Z", amount=100_050, key="k1")  # 50 over
        + _line("p-nok", "refunded", "2026-01-06T11:00:00Z", amount=100_070)  # 20 over the 100,050 captured
        + _line("p-nok2", "authorized", "2026-01-05T10:00:00Z", amount=500, currency="NOK")
        + _line("p-nok2", "captured", "2026-01-05T11:00:00Z", amount=800, key="k2")  # 300 over
        + _line("p-dkk", "authorized", "2026-01-01T10:00:00Z", amount=1_234_567, currency="DKK")
        + _line("p-dkk", "captured", "2026-01-02T10:00:00Z", amount=234_567, key="k3")
        # DKK holds 14 days: 1,000,000 left held, judged at the last event
        + _line("p-nok", "refunded", "2026-02-01T10:00:00Z", amount=1))
    report = run_cli(tmp_path, "audit", log, "--json").json()
    rows = {(r["code"], r["currency"]): r for r in report["money"]["by_code"]}
    assert rows[("EXCEEDS_CAPTURABLE", "NOK")] == {"code": "EXCEEDS_CAPTURABLE", "currency": "NOK",
                                                  "kind": "over-captured", "findings": 2, "amount": 350}
    assert rows[("REFUND_EXCEEDS_CAPTURED", "NOK")]["amount"] == 20 + 1
    assert rows[("DANGLING_AUTHORIZATION", "DKK")]["amount"] == 1_000_000
    assert report["money"]["totals"] == {
        "DKK": {"over-captured": 0, "over-refunded": 0, "left held": 1_000_000},
        "NOK": {"over-captured": 350, "over-refunded": 21, "left held": 0}}
    text = run_cli(tmp_path, "audit", log).out
    assert "  DKK: over-captured 0.00, over-refunded 0.00, left held 10,000.00" in text
    assert "  NOK: over-captured 3.50, over-refunded 0.21, left held 0.00" in text


def test_money_keeps_each_currencys_exponent(tmp_path: Path) -> None:
    # Pipwave takes any currency: JPY has no minor digits, KWD three.
    log = tmp_path / "exp.jsonl"
    lines = b""
    for cur, amount in (("JPY", 1_000_000), ("KWD", 2_000_000)):
        ref = f"p-{cur.lower()}"
        lines += orjson.dumps({"payment": ref, "type": "authorized", "at": "2026-01-05T10:00:00Z", "amount": amount,
                               "currency": cur, "provider": "pipwave"}) + b"\n"
        lines += orjson.dumps({"payment": ref, "type": "captured", "at": "2026-01-05T11:00:00Z", "amount": amount,
                               "provider": "pipwave"}) + b"\n"
        lines += orjson.dumps({"payment": ref, "type": "refunded", "at": "2026-01-06T11:00:00Z",
                               "amount": amount + 1_234_567, "provider": "pipwave"}) + b"\n"
    log.write_bytes(lines)
    run = run_cli(tmp_path, "audit", log)
    assert "  JPY: over-captured 0, over-refunded 1,234,567, left held 0" in run.out
    assert "  KWD: over-captured 0.000, over-refunded 1,234.567, left held 0.000" in run.out


# ----------------------------------------------------------------------------- the text report


def test_piped_text_is_one_unwrapped_line_per_finding_under_severity_headings(tmp_path: Path) -> None:
    long_ref = "order-" + "x" * 150  # a finding far wider than any terminal
    log = tmp_path / "wide.jsonl"
    log.write_bytes(SHOP.read_bytes() + _line(long_ref, "captured", "2026-01-20T10:00:00Z", amount=5))
    run = run_cli(tmp_path, "audit", log)
    truth = run_cli(tmp_path, "audit", log, "--json").json()
    lines = run.out.splitlines()
    found = [m for m in map(FINDING.match, lines) if m]
    assert len(found) == truth["total"] == 11  # every finding when piped, not the terminal's 20
    assert [(m["line"], m["code"], m["sev"]) for m in found] == \
           sorted([(str(v["line"]), v["code"], v["severity"]) for v in truth["violations"]],
                  key=lambda t: (t[2] != "violation", int(t[0])))
    assert any(long_ref in line and len(line) > 150 for line in lines)  # never wrapped
    assert lines[1] == "showing all 11 findings"
    violations, warnings = lines.index("Violations: showing all 8 violations"), \
        lines.index("Warnings: showing all 3 warnings")
    assert all(m["sev"] == "violation" for m in map(FINDING.match, lines[violations + 1:warnings - 1]) if m)
    assert "\x1b" not in run.out  # told apart by words, not colour


def test_limit_says_showing_n_of_m_at_the_top_of_every_format(tmp_path: Path) -> None:
    run = run_cli(tmp_path, "audit", SHOP, "--limit", "3", "--report", tmp_path / "r.html")
    lines = run.out.splitlines()
    assert lines[1] == "showing 3 of 10 findings; --limit N, --json or --report FILE.html for more"
    assert sum(1 for line in lines if FINDING.match(line)) == 3
    assert "note: showing 3 of 10 findings; --json lists all of them" in lines
    html = (tmp_path / "r.html").read_text()
    assert html.index("showing 3 of 10 findings") < html.index("<dl class=\"prov\">")
    report = run_cli(tmp_path, "audit", SHOP, "--limit", "3", "--json").json()
    assert (report["shown"], report["total"], len(report["violations"])) == (10, 10, 10)  # --json lists all


def _run_on_terminal(cwd: Path, *args: str | Path, columns: int = 80) -> str:
    """`capstate audit` with stdout on a pseudo-terminal `columns` wide; what it printed, CRLF undone."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in {"COLUMNS", "LINES"}}
    proc = subprocess.Popen([sys.executable, "-m", "capstate", "audit", *map(str, args)], cwd=cwd,
                            stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    assert proc.wait(timeout=60) in {0, 1}
    os.close(master)
    return b"".join(chunks).decode().replace("\r\n", "\n")


SNAPSHOT_CASES = {
    "shop-terminal-80": (("shop.jsonl",), True),
    "shop-piped": (("shop.jsonl",), False),
    "shop-terminal-80-limit-overrides": (("shop.jsonl", "--limit", "4", "--as-of", "2026-02-01T00:00:00Z",
                                          "--set", "bambora.max_captures=2",
                                          "--set", "hellgate.authorization_validity=7d"), True),
    "vipps-auto-terminal-80": (("vipps-events-2026-01.jsonl", "vipps-events-acme-dk-20260103-4711.json"), True),
    "clean-terminal-80": (("clean.jsonl",), True),
}


@pytest.mark.parametrize("name", sorted(SNAPSHOT_CASES))
def test_text_report_snapshot(tmp_path: Path, name: str) -> None:
    """The text report as a person sees it at an 80-column terminal (and piped), pinned. Regenerate with
    CAPSTATE_UPDATE_SNAPSHOTS=1 after a deliberate change, and read the diff."""
    args, terminal = SNAPSHOT_CASES[name]
    # Relative names: the snapshot must not hold the checkout's path.
    shutil.copy(SHOP, tmp_path / "shop.jsonl")
    for source in (VIPPS_JSONL, VIPPS_DOC):
        shutil.copy(source, tmp_path / source.name)
    (tmp_path / "clean.jsonl").write_bytes(
        _line("order-0000001", "authorized", "2026-01-05T10:00:00Z", amount=10_000, currency="NOK")
        + _line("order-0000001", "captured", "2026-01-05T11:00:00Z", amount=10_000, key="k1"))
    out = _run_on_terminal(tmp_path, *args) if terminal else run_cli(tmp_path, "audit", *args).out
    text = stable(out)
    if terminal:
        too_wide = [line for line in text.splitlines() if len(line) > 80]
        assert not too_wide, too_wide
    snapshot = SNAPSHOTS / f"audit-{name}.txt"
    if os.environ.get("CAPSTATE_UPDATE_SNAPSHOTS") == "1":
        snapshot.parent.mkdir(exist_ok=True)
        snapshot.write_text(text)
    assert snapshot.exists(), f"no snapshot {snapshot.name}: run with CAPSTATE_UPDATE_SNAPSHOTS=1"
    assert text == snapshot.read_text()


# ------------------------------------------------------------------------------ refused inputs


@pytest.mark.parametrize("content", [b"", b"\n\n  \n", gzip.compress(b"", mtime=0), b"\xef\xbb\xbf\n"])
def test_an_empty_input_is_an_error_that_says_so(tmp_path: Path, content: bytes) -> None:
    log = tmp_path / "empty.jsonl"
    log.write_bytes(content)
    assert_error(run_cli(tmp_path, "audit", log), f"{log} is empty: nothing to audit")
    assert_error(run_cli(tmp_path, "audit", "-", stdin=content), "- is empty")


def test_an_input_with_no_events_is_an_error_that_says_so(tmp_path: Path) -> None:
    log = tmp_path / "junk.jsonl"
    log.write_bytes(b"hello\n{\"payment\": 7}\n")
    assert_error(run_cli(tmp_path, "audit", log), f"no events in {log}: 2 line(s), none a valid event",
                 f"{log}:1: not valid JSON")


def test_an_empty_file_beside_others_is_a_note(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    report = run_cli(tmp_path, "audit", "empty.jsonl", SHOP, "--json").json()
    assert report["inputs"][0]["format"] == "empty" and "empty.jsonl is empty" in report["notes"]
    assert report["events"] == 37


@pytest.mark.parametrize("export", [VIPPS_JSONL, VIPPS_DOC])
def test_a_vipps_export_is_recognised(tmp_path: Path, export: Path) -> None:
    assert_error(run_cli(tmp_path, "audit", export, "--format", "canonical"),
                 f"{export} is a Vipps ePayment event log, not canonical JSONL: use --format vipps-events")
    auto = run_cli(tmp_path, "audit", export, "--json")
    named = run_cli(tmp_path, "audit", export, "--format", "vipps-events", "--json")
    assert auto.code == named.code == 1 and stable(auto.out) == stable(named.out)
    assert auto.json()["inputs"][0]["format"] == "vipps-events" and auto.json()["provider"] == "vipps"
    piped = run_cli(tmp_path, "audit", "-", "--json", stdin=gzip.compress(export.read_bytes())).json()
    assert piped["inputs"][0]["format"] == "vipps-events" and piped["counts"] == auto.json()["counts"]


def test_inputs_in_two_formats_are_refused_by_auto(tmp_path: Path) -> None:
    assert_error(run_cli(tmp_path, "audit", SHOP, VIPPS_JSONL),
                 f"inputs in different formats: {SHOP} (canonical), {VIPPS_JSONL} (vipps-events)")
