"""`capstate capture` through real subprocesses: dry runs print exact curl commands with credentials
masked; real runs go through a journal (a real SQLite file) and send to a scripted HTTP server on 127.0.0.1
(its URL given as the credentials' base URL). `--history` without `--dry-run` is a usage error."""

from __future__ import annotations

import base64
import html
import json
import os
import shlex
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from httpserver import Reply, ScriptedServer, scripted_server

ROOT = Path(__file__).resolve().parents[1]
VIPPS_HISTORY = ROOT / "examples" / "histories" / "vipps-partial.jsonl"  # order-10001: 100000 NOK, 25000 captured
AT = "2026-01-08T09:00:00Z"
AT_UNIX = 1767862800
HG_ID = "3f1c2a8e-6b1d-4c9e-9a55-0f7e2d8c1b2a"
SECRETS = {
    "CAPSTATE_VIPPS_ACCESS_TOKEN": "vipps-TOKEN-s3cr3t",
    "CAPSTATE_VIPPS_SUBSCRIPTION_KEY": "vipps-SUBKEY-s3cr3t",
    "CAPSTATE_BAMBORA_ACCESS_TOKEN": "bamboraACCESSs3cr3t",
    "CAPSTATE_BAMBORA_SECRET_TOKEN": "bambora-SECRET-s3cr3t",
    "CAPSTATE_HELLGATE_API_KEY": "hellgate-APIKEY-s3cr3t",
    "CAPSTATE_PIPWAVE_API_KEY": "pipwave-KEY-s3cr3t",
    "CAPSTATE_PIPWAVE_API_SECRET": "pipwave-SECRET-s3cr3t",
}
PUBLIC = {"CAPSTATE_VIPPS_MERCHANT_SERIAL_NUMBER": "123456", "CAPSTATE_BAMBORA_MERCHANT_NUMBER": "T0001"}


def no_secret(*texts: str) -> None:
    """Every stdout and stderr is scanned for the secrets where it is produced (an end-of-module scan saw
    only the runs its own xdist worker happened to get)."""
    for name, secret in SECRETS.items():
        assert not [t for t in texts if secret in t], name


