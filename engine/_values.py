"""The values capstate passes around: commands, events, payments and decisions.

All are frozen attrs classes with slots. Change a value with `attrs.evolve`; parse with the named
constructors (`Event.from_json`). Amounts are integer minor units; times are timezone-aware datetimes
that the caller supplies, because the core never reads a clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from attrs import field, frozen

from ._codes import Code
from ._errors import CommandError, EventError
from ._money import CurrencyError, exponent, is_currency
from ._time import FIRST_YEAR, LAST_YEAR, format_instant, instant_problem, parse_instant

if TYPE_CHECKING:
    from ._spec import Spec


class EventType(StrEnum):
    """The canonical event types: facts that happened (DESIGN.md section 3)."""

    AUTHORIZED = "authorized"
    CAPTURE_REQUESTED = "capture_requested"
    CAPTURED = "captured"
    CAPTURE_FAILED = "capture_failed"
    CANCELLED = "cancelled"
    REFUNDED = "refunded"
    EXPIRED = "expired"


class Flow(StrEnum):
    MANUAL = "manual"
    AUTOMATIC = "automatic"


_AMOUNT_REQUIRED = frozenset({EventType.AUTHORIZED, EventType.CAPTURED, EventType.REFUNDED})
_EVENT_FIELDS = ("payment", "type", "at", "amount", "currency", "provider", "key", "flow", "reason")
_AUTHORIZED = EventType.AUTHORIZED
# An exact str is looked up here: calling the enum class costs several times more.
_TYPES: dict[str, EventType] = {t.value: t for t in EventType}
_FLOWS: dict[str, Flow] = {f.value: f for f in Flow}
_E = TypeVar("_E", bound=StrEnum)
_TEXT_FIELDS = ("payment", "provider", "key", "reason")  # the fields not checked against a fixed set


def _enum_or_none(enum: type[_E], value: object) -> _E | None:
    """The member of `enum` for a value that is not an exact str (a member, a str subclass), or None."""
    try:
        return enum(value)  # type: ignore[arg-type]  # any value: the Enum refuses what is not a member
    except (ValueError, TypeError):
        return None


# A lone surrogate (U+D800..U+DFFF) is a str Python holds but no UTF-8 text can: JSON, a report or a
# request built from it fails far from where it came in. orjson never decodes one; a dict built in
# Python, json.loads('"\\ud800"') or argv decoded with surrogateescape can hold one.
_SURROGATE = re.compile("[\ud800-\udfff]")


def surrogate_in(value: str) -> bool:
    """Whether `value` holds a lone surrogate, so it cannot be written as UTF-8."""
    return not value.isascii() and _SURROGATE.search(value) is not None


def text_problem(obj: Mapping[str, Any] | Event) -> tuple[str, str] | None:
    """(field, why) for the first free-text field of an event (or its object) that holds a lone surrogate."""
    for name in _TEXT_FIELDS:
        value = obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name)
        if type(value) is str and surrogate_in(value):
            return name, f"{value!r} holds a lone surrogate, which no UTF-8 text can carry"
    return None


def _check_amount(value: object, what: str) -> None:
    # bool is an int subclass; True is never an amount.
    if value is not None and type(value) is not int:
        raise TypeError(f"{what} must be an integer of minor units, got {type(value).__name__} {value!r}")
    if value is not None and value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")


# --------------------------------------------------------------------------------------------- events


@frozen
class Event:
    """One fact about one payment: one line of a canonical JSONL log.

    Build it directly, or parse with `Event.from_json(line)` / `Event.from_dict(obj)`, which raise
    `EventError` naming the bad field.
    """

    payment: str
    type: EventType
    at: datetime
    amount: int | None = None
    currency: str | None = None
    provider: str | None = None
    key: str | None = None
    flow: Flow | None = None
    reason: str | None = None

    @classmethod
    def from_json(cls, line: bytes | str) -> Event:
        """Parse one JSONL line. Raises EventError for invalid JSON or an invalid event."""
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise EventError(f"not valid JSON ({exc})") from None
        return cls._from_object(obj)  # orjson decodes no lone surrogate: none to look for

    @classmethod
    def from_dict(cls, obj: object) -> Event:
        """Validate a decoded JSON object. Unknown extra fields are ignored (DESIGN.md section 3)."""
        event = cls._from_object(obj)
        assert isinstance(obj, dict)
        text = text_problem(obj)
        if text is not None:
            raise EventError(text[1], field=text[0])
        return event

    @classmethod
    def _from_object(cls, obj: object) -> Event:
        """from_dict, but for the lone surrogates a dict built in Python may hold."""
        # The audit calls this once per log line: lookups go through plain dicts, not the enum classes.
        if not isinstance(obj, dict):
            raise EventError(f"an event is a JSON object, got {type(obj).__name__}")
        get = obj.get
        payment = get("payment")
        if not isinstance(payment, str) or not payment:
            raise EventError("required, a non-empty string", field="payment")
        raw_type = get("type")
        etype = _TYPES.get(raw_type) if type(raw_type) is str else _enum_or_none(EventType, raw_type)
        if etype is None:
            allowed = ", ".join(t.value for t in EventType)
            raise EventError(f"{raw_type!r} is not one of {allowed}", field="type")
        raw_at = get("at")
        try:
            at = parse_instant(raw_at)  # type: ignore[arg-type]
        except ValueError as exc:
            raise EventError(str(exc) if raw_at is not None else "required", field="at") from None
        amount = get("amount")
        if amount is None:
            if etype in _AMOUNT_REQUIRED:
                raise EventError(f"required on a {etype.value} event", field="amount")
        elif type(amount) is not int or amount < 0:
            raise EventError(f"must be an integer >= 0 of minor units, got {amount!r}", field="amount")
        currency = get("currency")
        if currency is None:
            if etype is _AUTHORIZED:
                raise EventError("required on an authorized event", field="currency")
        elif not isinstance(currency, str):
            # Checked first: an unhashable value would escape exponent()'s cache as a TypeError.
            raise EventError(f"{currency!r} is not an ISO 4217 alpha-3 currency code", field="currency")
        else:
            try:
                exponent(currency)
            except CurrencyError as exc:
                raise EventError(str(exc), field="currency") from None
        flow = get("flow")
        if flow is not None:
            flow = _FLOWS.get(flow) if type(flow) is str else _enum_or_none(Flow, flow)
            if flow is None:
                raise EventError(f"{get('flow')!r} is not 'manual' or 'automatic'", field="flow")
        provider, key, reason = get("provider"), get("key"), get("reason")
        for name, value in (("provider", provider), ("key", key), ("reason", reason)):
            if value is not None and not isinstance(value, str):
                raise EventError(f"must be a string, got {type(value).__name__}", field=name)
        if cls is not Event:
            return cls(payment, etype, at, amount, currency, provider, key, flow, reason)
        return new_event(payment, etype, at, amount, currency, provider, key, flow, reason)

    def to_dict(self) -> dict[str, Any]:
        """The canonical JSON object, without absent fields."""
        out: dict[str, Any] = {"payment": self.payment, "type": self.type.value,
                               "at": format_instant(self.at)}
        for name in _EVENT_FIELDS[3:]:
            value = getattr(self, name)
            if value is not None:
                out[name] = value.value if isinstance(value, StrEnum) else value
        return out

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_dict())


# ------------------------------------------------------------------------------------------- commands


def _aware(instance: object, attribute: Any, value: Any) -> None:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise CommandError(f"{type(instance).__name__}.{attribute.name} must be a timezone-aware datetime, "
                           f"got {value!r}")
    if not FIRST_YEAR <= value.year <= LAST_YEAR:  # _time.instant_problem, inline: so decide never overflows
        raise CommandError(f"{type(instance).__name__}.{attribute.name}: {instant_problem(value)}")


def _instant_or_none(instance: object, attribute: Any, value: Any) -> None:
    # Payment(...) built by hand: `apply` sets authorized_at only from an event check_fact accepted.
    if value is not None:
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise TypeError(f"Payment.{attribute.name} must be a timezone-aware datetime, got {value!r}")
        far = instant_problem(value)
        if far is not None:
            raise ValueError(f"Payment.{attribute.name}: {far}")


def _amount(instance: object, attribute: Any, value: Any) -> None:
    if value is not None and type(value) is not int:
        raise CommandError(f"{type(instance).__name__}.{attribute.name} must be an int of minor units "
                           f"(money is never a float), got {value!r}")


def _currency(instance: object, attribute: Any, value: Any) -> None:
    # An unknown code has no exponent, so no amount in it could be checked, shown or sent.
    if value is not None and not is_currency(value):
        raise CommandError(f"{type(instance).__name__}.{attribute.name} must be an ISO 4217 code, "
                           f"got {value!r}")


def _flow(value: object) -> Flow | None:
    # Kept as text, "automatic" never matched `Flow.AUTOMATIC`: manual captures passed on such a flow.
    if value is None or type(value) is Flow:
        return value
    flow = _FLOWS.get(value) if type(value) is str else _enum_or_none(Flow, value)
    if flow is None:
        raise CommandError(f"Authorize.flow must be 'manual' or 'automatic', got {value!r}")
    return flow


def _bool(instance: object, attribute: Any, value: Any) -> None:
    # A truthy "no" would release the remainder after the capture.
    if type(value) is not bool:
        raise CommandError(f"{type(instance).__name__}.{attribute.name} must be a bool, got {value!r}")


def _opt_str(instance: object, attribute: Any, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise CommandError(f"{type(instance).__name__}.{attribute.name} must be a string, got {value!r}")
    if value is not None and surrogate_in(value):  # e.g. argv bytes that are not UTF-8 (surrogateescape)
        raise CommandError(f"{type(instance).__name__}.{attribute.name}: {value!r} holds a lone surrogate, "
                           f"which no UTF-8 text can carry")


@frozen(kw_only=True)
class Authorize:
    """Reserve `amount` on the customer's card or wallet."""

    amount: int = field(validator=_amount)
    currency: str = field(validator=_currency)
    at: datetime = field(validator=_aware)
    flow: Flow | None = field(default=None, converter=_flow)
    key: str | None = field(default=None, validator=_opt_str)


