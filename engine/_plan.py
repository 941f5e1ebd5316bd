"""Capture plans: one payment and the steps a merchant means to take, on a virtual clock.

A plan is data, parsed from a dict (or TOML or JSON text; the caller reads the file):

    [payment]   amount (int minor units), currency, authorized_at (RFC 3339), reference?, flow?
    [[step]]    at (RFC 3339, or "+2d" / "+36h" / "+90m" after authorized_at), op (capture, cancel,
                refund, wait), amount?, key?, final? (capture), outcome? (succeeded | failed), note?

Parsing checks shape only: types, names, time order. Whether a provider accepts a step is the
engine's judgment at simulation time, so a plan that Vipps refuses still parses. Every error is a
PlanError naming the step (1-based, as the file lists them) and the field.

Identifiers the plan leaves out are derived from its content, never from a clock or randomness, so the
same plan always gives the same reference, the same idempotency keys and the same answer.
"""

from __future__ import annotations

import hashlib
import tomllib
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any

import orjson
from attrs import frozen

from ._bom import strip_bom
from ._errors import PlanError
from ._money import INT64_MAX, CurrencyError, exponent
from ._policy import IdentifierRule
from ._time import format_duration, format_instant, parse_duration, parse_instant
from ._values import Flow, surrogate_in


class Op(StrEnum):
    CAPTURE = "capture"
    CANCEL = "cancel"
    REFUND = "refund"
    WAIT = "wait"


