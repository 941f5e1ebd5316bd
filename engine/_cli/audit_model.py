"""What every audit report format shares: how serious each finding is, what each code means, the money
at stake per code and currency, and the "showing N of M" arithmetic.

Severities, told apart in every format by a word and a heading, never by colour alone:
- violation: the provider's policy was broken, or money was held, moved or refused against it;
- warning: the log itself is suspect (a line that is not an event, an event stamped before its
  payment's previous one), so the audit judged less, or judged in file order;
- note: what the reader must know to read the report right (how much is shown, which instant the
  dangling authorizations were judged at, inputs that were empty). Notes are the report's, not a line's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from attrs import frozen

from .._audit import Finding
from .._codes import Code
from .._money import CurrencyError, exponent

VIOLATION, WARNING, NOTE = "violation", "warning", "note"
SEVERITIES = (VIOLATION, WARNING, NOTE)

_LOG_CODES = frozenset({Code.LOG_MALFORMED, Code.OUT_OF_ORDER})


def severity(code: Code) -> str:
    return WARNING if code in _LOG_CODES else VIOLATION


def severity_counts(findings: Iterable[Finding]) -> dict[str, int]:
    """{"violation": n, "warning": n}."""
    out = {VIOLATION: 0, WARNING: 0}
    for f in findings:
        out[severity(f.code)] += 1
    return out


# One sentence per code, for a reader of a report who has never seen capstate (DESIGN.md section 3).
EXPLAIN: dict[Code, str] = {
    Code.NOT_AUTHORIZED: "Money was captured, refunded or cancelled on a payment with no successful "
                         "authorization in the log.",
    Code.INVALID_STATE: "The provider has no such operation from the payment's state at that time.",
    Code.CAPTURE_IN_FLIGHT: "An operation was made while a capture was still pending at the provider.",
    Code.AMOUNT_INVALID: "The amount is not one the provider takes: not positive, out of its bounds, or "
                         "not representable in its format.",
    Code.CURRENCY_MISMATCH: "The currency differs from the currency the payment was authorized in.",
    Code.EXCEEDS_CAPTURABLE: "More was captured than the authorization left capturable (authorized - "
                             "captured - cancelled - pending, plus any over-capture allowance): the "
                             "customer was charged more than they agreed to.",
    Code.PARTIAL_CAPTURE_UNSUPPORTED: "A partial capture on a provider that captures in full only.",
    Code.MULTIPLE_CAPTURES_UNSUPPORTED: "A further capture where the provider allows fewer captures.",
    Code.REMAINDER_CANCELLED: "A capture after the uncaptured remainder had been released by a cancel.",
    Code.AUTHORIZATION_EXPIRED: "An operation at or after the end of the authorization's validity window.",
    Code.AUTOMATIC_CAPTURE_FLOW: "A manual capture or cancel on a payment whose flow captures automatically.",
    Code.IDEMPOTENCY_KEY_REQUIRED: "The provider needs an idempotency key and none was given, or the key "
                                   "breaks its format.",
    Code.IDEMPOTENCY_KEY_CONFLICT: "An idempotency key was reused with different parameters.",
    Code.REFERENCE_INVALID: "The payment reference breaks the provider's length or character rules.",
    Code.REFUND_EXCEEDS_CAPTURED: "More was refunded than had been captured and not yet refunded.",
    Code.DUPLICATE_CAPTURE: "Two successful captures under one idempotency key: the customer was charged "
                            "twice for one capture.",
    Code.DANGLING_AUTHORIZATION: "A remainder was never captured nor released before the authorization "
                                 "lapsed, where a cancel could have released it: the customer's money was "
                                 "held for nothing.",
    Code.LOG_MALFORMED: "A line that is not valid JSON or not a valid event; the audit reports it and goes on.",
    Code.CURRENCY_UNSUPPORTED: "The provider does not take this currency at all.",
    Code.MULTIPLE_REFUNDS_UNSUPPORTED: "A further refund where the provider allows fewer refunds.",
    Code.REFUND_WINDOW_EXPIRED: "A refund after the provider's refund window had closed.",
    Code.CANCEL_AMOUNT_INVALID: "A cancel of part of the remainder where the provider always releases all of it.",
    Code.OUT_OF_ORDER: "An event stamped earlier than its payment's previous event; events are applied in "
                       "file order.",
    Code.PARTIAL_BECOMES_FULL: "A partial capture the provider turns into a full one.",
    Code.REMAINDER_HELD: "After the capture a remainder stays held on the card and nothing can release it.",
    Code.REMAINDER_RELEASED: "A final capture on a provider that releases the remainder only by a cancel.",
    Code.IDEMPOTENCY_KEY_UNUSED: "A key was given to a provider with no idempotency; it protects nothing.",
    Code.IDEMPOTENT_REPLAY: "The key already succeeded with identical parameters; no money moves again.",
}

# What the money at stake is, for the codes whose amount is a quantity the issue names.
MONEY_KINDS: dict[str, str] = {"EXCEEDS_CAPTURABLE": "over-captured", "REFUND_EXCEEDS_CAPTURED": "over-refunded",
                               "DANGLING_AUTHORIZATION": "left held"}
HEADLINE = ("over-captured", "over-refunded", "left held")


def money_kind(code: str) -> str:
    """What a finding's amount measures: the three named quantities, or money moved in breach."""
    return MONEY_KINDS.get(code, "moved in breach")