@frozen(kw_only=True)
class Capture:
    """Capture `amount` (None: the full capturable amount). `final` releases what is left afterwards."""

    at: datetime = field(validator=_aware)
    amount: int | None = field(default=None, validator=_amount)
    currency: str | None = field(default=None, validator=_currency)
    key: str | None = field(default=None, validator=_opt_str)
    final: bool = field(default=False, validator=_bool)


@frozen(kw_only=True)
class Cancel:
    """Release the uncaptured remainder (`amount` None: all of it)."""

    at: datetime = field(validator=_aware)
    amount: int | None = field(default=None, validator=_amount)
    key: str | None = field(default=None, validator=_opt_str)


@frozen(kw_only=True)
class Refund:
    """Return `amount` of what was captured."""

    amount: int = field(validator=_amount)
    at: datetime = field(validator=_aware)
    currency: str | None = field(default=None, validator=_currency)
    key: str | None = field(default=None, validator=_opt_str)


Command = Authorize | Capture | Cancel | Refund
_OPS: tuple[tuple[type, str], ...] = ((Capture, "capture"), (Cancel, "cancel"), (Refund, "refund"),
                                      (Authorize, "authorize"))


# ------------------------------------------------------------------------------------------- payments


@frozen
class KeyUse:
    """An idempotency key the payment's history used: for which operation and amount, and whether that
    succeeded. `succeeded` False is an attempt the provider saw but did not (yet) carry out: a capture
    requested and in flight, or one that failed. Its key may be reused only for an identical retry
    (Vipps ePayment FAQ: "The capture request in an idempotent retry must be identical to the previous
    request(s)")."""

    key: str
    op: str
    amount: int
    succeeded: bool = True


