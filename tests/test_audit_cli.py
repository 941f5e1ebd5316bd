"""`capstate audit` as a real process: exit codes, the --json contract, gzip and stdin, several files,
the HTML report, and one-line errors."""

from __future__ import annotations

import gzip
import os
import pty
import stat
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
from audit_output import stable
from test_cli import Run, run_cli

LOGS = Path(__file__).resolve().parents[1] / "examples" / "logs"
SHOP = LOGS / "shop-2026-01.jsonl"
VIPPS_JSONL = LOGS / "vipps-events-2026-01.jsonl"
VIPPS_DOC = LOGS / "vipps-events-acme-dk-20260103-4711.json"
CLEAN = (b'{"payment":"order-0000001","type":"authorized","at":"2026-01-05T10:00:00Z","amount":10000,'
         b'"currency":"NOK","provider":"vipps"}\n'
         b'{"payment":"order-0000001","type":"captured","at":"2026-01-05T11:00:00Z","amount":10000,'
         b'"currency":"NOK","key":"k1","provider":"vipps"}\n')


def audit(tmp_path: Path, *args: str | Path, stdin: bytes | None = None) -> Run:
    return run_cli(tmp_path, "audit", *args, stdin=stdin)


def test_json_is_the_contract_and_exit_1_on_violations(tmp_path: Path) -> None:
    run = audit(tmp_path, SHOP, "--json")
    assert run.code == 1
    report = run.json()
    assert list(report) == ["capstate", "started_at", "seconds", "inputs", "as_of", "overrides", "settled_window",
                            "provider", "providers", "events", "payments", "shown", "total", "severities", "money",
                            "notes", "violations", "counts"]
    assert report["provider"] is None  # four providers in one log
    assert report["providers"] == ["bambora", "hellgate", "pipwave", "vipps"]
    assert report["shown"] == report["total"] == 10
    assert (report["events"], report["payments"]) == (37, 14)
    assert [v["line"] for v in report["violations"]] == sorted(v["line"] for v in report["violations"])
    assert sum(report["counts"].values()) == len(report["violations"]) == 10
    assert list(report["counts"]) == sorted(report["counts"])
    assert {v["file"] for v in report["violations"]} == {str(SHOP)}


def test_clean_history_exits_0(tmp_path: Path) -> None:
    (tmp_path / "clean.jsonl").write_bytes(CLEAN)
    run = audit(tmp_path, tmp_path / "clean.jsonl", "--json")
    assert run.code == 0
    report = run.json()
    assert {k: report[k] for k in ("provider", "events", "payments", "violations", "counts", "total")} == \
           {"provider": "vipps", "events": 2, "payments": 1, "violations": [], "counts": {}, "total": 0}
    assert report["money"] == {"by_code": [], "totals": {}}
    human = audit(tmp_path, tmp_path / "clean.jsonl")
    assert human.code == 0 and "clean: no violations" in human.out and human.err == ""


def test_gzip_and_stdin_read_the_same_as_a_plain_file(tmp_path: Path) -> None:
    gz = tmp_path / "shop.jsonl.gz"
    gz.write_bytes(gzip.compress(SHOP.read_bytes()))
    plain = audit(tmp_path, SHOP, "--json").json()
    zipped = audit(tmp_path, gz, "--json").json()
    piped = audit(tmp_path, "-", "--json", stdin=gzip.compress(SHOP.read_bytes())).json()
    strip = [{k: v for k, v in f.items() if k != "file"} for f in plain["violations"]]
    for other, name in ((zipped, str(gz)), (piped, "-")):
        assert [{k: v for k, v in f.items() if k != "file"} for f in other["violations"]] == strip
        assert {f["file"] for f in other["violations"]} == {name}
        assert other["counts"] == plain["counts"]


def test_several_files_keep_their_names_and_order(tmp_path: Path) -> None:
    (tmp_path / "clean.jsonl").write_bytes(CLEAN + b"oops\n")
    run = audit(tmp_path, tmp_path / "clean.jsonl", SHOP, "--json")
    files = [v["file"] for v in run.json()["violations"]]
    assert files[0] == str(tmp_path / "clean.jsonl") and set(files[1:]) == {str(SHOP)}
    assert run.json()["violations"][0]["line"] == 3


