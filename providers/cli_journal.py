"""The journal's commands (arguments in capstate._cli.journal): journal init|import|ingest|show|pending|export,
reconcile, and capture/cancel/refund with `--journal URL --payment REF`, and `audit --journal URL`.

Exit status of capture, cancel and refund: 0 done (or an identical key already done: nothing sent), 1
refused by capstate or declined by the provider (nothing happened), 2 bad input, 3 the outcome is unknown:
the intent stays open and reserves its amount; run `capstate reconcile`. Every message is one line on
stderr; --json prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import datetime, timedelta
from typing import Any

import orjson
from attrs import evolve

from .._audit import AuditReport, Finding, audit
from .._cli.decision import Basis
from .._cli.history import HistoryError, _open
from .._cli.options import UsageError, check_currency, parse_amount
from .._codes import Code
from .._engine import decide
from .._errors import EventError, ProviderError, RequestError, SignatureError
from .._values import Capture, Decision, Event, Payment
from .cli_capture import (
    EXIT_ATTENTION,
    EXIT_OK,
    EXIT_REFUSED,
    PROG,
    _say,
    _signals_interrupt,
    _warn,
    check_limits,
    load_credentials,
    log_to_stderr,
    report,
)
from .client import CaptureClient, Refused, provider_module
from .journal import DEFAULT_LEASE, IngestReport, Journal, JournalOutcome, OperationFailed, OutcomeUnknown, Source
from .pipwave import Ipn
from .retry import RetryPolicy

_DURATION = re.compile(r"^(\d{1,9})(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
WEBHOOK_SECRET_ENV = "CAPSTATE_VIPPS_WEBHOOK_SECRET"


def parse_duration(text: str, option: str) -> timedelta:
    m = _DURATION.match(text.strip())
    if not m:
        raise UsageError(f"{option} {text!r}: expected a whole number with s, m, h or d (30s, 2m, 1h)")
    return timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])


def _print_json(obj: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE))


def _journal(args: argparse.Namespace, *, lease: timedelta = DEFAULT_LEASE) -> Journal:
    return Journal(getattr(args, "journal", None), lease=lease)


def _verbose(args: argparse.Namespace) -> None:
    if getattr(args, "verbose", False):
        log_to_stderr()


def _client(provider: str, args: argparse.Namespace, environ: Mapping[str, str]) -> CaptureClient:
    """A CaptureClient for `provider` with the command's credentials, timeout and attempts."""
    check_limits(args)
    module = provider_module(provider)
    creds = load_credentials(module, args.credentials, environ)
    retry = RetryPolicy(attempts=args.attempts) if args.attempts is not None else RetryPolicy()
    kwargs: dict[str, Any] = {"timeout": args.timeout} if args.timeout is not None else {}
    return CaptureClient(module, creds, retry=retry, **kwargs)


# ------------------------------------------------------------------------------------ operations


def cmd_capture(args: argparse.Namespace) -> int:
    """`capture --journal URL --payment REF`: the journal's capture (called when either is given)."""
    if args.dry_run:
        raise UsageError("--dry-run decides from --history; the journal executes (drop --journal/--payment)")
    if not args.payment:
        raise UsageError("--payment REF is required with --journal")
    if args.history is not None or args.at is not None or args.sets:
        raise UsageError("--history, --at and --set are for --dry-run; the journal decides from its own events, now")
    amount = parse_amount(args.amount) if args.amount is not None else None
    currency = check_currency(args.currency) if args.currency is not None else None
    return _operate(args, "capture", amount=amount, currency=currency, key=args.key, final=args.final)


def cmd_cancel(args: argparse.Namespace) -> int:
    return _operate(args, "cancel", key=args.key)


def cmd_refund(args: argparse.Namespace) -> int:
    amount = parse_amount(args.amount)
    currency = check_currency(args.currency) if args.currency is not None else None
    return _operate(args, "refund", amount=amount, currency=currency, key=args.key)