def _spec_repr(spec: Spec) -> str:
    return f"<spec {spec.name}>"


def _counters_valid(authorized: object, captured: object, cancelled: object, refunded: object,  # noqa: PLR0917
                    pending: object, capture_count: object, refund_count: object) -> bool:
    """Whether a Payment's counters are ints and none is negative: the OR of ints is negative iff one is."""
    int_ = int
    return (type(authorized) is int_ and type(captured) is int_ and type(cancelled) is int_
            and type(refunded) is int_ and type(pending) is int_ and type(capture_count) is int_
            and type(refund_count) is int_
            and (authorized | captured | cancelled | refunded | pending | capture_count | refund_count) >= 0)


@frozen
class Payment:
    """The aggregate of one payment under one provider's spec.

    Amounts are integer minor units of `currency`. `pending` is a capture in flight (Hellgate's
    `capturing`). `validity` is fixed from the spec at authorization, so `expires_at` is derived.
    Build one with `Payment.new` or `Payment.authorized`, then move it with `capstate.apply`.
    """

    spec: Spec = field(repr=_spec_repr, eq=False)
    reference: str
    state: str
    currency: str | None = None
    authorized: int = 0
    captured: int = 0
    cancelled: int = 0
    refunded: int = 0
    pending: int = 0
    capture_count: int = 0
    refund_count: int = 0
    authorized_at: datetime | None = field(default=None, validator=_instant_or_none)
    validity: timedelta | None = None
    flow: Flow | None = None
    keys: tuple[KeyUse, ...] = ()

    def __attrs_post_init__(self) -> None:
        # Invariants raise; they never clamp (see saleor's max(..., 0) in research/anchors.md). Only
        # value invariants live here: "refunded <= captured" is a policy that a real history can break,
        # and the audit must be able to hold such a payment to report it. The OR of the counters is
        # negative iff one is: a cheap test on the hot path, with the slow loop only to name the culprit.
        if not _counters_valid(self.authorized, self.captured, self.cancelled, self.refunded, self.pending,
                               self.capture_count, self.refund_count):
            for name in ("authorized", "captured", "cancelled", "refunded", "pending", "capture_count",
                         "refund_count"):
                _check_amount(getattr(self, name), f"Payment.{name}")

    def moved(self, state: str, *, captured: int | None = None, cancelled: int | None = None,
              refunded: int | None = None, pending: int | None = None, capture_count: int | None = None,
              refund_count: int | None = None, keys: tuple[KeyUse, ...] | None = None) -> Payment:
        """A copy with a new state and some counters changed: `attrs.evolve` at a fraction of the cost."""
        return new_payment(
            self.spec, self.reference, state, self.currency, self.authorized,
            self.captured if captured is None else captured,
            self.cancelled if cancelled is None else cancelled,
            self.refunded if refunded is None else refunded,
            self.pending if pending is None else pending,
            self.capture_count if capture_count is None else capture_count,
            self.refund_count if refund_count is None else refund_count,
            self.authorized_at, self.validity, self.flow,
            self.keys if keys is None else keys,
        )

    @classmethod
    def new(cls, spec: Spec, reference: str) -> Payment:
        """A payment in the spec's initial state, before authorization."""
        if cls is not Payment:
            return cls(spec, reference, spec.initial)
        return new_payment(spec, reference, spec.initial, None, 0, 0, 0, 0, 0, 0, 0, None, None, None, ())

    @classmethod
    def authorized_for(cls, spec: Spec, reference: str, *, amount: int, currency: str, at: datetime,
                       flow: Flow | str | None = None) -> Payment:
        """A freshly authorized payment: `apply(Payment.new(...), authorized-event)`."""
        from ._engine import apply

        event = Event(reference, EventType.AUTHORIZED, at, amount, currency,
                      flow=Flow(flow) if flow is not None else None)
        return apply(cls.new(spec, reference), event)

    @property
    def remainder(self) -> int:
        """Authorized money neither captured nor released (it includes a capture in flight)."""
        return self.authorized - self.captured - self.cancelled

    @property
    def capturable(self) -> int:
        """authorized - captured - cancelled - pending."""
        return self.authorized - self.captured - self.cancelled - self.pending

    @property
    def refundable(self) -> int:
        return self.captured - self.refunded

    @property
    def expires_at(self) -> datetime | None:
        """When the authorization lapses, or None when the provider's validity is unknown."""
        if self.authorized_at is None or self.validity is None:
            return None
        return self.authorized_at + self.validity

    def summary(self) -> dict[str, Any]:
        """The aggregate as a JSON-ready dict: state and the four amounts."""
        return {"state": self.state, "authorized": self.authorized, "captured": self.captured,
                "cancelled": self.cancelled, "refunded": self.refunded}


