"""Vipps MobilePay ePayment API v1: request builders, response parsers, webhook signatures, event-log parser.

`capstate.providers.vipps` is the provider module the executor uses: the same names as every other
provider module (NAME, Credentials, build_*/parse_*).
"""

from .epayment import (
    MAX_AMOUNT,
    NAME,
    PRODUCTION,
    TEST,
    Credentials,
    build_cancel,
    build_capture,
    build_get,
    build_refund,
    parse_cancel,
    parse_capture,
    parse_error,
    parse_get,
    parse_refund,
)
from .webhooks import content_hash, signature, verify_webhook

__all__ = [
    "MAX_AMOUNT",
    "NAME",
    "PRODUCTION",
    "TEST",
    "Credentials",
    "build_cancel",
    "build_capture",
    "build_get",
    "build_refund",
    "content_hash",
    "parse_cancel",
    "parse_capture",
    "parse_error",
    "parse_get",
    "parse_refund",
    "signature",
    "verify_webhook",
]