def _operate(args: argparse.Namespace, op: str, environ: Mapping[str, str] | None = None, **kw: Any) -> int:
    env = os.environ if environ is None else environ
    _verbose(args)
    check_limits(args)  # before the journal is opened or a credential read
    lease = parse_duration(args.lease, "--lease") if args.lease else DEFAULT_LEASE
    with _journal(args, lease=lease) as journal:
        state = journal.state(args.payment)
        provider = state.base.spec.name
        if getattr(args, "provider", None) not in (None, provider):
            raise UsageError(f"--provider {args.provider}: payment {args.payment!r} is a {provider} payment")
        # Decided before credentials are read: a refusal needs no secret, and sends nothing. A capture is decided
        # by the code `validate --journal` runs (decide_capture over the journal's basis); step (1) decides again
        # under the lock, so a worker that got there first still wins.
        if op == "capture":
            from .._cli.decision import decide_capture

            with journal_basis(args, journal=journal) as basis:
                decision = decide_capture(args, now=journal.now(), basis=basis).decision
            if not decision.allowed:
                return _refused(args, Refused(decision))
        else:
            from .journal._lifecycle import Refuse

            pre = journal.decide(args.payment, _command(op, journal, kw))
            if isinstance(pre, Refuse):
                return _refused(args, Refused(pre.decision))
        with _client(provider, args, env) as client:
            try:
                # SIGTERM and SIGHUP end a send as Ctrl-C does: the intent stays open, the outcome is unknown.
                with _signals_interrupt():
                    if op == "capture":
                        out = journal.capture(args.payment, kw["amount"], client=client, currency=kw["currency"],
                                              key=kw["key"], final=kw["final"])
                    elif op == "cancel":
                        out = journal.cancel(args.payment, client=client, key=kw["key"])
                    else:
                        out = journal.refund(args.payment, kw["amount"], client=client, currency=kw["currency"],
                                             key=kw["key"])
            except Refused as exc:
                return _refused(args, exc)
            except RequestError as exc:
                raise UsageError(f"cannot build the request: {exc}") from None
            except OperationFailed as exc:
                if args.json:
                    _print_json({"sent": True, "intent": exc.intent.to_dict(), "error": str(exc)})
                _say(f"{PROG}: error: {exc}")
                return EXIT_REFUSED
            except OutcomeUnknown as exc:
                if args.json:
                    _print_json({"sent": True, "intent": exc.intent.to_dict(), "error": str(exc)})
                _say(f"{PROG}: error: {exc}")
                return EXIT_ATTENTION
            except KeyboardInterrupt:
                _say(f"{PROG}: error: interrupted while sending; the outcome is UNKNOWN and the intent stays open: "
                     f"run `capstate reconcile` once its lease has run out")
                return EXIT_ATTENTION
            if op == "capture" and out.answer is not None and out.before is not None:
                return _captured(args, journal, client, out)
        return _report(args, op, out)


def _captured(args: argparse.Namespace, journal: Journal, client: CaptureClient, out: JournalOutcome) -> int:
    """A capture that was sent: the report `capture` has always printed (over-capture, a declined Hellgate
    capture, a failed release), with the intent; `--wait` polls an asynchronous capture and records it."""
    assert out.answer is not None and out.before is not None
    answer = out.answer
    extra = {"intent": out.intent.to_dict() if out.intent is not None else None, "replayed": False}
    tag = f" (intent #{out.intent.seq})" if out.intent is not None else ""
    if answer.decision is not None and out.intent is not None and not out.intent.caller_key:
        # The journal keys every intent (its identity); that a provider without keys ignores one the caller
        # never gave is no news to the caller.
        kept = tuple(w for w in answer.decision.warnings if w.code is not Code.IDEMPOTENCY_KEY_UNUSED)
        answer = evolve(answer, decision=evolve(answer.decision, warnings=kept))
    if answer.decision is not None:
        _warn(answer.decision, answer)
    if getattr(args, "wait", False) and not answer.settled:
        try:
            with _signals_interrupt():
                refreshed = journal.refresh(args.payment, client)
        except (ProviderError, KeyboardInterrupt) as exc:
            # The capture WAS requested and is in the journal: print its events, then say the wait did not end.
            report(args, client, out.before, answer, extra=extra, tag=tag)
            why = str(exc) if isinstance(exc, ProviderError) else "interrupted"
            _say(f"{PROG}: error: the capture was requested, but waiting for its result failed: {why}; "
                 f"`capstate reconcile` reads it again")
            return EXIT_ATTENTION
        if refreshed is not None:
            answer = evolve(refreshed, events=answer.events + refreshed.events, decision=answer.decision,
                            sends=answer.sends + refreshed.sends)
    return report(args, client, out.before, answer, extra=extra, tag=tag)


