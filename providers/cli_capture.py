"""`capstate capture`: the dry run, and what the journal's capture shares with it (credentials, the report).

The engine's CLI imports this module only when the command runs, so `capstate validate` and the core
never load httpx or a provider module.

- `--dry-run --provider NAME --history FILE` decides one capture from a payment's history and prints the
  exact request(s) as curl commands, shell-quoted, with credentials masked. A final Vipps capture prints
  two: the capture, then the cancel that releases the remainder. Nothing is sent.
- Sending goes through the journal (`--journal URL --payment REF`, capstate.providers.cli_journal), which
  writes an intent before the request leaves; it prints with `report` below: the canonical events the
  provider proved as JSONL on stdout, a one-line summary on stderr.
- Credentials come from the environment, `CAPSTATE_<PROVIDER>_<FIELD>` (CAPSTATE_VIPPS_ACCESS_TOKEN,
  ...), or from `--credentials FILE` (TOML or JSON; a `[vipps]` table or top-level keys); the
  environment wins. Never from arguments, where `ps` and shell history would show them.

Exit status of a sent capture: 0 done (for Hellgate: capture requested, or settled with --wait); 1 refused by
capstate or declined by the provider, nothing happened; 2 bad input; 3 needs attention: the outcome is unknown
(run `capstate reconcile`; also after Ctrl-C or SIGTERM while sending), a final capture succeeded but its
remainder was not released, the provider captured MORE than asked (a Pipwave gateway without partial capture;
the events say what it did), or `--wait` could not read the result of a requested capture.

Everything printed to stderr is one line per message, with control characters from provider answers or
the history escaped (`\x1b`), so an answer cannot drive the operator's terminal.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import shlex
import signal
import stat
import sys
import threading
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

from .._bom import strip_bom
from .._cli import payloads
from .._cli.decision import capture_command, decide_capture
from .._cli.options import UsageError
from .._codes import Code
from .._engine import apply
from .._errors import CommandError, RequestError
from .._money import to_major_string
from .._time import format_instant
from .._values import Cancel, Capture, Decision, EventType, Payment, PolicyWarning
from ._http import MASK, HttpRequest, Secret
from .client import CaptureClient, Outcome, Refused, provider_module

PROG = "capstate"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_ATTENTION = 0, 1, 2, 3
ENV_PREFIX = "CAPSTATE_"
MAX_TIMEOUT = 600  # seconds a single request may take; a capture that slow has failed
MAX_ATTEMPTS = 20  # sends of one capture, so a run always ends (back-off is capped at 8 s each)


# ---------------------------------------------------------------------------------------- credentials


def _is_secret(f: attrs.Attribute[Any]) -> bool:
    # Provider modules keep every credential out of repr, and most type it as Secret.
    return not f.repr or f.type in ("Secret", Secret)


def env_name(provider: str, field: str) -> str:
    """CAPSTATE_VIPPS_ACCESS_TOKEN for ("vipps", "access_token")."""
    return f"{ENV_PREFIX}{provider.upper()}_{field.upper()}"


def credential_fields(module: ModuleType) -> list[tuple[str, bool, bool]]:
    """(field, secret, required) for a provider's Credentials class, in declaration order."""
    return [(f.name, _is_secret(f), f.default is attrs.NOTHING) for f in attrs.fields(module.Credentials)]


def _read_file(path: str, provider: str) -> dict[str, Any]:
    try:
        raw = strip_bom(Path(path).read_bytes())
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise UsageError(f"--credentials {path}: {exc.strerror or exc}") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        sys.stderr.write(f"{PROG}: warning: --credentials {path} is readable by other users (chmod 600 it)\n")
    try:
        data: Any = json.loads(raw) if path.endswith(".json") else tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        # The decoder's message may quote the file's text, which holds secrets: give the position only.
        where = f" (line {exc.lineno})" if hasattr(exc, "lineno") else ""
        kind = "JSON" if path.endswith(".json") else "TOML"
        raise UsageError(f"--credentials {path}: not valid {kind}{where}") from None
    if not isinstance(data, dict):
        raise UsageError(f"--credentials {path}: expected a table of credentials")
    section = data.get(provider)
    return section if isinstance(section, dict) else data