@frozen
class MoneyRow:
    """The money at stake for one code in one currency (None: the log never named it)."""

    code: str
    currency: str | None
    findings: int
    amount: int

    @property
    def kind(self) -> str:
        return money_kind(self.code)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "currency": self.currency, "kind": self.kind, "findings": self.findings,
                "amount": self.amount}


def money_rows(findings: Iterable[Finding]) -> list[MoneyRow]:
    """Per code and currency, the findings that carry money and the sum of their amounts; by code, then
    currency (unknown last)."""
    sums: dict[tuple[str, str | None], list[int]] = {}
    for f in findings:
        if f.amount is None:
            continue
        cell = sums.setdefault((f.code.value, f.currency), [0, 0])
        cell[0] += 1
        cell[1] += f.amount
    return [MoneyRow(code, cur, n, total) for (code, cur), (n, total)
            in sorted(sums.items(), key=lambda kv: (kv[0][0], kv[0][1] is None, kv[0][1] or ""))]


def headline(rows: Sequence[MoneyRow]) -> dict[str, dict[str, int]]:
    """{currency ("?" when unknown): {"over-captured": n, "over-refunded": n, "left held": n}} of the
    three named quantities, minor units."""
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        if row.code in MONEY_KINDS:
            cell = out.setdefault(row.currency or "?", dict.fromkeys(HEADLINE, 0))
            cell[row.kind] += row.amount
    return dict(sorted(out.items(), key=lambda kv: (kv[0] == "?", kv[0])))


def plural(n: int, word: str) -> str:
    """'1 payment', '42,016 findings'."""
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def group(n: int) -> str:
    """An integer with thousands separators: 42016 -> '42,016'."""
    return f"{n:,}"


def major(amount: int, currency: str | None) -> str:
    """Minor units as the currency writes them, with thousands separators: (123456789, "NOK") ->
    '1,234,567.89'; an unknown currency shows its minor units."""
    try:
        exp = exponent(currency) if currency is not None else None
    except CurrencyError:
        exp = None
    if exp is None:
        return f"{amount:,}"
    sign = "-" if amount < 0 else ""
    digits = str(abs(amount)).rjust(exp + 1, "0")
    whole, frac = (digits[:-exp], digits[-exp:]) if exp else (digits, "")
    text = f"{int(whole):,}"
    return f"{sign}{text}.{frac}" if exp else f"{sign}{text}"


def money(amount: int, currency: str | None) -> str:
    """'NOK 1,234.50', or '1,234 (currency unknown)' in minor units."""
    if currency is None:
        return f"{amount:,} minor units (currency unknown)"
    return f"{currency} {major(amount, currency)}"


def showing(shown: int, total: int, what: str = "finding") -> str:
    """'showing 20 of 42,016 findings', 'showing all 3 warnings', 'showing the 1 violation', 'no findings'."""
    if not total:
        return f"no {what}s"
    if shown >= total:
        return f"showing the {plural(total, what)}" if total == 1 else f"showing all {plural(total, what)}"
    return f"showing {group(shown)} of {plural(total, what)}"


def rule_value(value: object) -> str:
    """A policy value as `Policy.summary` spells it, for a person: '7d', 'NOK 180d, DKK 14d', 'unset'."""
    if isinstance(value, dict):
        if list(value) == ["*"]:
            return str(value["*"])
        return ", ".join(f"{'other' if k == '*' else k} {v}" for k, v in value.items())
    return "unset" if value is None else str(value)