@contextmanager
def journal_basis(args: argparse.Namespace, *, journal: Journal | None = None) -> Iterator[Basis]:
    """The journal's payment `--payment REF` as `decide_capture` decides against it: its events plus the
    reservations of open intents, judged by `_lifecycle.begin`, the rule `capture --journal` runs under its
    lock (an open intent is CAPTURE_IN_FLIGHT or OPERATION_IN_FLIGHT; a caller's key is checked against the
    intents; a key is derived from the intent's sequence). Opened read-only unless `journal` is given:
    nothing is written, nothing is sent."""
    from .._cli.history import Replayed
    from .journal._lifecycle import Refuse, Start, begin, reserved_view

    with ExitStack() as stack:
        if journal is None:
            journal = stack.enter_context(Journal(getattr(args, "journal", None), readonly=True))
        state, records = journal.snapshot(args.payment)
        spec = state.base.spec
        if getattr(args, "provider", None) is not None and args.provider.lower() != spec.name:
            raise UsageError(f"--provider {args.provider}: payment {args.payment!r} is a {spec.name} payment")
        view = reserved_view(state)
        latest = max((r.event.at for r in records), default=state.base.authorized_at)
        lease, owner = journal.lease, journal.owner

        def judge(payment: Payment, given: Capture) -> tuple[Decision, bool]:
            step = begin(state, given, now=given.at, lease=lease, owner=owner)
            if isinstance(step, Refuse | Start) or step.decision is not None:
                assert step.decision is not None
                return step.decision, given.key is None and getattr(step.decision.command, "key", None) is not None
            # The caller's key is an intent already done: the engine sees its event under that key (a replay).
            assert step.intent is not None
            return decide(payment, evolve(given, key=step.intent.key)), False

        opened = state.open_intents()
        origin = f"journal {journal.url}: {len(records)} event(s), {len(opened)} open intent(s)" + "".join(
            f"; #{i.seq} {i.op} {i.amount} {i.status.value}" for i in opened)
        yield Basis(spec, Replayed(view, len(records), latest or journal.now(), 0), judge, origin)


def _command(op: str, journal: Journal, kw: dict[str, Any]) -> Any:
    """The cancel or refund the options describe (a capture is decided by decide_capture)."""
    from .._values import Cancel, Refund

    if op == "cancel":
        return Cancel(at=journal.now(), key=kw["key"])
    return Refund(at=journal.now(), amount=kw["amount"], currency=kw["currency"], key=kw["key"])


def _refused(args: argparse.Namespace, exc: Refused) -> int:
    from .._cli import payloads

    if args.json:
        _print_json({"sent": False, "decision": payloads.decision(exc.decision)})
    _say(f"{PROG}: {exc}; nothing was sent")
    return EXIT_REFUSED


def _report(args: argparse.Namespace, op: str, out: JournalOutcome) -> int:
    p = out.payment
    intent = out.intent
    if args.json:
        _print_json({"sent": out.sent, "replayed": out.replayed, "intent": intent.to_dict() if intent else None,
                     "events": [e.to_dict() for e in out.events], "payment": p.summary(), "pending": p.pending,
                     "release_error": out.release_error})
    else:
        for event in out.events:
            sys.stdout.buffer.write(event.to_json() + b"\n")
    what = "already done under this key: nothing sent" if out.replayed else ", ".join(
        f"{e.type.value} {e.amount}" for e in out.events) or "done"
    seq = f" (intent #{intent.seq})" if intent is not None else ""
    _say(f"{PROG}: {p.spec.name} {p.reference}: {op}{seq}: {what}; now {p.state}: captured {p.captured} of "
         f"{p.authorized}")
    if out.release_error is not None:
        _say(f"{PROG}: error: the capture succeeded, but releasing the remainder failed: {out.release_error}")
        return EXIT_ATTENTION
    return EXIT_OK