def load_credentials(module: ModuleType, path: str | None, environ: Mapping[str, str], *,
                     placeholders: bool = False) -> Any:
    """The provider's Credentials from `path` and the environment (which wins).

    With `placeholders` (--dry-run), a missing secret becomes a masked stand-in: the printed request masks
    it anyway. A missing non-secret field (a merchant number, a base URL without a default) is an error
    in both modes, because the request depends on it. Raises UsageError; messages never echo a secret.
    """
    name: str = module.NAME
    fields = credential_fields(module)
    known = {f for f, _, _ in fields}
    values: dict[str, Any] = {}
    if path is not None:
        from_file = _read_file(path, name)
        unknown = sorted(set(from_file) - known - {"bambora", "hellgate", "pipwave", "vipps"})
        if unknown:
            raise UsageError(f"--credentials {path}: unknown field(s) {', '.join(unknown)} for {name} "
                             f"(expected {', '.join(sorted(known))})")
        values.update({k: v for k, v in from_file.items() if k in known})
    for field, _, _ in fields:
        value = environ.get(env_name(name, field))
        if value is not None:
            values[field] = value
    missing = []
    for field, secret, required in fields:
        value = values.get(field)
        if value is not None and not isinstance(value, str):
            raise UsageError(f"credentials: {field} must be a string, got {type(value).__name__}")
        if value is None and required:
            if secret and placeholders:
                values[field] = Secret(MASK)
            else:
                missing.append(field)
    if missing:
        hint = ", ".join(env_name(name, f) for f in missing)
        raise UsageError(f"{name} credentials missing: {', '.join(missing)} (set {hint}, or give --credentials FILE)")
    try:
        return module.Credentials(**values)
    except (RequestError, ValueError, TypeError) as exc:
        # RequestError names the field and never echoes a secret's value.
        raise UsageError(f"{name} credentials: {exc}") from None


# -------------------------------------------------------------------------------------------- curl


def curl(request: HttpRequest) -> str:
    """The request as one curl command, credentials masked, every word shell-quoted."""
    shown = request.redacted()
    words = ["curl", "--request", shown.method, "--url", shown.url]
    for name, value in shown.headers:
        words += ["--header", f"{name}: {value}"]
    if shown.body:
        words += ["--data-raw", shown.body.decode("utf-8")]
    return " ".join(shlex.quote(w) for w in words)


def _request_json(request: HttpRequest) -> dict[str, Any]:
    shown = request.redacted()
    return {"method": shown.method, "url": shown.url, "headers": [list(h) for h in shown.headers],
            "body": shown.body.decode("utf-8"), "curl": curl(request)}


# --------------------------------------------------------------------------------------------- run


def _money(amount: int | None, currency: str | None) -> str:
    if amount is None or currency is None:
        return str(amount)
    return f"{amount} {currency} ({to_major_string(amount, currency)})"


# C0 and C1 controls, shown escaped: a provider's error text, a proxy's page and a history's payment id are
# untrusted, and ESC sequences in them must not recolour, retitle or clear the operator's terminal.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def _one_line(text: str) -> str:
    return " ".join(text.splitlines()).translate(_CONTROLS)


def _say(text: str) -> None:
    sys.stderr.write(_one_line(text) + "\n")


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _one_line(super().format(record))


def _warn(decision: Decision, out: Outcome | None = None) -> None:
    for w in _still_true(decision, out):
        _say(f"{PROG}: warning: {w.code.value}: {w.message}")


def _still_true(decision: Decision, out: Outcome | None) -> tuple[PolicyWarning, ...]:
    """The decision's warnings that the provider's answer has not made false. They were predicted before the
    send: a gateway that captured in full left no remainder to hold (REMAINDER_HELD), and a release that
    failed released nothing (REMAINDER_RELEASED; its error is reported on its own line)."""
    if out is None:
        return decision.warnings
    stale = set()
    if out.payment.remainder == 0:
        stale.add(Code.REMAINDER_HELD)
    if out.release_error is not None:
        stale.add(Code.REMAINDER_RELEASED)
    return tuple(w for w in decision.warnings if w.code not in stale)