# ------------------------------------------------------------------------------------------ decisions


class _Deferrable:
    """Base of the frozen values whose costly fields the engine may leave to be computed on first read.

    The engine's hot paths (decide, observe) build values of which many callers read only a part: a
    Decision's `after` payment, a refusal's message with its arithmetic in major units. Such a value
    leaves the fields named in `_deferred` unset and holds `(settle, *args)` in a private slot;
    the first read of one calls `settle(*args)`, which returns all of them in order, and stores them.
    From then on, and to every reader (==, hash, repr, pickle, attrs.evolve, asdict), the value is the
    one an eager build would have made. `settle` must be pure over immutable arguments.

    Each deferred field's slot is wrapped in a property that settles on a miss (`_settling`), set on the
    class attrs builds. A `__getattr__` would do it with less code, but a class that defines one has
    every attribute read go through CPython's `slot_tp_getattr_hook` (~3x a plain slot read), and the
    audit's merge reads the fields of every finding several times.
    """

    __slots__ = ("_pending",)  # attrs adds no slot of its own for a plain base class
    _deferred: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # attrs builds a slotted class anew: only that one holds the fields' slots (member descriptors).
        slots = {name: cls.__dict__[name] for name in cls._deferred
                 if type(cls.__dict__.get(name)) is _MemberDescriptor}
        if slots:
            _settling(cls, slots)