# ------------------------------------------------------------------------------------- reconcile


def cmd_reconcile(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    older = parse_duration(args.older_than, "--older-than")
    _verbose(args)
    with _journal(args) as journal, ExitStack() as stack:
        # Clients only for the providers with work: intents due for recovery and payments in flight, both read
        # through indexes (never a scan of every payment). A provider whose intents are due needs credentials.
        due = {provider for _, provider in journal.due(older)}
        polled = {provider for _, provider in journal.in_flight()}
        clients: dict[str, CaptureClient] = {}
        missing: dict[str, str] = {}
        for name in sorted(due | polled):
            try:
                clients[name] = stack.enter_context(_client(name, args, env))
            except UsageError as exc:
                if name in due:
                    missing[name] = str(exc)
        done = journal.recover(clients, older_than=older)
        left = journal.pending()
    now = journal.now()
    # Settled means: nothing unknown, and nothing pending past its lease (a live worker's intent is not stuck).
    stuck = [i for i in left if i.status.value == "unknown" or i.lease_until <= now - older]
    results = [{"payment": r.intent.payment, "seq": r.intent.seq, "op": r.intent.op, "status": r.intent.status.value,
                "action": r.action, "message": r.message} for r in done]
    if args.json:
        _print_json({"recovered": results, "open": [i.to_dict() for i in left],
                     "no_credentials": missing})
    else:
        for r in done:
            _say(f"{PROG}: {r.intent.payment} intent #{r.intent.seq} ({r.intent.op} {r.intent.amount}): {r.action}: "
                 f"{r.message}")
        for name, why in missing.items():
            _say(f"{PROG}: error: cannot reconcile {name} intents: {why}")
        _say(f"{PROG}: reconcile: {len(done)} handled, {len(left)} still open")
    return EXIT_REFUSED if (missing or stuck) else EXIT_OK


# --------------------------------------------------------------------------------------- journal


def cmd_journal(args: argparse.Namespace) -> int:
    handlers = {"init": _init, "import": _import, "ingest": _ingest, "show": _show, "pending": _pending,
                "export": _export}
    return handlers[args.action](args)


def _init(args: argparse.Namespace) -> int:
    from .journal._schema import VERSION

    with _journal(args) as journal:
        if args.json:
            _print_json({"journal": journal.url, "schema": VERSION})
        else:
            _say(f"{PROG}: journal {journal.url} ready (schema version {VERSION})")
    return EXIT_OK


def _lines(source: str) -> Iterator[tuple[int, bytes]]:
    try:
        with _open(source) as stream:
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    yield number, line
    except HistoryError as exc:
        raise UsageError(str(exc)) from None


def _import(args: argparse.Namespace) -> int:
    total = IngestReport()
    with _journal(args) as journal:
        for source in args.files:
            items: list[Event | dict[str, Any]] = []
            rejected: list[tuple[str, str]] = []
            if args.fmt == "vipps-events":
                from .vipps.events import BadRecord, records

                try:
                    with _open(source) as stream:
                        for number, item in records(stream):
                            if isinstance(item, BadRecord):
                                rejected.append((f"{source}:{number}", item.message))
                            else:
                                items.append(item)
                except HistoryError as exc:
                    raise UsageError(str(exc)) from None
            else:
                for number, line in _lines(source):
                    try:
                        items.append(Event.from_json(line))
                    except EventError as exc:
                        rejected.append((f"{source}:{number}", str(exc)))
            report = journal.ingest(items, source=Source.IMPORT, provider=args.provider or
                                    ("vipps" if args.fmt == "vipps-events" else None))
            total = IngestReport(total.recorded + report.recorded, total.duplicates + report.duplicates,
                                 total.findings + report.findings, total.rejected + tuple(rejected) + report.rejected)
    return _ingested(args, total)


def _ingested(args: argparse.Namespace, report: IngestReport) -> int:
    if args.json:
        _print_json({"recorded": report.recorded, "duplicates": report.duplicates,
                     "findings": [{"payment": p, "code": c, "note": n} for p, c, n in report.findings],
                     "rejected": [{"where": w, "error": e} for w, e in report.rejected]})
    else:
        for where, error in report.rejected:
            _say(f"{PROG}: rejected {where}: {error}")
        for payment, code, note in report.findings:
            _say(f"{PROG}: recorded with a finding: {payment}: {code}: {note}")
        _say(f"{PROG}: {report.recorded} recorded, {report.duplicates} already there, {len(report.findings)} "
             f"finding(s), {len(report.rejected)} rejected")
    return EXIT_REFUSED if report.rejected else EXIT_OK


def _read_all(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        with open(source, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror or exc}") from None


def _ingest(args: argparse.Namespace) -> int:
    body = _read_all(args.body)
    with _journal(args) as journal:
        if args.fmt == "canonical":
            try:
                events = [Event.from_json(line) for line in body.splitlines() if line.strip()]
            except EventError as exc:
                raise UsageError(f"{args.body}: {exc}") from None
            return _ingested(args, journal.ingest(events, source=Source.WEBHOOK))
        if args.fmt == "pipwave-ipn":
            return _ingested(args, journal.ingest([_verified_ipn(args, body, journal.now())], source=Source.WEBHOOK))
        secret = os.environ.get(WEBHOOK_SECRET_ENV)
        if not secret:
            raise UsageError(f"a Vipps webhook is verified with its secret: set {WEBHOOK_SECRET_ENV}")
        if not args.headers or not args.target:
            raise UsageError("--format vipps-webhook needs --headers FILE (JSON) and --target PATH")
        try:
            headers = orjson.loads(_read_all(args.headers))
        except orjson.JSONDecodeError:
            raise UsageError(f"--headers {args.headers}: not a JSON object") from None
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise UsageError(f"--headers {args.headers}: expected a JSON object of strings")
        try:
            report = journal.ingest_vipps_webhook(body, headers=headers, secret=secret, path_and_query=args.target)
        except SignatureError as exc:
            raise UsageError(f"webhook rejected: {exc}") from None
        return _ingested(args, report)


def _verified_ipn(args: argparse.Namespace, body: bytes, now: datetime) -> Ipn:
    """The IPN in `body`, verified with the merchant's Pipwave credentials (signature, API key, timestamp)."""
    from . import pipwave

    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise UsageError(f"{args.body}: an IPN is a JSON object") from None
    creds = load_credentials(pipwave, getattr(args, "credentials", None), os.environ)
    try:
        return pipwave.verify_ipn(payload, creds, now=now)
    except (SignatureError, ProviderError) as exc:
        raise UsageError(f"IPN rejected: {exc}") from None


def _show(args: argparse.Namespace) -> int:
    with _journal(args) as journal:
        doc = journal.show(args.payment)
    if args.json:
        _print_json(doc)
        return EXIT_OK
    s = doc["summary"]
    _say(f"{PROG}: {doc['payment']} ({doc['provider']}): {s['state']}: authorized {s['authorized']}, captured "
         f"{s['captured']}, cancelled {s['cancelled']}, refunded {s['refunded']}, in flight {doc['pending']}")
    for e in doc["events"]:
        ev = e["event"]
        finding = f"  [{e['finding']}: {e['note']}]" if e["finding"] else ""
        credit = f" intent #{e['intent']}" if e["intent"] is not None else ""
        sys.stdout.write(f"event  {ev['at']}  {ev['type']:<17} {ev.get('amount', ''):>10}  {e['source']}{credit}"
                         f"{finding}\n")
    for d in doc["inbox"]:
        said = f"  [{d['finding']}: {d['note']}]" if d["finding"] else (f"  {d['note']}" if d["note"] else "")
        sys.stdout.write(f"inbox  {d['sent_at']}  {d['provider']} {d['status']}{'  -> event' if d['event'] else ''}"
                         f"{said}\n")
    for i in doc["intents"]:
        sys.stdout.write(f"intent #{i['seq']}  {i['op']:<7} {i['amount']:>10}  {i['status']:<7}  key {i['key']}  "
                         f"attempts {i['attempts']}{'  ' + i['error'] if i['error'] else ''}\n")
    return EXIT_OK


def _pending(args: argparse.Namespace) -> int:
    with _journal(args) as journal:
        left = journal.pending()
    if args.json:
        _print_json({"open": [i.to_dict() for i in left]})
    else:
        for i in left:
            sys.stdout.write(f"{i.payment}  intent #{i.seq}  {i.op} {i.amount}  {i.status.value}  since "
                             f"{i.created_at.isoformat()}  lease until {i.lease_until.isoformat()}\n")
        _say(f"{PROG}: {len(left)} open intent(s)")
    return EXIT_REFUSED if left else EXIT_OK


def _export(args: argparse.Namespace) -> int:
    with _journal(args) as journal:
        for event in journal.export():
            sys.stdout.buffer.write(event.to_json() + b"\n")
    return EXIT_OK


# ------------------------------------------------------------------------------------------ audit


def cmd_audit(args: argparse.Namespace) -> int:
    """`audit --journal URL`: the journal's events, audited, plus INTENT_UNSETTLED and OUT_OF_BAND findings,
    reported as `capstate audit` reports files: the input named (the journal's URL, never its password) with
    the size and sha256 of the events it exported, which are exactly the bytes audited."""
    import hashlib
    import shutil
    import time

    from .._cli import audit_text
    from .._cli.audit import EXIT_CLEAN, EXIT_VIOLATIONS, TERMINAL_LIMIT, notes, to_json
    from .._cli.audit_meta import InputInfo, RunInfo, capstate_version, describe_specs, now, stamp

    started, clock = now(), time.perf_counter()
    if args.files:
        raise UsageError("give FILE... or --journal URL, not both")
    with _journal(args) as journal:
        events = list(journal.export())
        base = audit(events, None, source=journal.url)
        extra = list(_journal_findings(journal))
        url = journal.url
    report = _merged(base, extra)
    data = b"".join(event.to_json() + b"\n" for event in events)
    run = RunInfo(capstate_version(), stamp(started), round(time.perf_counter() - clock, 3),
                  (InputInfo(url, "journal", len(data), hashlib.sha256(data).hexdigest()),),
                  report.as_of, False, (), describe_specs(report.providers, None, None), args.settled_window)
    if args.json:
        _print_json(to_json(report, run, notes(report, run, None)))
    else:
        tty = sys.stdout.isatty()
        limit = args.limit if args.limit is not None else (TERMINAL_LIMIT if tty else None)
        width = shutil.get_terminal_size((80, 24)).columns if tty else None
        sys.stdout.write("\n".join(audit_text.render(report, run, notes(report, run, limit), limit=limit,
                                                      width=width)) + "\n")
    return EXIT_VIOLATIONS if report.violations else EXIT_CLEAN


def _journal_findings(journal: Journal) -> Iterator[Finding]:
    for intent in journal.unsettled():
        yield Finding(intent.payment, 0, journal.url, Code.INTENT_UNSETTLED,
                      f"intent #{intent.seq} ({intent.op} {intent.amount}, key {intent.key}) is {intent.status.value} "
                      f"past its lease ({intent.lease_until.isoformat()}): run `capstate reconcile`",
                      intent.created_at.isoformat())
    for kept in journal.inbox():
        if kept["finding"] is not None:
            yield Finding(kept["payment"], 0, journal.url, Code(kept["finding"]),
                          f"{kept['provider']} notification {kept['status']}: {kept['note'] or ''}", kept["sent_at"])
    for reference, _ in journal.references():
        for event in journal.show(reference)["events"]:
            if event["finding"] == Code.OUT_OF_BAND.value:
                yield Finding(reference, 0, journal.url, Code.OUT_OF_BAND, event["note"] or "", event["event"]["at"])


def _merged(report: AuditReport, extra: list[Finding]) -> AuditReport:
    from attrs import evolve

    if not extra:
        return report
    violations = tuple(sorted((*report.violations, *extra), key=lambda f: (f.payment or "", f.line, f.code.value)))
    counts: dict[str, int] = {}
    for f in violations:
        counts[f.code.value] = counts.get(f.code.value, 0) + 1
    return evolve(report, violations=violations, counts=counts)


__all__ = ["cmd_audit", "cmd_cancel", "cmd_capture", "cmd_journal", "cmd_reconcile", "cmd_refund"]
