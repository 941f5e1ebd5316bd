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
