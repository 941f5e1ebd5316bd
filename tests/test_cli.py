"""The `capstate` command, run as a real process: exit codes, exact JSON, one-line errors.

Every run happens in a fresh temporary directory with absolute paths, so nothing depends on where
pytest was started. Errors must be one line on stderr, `capstate: error: ...`, never a traceback.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import pytest
from attrs import frozen

from capstate._cli import main as cli_main

HISTORIES = Path(__file__).resolve().parents[1] / "examples" / "histories"
VIPPS = HISTORIES / "vipps-partial.jsonl"
HELLGATE = HISTORIES / "hellgate-capturing.jsonl"
BAMBORA = HISTORIES / "bambora-expired.jsonl"
# `capstate` as pip installed it, beside the interpreter that runs the tests.
SCRIPT = Path(sys.executable).with_name("capstate")

HELLGATE_REF = "3b2f0c1e-6a4d-4f7b-9c2e-8d1a5e7f0b34"
HELLGATE_AUTHORIZED = (f'{{"payment":"{HELLGATE_REF}","type":"authorized","at":"2026-02-02T14:30:00Z",'
                       f'"amount":5000,"currency":"EUR","provider":"hellgate"}}\n')


@frozen
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.err == "", self.err
        return orjson.loads(self.out)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR"}}
    env["COLUMNS"] = "100"  # rich's width when stdout is not a terminal; fixed so wrapping is stable
    env.update(extra)
    return env


def run_cli(cwd: Path, *args: str | Path, stdin: bytes | None = None, exe: list[str] | None = None,
            **env: str) -> Run:
    command = (exe or [sys.executable, "-m", "capstate"]) + [str(a) for a in args]
    done = subprocess.run(command, cwd=cwd, input=stdin if stdin is not None else b"", capture_output=True,
                          env=_env(**env), timeout=60, check=False)
    return Run(done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.fixture
def cli(tmp_path: Path) -> Any:
    def bound(*args: str | Path, stdin: bytes | None = None, **env: str) -> Run:
        return run_cli(tmp_path, *args, stdin=stdin, **env)

    return bound


def assert_error(r: Run, *fragments: str) -> str:
    """Exit 2, nothing on stdout, exactly one `capstate: error:` line on stderr holding `fragments`."""
    assert r.code == 2, (r.code, r.out, r.err)
    assert r.out == ""
    assert "Traceback" not in r.err
    assert r.err.endswith("\n") and len(r.err.splitlines()) == 1, r.err
    assert r.err.startswith("capstate: error: "), r.err
    for fragment in fragments:
        assert fragment in r.err, (fragment, r.err)
    return r.err


def latest_at(history: str | Path, stdin: bytes | None = None) -> str | None:
    """The latest `at` in a readable history file (or stdin's bytes), or None (unreadable, no valid line)."""
    try:
        raw = stdin if history == "-" and stdin is not None else Path(history).read_bytes()
        lines = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).splitlines()
    except (OSError, EOFError):
        return None
    ats = []
    for line in lines:
        try:
            at = orjson.loads(line.removeprefix(b"\xef\xbb\xbf")).get("at")
        except (ValueError, AttributeError, EOFError):
            continue
        if isinstance(at, str):
            ats.append(at)
    return max(ats, default=None)


def validate(cli: Any, *args: str | Path, history: str | Path = VIPPS, provider: str = "vipps",
             stdin: bytes | None = None) -> Run:
    """`capstate validate`, decided at the history's latest event unless the test gives --at: the default
    instant is now, and these histories are from 2026-01, when their authorizations were still valid."""
    at = latest_at(history, stdin) if "--at" not in args else None
    result: Run = cli("validate", "--provider", provider, "--history", history, *args,
                      *(("--at", at) if at else ()), stdin=stdin)
    return result


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------ providers


