"""capstate: capture state machines for payment providers.

Pure core: declarative provider specs (TOML, loaded into transitions), `decide` before any capture is
sent, `apply` for every fact that comes back, `replay` for a history. No I/O, no clock, no randomness.

    >>> from datetime import datetime, UTC
    >>> import capstate
    >>> spec = capstate.load_spec("vipps")
    >>> t0 = datetime(2026, 1, 5, 12, tzinfo=UTC)
    >>> p = capstate.Payment.authorized_for(spec, "order-10001", amount=100000, currency="NOK", at=t0)
    >>> d = capstate.decide(p, capstate.Capture(at=t0, amount=25000, key="ship-1"))
    >>> d.allowed, d.after.captured
    (True, 25000)
"""

# Every public name is imported when first used (PEP 562), not when `capstate` is imported: the CLI's
# `capstate --help` must start in well under 150 ms, and a service that only calls `decide` never loads
# the audit or the model checker. A new public name goes in both the block below (for type checkers)
# and _LAZY (tests/test_packaging.py holds the two equal).
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._audit import AuditReport, Finding, audit
    from ._check import CheckResult, Counterexample, check_spec
    from ._codes import Code
    from ._engine import apply, decide, observe, replay
    from ._errors import (
        AuditError,
        CapstateError,
        CommandError,
        EventError,
        InvalidTransition,
        PlanError,
        ProviderError,
        SignatureError,
        SpecError,
    )
    from ._money import CurrencyError, Money, exponent, from_major_string, to_major_string
    from ._plan import Op, Outcome, Plan, PlanStep
    from ._policy import IdentifierRule, Policy, RuleSource
    from ._simulate import NoteCode, SimulationNote, SimulationResult, StepResult, simulate
    from ._spec import Spec, Transition, load_spec, shipped
    from ._values import (
        Authorize,
        Cancel,
        Capture,
        Command,
        Decision,
        Event,
        EventType,
        Flow,
        KeyUse,
        Payment,
        PolicyWarning,
        Refund,
        Violation,
    )

    shipped_specs = shipped

_LAZY: dict[str, str] = {
    "AuditReport": "_audit",
    "Finding": "_audit",
    "audit": "_audit",
    "CheckResult": "_check",
    "Counterexample": "_check",
    "check_spec": "_check",
    "Code": "_codes",
    "apply": "_engine",
    "decide": "_engine",
    "observe": "_engine",
    "replay": "_engine",
    "AuditError": "_errors",
    "CapstateError": "_errors",
    "CommandError": "_errors",
    "EventError": "_errors",
    "InvalidTransition": "_errors",
    "PlanError": "_errors",
    "ProviderError": "_errors",
    "SignatureError": "_errors",
    "SpecError": "_errors",
    "CurrencyError": "_money",
    "Money": "_money",
    "exponent": "_money",
    "from_major_string": "_money",
    "to_major_string": "_money",
    "Op": "_plan",
    "Outcome": "_plan",
    "Plan": "_plan",
    "PlanStep": "_plan",
    "IdentifierRule": "_policy",
    "Policy": "_policy",
    "RuleSource": "_policy",
    "NoteCode": "_simulate",
    "SimulationNote": "_simulate",
    "SimulationResult": "_simulate",
    "StepResult": "_simulate",
    "simulate": "_simulate",
    "Spec": "_spec",
    "Transition": "_spec",
    "load_spec": "_spec",
    "shipped": "_spec",
    "Authorize": "_values",
    "Cancel": "_values",
    "Capture": "_values",
    "Command": "_values",
    "Decision": "_values",
    "Event": "_values",
    "EventType": "_values",
    "Flow": "_values",
    "KeyUse": "_values",
    "Payment": "_values",
    "PolicyWarning": "_values",
    "Refund": "_values",
    "Violation": "_values",
    "shipped_specs": "_spec",
}

_RENAMED = {"shipped_specs": "shipped"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), _RENAMED.get(name, name))
    globals()[name] = value  # later reads skip __getattr__
    return value


__all__ = [
    "AuditError",
    "AuditReport",
    "Authorize",
    "Cancel",
    "CapstateError",
    "Capture",
    "CheckResult",
    "Code",
    "Command",
    "CommandError",
    "Counterexample",
    "CurrencyError",
    "Decision",
    "Event",
    "EventError",
    "EventType",
    "Finding",
    "Flow",
    "IdentifierRule",
    "InvalidTransition",
    "KeyUse",
    "Money",
    "NoteCode",
    "Op",
    "Outcome",
    "Payment",
    "Plan",
    "PlanError",
    "PlanStep",
    "Policy",
    "PolicyWarning",
    "ProviderError",
    "Refund",
    "RuleSource",
    "SignatureError",
    "SimulationNote",
    "SimulationResult",
    "Spec",
    "SpecError",
    "StepResult",
    "Transition",
    "Violation",
    "apply",
    "audit",
    "check_spec",
    "decide",
    "exponent",
    "from_major_string",
    "load_spec",
    "observe",
    "replay",
    "shipped_specs",
    "simulate",
    "to_major_string",
]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
