"""Every provider rule as one table row: the docs sentence it encodes, a payment, a command, the verdict.

Each row quotes the provider documentation (or research/providers.md, which cites it) in its `doc`
field, and that string is the pytest id, so a failure names the sentence that the engine broke. A row
builds a payment with `Payment.authorized_for` (or `Payment.new` for authorize rules), brings it into
shape with a chain of commands (each `decide`d and required to be allowed) and events (`apply`), then
runs `decide` on one command and checks:

- allowed or refused, and the exact set of violation codes;
- the exact set of warning codes;
- for an allowed command, the state and amounts of `after`, and the type of the recorded event;
- for the arithmetic rules, the numbers in the messages.

Expected values are written out by hand from the docs, never computed by the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import capstate
from capstate import (
    Authorize,
    Cancel,
    Capture,
    Code,
    Decision,
    Event,
    EventType,
    Payment,
    Refund,
    decide,
)

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)

# A reference each provider accepts: Vipps ^[a-zA-Z0-9-]{8,50}$, Hellgate a UUIDv4, Bambora any text,
# Pipwave a txn_id.
REFS = {
    "vipps": "order-10001",
    "hellgate": "3f1c2a4e-8b7d-4c1e-9a2b-5d6e7f8a9b0c",
    "bambora": "order-1",
    "pipwave": "TXN-1",
}


def at(days: int = 0, hours: int = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


@dataclass(frozen=True)
class E:
    """An event to `apply` during set-up; the payment reference is filled in from the row."""

    type: str
    amount: int | None = None
    days: int = 0
    currency: str | None = None
    key: str | None = None

    def event(self, reference: str) -> Event:
        return Event(reference, EventType(self.type), at(self.days), self.amount, self.currency, key=self.key)


@dataclass(frozen=True)
class Rule:
    doc: str
    provider: str
    command: Any
    codes: frozenset[str] = frozenset()  # the exact violations; empty means allowed
    warnings: frozenset[str] = frozenset()
    authorized: tuple[int, str] | None = (100000, "NOK")  # None: start from Payment.new (authorize rules)
    reference: str | None = None
    flow: str | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    setup: tuple[Any, ...] = ()
    state: str | None = None  # after.state when allowed
    after: Mapping[str, int] = field(default_factory=dict)  # after.<amount> when allowed
    event: str | None = None  # decision.event.type when allowed ("-": no event, an idempotent replay)
    command_amount: int | None = None  # the normalized command's amount
    messages: tuple[str, ...] = ()  # substrings of the violation and warning messages


def codes(*names: str) -> frozenset[str]:
    return frozenset(names)


def build(rule: Rule) -> Payment:
    spec = capstate.load_spec(rule.provider, overrides=rule.overrides or None)
    reference = rule.reference or REFS[rule.provider]
    if rule.authorized is None:
        payment = Payment.new(spec, reference)
    else:
        amount, currency = rule.authorized
        payment = Payment.authorized_for(spec, reference, amount=amount, currency=currency, at=T0,
                                         flow=rule.flow)
    for step in rule.setup:
        if isinstance(step, E):
            payment = capstate.apply(payment, step.event(reference))
            continue
        d = decide(payment, step)
        assert d.allowed and d.after is not None, f"set-up step {step!r} refused: {d.violations}"
        payment = d.after
    return payment


def check(rule: Rule, d: Decision) -> None:
    assert {str(c) for c in d.codes} == set(rule.codes), d.violations
    assert d.allowed is (not rule.codes)
    assert {str(w.code) for w in d.warnings} == set(rule.warnings), d.warnings
    text = " | ".join(v.message for v in (*d.violations, *d.warnings))
    for needle in rule.messages:
        assert needle in text, f"{needle!r} not in {text!r}"
    if rule.command_amount is not None:
        assert d.command.amount == rule.command_amount
    if not d.allowed:
        assert d.after is None and d.event is None
        return
    assert d.after is not None
    if rule.state is not None:
        assert d.after.state == rule.state
    for name, value in rule.after.items():
        assert getattr(d.after, name) == value, (name, d.after.summary())
    if rule.event == "-":
        assert d.event is None
        assert d.after.summary() == d.before.summary() and d.after.keys == d.before.keys
    elif rule.event is not None:
        assert d.event is not None and d.event.type == EventType(rule.event)


def run(rule: Rule) -> Decision:
    d = decide(build(rule), rule.command)
    check(rule, d)
    return d


def cap(amount: int | None = None, key: str | None = None, *, days: int = 0, hours: int = 0,
        currency: str | None = None, final: bool = False) -> Capture:
    return Capture(at=at(days, hours), amount=amount, currency=currency, key=key, final=final)


def cancel(key: str | None = None, *, amount: int | None = None, days: int = 0, hours: int = 0) -> Cancel:
    return Cancel(at=at(days, hours), amount=amount, key=key)


def refund(amount: int, key: str | None = None, *, days: int = 0, currency: str | None = None) -> Refund:
    return Refund(amount=amount, at=at(days), currency=currency, key=key)


def authorize(amount: int, currency: str, *, flow: str | None = None, key: str | None = None) -> Authorize:
    return Authorize(amount=amount, currency=currency, at=T0, flow=None if flow is None else capstate.Flow(flow),
                     key=key)


def create(amount: int, currency: str) -> Authorize:
    """A Vipps authorize: Idempotency-Key is required on create too (epayment.v1.yml)."""
    return authorize(amount, currency, key="create-1")


# DESIGN.md section 4: "Users override policy numbers for their own contract ... without editing the file".
# An override only takes effect where the spec's transition carries the guard that reads it.
OVERRIDE = "DESIGN.md 4: 'Users override policy numbers for their own contract'"


def ids(rows: list[Rule]) -> list[str]:
    return [r.doc for r in rows]


# ------------------------------------------------------------------------------------------------ vipps
# Vipps MobilePay ePayment: 1000.00 NOK authorized (100000 øre) unless the row says otherwise.

MIN = "deno-sdk types.gen.ts: 'minimum amounts allowed are NOK 100 øre, DKK 1 øre, EUR 1 cent'"
WINDOW = "payment-rules: 'capture within 180 days in Norway, 14 days in Denmark and Finland'"
REF_RULE = "epayment.v1.yml#/components/schemas/Reference: 'pattern ^[a-zA-Z0-9-]{8,50}$'"
KEY_LEN = "branch idempotencykey-length: 'Idempotency-Key minLength 1, maxLength 50'"
REFUND_WINDOW = ("knowledge-base/refund: 'refund all or part of a captured amount for up to 365 days after the payment "
                 "request was approved'")

VIPPS = [
    Rule("capture.md: 'This can be done multiple times' [a second partial capture stays authorized]",
         "vipps", cap(50000, "ship-2"), setup=(cap(25000, "ship-1"),),
         state="authorized", after={"captured": 75000, "cancelled": 0}, event="captured"),
    Rule("reserve-and-capture.md: 'may be called as many times as required while there is a remaining amount "
         "that is reserved' [the exact remainder ends in captured]",
         "vipps", cap(25000, "ship-3"), setup=(cap(25000, "ship-1"), cap(50000, "ship-2")),
         state="captured", after={"captured": 100000, "cancelled": 0}, event="captured"),
    Rule("faq.md: 'Capture amount too high: The total capture amount exceeds the reserved amount'",
         "vipps", cap(80000, "ship-2"), setup=(cap(25000, "ship-1"),),
         codes=codes("EXCEEDS_CAPTURABLE"), messages=("80000", "75000", "100000", "25000")),
    Rule("faq.md: 'Capture amount too high' [cumulative: one øre over after two partial captures]",
         "vipps", cap(25001, "ship-3"), setup=(cap(25000, "ship-1"), cap(50000, "ship-2")),
         codes=codes("EXCEEDS_CAPTURABLE"), messages=("25001", "25000")),
    Rule("providers.md 2.2: 'AUTHORIZED, fully captured: capture no (Capture amount too high)'",
         "vipps", cap(100, "ship-2"), setup=(cap(100000, "ship-1"),),
         codes=codes("EXCEEDS_CAPTURABLE"), messages=("capturable 0",)),
    Rule("cancel.md: 'Cancelling a payment will always cancel the entire remaining not-captured amount, "
         "this is irreversible' [after a partial capture: captured, cancelled == remainder]",
         "vipps", cancel("cancel-1"), setup=(cap(25000, "ship-1"),),
         state="captured", after={"captured": 25000, "cancelled": 75000}, event="cancelled",
         command_amount=75000),
    Rule("providers.md 2.2: 'AUTHORIZED, untouched: cancel yes: X becomes A' [nothing captured -> cancelled]",
         "vipps", cancel("cancel-1"),
         state="cancelled", after={"captured": 0, "cancelled": 100000}, event="cancelled"),
    Rule("cancel.md: 'always cancel the entire remaining not-captured amount' [a partial cancel is refused]",
         "vipps", cancel("cancel-1", amount=10000), setup=(cap(25000, "ship-1"),),
         codes=codes("CANCEL_AMOUNT_INVALID"), messages=("10000", "75000")),
    Rule("faq.md: 'Cannot cancel a captured payment' ('Not possible after full capture')",
         "vipps", cancel("cancel-1"), setup=(cap(100000, "ship-1"),), codes=codes("INVALID_STATE")),
    Rule("faq.md: 'Cannot capture a cancelled payment' [after a partial capture and a cancel]",
         "vipps", cap(1000, "ship-2"), setup=(cap(25000, "ship-1"), cancel("cancel-1")),
         codes=codes("REMAINDER_CANCELLED"), messages=("75000",)),
    Rule("faq.md: 'Cannot capture a cancelled payment' [cancelled with nothing captured]",
         "vipps", cap(1000, "ship-1"), setup=(cancel("cancel-1"),),
         codes=codes("REMAINDER_CANCELLED"), messages=("100000",)),
    Rule("providers.md 2.3: 'Policy: currency must equal the payment currency'",
         "vipps", cap(1000, "ship-1", currency="DKK"), codes=codes("CURRENCY_MISMATCH"),
         messages=("DKK", "NOK")),
    Rule("providers.md 2.3: 'currency must equal the payment currency' [a refund in EUR of a NOK payment]",
         "vipps", refund(1000, "refund-1", currency="EUR"), setup=(cap(25000, "ship-1"),),
         codes=codes("CURRENCY_MISMATCH"), messages=("EUR", "NOK")),
    Rule(f"{MIN} [NOK 99 øre refused at authorize]",
         "vipps", create(99, "NOK"), authorized=None, codes=codes("AMOUNT_INVALID"), messages=("99", "100")),
    Rule(f"{MIN} [NOK 100 øre authorized]",
         "vipps", create(100, "NOK"), authorized=None, state="authorized", after={"authorized": 100},
         event="authorized"),
    Rule(f"{MIN} [a NOK 99 øre partial capture refused]",
         "vipps", cap(99, "ship-1"), codes=codes("AMOUNT_INVALID"), messages=("99", "100")),
    Rule(f"{MIN} [NOK 100 øre captured]",
         "vipps", cap(100, "ship-1"), state="authorized", after={"captured": 100}),
    Rule(f"{MIN} [DKK 1 øre authorized]",
         "vipps", create(1, "DKK"), authorized=None, state="authorized", after={"authorized": 1}),
    Rule(f"{MIN} [DKK 0 refused]",
         "vipps", create(0, "DKK"), authorized=None, codes=codes("AMOUNT_INVALID")),
    Rule(f"{MIN} [EUR 1 cent captured]",
         "vipps", cap(1, "ship-1"), authorized=(10000, "EUR"), state="authorized", after={"captured": 1}),
    Rule(f"{MIN} [EUR 0 refused]",
         "vipps", cap(0, "ship-1"), authorized=(10000, "EUR"), codes=codes("AMOUNT_INVALID")),
    Rule("epayment.v1.yml#/components/schemas/Amount: 'value maximum 65000000' [65000001 refused]",
         "vipps", create(65000001, "NOK"), authorized=None, codes=codes("AMOUNT_INVALID"),
         messages=("65000001", "65000000")),
    Rule("epayment.v1.yml#/components/schemas/Amount: 'value maximum 65000000' [65000000 authorized]",
         "vipps", create(65000000, "NOK"), authorized=None, state="authorized"),
    Rule("epayment.v1.yml#/components/schemas/Currency: 'NOK, DKK, EUR' [SEK refused]",
         "vipps", create(10000, "SEK"), authorized=None, codes=codes("CURRENCY_UNSUPPORTED"),
         messages=("SEK",)),
    Rule(f"{WINDOW} [NOK day 179 captures]",
         "vipps", cap(5000, "ship-1", days=179), state="authorized", after={"captured": 5000}),
    Rule(f"{WINDOW} [NOK exactly 180 days: 'Capture period expired']",
         "vipps", cap(5000, "ship-1", days=180), codes=codes("AUTHORIZATION_EXPIRED"), messages=("180d",)),
    Rule(f"{WINDOW} [NOK cancel at 180 days: 'Cancel period expired']",
         "vipps", cancel("cancel-1", days=180), codes=codes("AUTHORIZATION_EXPIRED")),
    Rule(f"{WINDOW} [DKK 13 days 23 hours captures]",
         "vipps", cap(5000, "ship-1", days=13, hours=23), authorized=(100000, "DKK"), state="authorized"),
    Rule(f"{WINDOW} [DKK exactly 14 days refused]",
         "vipps", cap(5000, "ship-1", days=14), authorized=(100000, "DKK"),
         codes=codes("AUTHORIZATION_EXPIRED"), messages=("14d",)),
    Rule(f"{WINDOW} [EUR (Finland) 13 days 23 hours captures]",
         "vipps", cap(5000, "ship-1", days=13, hours=23), authorized=(100000, "EUR"), state="authorized"),
    Rule(f"{WINDOW} [EUR (Finland) exactly 14 days refused]",
         "vipps", cap(5000, "ship-1", days=14), authorized=(100000, "EUR"),
         codes=codes("AUTHORIZATION_EXPIRED"), messages=("14d",)),
    Rule("epayment.v1.yml: 'header Idempotency-Key is required on capture, cancel and refund' [capture]",
         "vipps", cap(25000), codes=codes("IDEMPOTENCY_KEY_REQUIRED")),
    Rule("epayment.v1.yml: 'header Idempotency-Key is required on capture, cancel and refund' [cancel]",
         "vipps", cancel(), codes=codes("IDEMPOTENCY_KEY_REQUIRED")),
    Rule("epayment.v1.yml: 'header Idempotency-Key is required on capture, cancel and refund' [refund]",
         "vipps", refund(1000), setup=(cap(25000, "ship-1"),), codes=codes("IDEMPOTENCY_KEY_REQUIRED")),
    Rule(f"{KEY_LEN} [51 characters refused]",
         "vipps", cap(25000, "k" * 51), codes=codes("IDEMPOTENCY_KEY_REQUIRED"), messages=("51", "50")),
    Rule(f"{KEY_LEN} [50 characters accepted]",
         "vipps", cap(25000, "k" * 50), state="authorized", after={"captured": 25000}),
    Rule(f"{KEY_LEN} [the empty key refused]",
         "vipps", cap(25000, ""), codes=codes("IDEMPOTENCY_KEY_REQUIRED")),
    Rule("faq.md: 'Capture idempotency conflict: The capture request in an idempotent retry must be identical "
         "to the previous request(s)'",
         "vipps", cap(30000, "ship-1"), setup=(cap(25000, "ship-1"),),
         codes=codes("IDEMPOTENCY_KEY_CONFLICT"), messages=("ship-1", "25000", "30000")),
    Rule("faq.md: 'Refund idempotency conflict' [a capture key reused for a refund]",
         "vipps", refund(25000, "ship-1"), setup=(cap(25000, "ship-1"),),
         codes=codes("IDEMPOTENCY_KEY_CONFLICT")),
    Rule("http-headers.md: a retry with the same key 'will not cause a duplicate' [identical partial capture]",
         "vipps", cap(25000, "ship-1"), setup=(cap(25000, "ship-1"),),
         warnings=codes("IDEMPOTENT_REPLAY"), state="authorized", after={"captured": 25000}, event="-"),
    Rule("http-headers.md: a retry with the same key 'will not cause a duplicate' [identical refund]",
         "vipps", refund(1000, "refund-1"), setup=(cap(25000, "ship-1"), refund(1000, "refund-1")),
         warnings=codes("IDEMPOTENT_REPLAY"), after={"refunded": 1000}, event="-"),
    Rule("http-headers.md: a retry with the same key 'will not cause a duplicate' [identical full capture, "
         "amount omitted as the first time]",
         "vipps", cap(None, "ship-all"), setup=(cap(None, "ship-all"),),
         warnings=codes("IDEMPOTENT_REPLAY"), state="captured", after={"captured": 100000}, event="-",
         command_amount=100000),
    Rule("http-headers.md: a retry with the same key 'will not cause a duplicate' [identical cancel]",
         "vipps", cancel("cancel-1"), setup=(cap(25000, "ship-1"), cancel("cancel-1")),
         warnings=codes("IDEMPOTENT_REPLAY"), state="captured", after={"cancelled": 75000}, event="-",
         command_amount=75000),
    Rule("faq.md: 'Capture idempotency conflict' [an old partial-capture key reused for 'capture the rest']",
         "vipps", cap(None, "ship-1"), setup=(cap(25000, "ship-1"),),
         codes=codes("IDEMPOTENCY_KEY_CONFLICT"), messages=("25000", "75000")),
    Rule("providers.md 2.3: 'currency must equal the payment currency' [a same-key, same-amount retry in "
         "another currency is not a replay]",
         "vipps", cap(25000, "ship-1", currency="DKK"), setup=(cap(25000, "ship-1"),),
         codes=codes("CURRENCY_MISMATCH", "IDEMPOTENCY_KEY_CONFLICT")),
    Rule("epayment.v1.yml: 'Idempotency-Key' is required on create [an authorize without a key refused]",
         "vipps", authorize(10000, "NOK"), authorized=None,
         codes=codes("IDEMPOTENCY_KEY_REQUIRED")),
    Rule(f"{REF_RULE} [7 characters refused]",
         "vipps", create(10000, "NOK"), authorized=None, reference="abcdefg",
         codes=codes("REFERENCE_INVALID"), messages=("8",)),
    Rule(f"{REF_RULE} [51 characters refused]",
         "vipps", create(10000, "NOK"), authorized=None, reference="a" * 51,
         codes=codes("REFERENCE_INVALID"), messages=("51", "50")),
    Rule(f"{REF_RULE} [an underscore refused]",
         "vipps", create(10000, "NOK"), authorized=None, reference="order_10001",
         codes=codes("REFERENCE_INVALID")),
    Rule(f"{REF_RULE} ['../x' refused]",
         "vipps", create(10000, "NOK"), authorized=None, reference="../x", codes=codes("REFERENCE_INVALID")),
    Rule(f"{REF_RULE} ['../../admin' refused: long enough, wrong charset]",
         "vipps", create(10000, "NOK"), authorized=None, reference="../../admin",
         codes=codes("REFERENCE_INVALID")),
    Rule(f"{REF_RULE} [8 characters accepted]",
         "vipps", create(10000, "NOK"), authorized=None, reference="Abc-1234", state="authorized"),
    Rule(f"{REF_RULE} [50 characters accepted]",
         "vipps", create(10000, "NOK"), authorized=None, reference="a" * 50, state="authorized"),
    Rule("faq.md: 'Not enough refundable' [refund <= captured - refunded, the arithmetic shown]",
         "vipps", refund(20001, "refund-2"), setup=(cap(30000, "ship-1"), refund(10000, "refund-1")),
         codes=codes("REFUND_EXCEEDS_CAPTURED"), messages=("20001", "20000", "30000", "10000")),
    Rule("refund.md: 'multiple partial refunds are allowed up to the captured amount'",
         "vipps", refund(20000, "refund-2"), setup=(cap(30000, "ship-1"), refund(10000, "refund-1")),
         state="authorized", after={"captured": 30000, "refunded": 30000}, event="refunded"),
    Rule("faq.md: 'Attempted refund before reservation' [nothing captured: nothing refundable]",
         "vipps", refund(1000, "refund-1"), codes=codes("REFUND_EXCEEDS_CAPTURED"), messages=("0",)),
    Rule(f"{REFUND_WINDOW} [day 364 refunds]",
         "vipps", refund(1000, "refund-1", days=364), setup=(cap(100000, "ship-1"),),
         state="captured", after={"refunded": 1000}),
    Rule(f"{REFUND_WINDOW} ['Refund period expired': exactly 365 days refused]",
         "vipps", refund(1000, "refund-1", days=365), setup=(cap(100000, "ship-1"),),
         codes=codes("REFUND_WINDOW_EXPIRED")),
    Rule(f"{REFUND_WINDOW} [counted from the approval, not the capture: captured on day 100, refused on day 365]",
         "vipps", refund(1000, "refund-2", days=365), setup=(cap(100000, "ship-1", days=100),),
         codes=codes("REFUND_WINDOW_EXPIRED")),
    Rule("reserve-and-capture.md: 'If you are not going to capture the rest ... you should cancel the remaining "
         "amount' [final=True releases it]",
         "vipps", cap(25000, "ship-2", final=True), setup=(cap(25000, "ship-1"),),
         warnings=codes("REMAINDER_RELEASED"), state="captured",
         after={"captured": 50000, "cancelled": 50000}, event="captured", messages=("50000",)),
    Rule("reserve-and-capture.md: 'The capture is only successful when the response is HTTP 200 OK' "
         "[a logged request still in flight blocks another capture]",
         "vipps", cap(1000, "ship-2"), setup=(E("capture_requested", 25000, key="ship-1"),),
         codes=codes("CAPTURE_IN_FLIGHT"), messages=("25000",)),
]


# --------------------------------------------------------------------------------------------- hellgate
# Hellgate Commerce: 100.00 EUR authorized (10000 cents), one asynchronous capture.

HG_CAPTURE = "hellgate capture page"
HG_VALIDITY = "providers.md 3.2: 'Authorization expiry: not documented [UNK]; it depends on the processor'"
HG = dict(authorized=(10000, "EUR"))

HELLGATE = [
    Rule(f"{OVERRIDE} [hellgate refund_window=30d: a refund on day 30 is refused]",
         "hellgate", refund(1000, days=30), **HG, overrides={"refund_window": "30d"},
         setup=(E("capture_requested", 8000), E("captured", 8000)), codes=codes("REFUND_WINDOW_EXPIRED")),
    Rule(f"{OVERRIDE} [hellgate refund_window=30d: a refund on day 29 is allowed]",
         "hellgate", refund(1000, days=29), **HG, overrides={"refund_window": "30d"},
         setup=(E("capture_requested", 8000), E("captured", 8000)), state="captured", after={"refunded": 1000}),
    Rule(f"{HG_CAPTURE}: 'the response shows status capturing; a 2xx is not a successful capture' [partial]",
         "hellgate", cap(4000, currency="EUR"), **HG, state="capturing",
         after={"pending": 4000, "captured": 0}, event="capture_requested",
         warnings=codes("REMAINDER_HELD"), messages=("6000",)),
    Rule(f"{HG_CAPTURE}: 'It actually only requires a reference in case a full capture is intended' [full]",
         "hellgate", cap(), **HG, state="capturing", after={"pending": 10000, "captured": 0},
         event="capture_requested", command_amount=10000),
    Rule(f"{HG_CAPTURE}: authorized -> capturing -> captured | failed [a capture in flight blocks another]",
         "hellgate", cap(1000), **HG, setup=(E("capture_requested", 4000),),
         codes=codes("CAPTURE_IN_FLIGHT"), messages=("4000",)),
    Rule(f"{HG_CAPTURE}: 'Hellgate® does not support multiple captures'",
         "hellgate", cap(1000), **HG, setup=(E("capture_requested", 4000), E("captured", 4000)),
         codes=codes("MULTIPLE_CAPTURES_UNSUPPORTED"), messages=("1",)),
    Rule(f"{HG_CAPTURE}: 'A manual capture is not possible in such a setup' (automatic capture)",
         "hellgate", cap(), **HG, flow="automatic", codes=codes("AUTOMATIC_CAPTURE_FLOW")),
    Rule("v2 capture page: 'the currency must match the authorized amount' [partial capture in USD]",
         "hellgate", cap(4000, currency="USD"), **HG, codes=codes("CURRENCY_MISMATCH"),
         messages=("USD", "EUR")),
    Rule("v2 capture page: the amount 'must be less than or equal to the authorized amount'",
         "hellgate", cap(10001, currency="EUR"), **HG, codes=codes("EXCEEDS_CAPTURABLE"),
         messages=("10001", "10000")),
    Rule("capture page: payment_id (UUIDv4) [80 characters that are no payment id refused: the 80-character "
         "rule is the capture body's reference, issue 12 item 5]",
         "hellgate", authorize(10000, "EUR"), authorized=None, reference="r" * 80,
         codes=codes("REFERENCE_INVALID"), messages=("80 characters", "36")),
    Rule("capture page: payment_id (UUIDv4) [a UUID accepted, in either case]",
         "hellgate", authorize(10000, "EUR"), authorized=None, reference="3F1C2A4E-8B7D-4C1E-9A2B-5D6E7F8A9B0C",
         state="authorized"),
    Rule(f"{HG_VALIDITY} [validity unknown: no expiry check even after 400 days]",
         "hellgate", cap(days=400), **HG, state="capturing", after={"pending": 10000}),
    Rule(f"{HG_VALIDITY} [override authorization_validity=7d: day 7 refused]",
         "hellgate", cap(days=7), **HG, overrides={"authorization_validity": "7d"},
         codes=codes("AUTHORIZATION_EXPIRED"), messages=("7d",)),
    Rule(f"{HG_VALIDITY} [override authorization_validity=7d: day 6 23h captures]",
         "hellgate", cap(days=6, hours=23), **HG, overrides={"authorization_validity": "7d"},
         state="capturing"),
    Rule("refund page: 'Hellgate® supports multiple refunds' [a second partial refund]",
         "hellgate", refund(5000), **HG,
         setup=(E("capture_requested", 8000), E("captured", 8000), refund(3000)),
         state="captured", after={"captured": 8000, "refunded": 8000}, event="refunded"),
    Rule("refund page: 'The amount available for refund is the captured amount minus the total of all "
         "refunds already successfully processed'",
         "hellgate", refund(5001), **HG, setup=(E("capture_requested", 8000), E("captured", 8000), refund(3000)),
         codes=codes("REFUND_EXCEEDS_CAPTURED"), messages=("5001", "5000", "8000", "3000")),
    Rule("providers.md 3.4: 'Remainder after a partial capture: [UNK]. There is no second capture' "
         "[REMAINDER_HELD names the held amount]",
         "hellgate", cap(2500, currency="EUR"), **HG, warnings=codes("REMAINDER_HELD"), state="capturing",
         messages=("7500",)),
    Rule("providers.md 3.2: 'failed: capture no' [after a failed capture]",
         "hellgate", cap(), **HG, setup=(E("capture_requested", 4000), E("capture_failed")),
         codes=codes("INVALID_STATE")),
]


def _hellgate_requested() -> Payment:
    spec = capstate.load_spec("hellgate")
    p = Payment.authorized_for(spec, REFS["hellgate"], amount=10000, currency="EUR", at=T0)
    d = decide(p, cap(4000, currency="EUR"))
    assert d.allowed and d.after is not None and d.event is not None
    assert (d.after.state, d.after.pending, d.after.captured) == ("capturing", 4000, 0)
    assert d.event.type is EventType.CAPTURE_REQUESTED and d.event.amount == 4000
    return d.after


ASYNC_OUTCOMES = [
    pytest.param(EventType.CAPTURED, 4000, {"state": "captured", "captured": 4000, "pending": 0, "capture_count": 1},
                 id="capture page: 'the final captured status arrives by notification or GET'"),
    pytest.param(EventType.CAPTURE_FAILED, None,
                 {"state": "failed", "captured": 0, "pending": 0, "capture_count": 0},
                 id="capture page: 'a failed capture ends in status failed with failure_reasons'"),
]


@pytest.mark.parametrize(("etype", "amount", "expected"), ASYNC_OUTCOMES)
def test_hellgate_async_capture_outcome(etype: EventType, amount: int | None, expected: dict[str, Any]) -> None:
    capturing = _hellgate_requested()
    after = capstate.apply(capturing, Event(REFS["hellgate"], etype, at(hours=1), amount))
    assert {k: getattr(after, k) for k in expected} == expected
    assert capturing.state == "capturing" and capturing.pending == 4000  # apply never mutates


# ---------------------------------------------------------------------------------------------- bambora
# Bambora api-beta: 100.00 DKK authorized (10000 øre), one synchronous capture, about a week to capture.

BB = dict(authorized=(10000, "DKK"))
BB_VALIDITY = "_capture.md: 'Usually you will have about 1 week to capture'"

BAMBORA = [
    Rule(f"{OVERRIDE} [bambora refund_window=30d: a refund on day 30 is refused]",
         "bambora", refund(1000, days=30), **BB, overrides={"refund_window": "30d"}, setup=(cap(4000),),
         codes=codes("REFUND_WINDOW_EXPIRED")),
    Rule(f"{OVERRIDE} [bambora refund_window=30d: a refund on day 29 is allowed]",
         "bambora", refund(1000, days=29), **BB, overrides={"refund_window": "30d"}, setup=(cap(4000),),
         state="captured", after={"refunded": 1000}),
    Rule("_capture.md: 'If it is less than the payment amount, a partial capture is performed'",
         "bambora", cap(4000), **BB, state="captured", after={"captured": 4000, "cancelled": 0},
         event="captured", warnings=codes("REMAINDER_HELD"), messages=("6000",)),
    Rule("_capture.md: 'If it is omitted, the entire amount is captured' [one full capture]",
         "bambora", cap(), **BB, state="captured", after={"captured": 10000}, command_amount=10000),
    Rule("providers.md 1.3: 'Zero: minimum: 0 makes amount: 0 schema-valid, but what it means is [UNK]. "
         "Policy: reject 0'",
         "bambora", cap(0), **BB, codes=codes("AMOUNT_INVALID"), messages=("0",)),
    Rule("providers.md 1.4: 'Policy: reject amount > authorized amount'",
         "bambora", cap(10001), **BB, codes=codes("EXCEEDS_CAPTURABLE"), messages=("10001", "10000")),
    Rule("_cancel.md: cancel 'can only be used on payments that have the Authorized status'",
         "bambora", cancel(), **BB, state="cancelled", after={"cancelled": 10000}, event="cancelled"),
    Rule("_cancel.md: 'can only be used on payments that have the Authorized status' [refused after capture]",
         "bambora", cancel(), **BB, setup=(cap(4000),), codes=codes("INVALID_STATE")),
    Rule("swagger.json: path parameter payment 'maxLength: 2000' [2001 refused]",
         "bambora", authorize(10000, "DKK"), authorized=None, reference="p" * 2001,
         codes=codes("REFERENCE_INVALID"), messages=("2001", "2000")),
    Rule("swagger.json: path parameter payment 'maxLength: 2000' [2000 accepted, any characters a URL path "
         "segment can carry]",
         "bambora", authorize(10000, "DKK"), authorized=None, reference="ordre-ø&=;..x" + "p" * 1987,
         state="authorized"),
    Rule("swagger.json: path parameter payment [a '/' refused: it would change the request target (issue 12 item 6)]",
         "bambora", authorize(10000, "DKK"), authorized=None, reference="ordre/1",
         codes=codes("REFERENCE_INVALID"), messages=("'/'", "request target")),
    Rule("swagger.json: path parameter payment [a dot segment refused: it would change the request path]",
         "bambora", authorize(10000, "DKK"), authorized=None, reference="..",
         codes=codes("REFERENCE_INVALID"), messages=("dot segment",)),
    Rule(f"{BB_VALIDITY} [6 days 23 hours captures]",
         "bambora", cap(days=6, hours=23), **BB, state="captured"),
    Rule(f"{BB_VALIDITY} [exactly 7 days refused]",
         "bambora", cap(days=7), **BB, codes=codes("AUTHORIZATION_EXPIRED"), messages=("7d",)),
    Rule("providers.md 1.7: 'Idempotency: no key mechanism' [a key is a warning, not a violation]",
         "bambora", cap(4000, "ship-1"), **BB, warnings=codes("IDEMPOTENCY_KEY_UNUSED", "REMAINDER_HELD"),
         state="captured", after={"captured": 4000}),
    Rule("providers.md 1.2: 'Refunded: further partial refunds undocumented' [one refund by default]",
         "bambora", refund(1000), **BB, setup=(cap(4000), refund(1000)),
         codes=codes("MULTIPLE_REFUNDS_UNSUPPORTED"), messages=("1",)),
    Rule("_refund.md: the payment 'needs to have the Captured status' [the first refund]",
         "bambora", refund(4000), **BB, setup=(cap(4000),), state="captured", after={"refunded": 4000}),
    Rule("_refund.md: the payment 'needs to have the Captured status' [nothing captured]",
         "bambora", refund(1000), **BB, codes=codes("REFUND_EXCEEDS_CAPTURED")),
    Rule("providers.md 1.4: 'Multiple captures: [UNK]. Policy: single capture only'",
         "bambora", cap(1000), **BB, setup=(cap(4000),), codes=codes("MULTIPLE_CAPTURES_UNSUPPORTED")),
    Rule("swagger.json PaymentResponse: state 'Authorization Expired' [capture after the expiry event]",
         "bambora", cap(1000, days=3), **BB, setup=(E("expired", days=3),), codes=codes("AUTHORIZATION_EXPIRED")),
    Rule("providers.md 1.7: 'keep a local single-flight lock per payment' [a logged request still in flight "
         "blocks another capture]",
         "bambora", cap(1000), **BB, setup=(E("capture_requested", 4000),), codes=codes("CAPTURE_IN_FLIGHT"),
         messages=("4000",)),
]


# ---------------------------------------------------------------------------------------------- pipwave
# Pipwave capture-payment: 100.00 MYR authorized (10000 sen) unless the row says otherwise.

PW = dict(authorized=(10000, "MYR"))
PW_FMT = "capture_payment.md: 'capture_amount decimal(11,2)' in major units"
PW_PARTIAL = "capture_payment.md: 'If PG not supporting partial capture, full capture will be done'"

PIPWAVE = [
    Rule(f"{OVERRIDE} [pipwave refund_window=30d: a refund on day 30 is refused]",
         "pipwave", refund(1000, days=30), **PW, overrides={"refund_window": "30d"}, setup=(cap(4000),),
         codes=codes("REFUND_WINDOW_EXPIRED")),
    Rule(f"{OVERRIDE} [pipwave refund_window=30d: a refund on day 29 is allowed]",
         "pipwave", refund(1000, days=29), **PW, overrides={"refund_window": "30d"}, setup=(cap(4000),),
         state="captured", after={"refunded": 1000}),
    Rule("capture_payment.md: 'If not provided, full authorised amount will be captured'",
         "pipwave", cap(), **PW, state="captured", after={"captured": 10000}, command_amount=10000,
         event="captured"),
    Rule("capture_payment.md: 'The capture API will only [be] fired if the transaction is still under "
         "AUTHORISATION status' [one capture]",
         "pipwave", cap(1000), **PW, setup=(cap(4000),), codes=codes("MULTIPLE_CAPTURES_UNSUPPORTED")),
    Rule(f"{PW_FMT} [KWD 1.234 has 3 decimals: refused]",
         "pipwave", cap(1234), authorized=(100000, "KWD"), codes=codes("AMOUNT_INVALID"),
         messages=("1234", "1.234", "decimal(11,2)")),
    Rule(f"{PW_FMT} [KWD 1.230 fits]",
         "pipwave", cap(1230), authorized=(100000, "KWD"), state="captured", after={"captured": 1230},
         warnings=codes("REMAINDER_HELD", "PARTIAL_MAY_BECOME_FULL")),
    Rule(f"{PW_FMT} [JPY has no decimals: fine]",
         "pipwave", cap(12345), authorized=(100000, "JPY"), state="captured", after={"captured": 12345},
         warnings=codes("REMAINDER_HELD", "PARTIAL_MAY_BECOME_FULL")),
    Rule(f"{PW_FMT} [MYR 1000000000.00 has 10 integer digits: refused at authorize]",
         "pipwave", authorize(100_000_000_000, "MYR"), authorized=None, codes=codes("AMOUNT_INVALID"),
         messages=("9 integer digits",)),
    Rule(f"{PW_FMT} [MYR 999999999.99 has 9 integer digits: fits]",
         "pipwave", authorize(99_999_999_999, "MYR"), authorized=None, state="authorized"),
    Rule(f"{PW_FMT} [JPY 1000000000 has 10 integer digits: refused at authorize]",
         "pipwave", authorize(1_000_000_000, "JPY"), authorized=None, codes=codes("AMOUNT_INVALID")),
    Rule(f"{PW_FMT} [a 10-digit capture is refused both for its format and for exceeding the authorization]",
         "pipwave", cap(100_000_000_000), authorized=(99_999_999_999, "MYR"),
         codes=codes("AMOUNT_INVALID", "EXCEEDS_CAPTURABLE"), messages=("99999999999",)),
    Rule(f"{PW_PARTIAL} [partial capture allowed by default, with a warning that it may become full]",
         "pipwave", cap(4000), **PW, state="captured", after={"captured": 4000},
         warnings=codes("REMAINDER_HELD", "PARTIAL_MAY_BECOME_FULL"), messages=("6000", "may capture the full 10000")),
    Rule(f"{PW_PARTIAL} [override yes: the merchant knows the gateway captures part, so no warning]",
         "pipwave", cap(4000), **PW, overrides={"partial_capture": "yes"}, state="captured",
         after={"captured": 4000}, warnings=codes("REMAINDER_HELD")),
    Rule(f"{PW_PARTIAL} [override becomes_full: the normalized command and after use the full amount]",
         "pipwave", cap(4000), **PW, overrides={"partial_capture": "becomes_full"},
         warnings=codes("PARTIAL_BECOMES_FULL"), state="captured", after={"captured": 10000},
         command_amount=10000, event="captured", messages=("4000", "10000")),
    Rule(f"{PW_PARTIAL} [override no: a partial amount is refused]",
         "pipwave", cap(4000), **PW, overrides={"partial_capture": "no"},
         codes=codes("PARTIAL_CAPTURE_UNSUPPORTED"), messages=("4000", "10000")),
    Rule(f"{PW_PARTIAL} [override no: the full amount captures]",
         "pipwave", cap(10000), **PW, overrides={"partial_capture": "no"}, state="captured"),
    Rule("capture_payment.md: 'txn_id string(255)' [256 refused]",
         "pipwave", authorize(10000, "MYR"), authorized=None, reference="t" * 256,
         codes=codes("REFERENCE_INVALID"), messages=("256", "255")),
    Rule("capture_payment.md: 'txn_id string(255)' [255 accepted]",
         "pipwave", authorize(10000, "MYR"), authorized=None, reference="t" * 255, state="authorized"),
    Rule("providers.md 4.7: 'Policy: single-flight lock; after a timeout, requery before retrying' "
         "[a logged request still in flight blocks another capture]",
         "pipwave", cap(1000), **PW, setup=(E("capture_requested", 4000),), codes=codes("CAPTURE_IN_FLIGHT"),
         messages=("4000",)),
]


IDENTIFIERS = [
    pytest.param("pw_id", 32, id="capture_payment.md: 'pw_id string(32)'"),
    pytest.param("txn_id", 255, id="capture_payment.md: 'txn_id string(255)'"),
]


@pytest.mark.parametrize(("name", "limit"), IDENTIFIERS)
def test_pipwave_identifier_lengths(name: str, limit: int) -> None:
    rule = capstate.load_spec("pipwave").policy.identifiers[name]
    assert rule.problem("x" * limit) is None
    assert rule.problem("x") is None
    too_long = rule.problem("x" * (limit + 1))
    assert too_long is not None and str(limit + 1) in too_long and str(limit) in too_long
    assert rule.problem("") is not None


# ---------------------------------------------------------------------------------------------- generic

GENERIC = [
    Rule("DESIGN.md 3: 'NOT_AUTHORIZED: the payment has no successful authorization' [vipps]",
         "vipps", cap(100, "ship-1"), authorized=None, codes=codes("NOT_AUTHORIZED")),
    Rule("DESIGN.md 3: 'NOT_AUTHORIZED: the payment has no successful authorization' [hellgate]",
         "hellgate", cap(100), authorized=None, codes=codes("NOT_AUTHORIZED")),
    Rule("DESIGN.md 3: 'NOT_AUTHORIZED: the payment has no successful authorization' [bambora]",
         "bambora", cap(100), authorized=None, codes=codes("NOT_AUTHORIZED")),
    Rule("DESIGN.md 3: 'NOT_AUTHORIZED: the payment has no successful authorization' [pipwave]",
         "pipwave", cap(100), authorized=None, codes=codes("NOT_AUTHORIZED")),
    Rule("DESIGN.md 3: 'NOT_AUTHORIZED' [a refund before authorization]",
         "bambora", refund(100), authorized=None, codes=codes("NOT_AUTHORIZED")),
    Rule("DESIGN.md 3: 'INVALID_STATE: the spec has no such transition from the current state; the message "
         "names both' [a second authorization]",
         "vipps", create(5000, "NOK"), codes=codes("INVALID_STATE"), messages=("authorized",)),
    Rule("DESIGN.md 3: 'EXCEEDS_CAPTURABLE: amount > authorized - captured - cancelled - pending; the message "
         "shows this arithmetic'",
         "vipps", cap(80000, "ship-2"), setup=(cap(25000, "ship-1"),), codes=codes("EXCEEDS_CAPTURABLE"),
         messages=("capture 80000 > capturable 75000 = authorized 100000 - captured 25000",)),
    Rule("DESIGN.md 3: 'REFUND_EXCEEDS_CAPTURED: refund > captured - refunded' [the message shows it]",
         "hellgate", refund(8001), **HG, setup=(E("capture_requested", 8000), E("captured", 8000)),
         codes=codes("REFUND_EXCEEDS_CAPTURED"),
         messages=("refund 8001 > refundable 8000 = captured 8000 - refunded 0",)),
]


RULES = [*VIPPS, *HELLGATE, *BAMBORA, *PIPWAVE, *GENERIC]


@pytest.mark.parametrize("rule", RULES, ids=ids(RULES))
def test_rule(rule: Rule) -> None:
    run(rule)


def test_decision_to_dict_shape_when_allowed() -> None:
    d = run(Rule("to_dict allowed", "vipps", cap(25000, "ship-2", final=True), setup=(cap(25000, "ship-1"),),
                 warnings=codes("REMAINDER_RELEASED"), state="captured"))
    out = d.to_dict()
    assert set(out) == {"allowed", "violations", "warnings", "command", "after"}
    assert out["allowed"] is True
    assert out["violations"] == []
    assert [w["code"] for w in out["warnings"]] == ["REMAINDER_RELEASED"]
    assert all(set(w) == {"code", "message"} and isinstance(w["message"], str) for w in out["warnings"])
    assert out["command"] == {"op": "capture", "amount": 25000, "currency": "NOK"}
    assert out["after"] == {"state": "captured", "authorized": 100000, "captured": 50000, "cancelled": 50000,
                            "refunded": 0}


def test_decision_to_dict_shape_when_refused() -> None:
    d = run(Rule("to_dict refused", "vipps", cap(80000, "ship-2"), setup=(cap(25000, "ship-1"),),
                 codes=codes("EXCEEDS_CAPTURABLE")))
    out = d.to_dict()
    assert out["allowed"] is False
    assert out["after"] is None
    assert out["warnings"] == []
    assert out["violations"] == [{"code": "EXCEEDS_CAPTURABLE", "message": d.violations[0].message}]
    assert "75000" in out["violations"][0]["message"]
    assert out["command"] == {"op": "capture", "amount": 80000, "currency": "NOK"}


@pytest.mark.parametrize(("command", "op"), [
    (cancel("cancel-1"), "cancel"),
    (refund(1000, "refund-1"), "refund"),
])
def test_decision_to_dict_names_the_operation(command: Any, op: str) -> None:
    d = run(Rule(f"to_dict {op}", "vipps", command, setup=(cap(25000, "ship-1"),)))
    out = d.to_dict()
    assert out["command"]["op"] == op and out["command"]["currency"] == "NOK"
    assert out["command"]["amount"] == (75000 if op == "cancel" else 1000)


def test_every_code_the_table_uses_is_a_published_code() -> None:
    used: set[str] = set()
    for rule in RULES:
        used |= rule.codes | rule.warnings
    assert used <= {c.value for c in Code}


def test_table_docs_are_unique() -> None:
    docs = [r.doc for r in RULES]
    assert len(docs) == len(set(docs))