def _decision_json(decision: Decision, out: Outcome | None = None) -> dict[str, Any]:
    doc = payloads.decision(decision)
    kept = {w.code.value for w in _still_true(decision, out)}
    doc["warnings"] = [w for w in doc.get("warnings", []) if w.get("code") in kept]
    return doc


def _print_json(obj: Any) -> None:
    sys.stdout.buffer.write(payloads.dumps(obj))


def _refused(args: argparse.Namespace, exc: Refused) -> int:
    if args.json:
        _print_json({"sent": False, "decision": _decision_json(exc.decision)})
    _say(f"{PROG}: {exc}; nothing was sent")
    return EXIT_REFUSED


def _dry_run(args: argparse.Namespace, client: CaptureClient, payment: Payment, command: Capture) -> int:
    decision, request = client.prepare(payment, command)
    requests = [request]
    cmd = decision.command
    if (isinstance(cmd, Capture) and cmd.final and decision.event is not None
            and payment.spec.policy.remainder == "reserved_until_cancel"):
        # Vipps releases the remainder only by a separate cancel, sent after the capture succeeds.
        after_capture = apply(payment, decision.event)
        if after_capture.capturable > 0:
            requests.append(client.prepare(after_capture, Cancel(at=cmd.at))[1])
    if decision.event is None:
        sys.stderr.write(f"{PROG}: the key {cmd.key!r} already succeeded for this capture: nothing would be sent\n")
        requests = []
    _warn(decision)
    if args.json:
        _print_json({"sent": False, "decision": _decision_json(decision),
                     "requests": [_request_json(r) for r in requests]})
    else:
        for i, r in enumerate(requests):
            if i:
                sys.stdout.write("# then, once the capture succeeded, release the remainder:\n")
            sys.stdout.write(curl(r) + "\n")
    return EXIT_OK


def report(args: argparse.Namespace, client: CaptureClient, before: Payment, out: Outcome, *,
           extra: Mapping[str, Any] | None = None, tag: str = "") -> int:
    """Print what a sent capture did (events as JSONL on stdout, or one --json object with `extra` merged in;
    one summary line on stderr, `tag` after the reference) and return the exit status."""
    p = out.payment
    asked = getattr(out.decision.command, "amount", None) if out.decision is not None else None
    # A capture the provider declined after accepting it (Hellgate `failed`): its events are printed (they belong
    # in the history), but nothing was captured, and exit 0 would say it was done.
    failed = [e for e in out.events if e.type is EventType.CAPTURE_FAILED] if p.captured == before.captured else []
    if args.json:
        _print_json({"sent": out.sends > 0, "decision": _decision_json(out.decision, out) if out.decision else None,
                     "events": [e.to_dict() for e in out.events], "payment": p.summary(), "pending": p.pending,
                     "http_status": out.response.status if out.response is not None else None,
                     "requests": out.sends, "reconciled": out.reconciled, "asked": asked,
                     "over_captured": out.excess,
                     "release_error": str(out.release_error) if out.release_error else None, **(extra or {})})
    else:
        for event in out.events:
            sys.stdout.buffer.write(event.to_json() + b"\n")
    status = f"HTTP {out.response.status}" if out.response is not None else "nothing sent"
    how = " (observed by reading the payment back)" if out.reconciled else ""
    if p.pending:
        what = f"capture of {_money(p.pending, p.currency)} requested, still in flight at {client.provider}"
    elif out.excess:
        what = (f"captured {_money(p.captured - before.captured, p.currency)}, MORE than the "
                f"{_money(asked, p.currency)} asked")
    elif p.captured > before.captured:
        what = f"captured {_money(p.captured - before.captured, p.currency)}"
    elif failed:
        what = f"capture FAILED at {client.provider}: {failed[-1].reason or 'no reason given'}"
    elif out.events:
        what = ", ".join(e.type.value for e in out.events)
    else:
        what = "no change"
    _say(f"{PROG}: {client.provider} {before.reference}{tag}: {what}{how}; {status}, {out.sends} "
         f"request(s); now {p.state}: captured {p.captured} of {p.authorized}")
    if out.excess:
        # The customer was charged more than the merchant meant: an operator must look (refund the difference?).
        _say(f"{PROG}: warning: {client.provider} captured {_money(out.excess, p.currency)} more than the "
             f"{_money(asked, p.currency)} asked; the customer was charged the difference: refund it unless it "
             f"was meant")
        code = EXIT_ATTENTION
    else:
        code = EXIT_REFUSED if failed else EXIT_OK
    if out.release_error is not None:
        _say(f"{PROG}: error: the capture succeeded, but releasing the remainder failed: {out.release_error}")
        return EXIT_ATTENTION
    return code