def run(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CAPSTATE_VIPPS", "CAPSTATE_BAMBORA",
                                                                      "CAPSTATE_HELLGATE", "CAPSTATE_PIPWAVE"))}
    out = subprocess.run([sys.executable, "-m", "capstate", "capture", *args], capture_output=True, text=True,
                         env={**base, **(env if env is not None else {**SECRETS, **PUBLIC})}, cwd=cwd,
                         timeout=60, check=False)
    no_secret(out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    return out


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with scripted_server() as srv:
        yield srv


def write(path: Path, *events: dict[str, Any]) -> str:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return str(path)


def authorized(provider: str, reference: str, amount: int, currency: str) -> dict[str, Any]:
    return {"payment": reference, "type": "authorized", "at": "2026-01-05T10:00:00Z", "amount": amount,
            "currency": currency, "provider": provider}


def journal_of(tmp_path: Path, *histories: Path | str) -> str:
    """A SQLite journal holding the histories' events (a real file, as `capstate journal import` writes it)."""
    from capstate.providers.journal import Journal

    url = f"sqlite:///{tmp_path / 'capstate.db'}"
    with Journal(url) as journal:
        for history in histories:
            report = journal.ingest(recent([json.loads(line) for line in Path(history).read_text().splitlines()]))
            assert report.rejected == (), report
    return url


def recent(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events moved in time so the first was two days ago: the journal decides at the real now, and an
    authorization of January has expired by December."""
    def at(e: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(e["at"].replace("Z", "+00:00"))

    shift = datetime.now(UTC) - timedelta(days=2) - at(events[0])
    return [{**e, "at": (at(e) + shift).isoformat()} for e in events]


def journal_state(url: str, reference: str) -> Any:
    from capstate.providers.journal import Journal

    with Journal(url) as journal:
        return journal.state(reference)


def credentials_file(tmp_path: Path, provider: str, base_url: str, key: str = "base_url") -> str:
    path = tmp_path / "creds.toml"
    path.write_text(f'[{provider}]\n{key} = "{base_url}"\n')
    path.chmod(0o600)
    return str(path)


def curl_words(line: str) -> dict[str, Any]:
    words = shlex.split(line)
    assert words[0] == "curl"
    out: dict[str, Any] = {"headers": []}
    it = iter(words[1:])
    for flag in it:
        value = next(it)
        if flag == "--header":
            out["headers"].append(value)
        else:
            out[flag] = value
    return out


# ---------------------------------------------------------------------------------------------- dry runs


def test_dry_run_prints_the_exact_vipps_request_with_credentials_masked() -> None:
    out = run("--provider", "vipps", "--history", str(VIPPS_HISTORY), "--amount", "50000", "--key", "ship-2",
              "--at", AT, "--dry-run")
    assert out.returncode == 0, out.stderr
    (line,) = out.stdout.splitlines()
    c = curl_words(line)
    assert c["--request"] == "POST"
    assert c["--url"] == "https://api.vipps.no/epayment/v1/payments/order-10001/capture"
    assert c["headers"] == ["Authorization: [REDACTED]", "Ocp-Apim-Subscription-Key: [REDACTED]",
                            "Merchant-Serial-Number: 123456", "Idempotency-Key: ship-2",
                            "Content-Type: application/json"]
    assert json.loads(c["--data-raw"]) == {"modificationAmount": {"currency": "NOK", "value": 50000}}


def test_readme_dry_run_example_prints_what_the_readme_shows() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Sending captures", 1)[1]
    command = section.split("```bash\n", 1)[1].split("```", 1)[0].strip()
    shown = section.split("```text\n", 1)[1].split("```", 1)[0]
    words = shlex.split(command)
    env = dict(w.split("=", 1) for w in words if "=" in w and w.startswith("CAPSTATE_"))
    args = [w for w in words if not w.startswith("CAPSTATE_")]
    assert args[:2] == ["capstate", "capture"]
    out = run(*args[2:], env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == shown


def test_dry_run_of_a_final_vipps_capture_prints_the_release_too() -> None:
    out = run("--provider", "vipps", "--history", str(VIPPS_HISTORY), "--amount", "50000", "--final",
              "--at", AT, "--dry-run")
    assert out.returncode == 0, out.stderr
    capture, comment, cancel = out.stdout.splitlines()
    assert comment.startswith("# then")
    assert curl_words(cancel)["--url"].endswith("/order-10001/cancel")
    assert json.loads(curl_words(cancel)["--data-raw"]) == {"cancelTransactionOnly": False}
    keys = [h for h in curl_words(capture)["headers"] + curl_words(cancel)["headers"] if h.startswith("Idempot")]
    assert len(set(keys)) == 2 and all(k.startswith("Idempotency-Key: cs-") for k in keys)
    assert "REMAINDER_RELEASED" in out.stderr


def test_dry_run_without_secrets_still_prints_the_request() -> None:
    out = run("--provider", "vipps", "--history", str(VIPPS_HISTORY), "--amount", "100", "--key", "k-1",
              "--at", AT, "--dry-run", env=dict(PUBLIC))
    assert out.returncode == 0, out.stderr
    assert "Authorization: [REDACTED]" in out.stdout


def test_dry_run_json(tmp_path: Path) -> None:
    history = write(tmp_path / "b.jsonl", authorized("bambora", "order 20001/x", 100000, "NOK"))
    out = run("--provider", "bambora", "--history", history, "--at", AT, "--dry-run", "--json")
    # A reference with a '/' could retarget the request: refused before anything is built.
    assert out.returncode == 2 and "reference" in out.stderr and out.stdout == ""
    history = write(tmp_path / "b.jsonl", authorized("bambora", "order-20001", 100000, "NOK"))
    out = run("--provider", "bambora", "--history", history, "--amount", "40000", "--at", AT, "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    (request,) = doc["requests"]
    assert doc["sent"] is False and doc["decision"]["allowed"] is True
    assert (request["method"], request["url"]) == ("POST", "https://api-beta.bambora.com/payments/order-20001/capture/")
    assert ["Authorization", "[REDACTED]"] in request["headers"] and ["API-Version", "1"] in request["headers"]
    assert json.loads(request["body"]) == {"amount": 40000}
    assert shlex.split(request["curl"])[0] == "curl"


def test_dry_run_pipwave_masks_the_body_key_and_never_shows_the_secret(tmp_path: Path) -> None:
    history = write(tmp_path / "p.jsonl", authorized("pipwave", "ORDER-1", 105000, "MYR"))
    out = run("--provider", "pipwave", "--history", history, "--amount", "1050", "--at", AT, "--dry-run")
    assert out.returncode == 0, out.stderr
    c = curl_words(out.stdout.strip())
    body = json.loads(c["--data-raw"])
    assert body["action"] == "capture-payment" and body["capture_amount"] == "10.50"
    assert body["api_key"] == "[REDACTED]" and "x-api-key: [REDACTED]" in c["headers"]
    assert body["timestamp"] == AT_UNIX and len(body["signature"]) == 40 and "api_secret" not in body


# ------------------------------------------------------------------------------------------- refusals


def test_sending_from_a_history_is_a_usage_error_that_names_the_journal(server: ScriptedServer,
                                                                        tmp_path: Path) -> None:
    # A history file holds no intent: two workers, or a run killed mid-request, would capture twice (issue 10).
    creds = credentials_file(tmp_path, "vipps", server.url)
    for env in (None, {**SECRETS, **PUBLIC, "CAPSTATE_JOURNAL": journal_of(tmp_path, VIPPS_HISTORY)}):
        out = run("--provider", "vipps", "--history", str(VIPPS_HISTORY), "--amount", "100", "--key", "k",
                  "--credentials", creds, env=env)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stdout == ""
        assert "--history is for --dry-run only" in out.stderr and "--journal URL --payment REF" in out.stderr
    nothing = run("--provider", "vipps", "--amount", "100")
    assert nothing.returncode == 2 and "--journal URL --payment REF" in nothing.stderr
    assert server.requests == []


def test_refused_capture_exits_1_with_the_codes_and_sends_nothing(server: ScriptedServer, tmp_path: Path) -> None:
    creds = credentials_file(tmp_path, "vipps", server.url)
    url = journal_of(tmp_path, VIPPS_HISTORY)
    out = run("--journal", url, "--payment", "order-10001", "--amount", "80000", "--key", "ship-2",
              "--credentials", creds)
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1 and "EXCEEDS_CAPTURABLE" in out.stderr and "nothing was sent" in out.stderr
    assert server.requests == [] and journal_state(url, "order-10001").intents == ()


@pytest.mark.parametrize(("args", "message"), [
    (["--amount", "10.50"], "never decimals"),
    (["--at", AT], "--at and --set are for --dry-run"),
    (["--timeout", "0"], "--timeout"),
    (["--attempts", "0"], "--attempts"),
])
def test_bad_options_exit_2_on_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    out = run("--journal", journal_of(tmp_path, VIPPS_HISTORY), "--payment", "order-10001", *args)
    assert out.returncode == 2 and message in out.stderr and out.stderr.startswith("capstate: error:"), out.stderr
    assert out.stderr.count("\n") == 1


def test_a_dry_run_before_the_history_s_latest_event_exits_2() -> None:
    out = run("--provider", "vipps", "--history", str(VIPPS_HISTORY), "--at", "2026-01-06T00:00:00Z", "--dry-run")
    assert out.returncode == 2 and "before the history's latest event" in out.stderr
    assert out.stderr.count("\n") == 1


def test_unknown_provider_exits_2() -> None:
    out = run("--provider", "stripe", "--history", str(VIPPS_HISTORY), "--dry-run")
    assert out.returncode == 2 and "bambora, hellgate, pipwave, vipps" in out.stderr


def test_missing_credentials_name_the_environment_variables(tmp_path: Path) -> None:
    out = run("--journal", journal_of(tmp_path, VIPPS_HISTORY), "--payment", "order-10001", "--amount", "100",
              env={"CAPSTATE_VIPPS_ACCESS_TOKEN": SECRETS["CAPSTATE_VIPPS_ACCESS_TOKEN"]})
    assert out.returncode == 2
    assert "CAPSTATE_VIPPS_SUBSCRIPTION_KEY" in out.stderr and "CAPSTATE_VIPPS_MERCHANT_SERIAL_NUMBER" in out.stderr


def test_bad_credentials_files_never_echo_their_contents(tmp_path: Path) -> None:
    secret = "vipps-LEAKED-IF-SHOWN"
    unknown = tmp_path / "unknown.toml"
    unknown.write_text(f'access_tokn = "{secret}"\n')
    unknown.chmod(0o600)
    broken = tmp_path / "broken.json"
    broken.write_text(f'{{"access_token": "{secret}",,}}')
    broken.chmod(0o600)
    bad_msn = tmp_path / "msn.toml"
    bad_msn.write_text('merchant_serial_number = "12\\r\\nX-Injected: 1"\n')
    bad_msn.chmod(0o600)
    url = journal_of(tmp_path, VIPPS_HISTORY)
    for path, message, env in ((unknown, "unknown field(s) access_tokn", {}), (broken, "not valid JSON", {}),
                               (bad_msn, "merchant_serial_number", SECRETS)):
        out = run("--journal", url, "--payment", "order-10001", "--amount", "100", "--credentials", str(path),
                  env=env)
        assert out.returncode == 2 and message in out.stderr, out.stderr
        assert secret not in out.stderr + out.stdout
        assert out.stderr.count("\n") == 1
    assert journal_state(url, "order-10001").intents == ()  # credentials are read before any intent is written


def test_a_credentials_file_readable_by_others_is_warned_about(tmp_path: Path) -> None:
    path = Path(credentials_file(tmp_path, "vipps", "https://apitest.vipps.no"))
    path.chmod(0o644)
    out = run("--provider", "vipps", "--history", str(VIPPS_HISTORY), "--amount", "100", "--key", "k", "--at", AT,
              "--credentials", str(path), "--dry-run")
    assert out.returncode == 0 and "readable by other users" in out.stderr
    assert "https://apitest.vipps.no/epayment" in out.stdout


# --------------------------------------------------------------------------------------------- real runs


def vipps_body(captured: int) -> dict[str, Any]:
    def amount(v: int) -> dict[str, Any]:
        return {"currency": "NOK", "value": v}
    return {"amount": amount(100000), "state": "AUTHORIZED", "pspReference": "psp", "reference": "order-10001",
            "aggregate": {"authorizedAmount": amount(100000), "capturedAmount": amount(captured),
                          "cancelledAmount": amount(0), "refundedAmount": amount(0)}}


def test_execute_sends_retries_with_one_key_and_prints_the_events(server: ScriptedServer, tmp_path: Path) -> None:
    path = "/epayment/v1/payments/order-10001/capture"
    server.on("POST", path, Reply(503, b"busy", content_type="text/plain"), Reply(200, vipps_body(75000)))
    creds = credentials_file(tmp_path, "vipps", server.url)
    url = journal_of(tmp_path, VIPPS_HISTORY)
    out = run("--journal", url, "--payment", "order-10001", "--amount", "50000", "--key", "ship-2",
              "--credentials", creds)
    assert out.returncode == 0, out.stderr
    sent = server.received("POST", path)
    assert [r.headers["idempotency-key"] for r in sent] == ["ship-2", "ship-2"]
    assert sent[0].headers["authorization"] == "Bearer " + SECRETS["CAPSTATE_VIPPS_ACCESS_TOKEN"]
    (line,) = out.stdout.splitlines()
    event = json.loads(line)
    assert {k: v for k, v in event.items() if k != "at"} == {
        "payment": "order-10001", "type": "captured", "amount": 50000, "currency": "NOK", "provider": "vipps",
        "key": "ship-2"}
    assert "captured 50000 NOK (500.00)" in out.stderr and "2 request(s)" in out.stderr
    assert "(intent #1)" in out.stderr
    # The journal recorded it, credited to its intent: validate agrees the payment is now 75000 captured.
    state = journal_state(url, "order-10001")
    assert state.base.captured == 75000 and [i.status.value for i in state.intents] == ["done"]
    exported = subprocess.run([sys.executable, "-m", "capstate", "journal", "export", "--journal", url],
                              capture_output=True, check=True)
    check = subprocess.run([sys.executable, "-m", "capstate", "validate", "--provider", "vipps", "--history", "-",
                            "--amount", "25001", "--json"], input=exported.stdout, capture_output=True, check=False)
    assert check.returncode == 1 and b"capturable 25000" in check.stdout
    # The same key again: already done, nothing sent.
    again = run("--journal", url, "--payment", "order-10001", "--amount", "50000", "--key", "ship-2",
                "--credentials", creds)
    assert again.returncode == 0 and "nothing sent" in again.stderr and len(server.received("POST", path)) == 2


def test_execute_provider_refusal_is_one_line_exit_1(server: ScriptedServer, tmp_path: Path) -> None:
    server.on("POST", "/epayment/v1/payments/order-10001/capture",
              Reply(400, {"type": "about:blank", "title": "Capture period expired", "status": 400, "traceId": "t"}))
    url = journal_of(tmp_path, VIPPS_HISTORY)
    out = run("--journal", url, "--payment", "order-10001", "--amount", "100", "--key", "k",
              "--credentials", credentials_file(tmp_path, "vipps", server.url))
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("capstate: error: ") and out.stderr.count("\n") == 1
    assert out.stderr.endswith("vipps HTTP 400 Capture period expired: Capture period expired; traceId t\n")
    (intent,) = journal_state(url, "order-10001").intents
    assert intent.status.value == "failed" and intent.key == "k"


def test_execute_unknown_outcome_exits_3_and_never_resends(server: ScriptedServer, tmp_path: Path) -> None:
    history = write(tmp_path / "b.jsonl", authorized("bambora", "order-20001", 100000, "NOK"))
    url = journal_of(tmp_path, history)
    server.on("POST", "/payments/order-20001/capture/", Reply(201, {}, delay=3.0))
    server.on("GET", "/payments/order-20001/", Reply(500, b""))
    creds = credentials_file(tmp_path, "bambora", server.url)
    out = run("--journal", url, "--payment", "order-20001", "--amount", "100", "--timeout", "0.3",
              "--attempts", "2", "--verbose", "--credentials", creds)
    assert out.returncode == 3, out.stderr
    assert "POST http://127.0.0.1" in out.stderr and "-> timeout" in out.stderr
    assert "outcome unknown" in out.stderr.splitlines()[-1] and "reconcile" in out.stderr.splitlines()[-1]
    # The intent stays open and reserves its amount: the same command again is refused, and sends nothing.
    again = run("--journal", url, "--payment", "order-20001", "--amount", "100", "--timeout", "0.3",
                "--attempts", "1", "--credentials", creds)
    assert again.returncode == 1 and "CAPTURE_IN_FLIGHT" in again.stderr and again.stderr.count("\n") == 1
    assert len(server.received("POST")) == 1
    (intent,) = journal_state(url, "order-20001").intents
    assert intent.status.value == "unknown" and intent.amount == 100


def _echo(headers: dict[str, str]) -> str:
    """A proxy's error text echoing the request headers it got, in the forms servers write them."""
    parts = []
    for name, value in headers.items():
        parts += [f"{name}: {value}", urllib.parse.quote(value, safe=""), json.dumps(value).replace("/", "\\/"),
                  html.escape(value)]
    return " | ".join(parts)


@pytest.mark.parametrize("provider", ["vipps", "bambora", "hellgate"])
def test_credentials_a_provider_echoes_are_never_printed(server: ScriptedServer, tmp_path: Path,
                                                         provider: str) -> None:
    # Before: a 400 whose detail echoed the request headers put the Vipps token and subscription key (and
    # Bambora's Basic credential) on stderr and in --json.
    basic = base64.b64encode(f"{SECRETS['CAPSTATE_BAMBORA_ACCESS_TOKEN']}@T0001:"
                             f"{SECRETS['CAPSTATE_BAMBORA_SECRET_TOKEN']}".encode()).decode()
    if provider == "vipps":
        history, args, reference = str(VIPPS_HISTORY), ["--key", "k-echo"], "order-10001"
        path = "/epayment/v1/payments/order-10001/capture"
        sent = {"Authorization": "Bearer " + SECRETS["CAPSTATE_VIPPS_ACCESS_TOKEN"],
                "Ocp-Apim-Subscription-Key": SECRETS["CAPSTATE_VIPPS_SUBSCRIPTION_KEY"]}
    elif provider == "bambora":
        history, args = write(tmp_path / "b.jsonl", authorized("bambora", "order-20001", 100000, "NOK")), []
        path, sent, reference = "/payments/order-20001/capture/", {"Authorization": "Basic " + basic}, "order-20001"
    else:
        history, args, reference = write(tmp_path / "h.jsonl", authorized("hellgate", HG_ID, 5000, "EUR")), [], HG_ID
        path, sent = f"/payments/{HG_ID}/capture", {"X-API-Key": SECRETS["CAPSTATE_HELLGATE_API_KEY"]}
    echoed = _echo(sent)
    server.on("POST", path, Reply(400, {"type": "x", "title": "Bad Request", "detail": echoed, "message": echoed,
                                        "code": echoed}))
    url = journal_of(tmp_path, history)
    for extra in ([], ["--json"], ["--verbose"]):
        out = run("--journal", url, "--payment", reference, "--amount", "100", *args, *extra,
                  "--credentials", credentials_file(tmp_path, provider, server.url))
        assert out.returncode == 1, out.stderr
        shown = out.stdout + out.stderr
        assert "[REDACTED]" in shown
        for value in [*SECRETS.values(), basic]:
            assert value not in shown and urllib.parse.quote(value, safe="") not in shown, (value, shown)
    assert server.received("POST", path)[0].headers[next(iter(sent)).lower()] == next(iter(sent.values()))
    # What the journal stored (the failed intents' errors) is masked too: `journal show` prints it.
    shown = subprocess.run([sys.executable, "-m", "capstate", "journal", "show", reference, "--journal", url,
                            "--json"], capture_output=True, text=True, check=True).stdout
    no_secret(shown)
    assert "[REDACTED]" in shown and not [v for v in [*SECRETS.values(), basic] if v in shown]


def test_a_failure_reason_echoing_a_credential_is_masked_in_the_printed_events(server: ScriptedServer,
                                                                              tmp_path: Path) -> None:
    key = SECRETS["CAPSTATE_HELLGATE_API_KEY"]
    url = journal_of(tmp_path, write(tmp_path / "h.jsonl", authorized("hellgate", HG_ID, 5000, "EUR")))
    server.on("POST", f"/payments/{HG_ID}/capture", Reply(200, {
        "id": HG_ID, "status": "failed", "currency_code": "EUR", "amount": {"authorized": 5000},
        "failure_reasons": [{"classifier": "gateway", "message": f"upstream said: X-API-Key {key} is suspended"}]}))
    out = run("--journal", url, "--payment", HG_ID, "--credentials", credentials_file(tmp_path, "hellgate", server.url))
    # Declined by the provider: exit 1 (before, 0 "done"), with the events still printed and recorded.
    assert out.returncode == 1 and "capture FAILED at hellgate: gateway: upstream said" in out.stderr, out.stderr
    failed = [json.loads(line) for line in out.stdout.splitlines()][-1]
    assert failed["type"] == "capture_failed" and failed["reason"] == ("gateway: upstream said: X-API-Key "
                                                                       "[REDACTED] is suspended")
    assert key not in out.stdout + out.stderr
    state = journal_state(url, HG_ID)
    # The intent failed (the same key may try again), and the journal holds the declined capture.
    assert [i.status.value for i in state.intents] == ["failed"] and state.base.captured == 0


@pytest.mark.parametrize("as_json", [False, True])
def test_a_gateway_that_captured_more_than_asked_is_said_plainly(server: ScriptedServer, tmp_path: Path,
                                                                 as_json: bool) -> None:
    # "If PG not supporting partial capture, full capture will be done" (api_list/capture_payment.md). Before: exit
    # 0 with "warning: REMAINDER_HELD: the capture leaves 29900 ... held" beside "captured 49900 of 49900".
    from test_client import script_by_action

    url = journal_of(tmp_path, write(tmp_path / "p.jsonl", authorized("pipwave", "ORDER-1", 49900, "MYR")))
    script_by_action(server, "/payment", {
        "capture-payment": [Reply(200, {"status": 200, "message": "ok"})],
        "requery": [Reply(200, {"status": 200, "transaction_status": 10, "amount": "499.00", "final_amount": "499.00",
                                "currency_code": "MYR"})]})
    out = run("--journal", url, "--payment", "ORDER-1", "--amount", "20000",
              *(["--json"] if as_json else []), "--credentials", credentials_file(tmp_path, "pipwave",
                                                                                   server.url + "/payment", "url"))
    assert out.returncode == 3, out.stderr
    assert "REMAINDER_HELD" not in out.stdout + out.stderr
    assert "captured 49900 MYR (499.00), MORE than the 20000 MYR (200.00) asked" in out.stderr
    assert "29900 MYR (299.00) more than the 20000 MYR (200.00) asked" in out.stderr.splitlines()[-1]
    if as_json:
        doc = json.loads(out.stdout)
        assert (doc["asked"], doc["over_captured"], doc["payment"]["captured"]) == (20000, 29900, 49900)
        assert doc["intent"]["amount"] == 20000 and doc["intent"]["status"] == "done"
        # The one prediction left is the one that came true: the gateway captured in full.
        assert [w["code"] for w in doc["decision"]["warnings"]] == ["PARTIAL_MAY_BECOME_FULL"]
    else:
        assert [json.loads(line)["amount"] for line in out.stdout.splitlines()] == [49900]
    # The journal holds what the gateway did, not what was asked: nothing is capturable any more.
    assert journal_state(url, "ORDER-1").base.captured == 49900


def test_a_dry_run_never_writes_onto_its_history(server: ScriptedServer, tmp_path: Path) -> None:
    # A dry run's curl appended to the history it was decided from ('>>' onto an input) is refused, and so is
    # sending from a history at all: the journal records what was sent (`capstate journal export` prints it).
    history = tmp_path / "h.jsonl"
    history.write_text(VIPPS_HISTORY.read_text())
    before = history.read_text()
    server.on("POST", "/epayment/v1/payments/order-10001/capture", Reply(200, vipps_body(75000)))
    base = [sys.executable, "-m", "capstate", "capture", "--provider", "vipps", "--history", str(history),
            "--amount", "50000", "--key", "ship-2", "--at", AT]
    env = {**os.environ, **SECRETS, **PUBLIC, "CAPSTATE_VIPPS_BASE_URL": server.url}
    with open(history, "a") as out:
        dry = subprocess.run([*base, "--dry-run"], stdout=out, stderr=subprocess.PIPE, text=True, env=env, check=False)
    assert dry.returncode == 2 and "refusing to write over an input" in dry.stderr and history.read_text() == before
    with open(history, "a") as out:
        sent = subprocess.run(base, stdout=out, stderr=subprocess.PIPE, text=True, env=env, check=False)
    assert sent.returncode == 2 and "--journal" in sent.stderr and history.read_text() == before
    assert server.requests == []


def test_execute_hellgate_waits_for_the_asynchronous_capture(server: ScriptedServer, tmp_path: Path) -> None:
    url = journal_of(tmp_path, write(tmp_path / "h.jsonl", authorized("hellgate", HG_ID, 5000, "EUR")))

    def body(status: str, captured: int | None = None) -> dict[str, Any]:
        amount: dict[str, Any] = {"authorized": 5000, **({"captured": captured} if captured is not None else {})}
        return {"id": HG_ID, "status": status, "currency_code": "EUR", "amount": amount}

    server.on("POST", f"/payments/{HG_ID}/capture", Reply(200, body("capturing")))
    server.on("GET", f"/payments/{HG_ID}", Reply(200, body("captured", 5000)))
    out = run("--journal", url, "--payment", HG_ID, "--wait", "--json",
              "--credentials", credentials_file(tmp_path, "hellgate", server.url))
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [e["type"] for e in doc["events"]] == ["capture_requested", "captured"]
    assert doc["payment"]["state"] == "captured" and doc["payment"]["captured"] == 5000 and doc["requests"] == 2
    assert server.received("POST")[0].headers["x-api-key"] == SECRETS["CAPSTATE_HELLGATE_API_KEY"]
    state = journal_state(url, HG_ID)
    assert state.base.captured == 5000 and state.base.pending == 0
    assert [i.status.value for i in state.intents] == ["done"]


def test_the_engine_cli_does_not_import_the_io_layer() -> None:
    code = ("import sys, capstate._cli.main as m; m.build_parser()\n"
            "print(sorted(x for x in sys.modules if x.split('.')[0] == 'httpx' or x.startswith('capstate.providers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT.parent)
    assert out.stdout.strip() == "[]"


def test_the_secret_scan_can_fail() -> None:
    with pytest.raises(AssertionError):
        no_secret("ok", f"token {next(iter(SECRETS.values()))} leaked")
    no_secret("nothing here")
