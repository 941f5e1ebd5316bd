"""Money: integer minor units with an ISO 4217 currency. Never a float.

Exponents come from the `iso4217` package. Decimal strings exist only at a provider's edge
(Pipwave's decimal(11,2)); `to_major_string` and `from_major_string` convert exactly, digit by digit.
"""

from __future__ import annotations

import re
from functools import cache

from attrs import frozen
from iso4217 import Currency as _Iso

from ._errors import CapstateError


class CurrencyError(CapstateError, ValueError):
    """Not an ISO 4217 alpha-3 code, or a code with no minor unit (gold, SDRs, ...)."""


@cache
def exponent(code: str) -> int:
    """The number of minor-unit digits of an ISO 4217 currency: NOK 2, JPY 0, KWD 3.

    Raises CurrencyError for an unknown code or one that has no minor unit (XAU, XDR).
    """
    if not isinstance(code, str) or len(code) != 3 or not code.isascii() or not code.isupper():
        raise CurrencyError(f"{code!r} is not an ISO 4217 alpha-3 currency code")
    try:
        exp = _Iso(code).exponent
    except ValueError:
        raise CurrencyError(f"{code!r} is not an ISO 4217 currency") from None
    if exp is None:
        raise CurrencyError(f"{code!r} has no minor unit, so it cannot be a payment currency")
    return int(exp)


def is_currency(code: object) -> bool:
    if not isinstance(code, str):
        return False
    try:
        exponent(code)
    except CurrencyError:
        return False
    return True


@frozen
class Money:
    """An amount in integer minor units of `currency`. `Money(1050, "NOK")` is NOK 10.50."""

    minor: int
    currency: str

    def __attrs_post_init__(self) -> None:
        if type(self.minor) is not int:
            raise TypeError(f"money is integer minor units, got {type(self.minor).__name__} {self.minor!r}")
        exponent(self.currency)

    def __str__(self) -> str:
        return f"{self.currency} {to_major_string(self.minor, self.currency)}"


def to_major_string(minor: int, currency: str, places: int | None = None) -> str:
    """Format minor units as a major-unit decimal string: (1050, "NOK") -> "10.50".

    With `places`, the string has exactly that many decimals; ValueError if that would lose digits.
    """
    if type(minor) is not int:
        raise TypeError(f"money is integer minor units, got {type(minor).__name__} {minor!r}")
    exp = exponent(currency)
    if places is None or places == exp:
        # The common case (every violation message that shows money): no digits to add or drop.
        if not exp:
            return str(minor)
        digits = str(-minor if minor < 0 else minor).rjust(exp + 1, "0")
        return f"{'-' if minor < 0 else ''}{digits[:-exp]}.{digits[-exp:]}"
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor)).rjust(exp + 1, "0")
    whole, frac = (digits[:-exp], digits[-exp:]) if exp else (digits, "")
    if places < exp:
        dropped = frac[places:]
        if dropped.strip("0"):
            raise ValueError(f"{currency} {minor} minor units need {exp} decimals, not {places}")
        frac = frac[:places]
    else:
        frac = frac + "0" * (places - exp)
    return f"{sign}{whole}.{frac}" if places else f"{sign}{whole}"


# Every provider types amounts as int64 (Bambora swagger `format: int64`, Vipps `Amount.value` int64): the
# largest amount capstate allows, sends or takes from a log. JSON can carry more (orjson reads up to
# 2**64 - 1), which no provider can have meant.
INT64_MAX = 2**63 - 1

# ASCII digits only: \d would accept Arabic-Indic and other Unicode digits, which int() then converts.
# fullmatch, not match with "$": "$" also matches before a trailing newline, so "10.50\n" passed.
_DECIMAL = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")


def from_major_string(text: str, currency: str) -> int:
    """Parse a major-unit decimal string exactly: ("10.5", "NOK") -> 1050. ValueError if inexact."""
    m = _DECIMAL.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"{text!r} is not a decimal amount")
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    exp = exponent(currency)
    if len(frac.rstrip("0")) > exp:
        raise ValueError(f"{text!r} has more decimals than {currency} allows ({exp})")
    frac = frac[:exp].ljust(exp, "0")
    value = int(whole + frac)
    return -value if sign else value


def fits_decimal(minor: int, currency: str, precision: int, scale: int) -> str | None:
    """Whether `minor` units of `currency` fit SQL-style decimal(precision, scale) in major units.

    Returns None when they fit, or the reason they do not (too many decimals, or too many digits).
    """
    step, bound = decimal_bounds(currency, precision, scale)
    if minor % step:
        return (f"{to_major_string(minor, currency)} {currency} needs {exponent(currency)} decimals; the format "
                f"has {scale}")
    if abs(minor) >= bound:
        return (f"{to_major_string(minor, currency)} {currency} has more than {precision - scale} integer "
                f"digits")
    return None


def decimal_bounds(currency: str, precision: int, scale: int) -> tuple[int, int]:
    """`fits_decimal` as two numbers: `minor` units fit decimal(precision, scale) exactly when `minor` is a
    multiple of the first and its magnitude is below the second. (The audit's compiled loop keeps them per
    currency, so that it judges a fit with two integer operations and no call.)"""
    exp = exponent(currency)
    return (10 ** (exp - scale) if exp > scale else 1), 10 ** (precision - scale + exp)