def test_vipps_event_log_format_defaults_to_the_vipps_spec(tmp_path: Path) -> None:
    run = audit(tmp_path, "--format", "vipps-events", VIPPS_JSONL, VIPPS_DOC, "--json")
    report = run.json()
    assert run.code == 1 and report["provider"] == "vipps"
    assert [(v["payment"], v["code"]) for v in report["violations"]][-1] == \
           ("acme-dk-20260103-4711", "DANGLING_AUTHORIZATION")


def test_as_of_moves_the_dangling_judgement(tmp_path: Path) -> None:
    early = audit(tmp_path, SHOP, "--json", "--as-of", "2026-01-15T00:00:00Z").json()
    assert "DANGLING_AUTHORIZATION" not in early["counts"]
    late = audit(tmp_path, SHOP, "--json", "--as-of", "2026-07-01T00:00:00Z").json()
    # By July the NOK authorizations of January are still inside Vipps's 180 days; only DKK lapsed.
    assert late["counts"]["DANGLING_AUTHORIZATION"] == 1


def test_set_overrides_a_rule_for_one_provider(tmp_path: Path) -> None:
    run = audit(tmp_path, SHOP, "--json", "--set", "bambora.max_captures=2")
    assert "MULTIPLE_CAPTURES_UNSUPPORTED" not in run.json()["counts"]
    assert audit(tmp_path, SHOP, "--json", "--set", "vipps.max_captures=2").json()["counts"][
        "MULTIPLE_CAPTURES_UNSUPPORTED"] == 1


def test_settled_window_bounds_what_late_events_are_judged_against(tmp_path: Path) -> None:
    exact = audit(tmp_path, SHOP, "--json").json()
    # order-20260105-0003 is cancelled on line 9 and captured on line 14: five lines later.
    forgetful = audit(tmp_path, SHOP, "--json", "--settled-window", "4").json()
    pairs = [(v["payment"], v["code"]) for v in exact["violations"]]
    late = [(v["payment"], v["code"]) for v in forgetful["violations"] if v["payment"] == "order-20260105-0003"]
    assert ("order-20260105-0003", "REMAINDER_CANCELLED") in pairs
    assert late == [("order-20260105-0003", "NOT_AUTHORIZED")]
    at_the_edge = audit(tmp_path, SHOP, "--json", "--settled-window", "5").json()
    assert [v["code"] for v in at_the_edge["violations"] if v["payment"] == "order-20260105-0003"] == \
           ["REMAINDER_CANCELLED"]
    # Forgotten payments that come back count again.
    assert (exact["payments"], forgetful["payments"]) == (14, 18)


def test_human_summary_shows_counts_and_evidence(tmp_path: Path) -> None:
    run = audit(tmp_path, SHOP)
    assert run.code == 1 and run.err == ""
    assert "REFUND_EXCEEDS_CAPTURED" in run.out and "refund 25000 > refundable 20000" in run.out
    # The header wraps at the console's 80 columns wherever the checkout's path is long: read it unwrapped.
    flat = " ".join(run.out.split())
    assert "37 events, 14 payments" in flat


def test_human_summary_shows_control_characters_escaped(tmp_path: Path) -> None:
    # A payment id with ESC sequences (recolour, set the window title) is shown, not obeyed.
    log = tmp_path / "esc.jsonl"
    log.write_bytes(b'{"payment":"evil\\u001b[31mRED\\u001b]0;title\\u0007\\u009b","provider":"bambora",'
                    b'"type":"captured","at":"2026-01-01T10:00:00Z","amount":5}\n')
    run = audit(tmp_path, log)
    assert run.code == 1
    assert not any(ch in run.out for ch in "\x1b\x07\x9b"), run.out
    assert "evil\\x1b[31mRED\\x1b]0;title\\x07\\x9b" in run.out