class Outcome(StrEnum):
    """What the provider answers to an allowed step: success, or a rehearsed failure."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"


_TOP_KEYS = ("payment", "step", "description")
_PAYMENT_KEYS = ("amount", "currency", "authorized_at", "reference", "flow")
# Which fields each op takes; anything else on a step is named in the error.
_STEP_KEYS: dict[Op, tuple[str, ...]] = {
    Op.CAPTURE: ("at", "op", "amount", "key", "final", "outcome", "note"),
    Op.CANCEL: ("at", "op", "amount", "key", "outcome", "note"),
    Op.REFUND: ("at", "op", "amount", "key", "outcome", "note"),
    Op.WAIT: ("at", "op", "note"),
}
_ALL_STEP_KEYS = frozenset(k for keys in _STEP_KEYS.values() for k in keys)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


@frozen
class PlanStep:
    """One step of a plan. `index` is 1-based, as the plan lists its steps."""

    index: int
    at: datetime
    op: Op
    amount: int | None = None
    key: str | None = None
    final: bool = False
    outcome: Outcome = Outcome.SUCCEEDED
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": format_instant(self.at), "op": self.op.value}
        if self.amount is not None:
            out["amount"] = self.amount
        if self.key is not None:
            out["key"] = self.key
        if self.final:
            out["final"] = True
        if self.outcome is not Outcome.SUCCEEDED:
            out["outcome"] = self.outcome.value
        if self.note is not None:
            out["note"] = self.note
        return out


@frozen
class Plan:
    """One payment's capture plan. Build it with `Plan.from_dict`, `Plan.from_toml` or `Plan.from_json`.

    `reference_derived` says the plan gave no reference and `reference` was derived from its content.
    """

    amount: int
    currency: str
    authorized_at: datetime
    reference: str
    steps: tuple[PlanStep, ...]
    flow: Flow | None = None
    description: str | None = None
    reference_derived: bool = False

    @classmethod
    def from_toml(cls, text: str, *, file: str | None = None) -> Plan:
        """Parse a TOML plan. `file` only names the source in errors; nothing is read."""
        try:
            obj = tomllib.loads(strip_bom(text))
        except tomllib.TOMLDecodeError as exc:
            raise PlanError(f"not valid TOML: {exc}", file=file) from None
        return cls.from_dict(obj, file=file)

    @classmethod
    def from_json(cls, text: str | bytes, *, file: str | None = None) -> Plan:
        """Parse a JSON plan (the same fields as TOML; steps under "step")."""
        try:
            obj = orjson.loads(strip_bom(text))
        except orjson.JSONDecodeError as exc:
            raise PlanError(f"not valid JSON: {exc}", file=file) from None
        return cls.from_dict(obj, file=file)

    @classmethod
    def from_dict(cls, obj: object, *, file: str | None = None) -> Plan:
        """Validate a decoded plan. Raises PlanError naming the step and the field."""
        return _Parser(file).plan(obj)

    def to_dict(self) -> dict[str, Any]:
        """The plan as `from_dict` reads it (times in UTC; a derived reference is left out)."""
        payment: dict[str, Any] = {"amount": self.amount, "currency": self.currency,
                                   "authorized_at": format_instant(self.authorized_at)}
        if not self.reference_derived:
            payment["reference"] = self.reference
        if self.flow is not None:
            payment["flow"] = self.flow.value
        out: dict[str, Any] = {"payment": payment, "step": [s.to_dict() for s in self.steps]}
        if self.description is not None:
            out["description"] = self.description
        return out

    def offset(self, at: datetime) -> str:
        """`at` as an offset from the authorization, as a plan spells it: '+2d', '+36h', '+0m'."""
        delta = at - self.authorized_at
        return "+" + format_duration(delta) if delta else "+0m"


# ------------------------------------------------------------------------------------------- parsing


class _Parser:
    def __init__(self, file: str | None) -> None:
        self.file = file

    def fail(self, message: str, *, step: int | None = None, field: str | None = None) -> PlanError:
        return PlanError(message, step=step, field=field, file=self.file)

    def plan(self, obj: object) -> Plan:
        if not isinstance(obj, dict):
            raise self.fail(f"a plan is a table (a JSON object), got {type(obj).__name__}")
        self.unknown(obj, _TOP_KEYS, None, None)
        description = obj.get("description")
        if description is not None and not isinstance(description, str):
            raise self.fail(f"must be a string, got {type(description).__name__}", field="description")
        self.utf8(description, None, "description")
        payment = obj.get("payment")
        if not isinstance(payment, dict):
            what = "missing" if payment is None else f"must be a table, got {type(payment).__name__}"
            raise self.fail(f"{what}; a plan starts with [payment] amount, currency and authorized_at",
                            field="payment")
        self.unknown(payment, _PAYMENT_KEYS, None, "payment.")
        amount = self.amount(payment.get("amount"), None, "payment.amount", required=True)
        assert amount is not None
        currency = payment.get("currency")
        if currency is None:
            raise self.fail("required, an ISO 4217 code such as NOK", field="payment.currency")
        if not isinstance(currency, str):
            raise self.fail(f"must be a string, an ISO 4217 code such as NOK, got {type(currency).__name__}",
                            field="payment.currency")
        try:
            exponent(currency)
        except CurrencyError as exc:
            raise self.fail(str(exc), field="payment.currency") from None
        authorized_at = self.instant(payment.get("authorized_at"), None, "payment.authorized_at", offset_ok=False)
        flow = payment.get("flow")
        if flow is not None:
            try:
                flow = Flow(flow)
            except ValueError:
                raise self.fail(f"must be 'manual' or 'automatic', got {flow!r}", field="payment.flow") from None
        reference = payment.get("reference")
        if reference is not None and (not isinstance(reference, str) or not reference):
            raise self.fail(f"must be a non-empty string, got {reference!r}", field="payment.reference")
        self.utf8(reference, None, "payment.reference")

        raw_steps = obj.get("step", [])
        if not isinstance(raw_steps, list):
            raise self.fail(f"must be an array of tables ([[step]]), got {type(raw_steps).__name__}", field="step")
        steps: list[PlanStep] = []
        for i, raw in enumerate(raw_steps, start=1):
            step = self.step(raw, i, authorized_at)
            if steps and step.at < steps[-1].at:
                raise self.fail(f"{format_instant(step.at)} is before step {i - 1}'s {format_instant(steps[-1].at)}; "
                                f"steps run in time order", step=i, field="at")
            steps.append(step)

        derived = reference is None
        plan = Plan(amount, currency, authorized_at, reference or "", tuple(steps), flow, description, derived)
        if derived:
            plan = Plan(amount, currency, authorized_at, derive_reference(plan), plan.steps, flow, description, True)
        return plan

    def utf8(self, value: str | None, step: int | None, field: str) -> None:
        """Refuse a lone surrogate (a dict built in Python, or json.loads, may hold one; TOML and orjson
        cannot): the plan's reference and keys are hashed as UTF-8, and its report is JSON."""
        if value is not None and surrogate_in(value):
            raise self.fail(f"{value!r} holds a lone surrogate, which no UTF-8 text can carry", step=step,
                            field=field)

    def unknown(self, table: Mapping[str, Any], known: tuple[str, ...], step: int | None, prefix: str | None,
                why: str = "") -> None:
        for key in table:
            if key not in known:
                field = f"{prefix}{key}" if prefix else key
                raise self.fail(why or f"unknown field (expected one of {', '.join(known)})", step=step, field=field)

    def step(self, raw: object, i: int, authorized_at: datetime) -> PlanStep:
        if not isinstance(raw, dict):
            raise self.fail(f"a step is a table, got {type(raw).__name__}", step=i)
        self.unknown(raw, tuple(sorted(_ALL_STEP_KEYS)), i, None)
        raw_op = raw.get("op")
        try:
            op = Op(raw_op) if isinstance(raw_op, str) else Op("")
        except ValueError:
            what = "required" if raw_op is None else f"got {raw_op!r}"
            raise self.fail(f"{what}; one of {', '.join(o.value for o in Op)}", step=i, field="op") from None
        for key in raw:
            if key not in _STEP_KEYS[op]:
                raise self.fail(f"not allowed on a {op.value} step (it takes {', '.join(_STEP_KEYS[op])})",
                                step=i, field=key)
        at = self.instant(raw.get("at"), i, "at", offset_ok=True, base=authorized_at)
        if at < authorized_at:
            raise self.fail(f"{format_instant(at)} is before the authorization at {format_instant(authorized_at)}",
                            step=i, field="at")
        amount = self.amount(raw.get("amount"), i, "amount", required=op is Op.REFUND)
        key = raw.get("key")
        if key is not None and not isinstance(key, str):
            raise self.fail(f"must be a string, got {type(key).__name__} {key!r}", step=i, field="key")
        self.utf8(key, i, "key")
        final = raw.get("final", False)
        if type(final) is not bool:
            raise self.fail(f"must be true or false, got {final!r}", step=i, field="final")
        raw_outcome = raw.get("outcome", Outcome.SUCCEEDED.value)
        try:
            outcome = Outcome(raw_outcome) if isinstance(raw_outcome, str) else Outcome("")
        except ValueError:
            raise self.fail(f"must be 'succeeded' or 'failed', got {raw_outcome!r}", step=i, field="outcome") from None
        note = raw.get("note")
        if note is not None and not isinstance(note, str):
            raise self.fail(f"must be a string, got {type(note).__name__}", step=i, field="note")
        self.utf8(note, i, "note")
        return PlanStep(i, at, op, amount, key, final, outcome, note)

    def amount(self, value: object, step: int | None, field: str, *, required: bool) -> int | None:
        if value is None:
            if required:
                raise self.fail("required, an integer >= 0 of minor units", step=step, field=field)
            return None
        if type(value) is float and value.is_integer() and value > INT64_MAX:
            # orjson reads a JSON integer past 64 bits as a float: the user wrote an integer, too large.
            raise self.fail(f"an integer beyond the largest amount any provider takes ({INT64_MAX})",
                            step=step, field=field)
        # bool is an int subclass; `true` is never an amount, and a float never is money.
        if type(value) is not int or value < 0:
            hint = " (amounts are integer minor units: 1050 for 10.50)" if isinstance(value, float | str) else ""
            raise self.fail(f"must be an integer >= 0 of minor units, got {value!r}{hint}", step=step, field=field)
        if value > INT64_MAX:
            # Every provider's amount is an int64 (Bambora, Vipps swagger/openapi), and JSON tools stop there.
            raise self.fail(f"{value} is beyond the largest amount any provider takes ({INT64_MAX})",
                            step=step, field=field)
        return value

    def instant(self, value: object, step: int | None, field: str, *, offset_ok: bool,
                base: datetime | None = None) -> datetime:
        at = self._instant(value, step, field, offset_ok=offset_ok, base=base)
        if at < _EARLIEST:
            # Before any card payment, and out of range once converted to UTC (0001-01-01T00:00+01:00).
            raise self.fail(f"{at.isoformat()} is earlier than {format_instant(_EARLIEST)}", step=step, field=field)
        if at >= _LATEST:
            # Far enough for any plan, and it leaves room to add a validity window without overflow. Spelled
            # as given: 9999-12-31T23:59:59-01:00 is past the calendar's end once converted to UTC.
            raise self.fail(f"{at.isoformat().replace('+00:00', 'Z')} is later than {format_instant(_LATEST)}",
                            step=step, field=field)
        return at

    def _instant(self, value: object, step: int | None, field: str, *, offset_ok: bool,
                 base: datetime | None = None) -> datetime:
        if value is None:
            raise self.fail("required" + (", RFC 3339 or an offset like +2d" if offset_ok else ", RFC 3339"),
                            step=step, field=field)
        if isinstance(value, datetime):
            # TOML's own datetimes: only an offset datetime is an instant.
            if value.utcoffset() is None:
                raise self.fail(f"{value.isoformat()} has no UTC offset; write it like 2026-01-05T10:00:00Z",
                                step=step, field=field)
            return value
        if isinstance(value, date | time):
            raise self.fail(f"{value.isoformat()} is not a date and time with an offset", step=step, field=field)
        if not isinstance(value, str):
            raise self.fail(f"must be a string, got {type(value).__name__} {value!r}", step=step, field=field)
        if offset_ok and value.startswith("+"):
            assert base is not None
            try:
                return base + parse_duration(value[1:])
            except OverflowError:
                raise self.fail(f"{value!r} is too far after the authorization", step=step, field=field) from None
            except ValueError:
                raise self.fail(f"{value!r} is not an offset like +2d, +36h or +90m", step=step, field=field) from None
        try:
            return parse_instant(value)
        except ValueError as exc:
            extra = " or an offset like +2d" if offset_ok else ""
            raise self.fail(f"{exc}{extra}", step=step, field=field) from None