_MemberDescriptor = type(_Deferrable._pending)  # type: ignore[attr-defined]  # a slot's descriptor
_pending_of = _Deferrable._pending.__get__  # type: ignore[attr-defined]


def _settling(cls: type[_Deferrable], slots: dict[str, Any]) -> None:
    """Put on `cls`, for each deferred field, a property that reads its slot and settles every deferred
    field on a miss; writes and deletes go to the slot, so a property's setter is a C call. The slots
    stay reachable through `deferred_slot`."""
    fields = cls._deferred
    if tuple(slots) != fields:
        raise TypeError(f"{cls.__name__}: every deferred field must be a slot of the class, got {tuple(slots)}")
    setters = tuple(slots[name].__set__ for name in fields)

    def settle_all(self: _Deferrable, name: str) -> None:
        try:
            pending = _pending_of(self)
        except AttributeError:  # neither set nor deferred: the AttributeError a plain class raises
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}") from None
        settle, *args = pending
        for set_value, value in zip(setters, settle(*args), strict=True):
            set_value(self, value)

    for name, slot in slots.items():
        get = slot.__get__

        def read(self: _Deferrable, get: Callable[[_Deferrable], Any] = get, name: str = name) -> Any:
            try:
                return get(self)
            except AttributeError:  # unset: deferred, or a real miss
                settle_all(self, name)
            return get(self)

        setattr(cls, name, property(read, slot.__set__, slot.__delete__))
    cls._deferred_slots = slots  # type: ignore[attr-defined]


def deferred_slot(cls: type[_Deferrable], name: str) -> Any:
    """The slot (member descriptor) of `cls`'s deferred field `name`: its `__get__` raises AttributeError
    while the field is unset, without settling it; its `__set__` sets it as a builder does."""
    return cls._deferred_slots[name]  # type: ignore[attr-defined]


@frozen
class Violation(_Deferrable):
    """Why a command is refused: a stable code and a message that shows the arithmetic."""

    _deferred = ("message",)

    code: Code
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


@frozen
class PolicyWarning:
    """A rule that lets the command through but changes or qualifies it (e.g. PARTIAL_BECOMES_FULL)."""

    code: Code
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code.value, "message": self.message}


@frozen
class Decision(_Deferrable):
    """The answer of `decide`: allowed or not, why, and the payment as it would be after success.

    `command` is the normalized command (amount and currency resolved, rewrites applied). `event` is
    the canonical fact that success would record. `after` is None when the command is refused.

    `decide` leaves `command`, `event` and `after` to be built on first read: they are frozen values of
    up to 15 fields, building them costs more than judging the command, and many callers read only
    `allowed` and the violations. Once read they are stored, so a Decision reads, compares, hashes,
    prints and pickles exactly as one built with all seven fields.
    """

    _deferred = ("command", "event", "after")

    allowed: bool
    command: Command
    before: Payment
    violations: tuple[Violation, ...] = ()
    warnings: tuple[PolicyWarning, ...] = ()
    event: Event | None = None
    after: Payment | None = None

    @property
    def codes(self) -> tuple[Code, ...]:
        return tuple(v.code for v in self.violations)

    def to_dict(self) -> dict[str, Any]:
        cmd = self.command
        amount = getattr(cmd, "amount", None)
        currency = getattr(cmd, "currency", None) or self.before.currency
        # By kind, not by class name: a service's own Capture subclass is still a "capture".
        op = next((name for kind, name in _OPS if isinstance(cmd, kind)), type(cmd).__name__.lower())
        return {
            "allowed": self.allowed,
            "violations": [v.to_dict() for v in self.violations],
            "warnings": [w.to_dict() for w in self.warnings],
            "command": {"op": op, "amount": amount, "currency": currency},
            "after": self.after.summary() if self.after is not None else None,
        }


# --------------------------------------------------------------------------------- fast construction

# A frozen attrs class refuses `obj.x = ...`, and its generated __init__ sets each slot through a bound
# object.__setattr__. The slots' own descriptors do the same work in about two thirds of the time; the
# per-event paths (Event.from_dict, Payment.moved, decide) build their values with them.
_new = object.__new__
(_e_payment, _e_type, _e_at, _e_amount, _e_currency, _e_provider, _e_key, _e_flow,
 _e_reason) = (Event.__dict__[name].__set__ for name in _EVENT_FIELDS)