def test_html_report_is_self_contained_and_escapes_the_log(tmp_path: Path) -> None:
    hostile = (b'{"payment":"<script>alert(1)</script>","type":"captured","at":"2026-01-05T10:00:00Z",'
               b'"amount":1,"provider":"vipps"}\n<img src=x onerror=alert(2)>\n')
    (tmp_path / "h.jsonl").write_bytes(hostile)
    report = tmp_path / "out" / "report.html"
    report.parent.mkdir()
    run = audit(tmp_path, tmp_path / "h.jsonl", SHOP, "--report", report, "--json")
    assert run.code == 1
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    # One script, the report's own filter; nothing from the log became markup.
    assert html.count("<script") == 1 and "<script>alert" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched
    for code in run.json()["counts"]:
        assert code in html
    assert "order-20260106-0006" in html and "refund 25000 &gt; refundable 20000" in html
    assert [p.name for p in report.parent.iterdir()] == ["report.html"]  # no temporary left behind
    # Readable as any new file under the umask (the test process's umask is the child's), not mkstemp's 0600.
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(report.stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize(("args", "message"), [
    (("missing.jsonl",), "cannot read missing.jsonl"),
    ((".",), "cannot read ."),
    (("SHOP", "--workers", "0"), "--workers"),
    (("SHOP", "--as-of", "yesterday"), "--as-of"),
    (("SHOP", "--provider", "stripe"), "no shipped spec"),
    (("SHOP", "--set", "max_captures=lots"), "max_captures"),
    (("SHOP", "--set", "stripe.max_captures=2"), "stripe"),
    (("SHOP", "--format", "csv"), "--format"),
    (("SHOP", "--report", "SHOP"), "refusing to write over an input"),
    (("SHOP", "SHOP"), "given more than once"),
    (("SHOP", "--settled-window", "-1"), "--settled-window"),
])
def test_bad_usage_is_one_line_and_exit_2(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    real = [str(SHOP) if a == "SHOP" else a for a in args]
    run = audit(tmp_path, *real)
    assert run.code == 2, run
    last = run.err.strip().splitlines()[-1]
    assert last.startswith("capstate: error:") and message in last, run.err
    assert "Traceback" not in run.err


@pytest.mark.parametrize("spelling", ["./log.jsonl", "link.jsonl", "sub/../log.jsonl"])
def test_one_file_under_another_spelling_is_still_one_file(tmp_path: Path, spelling: str) -> None:
    # Both checks compared the strings: `--report ./log.jsonl` on log.jsonl wrote the HTML over the log
    # being audited (exit 1, the evidence gone), and `./log.jsonl log.jsonl` judged every event twice.
    log = tmp_path / "log.jsonl"
    log.write_bytes(CLEAN)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.jsonl").symlink_to(log)
    report = audit(tmp_path, "log.jsonl", "--report", spelling)
    assert report.code == 2 and "refusing to write over an input" in report.err, report
    assert log.read_bytes() == CLEAN
    twice = audit(tmp_path, "log.jsonl", spelling)
    assert twice.code == 2 and "given more than once" in twice.err, twice
    assert audit(tmp_path, "-", "-", stdin=CLEAN).code == 2


def test_a_file_name_that_is_not_utf8_does_not_lose_the_report(tmp_path: Path) -> None:
    # Linux file names are bytes; Python hands a non-UTF-8 one over with lone surrogates, which neither
    # orjson nor the HTML writer can encode: after the whole audit, --json died as an "internal error"
    # (exit 2, no report) and --report could not be written. The name is now shown with \\xNN escapes.
    name = os.fsdecode(b"betalinger-\xe5r.jsonl")  # Latin-1 "aar", as a Windows share may name it
    (tmp_path / name).write_bytes(CLEAN + b'{"payment":"order-0000001","type":"refunded","at":'
                                          b'"2026-01-06T10:00:00Z","amount":20000,"provider":"vipps"}\n')
    shown = "betalinger-\\xe5r.jsonl"
    for extra in ((), ("--workers", "2")):
        run = audit(tmp_path, name, "--json", *extra)
        assert run.code == 1, run
        assert [(v["file"], v["line"], v["code"]) for v in run.json()["violations"]] == \
               [(shown, 3, "REFUND_EXCEEDS_CAPTURED")]
    html = audit(tmp_path, name, "--report", "r.html")
    assert html.code == 1, html
    assert shown in (tmp_path / "r.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("where", ["missing-dir/r.html", "."])
def test_an_unwritable_report_is_refused_before_the_audit_reads_anything(tmp_path: Path, where: str) -> None:
    # stdin stays open: an audit that started reading would wait for it, so only a check made up front
    # can answer at once.
    proc = subprocess.Popen([sys.executable, "-m", "capstate", "audit", "-", "--report", where], cwd=tmp_path,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdin is not None and proc.stderr is not None
    try:
        code = proc.wait(timeout=20)  # a one-line error fits the pipe; an audit reading stdin never ends
    finally:
        proc.kill()
        proc.stdin.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.stdout is not None
    proc.stdout.close()
    assert code == 2 and err.startswith(f"capstate: error: cannot write report {where}"), err


def test_dask_missing_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    # A real interpreter in which `import distributed` fails, as without the extra installed.
    shim = tmp_path / "shim" / "distributed"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named distributed')\n")
    env_path = os.pathsep.join([str(shim.parent), os.environ.get("PYTHONPATH", "")])
    run = run_cli(tmp_path, "audit", SHOP, "--dask", "local", PYTHONPATH=env_path)
    assert run.code == 2
    assert run.err == 'capstate: error: --dask needs dask.distributed: pip install "capstate[dask]"\n'


def test_installed_script_runs_audit(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("capstate")
    run = run_cli(tmp_path, "audit", SHOP, "--json", exe=[str(script)])
    assert run.code == 1 and orjson.loads(run.out)["events"] == 37


def _run_with_tty_stderr(cwd: Path, *args: str | Path, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    """Run `capstate audit` with stderr on a pseudo-terminal, as a person at a terminal would."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "capstate", "audit", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=slave,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the terminal closed when the process ended
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()  # before feeding stdin: a full terminal buffer would block the child's bar
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
    assert proc.stdout is not None
    out = proc.stdout.read()
    code = proc.wait(timeout=60)
    reader.join(timeout=10)
    os.close(master)
    return code, out, b"".join(chunks)


@pytest.mark.parametrize("extra", [(), ("--workers", "2")])
def test_progress_bar_goes_to_a_terminal_stderr_and_never_to_stdout(tmp_path: Path, extra: tuple[str, ...]) -> None:
    code, out, err = _run_with_tty_stderr(tmp_path, SHOP, "--json", *extra)
    assert code == 1
    assert b"auditing" in err and b"\x1b[" in err  # a rich bar, drawn then cleared
    # stdout is the same JSON as without a terminal
    assert stable(out.decode()) == stable(audit(tmp_path, SHOP, "--json").out)
    piped = audit(tmp_path, SHOP, *extra)
    assert piped.err == ""  # no terminal, no bar


def test_progress_over_a_pipe_has_no_position_and_loses_nothing(tmp_path: Path) -> None:
    # `zcat log.gz | capstate audit -` at a terminal: stdin cannot tell its position.
    # More lines than the progress interval, so the bar asks for a position while reading the pipe.
    lines = b"".join(b'{"payment":"order-%08d","type":"authorized","at":"2026-01-05T10:00:00Z","amount":1000,'
                     b'"currency":"NOK","provider":"vipps"}\n' % i for i in range(40_000))
    code, out, err = _run_with_tty_stderr(tmp_path, "-", "--json", stdin=lines)
    assert b"auditing" in err
    report = orjson.loads(out)
    assert (code, report["events"], report["payments"], report["violations"]) == (0, 40_000, 40_000, [])
    assert report["inputs"][0]["name"] == "-" and report["inputs"][0]["size"] == len(lines)
