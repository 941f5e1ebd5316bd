"""Violation and warning codes: a stable public contract (DESIGN.md section 3).

Codes are added, never renamed. The string value is what reports and JSON carry.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """Why a command is refused (violations) or rewritten (warnings)."""

    # Violations named in DESIGN.md section 3.
    NOT_AUTHORIZED = "NOT_AUTHORIZED"
    INVALID_STATE = "INVALID_STATE"
    CAPTURE_IN_FLIGHT = "CAPTURE_IN_FLIGHT"
    AMOUNT_INVALID = "AMOUNT_INVALID"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    EXCEEDS_CAPTURABLE = "EXCEEDS_CAPTURABLE"
    PARTIAL_CAPTURE_UNSUPPORTED = "PARTIAL_CAPTURE_UNSUPPORTED"
    MULTIPLE_CAPTURES_UNSUPPORTED = "MULTIPLE_CAPTURES_UNSUPPORTED"
    REMAINDER_CANCELLED = "REMAINDER_CANCELLED"
    AUTHORIZATION_EXPIRED = "AUTHORIZATION_EXPIRED"
    AUTOMATIC_CAPTURE_FLOW = "AUTOMATIC_CAPTURE_FLOW"
    IDEMPOTENCY_KEY_REQUIRED = "IDEMPOTENCY_KEY_REQUIRED"
    IDEMPOTENCY_KEY_CONFLICT = "IDEMPOTENCY_KEY_CONFLICT"
    REFERENCE_INVALID = "REFERENCE_INVALID"
    REFUND_EXCEEDS_CAPTURED = "REFUND_EXCEEDS_CAPTURED"
    DUPLICATE_CAPTURE = "DUPLICATE_CAPTURE"
    DANGLING_AUTHORIZATION = "DANGLING_AUTHORIZATION"
    LOG_MALFORMED = "LOG_MALFORMED"

    # Violations added by capstate (DESIGN.md allows additions).
    CURRENCY_UNSUPPORTED = "CURRENCY_UNSUPPORTED"
    """The provider does not take this currency at all (Vipps: NOK, DKK and EUR only)."""
    MULTIPLE_REFUNDS_UNSUPPORTED = "MULTIPLE_REFUNDS_UNSUPPORTED"
    """A second refund where the spec allows one (Bambora's default)."""
    REFUND_WINDOW_EXPIRED = "REFUND_WINDOW_EXPIRED"
    """A refund after the provider's refund window (Vipps: 365 days)."""
    CANCEL_AMOUNT_INVALID = "CANCEL_AMOUNT_INVALID"
    """A cancel of part of the remainder where the provider always releases all of it."""
    OUT_OF_ORDER = "OUT_OF_ORDER"
    """audit: an event's `at` is earlier than the previous event of the same payment in the log."""
    OPERATION_IN_FLIGHT = "OPERATION_IN_FLIGHT"
    """journal: another operation of this payment (a cancel, or a refund beside a refund) is still open."""
    OUT_OF_BAND = "OUT_OF_BAND"
    """journal: the provider shows money moved that no intent of the journal can be credited with."""
    INTENT_UNSETTLED = "INTENT_UNSETTLED"
    """journal audit: an intent still pending or unknown past its lease; run `capstate reconcile`."""

    # Warnings: the command is allowed, possibly rewritten.
    PARTIAL_BECOMES_FULL = "PARTIAL_BECOMES_FULL"
    """A partial capture that the provider turns into a full one (Pipwave without gateway support)."""
    REMAINDER_HELD = "REMAINDER_HELD"
    """After this capture an uncaptured remainder stays held on the card and nothing can release it."""
    REMAINDER_RELEASED = "REMAINDER_RELEASED"
    """A final capture on a provider that releases the remainder only by a separate cancel."""
    IDEMPOTENCY_KEY_UNUSED = "IDEMPOTENCY_KEY_UNUSED"
    """A key was given to a provider that has no idempotency mechanism; it protects nothing there."""
    IDEMPOTENT_REPLAY = "IDEMPOTENT_REPLAY"
    """The key already succeeded with identical parameters; the provider replays and moves no money."""
    PARTIAL_MAY_BECOME_FULL = "PARTIAL_MAY_BECOME_FULL"
    """A partial capture where the provider's partial capture is an undocumented default: it may capture
    the full amount instead (Pipwave: "If PG not supporting partial capture, full capture will be done")."""


VIOLATION_CODES: frozenset[Code] = frozenset(Code) - {
    Code.PARTIAL_BECOMES_FULL,
    Code.REMAINDER_HELD,
    Code.REMAINDER_RELEASED,
    Code.IDEMPOTENCY_KEY_UNUSED,
    Code.IDEMPOTENT_REPLAY,
    Code.PARTIAL_MAY_BECOME_FULL,
}
WARNING_CODES: frozenset[Code] = frozenset(Code) - VIOLATION_CODES