(_p_spec, _p_reference, _p_state, _p_currency, _p_authorized, _p_captured, _p_cancelled, _p_refunded, _p_pending,
 _p_capture_count, _p_refund_count, _p_authorized_at, _p_validity, _p_flow,
 _p_keys) = (Payment.__dict__[a.name].__set__ for a in Payment.__attrs_attrs__)


def new_event(payment: str, etype: EventType, at: datetime, amount: int | None = None,  # noqa: PLR0917
              currency: str | None = None, provider: str | None = None, key: str | None = None,
              flow: Flow | None = None, reason: str | None = None) -> Event:
    """`Event(...)`, faster, with Event's own positional signature: for the engine's per-event paths
    (Event has no validators to skip)."""
    e: Event = _new(Event)
    _e_payment(e, payment)
    _e_type(e, etype)
    _e_at(e, at)
    _e_amount(e, amount)
    _e_currency(e, currency)
    _e_provider(e, provider)
    _e_key(e, key)
    _e_flow(e, flow)
    _e_reason(e, reason)
    return e


def new_payment(spec: Spec, reference: str, state: str, currency: str | None, authorized: int,  # noqa: PLR0917
                captured: int, cancelled: int, refunded: int, pending: int, capture_count: int, refund_count: int,
                authorized_at: datetime | None, validity: timedelta | None, flow: Flow | None,
                keys: tuple[KeyUse, ...]) -> Payment:
    """`Payment(...)` with every field given, faster: the audit builds one per event. It runs the same
    counter checks as `__init__`."""
    p: Payment = _new(Payment)
    _p_spec(p, spec)
    _p_reference(p, reference)
    _p_state(p, state)
    _p_currency(p, currency)
    _p_authorized(p, authorized)
    _p_captured(p, captured)
    _p_cancelled(p, cancelled)
    _p_refunded(p, refunded)
    _p_pending(p, pending)
    _p_capture_count(p, capture_count)
    _p_refund_count(p, refund_count)
    _p_authorized_at(p, authorized_at)
    _p_validity(p, validity)
    _p_flow(p, flow)
    _p_keys(p, keys)
    # __attrs_post_init__'s test on the arguments at hand (the audit builds a Payment per breach).
    if not _counters_valid(authorized, captured, cancelled, refunded, pending, capture_count, refund_count):
        p.__attrs_post_init__()  # names the culprit
    return p


def deferred_decision(allowed: bool, before: Payment, violations: tuple[Violation, ...],
                      warnings: tuple[PolicyWarning, ...], pending: tuple[Any, ...]) -> Decision:
    """A Decision whose command, event and after are `pending[0](*pending[1:])`, computed on first read.

    For `decide` only: `settle` must be pure and return the three values a Decision built eagerly by
    the same call would hold.
    """
    d: Decision = _new(Decision)
    set_allowed(d, allowed)
    set_before(d, before)
    set_violations(d, violations)
    set_warnings(d, warnings)
    set_pending(d, pending)
    return d


def new_violation(code: Code, message: str) -> Violation:
    """`Violation(code, message)`, faster (its slots set directly, as for Event and Payment above): the
    guards and `explain_missing` build one for every refusal, and `Violation` has no validators."""
    v: Violation = _new(Violation)
    set_code(v, code)
    _set_message(v, message)
    return v


def deferred_violation(code: Code, pending: tuple[Any, ...]) -> Violation:
    """A Violation whose message is `pending[0](*pending[1:])[0]`, formatted on first read (see _Deferrable).

    For guards whose message shows costly arithmetic: a caller that only counts codes never pays for it.
    """
    v: Violation = _new(Violation)
    set_code(v, code)
    set_pending(v, pending)
    return v


# The slots' own setters, as for Event and Payment above. decide's capture path and exceeds_capturable
# (the guard of most refused captures) use them in place of the two builders above: on a ~1.3 µs
# refusal, the two calls saved are ~90 ns. Whatever uses them must set what the builder sets.
set_code = Violation.__dict__["code"].__set__
_set_message = deferred_slot(Violation, "message").__set__
set_allowed = Decision.__dict__["allowed"].__set__
set_before = Decision.__dict__["before"].__set__
set_violations = Decision.__dict__["violations"].__set__
set_warnings = Decision.__dict__["warnings"].__set__
set_pending = _Deferrable.__dict__["_pending"].__set__
