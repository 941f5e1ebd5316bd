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
    """The provider said no, or said something the spec cannot explain. Used by capstate.providers."""


class SignatureError(ProviderError):
    """A bad or missing signature, or a stale timestamp. Used by capstate.providers."""