# SIGTERM (a service manager or `kill` stopping the run) and SIGHUP (its terminal closed) end a capture as
# surely as Ctrl-C does, and a request may be on the wire just the same: the outcome is unknown either way.
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """While sending, SIGTERM and SIGHUP raise KeyboardInterrupt, so they print the same "outcome UNKNOWN" line
    and exit 3 that Ctrl-C does, instead of dying silently mid-request. A signal someone chose to ignore
    (nohup) stays ignored; handlers can only be set from the main thread, so elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    for s, handler in previous.items():
        if handler is signal.SIG_DFL:
            signal.signal(s, _stop)
    try:
        yield
    finally:
        for s, handler in previous.items():
            if handler is signal.SIG_DFL:
                signal.signal(s, handler)


def log_to_stderr() -> None:
    """--verbose: each request by method and URL, each retry and read-back, one line each on stderr; never
    headers or bodies."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter(f"{PROG}: %(message)s"))
    logging.getLogger("capstate.providers").addHandler(handler)
    logging.getLogger("capstate.providers").setLevel(logging.INFO)


def check_limits(args: argparse.Namespace) -> None:
    """--timeout and --attempts within bounds, before credentials are read or anything is sent."""
    if args.timeout is not None and not 0 < args.timeout <= MAX_TIMEOUT:
        # inf or 1e12 would reach the socket and fail there (OverflowError), after credentials were read.
        raise UsageError(f"--timeout {args.timeout:g}: must be > 0 and at most {MAX_TIMEOUT} seconds")
    if args.attempts is not None and not 1 <= args.attempts <= MAX_ATTEMPTS:
        # Vipps allows 5 modifications a minute per reference (operations/README.md): more sends only wait.
        raise UsageError(f"--attempts {args.attempts}: must be from 1 to {MAX_ATTEMPTS}")


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Run `capstate capture --dry-run` on parsed arguments: decide from --history, print the request(s).
    Sending goes through the journal (capstate.providers.cli_journal), never from a history file."""
    env = os.environ if environ is None else environ
    if not args.dry_run:
        raise UsageError("--history is for --dry-run only; to send, use --journal URL --payment REF")
    if args.verbose:
        log_to_stderr()
    capture_command(args)  # the cheap option checks first: a typo never waits for credentials or a history
    check_limits(args)
    sendable = ("bambora", "hellgate", "pipwave", "vipps")
    try:
        module = provider_module(args.provider.lower())  # names in any case, as every command takes them
    except CommandError:
        close = difflib.get_close_matches(args.provider.lower(), sendable, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"--provider {args.provider!r}: capture needs a provider capstate can send to "
                         f"({', '.join(sendable)}){hint}") from None
    # The decision `validate` shows for the same arguments (capstate._cli.decision): the instant (now when
    # --at is not given), the derived key and the reference rules. Decided before credentials are read.
    decided = decide_capture(args)
    history, command, at = decided.history, decided.command, decided.command.at
    if not decided.decision.allowed:
        return _refused(args, Refused(decided.decision))
    if not decided.at_given:
        _say(f"{PROG}: capturing at {format_instant(at)} (now)")
    creds = load_credentials(module, args.credentials, env, placeholders=True)
    # A dry run signs (Pipwave) as of the capture's own time, so its output is reproducible.
    with CaptureClient(module, creds, clock=lambda: at) as client:
        try:
            return _dry_run(args, client, history.payment, command)
        except Refused as exc:
            return _refused(args, exc)
        except RequestError as exc:
            raise UsageError(f"cannot build the request: {exc}") from None