# ------------------------------------------------------------------------------------ derived names


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def derive_reference(plan: Plan, rule: IdentifierRule | None = None) -> str:
    """'plan-' and 12 hex digits of the plan's content (not its spelling: TOML and JSON of one plan
    agree). Letters, digits and '-' within 8..50 characters pass every shipped reference rule but
    Hellgate's, whose references are payment ids: given a `rule` that refuses it, the same digest as
    a UUID (version 4 form, which the simulation never sends anywhere)."""
    content = plan.to_dict()
    content["payment"].pop("reference", None)
    digest = _digest(orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode())
    readable = "plan-" + digest[:12]
    if rule is None or rule.problem(readable) is None:
        return readable
    return str(uuid.UUID(digest[:32], version=4))


def derive_key(plan: Plan, index: int, op: str, rule: IdentifierRule) -> str:
    """A stable idempotency key for step `index` (0: the authorization) that obeys `rule` if it can.

    Readable first (`capture-2-1f0c9a3b7d21`); else bare hex, cut to the rule's maximum. If no
    candidate fits, the readable one is returned and the provider's format check refuses it.
    """
    digest = _digest(plan.reference, str(index), op)
    readable = f"{op}-{index}-{digest[:12]}"
    candidates = [readable, digest[:32], digest]
    if rule.max_length is not None:
        candidates.append(digest[: rule.max_length])
    return next((c for c in candidates if rule.problem(c) is None), readable)