def test_providers_json_lists_every_shipped_spec_with_its_policy(cli: Any) -> None:
    r = cli("providers", "--json")
    assert r.code == 0
    doc = r.json()
    assert [p["name"] for p in doc["providers"]] == ["bambora", "hellgate", "pipwave", "vipps"]
    by_name = {p["name"]: p for p in doc["providers"]}
    assert set(by_name["vipps"]) >= {"name", "title", "doc", "policy"}
    assert by_name["vipps"]["title"] == "Vipps MobilePay ePayment API v1"
    vipps = by_name["vipps"]["policy"]
    assert vipps["max_captures"] == "unlimited"
    assert vipps["authorization_validity"] == {"NOK": "180d", "DKK": "14d", "EUR": "14d"}
    assert vipps["idempotency"] == "required"
    assert vipps["reference"]["pattern"] == "[a-zA-Z0-9-]{8,50}"
    assert by_name["hellgate"]["policy"]["capture"] == "async"
    assert by_name["hellgate"]["policy"]["authorization_validity"] == "unknown"
    assert "authorization_validity" in by_name["hellgate"]["defaults"]


def test_providers_human_output_through_the_installed_script(tmp_path: Path) -> None:
    assert SCRIPT.is_file(), f"console script not installed next to {sys.executable}"
    # FORCE_COLOR asks rich for colour even in a pipe; output that is not a terminal never gets any.
    r = run_cli(tmp_path, "providers", exe=[str(SCRIPT)], FORCE_COLOR="1")
    assert r.code == 0, r.err
    assert r.err == ""
    assert "\x1b" not in r.out
    for word in ("bambora", "hellgate", "pipwave", "vipps", "Policy at a glance", "async", "unlimited",
                 "NOK 180d", "[a-zA-Z0-9-]{8,50}"):
        assert word in r.out, word


# ----------------------------------------------------------------------------------------------- spec


def test_spec_json_structure(cli: Any) -> None:
    r = cli("spec", "vipps", "--json")
    assert r.code == 0
    doc = r.json()
    assert set(doc) == {"name", "title", "doc", "file", "initial", "states", "terminal", "transitions", "policy"}
    assert (doc["name"], doc["initial"]) == ("vipps", "open")
    assert doc["terminal"] == ["captured", "cancelled", "expired"]
    partial = next(t for t in doc["transitions"] if t["when"] == "leaves_remainder" and t["trigger"] == "captured"
                   and t["source"] == "authorized")
    assert partial["dest"] == "authorized"
    assert "within_capturable" in partial["guards"]
    assert partial["doc"].startswith("https://developer.vippsmobilepay.com/docs/APIs/epayment-api/operations/capture")
    rule = doc["policy"]["authorization_validity"]
    assert rule["value"] == {"NOK": "180d", "DKK": "14d", "EUR": "14d"}
    assert (rule["default"], rule["overridden"], rule["stated"]) == (False, False, True)
    assert "180 days" in rule["doc"]


def test_spec_json_marks_defaults_and_overrides(cli: Any) -> None:
    doc = cli("spec", "hellgate", "--json", "--set", "hellgate.authorization_validity=7d").json()
    rule = doc["policy"]["authorization_validity"]
    assert rule["value"] == {"*": "7d"}
    assert rule["overridden"] is True
    assert doc["policy"]["remainder"]["default"] is True
    assert "[UNK]" in doc["policy"]["remainder"]["note"]
    assert doc["policy"]["identifiers"]["stated"] is False


def test_spec_human_output_keeps_bracketed_text(cli: Any) -> None:
    r = cli("spec", "hellgate")
    assert r.code == 0 and r.err == ""
    # rich would read "[UNK]" as markup and drop it if the text were not escaped.
    for word in ("Hellgate Commerce payments", "States", "Transitions", "Policy", "capturing",
                 "capture_requested: authorized -> capturing", "manual_flow", "[UNK]", "(default)", "(doc)"):
        assert word in r.out, word


def _shipped_text(name: str) -> str:
    return resources.files("capstate.specs").joinpath(f"{name}.toml").read_text(encoding="utf-8")


def test_spec_from_a_path(cli: Any, tmp_path: Path) -> None:
    path = write(tmp_path, "mine.toml", _shipped_text("bambora").replace('name = "bambora"', 'name = "mybank"'))
    doc = cli("spec", path, "--json").json()
    assert (doc["name"], doc["file"]) == ("mybank", str(path))
    assert_error(cli("spec", path, "--set", "bambora.max_captures=2"), "'bambora'", "'mybank'")


