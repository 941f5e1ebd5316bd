"""The exceptions capstate raises, arranged by who is to blame.

A policy rejection inside `decide` is a value (`Decision(allowed=False, ...)`), never an exception.
Exceptions are for misuse and for broken input: a spec that does not load, an event that cannot be
parsed, an event that the spec says cannot happen. Every class subclasses the builtin that generic code
would catch, so `except ValueError` still works for callers that know nothing of capstate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._values import Violation


class CapstateError(Exception):
    """Base of every capstate error. Never raised bare."""

    def __init__(self, *args: object) -> None:
        if type(self) is CapstateError:
            raise TypeError("tried to instantiate CapstateError directly; raise a subclass")
        super().__init__(*args)


class SpecError(CapstateError, ValueError):
    """A spec (or an override) is broken. Names the file, the key path and, where known, the line.

    str(err) reads: ``specs/vipps.toml:41: transitions[3].dest: unknown state 'capturd'``.
    """

    def __init__(self, message: str, *, file: str = "<spec>", path: str = "", line: int | None = None):
        self.file = file
        self.path = path
        self.line = line
        self.reason = message
        where = file if line is None else f"{file}:{line}"
        super().__init__(f"{where}: {path}: {message}" if path else f"{where}: {message}")


class EventError(CapstateError, ValueError):
    """An event (a log line, a dict) is not a valid canonical event. Names the field."""

    def __init__(self, message: str, *, field: str | None = None):
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


class PlanError(CapstateError, ValueError):
    """A capture plan is broken. Names the step (1-based, as the plan lists them) and the field.

    str(err) reads: ``plan step 3: field 'amount': must be an integer >= 0 of minor units, got 12.5``,
    prefixed with the file when the caller names one.
    """

    def __init__(self, message: str, *, step: int | None = None, field: str | None = None,
                 file: str | None = None):
        self.step = step
        self.field = field
        self.file = file
        self.reason = message
        where = "plan" if step is None else f"plan step {step}"
        text = f"{where}: field {field!r}: {message}" if field else f"{where}: {message}"
        super().__init__(f"{file}: {text}" if file else text)


class CommandError(CapstateError, ValueError):
    """A command is malformed in a way no provider could judge (wrong type, naive datetime)."""


class AuditError(CapstateError, ValueError):
    """An audit cannot run at all (a naive `as_of`, a spec that is neither a Spec nor a name).

    A bad log line is never an AuditError: it is a LOG_MALFORMED finding and the audit goes on.
    """


class InvalidTransition(CapstateError):
    """The caller applied an event that the spec says cannot happen. The payment is unchanged.

    `violations` holds the same structured reasons a `Decision` would carry.
    """

    def __init__(self, message: str, violations: Sequence[Violation] = ()):
        self.violations = tuple(violations)
        super().__init__(message)


class ProviderError(CapstateError):
    """The provider said no, or said something the spec cannot explain. Used by capstate.providers.

    Besides the message it carries what a caller needs to act without parsing text:

    - `provider`: the provider's name ("vipps", "bambora", ...);
    - `status`: the HTTP status, when there was a response;
    - `error_id`: the provider's OWN error identifier, kept verbatim: Bambora's `type` slug
      ("payment_operation_blocked"), Vipps's problem `type` (its `title` when the type is absent),
      Pipwave's status code ("9001"), Hellgate's failure classifier;
    - `title` / `detail`: the provider's human text, when it gave one;
    - `retryable`: sending the same request again may succeed (a lock, a rate limit, a 5xx);
    - `reconcile`: the outcome is UNKNOWN; read the payment back (GET / requery) before anything else,
      because the operation may have happened.

    str(err) is built only from these fields, never from credentials or request headers.
    """

    def __init__(self, message: str = "", *, provider: str | None = None, status: int | None = None,
                 error_id: str | None = None, title: str | None = None, detail: str | None = None,
                 retryable: bool = False, reconcile: bool = False):
        self.provider = provider
        self.status = status
        self.error_id = error_id
        self.title = title
        self.detail = detail
        self.retryable = retryable
        self.reconcile = reconcile
        self.reason = message
        head = " ".join(part for part in (
            provider,
            f"HTTP {status}" if status is not None else None,
            error_id,
        ) if part)
        super().__init__(f"{head}: {message}" if head else message)


class RequestError(CapstateError, ValueError):
    """A request cannot be built safely: a reference, key, credential or amount breaks the provider's
    rules (or would change the request target or inject a header). Nothing was sent.

    `field` names the offending input; the message never echoes a credential.
    """

    def __init__(self, message: str, *, field: str | None = None):
        self.field = field
        self.reason = message
        super().__init__(f"{field}: {message}" if field else message)


class SignatureError(ProviderError):
    """A bad or missing signature, or a stale timestamp. Used by capstate.providers."""