def _broken_spec(tmp_path: Path) -> Path:
    text = _shipped_text("bambora")
    broken = text.replace('source = "capturing"\ndest = "captured"', 'source = "capturing"\ndest = "capturd"', 1)
    assert broken != text
    return write(tmp_path, "broken.toml", broken)


def test_spec_broken_file_is_one_line_naming_the_key_path(cli: Any, tmp_path: Path) -> None:
    path = _broken_spec(tmp_path)
    err = assert_error(cli("spec", path), str(path), "transitions[3].dest", "unknown state 'capturd'")
    assert f"{path}:" in err  # with the line number after the file


def test_spec_broken_toml_syntax(cli: Any, tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", "[provider\nname = 1\n")
    assert_error(cli("spec", path, "--json"), str(path), "not valid TOML")


def test_spec_unknown_name(cli: Any) -> None:
    assert_error(cli("spec", "stripe"), "stripe", "no shipped spec", "vipps")


# ------------------------------------------------------------------------------------------- validate


def test_validate_exceeds_capturable(cli: Any) -> None:
    r = validate(cli, "--amount", "80000", "--key", "ship-2", "--json")
    assert r.code == 1
    doc = r.json()
    assert set(doc) == {"allowed", "violations", "warnings", "capture", "after"}
    assert doc["allowed"] is False
    assert [v["code"] for v in doc["violations"]] == ["EXCEEDS_CAPTURABLE"]
    assert "75000" in doc["violations"][0]["message"]
    assert doc["violations"][0]["message"] == ("capture 80000 > capturable 75000 = authorized 100000 "
                                               "- captured 25000 (NOK 800.00 > 750.00)")
    assert doc["warnings"] == []
    assert {k: doc["capture"][k] for k in ("amount", "currency")} == {"amount": 80000, "currency": "NOK"}
    assert doc["after"] is None


def test_validate_human_refused(cli: Any) -> None:
    r = validate(cli, "--amount", "80000", "--key", "ship-2")
    assert r.code == 1 and r.err == ""
    assert "\x1b" not in r.out
    for word in ("REFUSED", "EXCEEDS_CAPTURABLE", "75000", "750.00 NOK", "order-10001", "before"):
        assert word in r.out, word


def test_validate_allowed_partial_capture(cli: Any) -> None:
    r = validate(cli, "--amount", "30000", "--key", "ship-2", "--json")
    assert r.code == 0
    doc = r.json()
    assert (doc["allowed"], doc["violations"], doc["warnings"]) == (True, [], [])
    assert {k: doc["capture"][k] for k in ("amount", "currency")} == {"amount": 30000, "currency": "NOK"}
    assert doc["after"] == {"state": "authorized", "authorized": 100000, "captured": 55000, "cancelled": 0,
                            "refunded": 0}


def test_validate_human_allowed(cli: Any) -> None:
    r = validate(cli, "--amount", "30000", "--key", "ship-2", "--at", "2026-01-08T12:00:00+01:00")
    assert r.code == 0 and r.err == ""
    for word in ("ALLOWED", "after", "55000 (550.00 NOK)", "2026-01-08T11:00:00Z"):
        assert word in r.out, word


def test_validate_full_capture_without_amount(cli: Any) -> None:
    r = validate(cli, "--key", "ship-2", "--json")
    assert r.code == 0
    doc = r.json()
    assert {k: doc["capture"][k] for k in ("amount", "currency")} == {"amount": 75000, "currency": "NOK"}
    assert doc["after"]["state"] == "captured"
    assert doc["after"]["captured"] == 100000


def test_validate_final_capture_releases_the_rest(cli: Any) -> None:
    doc = validate(cli, "--amount", "10000", "--key", "ship-2", "--final", "--json").json()
    assert doc["allowed"] is True
    assert [w["code"] for w in doc["warnings"]] == ["REMAINDER_RELEASED"]
    assert doc["after"] == {"state": "captured", "authorized": 100000, "captured": 35000, "cancelled": 65000,
                            "refunded": 0}


def test_validate_derives_the_key_capture_would_send(cli: Any) -> None:
    # Vipps needs a key; none given, validate derives the one `capture` would send, and shows it.
    r = validate(cli, "--amount", "1000", "--json")
    assert r.code == 0, r.out
    capture = r.json()["capture"]
    assert capture["key_derived"] is True and capture["key"].startswith("cs-") and len(capture["key"]) == 35
    human = validate(cli, "--amount", "1000")
    assert f"key '{capture['key']}' (derived, as capture sends it)" in human.out


def test_validate_vipps_refuses_a_key_it_cannot_take(cli: Any) -> None:
    r = validate(cli, "--amount", "1000", "--key", "k" * 51, "--json")
    assert r.code == 1
    assert [v["code"] for v in r.json()["violations"]] == ["IDEMPOTENCY_KEY_REQUIRED"]


def test_validate_reused_key(cli: Any) -> None:
    conflict = validate(cli, "--amount", "1000", "--key", "ship-1", "--json")
    assert conflict.code == 1
    assert [v["code"] for v in conflict.json()["violations"]] == ["IDEMPOTENCY_KEY_CONFLICT"]
    replay = validate(cli, "--amount", "25000", "--key", "ship-1", "--json")
    assert replay.code == 0
    assert [w["code"] for w in replay.json()["warnings"]] == ["IDEMPOTENT_REPLAY"]


def test_validate_currency_mismatch(cli: Any) -> None:
    r = validate(cli, "--amount", "1000", "--key", "ship-2", "--currency", "DKK", "--json")
    assert r.code == 1
    doc = r.json()
    assert [v["code"] for v in doc["violations"]] == ["CURRENCY_MISMATCH"]
    assert {k: doc["capture"][k] for k in ("amount", "currency")} == {"amount": 1000, "currency": "DKK"}


def test_validate_hellgate_capture_in_flight(cli: Any) -> None:
    r = validate(cli, "--json", provider="hellgate", history=HELLGATE)
    assert r.code == 1
    doc = r.json()
    assert [v["code"] for v in doc["violations"]] == ["CAPTURE_IN_FLIGHT"]
    assert "5000" in doc["violations"][0]["message"]
    assert doc["capture"]["currency"] == "EUR"


def test_validate_bambora_after_expiry(cli: Any) -> None:
    r = validate(cli, "--amount", "10000", "--json", provider="bambora", history=BAMBORA)
    assert r.code == 1
    assert [v["code"] for v in r.json()["violations"]] == ["AUTHORIZATION_EXPIRED"]


def test_set_override_changes_the_outcome(cli: Any, tmp_path: Path) -> None:
    history = write(tmp_path, "hellgate.jsonl", HELLGATE_AUTHORIZED)
    at = ("--at", "2026-02-04T00:00:00Z")
    plain = validate(cli, *at, "--json", provider="hellgate", history=history)
    assert plain.code == 0
    assert plain.json()["after"]["state"] == "capturing"  # async: the capture is in flight
    short = validate(cli, *at, "--json", "--set", "hellgate.authorization_validity=1d", provider="hellgate",
                     history=history)
    assert short.code == 1
    doc = short.json()
    assert [v["code"] for v in doc["violations"]] == ["AUTHORIZATION_EXPIRED"]
    assert "2026-02-03T14:30:00Z" in doc["violations"][0]["message"]


def test_set_override_per_currency_and_count(cli: Any) -> None:
    one = validate(cli, "--amount", "1000", "--key", "ship-2", "--json", "--set", "max_captures=1")
    assert [v["code"] for v in one.json()["violations"]] == ["MULTIPLE_CAPTURES_UNSUPPORTED"]
    short = ("--set", "vipps.authorization_validity.NOK=3d")
    assert validate(cli, "--amount", "1000", "--key", "ship-2", "--json", *short).code == 0
    lapsed = validate(cli, "--amount", "1000", "--key", "ship-2", "--at", "2026-01-08T10:00:00Z", "--json", *short)
    assert [v["code"] for v in lapsed.json()["violations"]] == ["AUTHORIZATION_EXPIRED"]
    # Replay is strict, so a validity that the history's own capture broke makes the history impossible.
    assert_error(validate(cli, "--set", "authorization_validity.NOK=1d"), "history line 2:", "AUTHORIZATION_EXPIRED")


def test_set_override_rewrites_a_pipwave_partial_capture(cli: Any, tmp_path: Path) -> None:
    history = write(tmp_path, "pipwave.jsonl", '{"payment":"INV-2026-000451","type":"authorized",'
                    '"at":"2026-03-01T08:00:00Z","amount":15000,"currency":"MYR","provider":"pipwave"}\n')
    r = validate(cli, "--amount", "5000", "--json", "--set", "partial_capture=becomes_full", provider="pipwave",
                 history=history)
    assert r.code == 0
    doc = r.json()
    assert [w["code"] for w in doc["warnings"]] == ["PARTIAL_BECOMES_FULL"]
    assert {k: doc["capture"][k] for k in ("amount", "currency")} == {"amount": 15000, "currency": "MYR"}


def test_set_override_errors(cli: Any) -> None:
    assert_error(validate(cli, "--set", "foo=1"), "--set foo", "unknown policy rule 'foo'")
    assert_error(validate(cli, "--set", "max_captures=0"), "--set max_captures", "got 0")
    assert_error(validate(cli, "--set", "hellgate.max_captures=2"), "'hellgate'", "'vipps'")
    assert_error(validate(cli, "--set", "max_captures"), "expected key=value")


def test_validate_reads_stdin(cli: Any) -> None:
    r = validate(cli, "--amount", "80000", "--key", "ship-2", "--json", history="-", stdin=VIPPS.read_bytes())
    assert r.code == 1
    assert [v["code"] for v in r.json()["violations"]] == ["EXCEEDS_CAPTURABLE"]


def test_validate_reads_gzip_from_a_file_and_from_stdin(cli: Any, tmp_path: Path) -> None:
    packed = gzip.compress(VIPPS.read_bytes())
    path = tmp_path / "vipps.jsonl.gz"
    path.write_bytes(packed)
    from_file = validate(cli, "--amount", "75000", "--key", "ship-2", "--json", history=path)
    assert from_file.code == 0
    assert from_file.json()["after"]["state"] == "captured"
    from_stdin = validate(cli, "--amount", "75000", "--key", "ship-2", "--json", history="-", stdin=packed)
    assert from_stdin.json() == from_file.json()


def test_validate_skips_blank_lines_and_counts_them(cli: Any, tmp_path: Path) -> None:
    auth, capture = VIPPS.read_text(encoding="utf-8").splitlines()
    ok = write(tmp_path, "ok.jsonl", f"\n{auth}\n   \n{capture}\n\n")
    assert validate(cli, "--amount", "1000", "--key", "ship-2", "--json", history=ok).code == 0
    bad = write(tmp_path, "bad.jsonl", f"{auth}\n\n{capture.replace('25000', '250.00')}\n")
    assert_error(validate(cli, history=bad), "history line 3: amount:", "250.0")


def test_validate_malformed_json_line(cli: Any, tmp_path: Path) -> None:
    auth = VIPPS.read_text(encoding="utf-8").splitlines()[0]
    path = write(tmp_path, "bad.jsonl", f"{auth}\n{{not json\n")
    assert_error(validate(cli, "--json", history=path), "history line 2:", "not valid JSON")


def test_validate_impossible_history(cli: Any, tmp_path: Path) -> None:
    auth = VIPPS.read_text(encoding="utf-8").splitlines()[0]
    over = auth.replace('"authorized"', '"captured"').replace("100000", "150000").replace("05T10", "06T10")
    path = write(tmp_path, "over.jsonl", f"{auth}\n{over}\n")
    assert_error(validate(cli, history=path), "history line 2:", "EXCEEDS_CAPTURABLE", "150000")


def test_validate_history_of_two_payments(cli: Any, tmp_path: Path) -> None:
    auth, capture = VIPPS.read_text(encoding="utf-8").splitlines()
    path = write(tmp_path, "mixed.jsonl", f"{auth}\n{capture.replace('order-10001', 'order-10002')}\n")
    assert_error(validate(cli, history=path), "history line 2:", "'order-10002'", "'order-10001'")


def test_validate_history_of_another_provider(cli: Any) -> None:
    assert_error(validate(cli, provider="hellgate"), "history line 1:", "'vipps'", "'hellgate'")


def test_validate_empty_history(cli: Any, tmp_path: Path) -> None:
    path = write(tmp_path, "empty.jsonl", "\n\n")
    assert_error(validate(cli, history=path), "no events")


def test_validate_corrupt_gzip(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl.gz"
    path.write_bytes(b"not gzip at all\n")
    assert_error(validate(cli, history=path), "cannot read history", str(path))


def test_validate_bad_at(cli: Any) -> None:
    assert_error(validate(cli, "--at", "2026-01-08 noon"), "--at", "RFC 3339")
    assert_error(validate(cli, "--at", "2026-01-08T12:00:00"), "--at", "offset")  # naive
    assert_error(validate(cli, "--at", "2026-01-06T00:00:00Z"), "--at", "before the history's latest event")


@pytest.mark.parametrize(("amount", "fragment"), [("10.5", "never decimals"), ("-5", "not an integer"),
                                                  ("1e3", "not an integer"), ("lots", "not an integer")])
def test_validate_bad_amount(cli: Any, amount: str, fragment: str) -> None:
    assert_error(validate(cli, f"--amount={amount}", "--key", "ship-2"), "--amount", fragment)


def test_validate_bad_currency(cli: Any) -> None:
    # Any case is read ("nok" is NOK, see test_consistency.py); what is no ISO 4217 code is refused.
    assert_error(validate(cli, "--currency", "kroner"), "--currency", "ISO 4217")


def test_validate_unknown_provider(cli: Any) -> None:
    assert_error(validate(cli, provider="stripe"), "stripe", "no shipped spec")


def test_validate_missing_history_file(cli: Any, tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    assert_error(validate(cli, history=missing), "cannot read history", str(missing))


def test_validate_with_a_broken_spec_file(cli: Any, tmp_path: Path) -> None:
    assert_error(validate(cli, provider=str(_broken_spec(tmp_path))), "transitions[3].dest")


# ------------------------------------------------------------------------------------- process level


def test_usage_errors_print_one_line_naming_help(cli: Any) -> None:
    r = cli("validate", "--provider", "vipps")
    assert r.code == 2 and r.out == ""
    # --history is not required by the parser (validate --journal URL --payment REF reads the journal instead).
    assert r.err == ("capstate: error: validate needs --provider NAME and --history FILE, or --journal URL "
                     "--payment REF\n")
    r = cli("teleport")
    assert r.code == 2
    assert len(r.err.splitlines()) == 1
    assert r.err.startswith("capstate: error: unknown command 'teleport' (commands: providers, spec, validate")
    assert r.err.endswith("(see 'capstate --help')\n")
    r = cli("simlate", "plan.toml")
    assert r.code == 2 and r.out == ""
    assert r.err == "capstate: error: unknown command 'simlate'; did you mean 'simulate'? (see 'capstate --help')\n"


def test_help_and_version(cli: Any) -> None:
    r = cli("validate", "--help")
    assert r.code == 0 and "--history" in r.out
    r = cli("--version")
    assert r.code == 0 and r.out.startswith("capstate ")


def test_closed_stdout_is_quiet(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "capstate", "spec", "vipps"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the child writes: its first write meets a closed pipe
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert err == b""


def test_main_in_process_returns_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["validate", "--provider", "vipps", "--history", str(VIPPS), "--amount", "1",
                          "--key", "k", "--at", "2026-01-08T00:00:00Z", "--json"]) == 1  # below NOK's minimum
    doc = orjson.loads(capsys.readouterr().out)
    assert [v["code"] for v in doc["violations"]] == ["AMOUNT_INVALID"]


def test_an_unexpected_exception_is_still_one_line(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    def boom(args: object) -> int:
        raise RuntimeError("engine bug\nwith a second line")

    from capstate._cli import commands

    monkeypatch.setattr(commands, "cmd_providers", boom)
    assert cli_main.main(["providers"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "capstate: error: internal error (RuntimeError): engine bug with a second line\n"


@pytest.mark.parametrize("text", ["25000\n", "\uff12\uff15", "25000 ", "-1", "1.5"])
def test_amount_option_is_ascii_digits_only(text: str) -> None:
    from capstate._cli.options import UsageError, parse_amount

    with pytest.raises(UsageError, match="--amount"):
        parse_amount(text)
