"""Parsing the CLI's own values: `--set` overrides, amounts, instants and currencies.

Each parser raises UsageError with a message that names the option, so `main` prints one line and
exits 2. Nothing here knows a provider by name.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .._errors import SpecError
from .._money import CurrencyError, exponent
from .._policy import POLICY_PARSERS
from .._spec import Spec, load_spec, shipped
from .._time import parse_instant


class UsageError(ValueError):
    """A bad command-line value: the CLI prints the message on one line and exits 2."""


_OVERRIDES = "overrides."
_DIGITS = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"^[+-]?[0-9]*\.[0-9]+$|^[+-]?[0-9]+\.[0-9]*$")


def parse_amount(text: str) -> int:
    """'25000' -> 25000 minor units. Refuses signs, floats and anything but ASCII digits."""
    if _DIGITS.fullmatch(text):
        return int(text)
    if _DECIMAL.match(text):
        raise UsageError(f"--amount {text!r}: amounts are integer minor units, never decimals "
                         f"(1050 for 10.50 NOK)")
    raise UsageError(f"--amount {text!r}: not an integer >= 0 of minor units")


def parse_at(text: str, option: str = "--at") -> datetime:
    """An RFC 3339 instant given to `option`; a bad one is a UsageError naming the option."""
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def check_currency(code: str) -> str:
    """An ISO 4217 code given to --currency, in any case ("nok" is NOK)."""
    code = code.strip().upper()
    try:
        exponent(code)
    except CurrencyError as exc:
        raise UsageError(f"--currency: {exc}") from None
    return code


def _toml_value(text: str) -> Any:
    # TOML spells ints, strings and inline tables exactly as a spec file does; anything TOML cannot
    # read ("7d", "unlimited") is the bare string the user meant.
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def split_set(item: str, example: str) -> tuple[str, str]:
    """One `--set key=value` item as (key, value), both stripped. Raises UsageError naming `example`."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"--set {item!r}: expected key=value, such as {example}")
    return key, value.strip()


def parse_sets(items: Sequence[str], spec_name: str) -> dict[str, Any]:
    """`--set key=value` items as `load_spec` overrides for the spec named `spec_name`.

    A key may carry the provider as a prefix (`hellgate.authorization_validity=7d`); a prefix that
    names another shipped provider is refused rather than ignored, because the user would otherwise
    believe an override is in force. Unknown rule names are left for `load_spec` to refuse.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, value = split_set(item, "max_captures=2")
        head, dot, rest = key.partition(".")
        if head not in POLICY_PARSERS and dot:
            if head == spec_name:
                key = rest
            elif head in shipped():
                raise UsageError(f"--set {item!r}: the override is for {head!r}, but the spec is {spec_name!r}")
        out[key] = _toml_value(value)
    return out


def load_with_sets(name_or_path: str, sets: Sequence[str]) -> Spec:
    """Load a spec and apply `--set` overrides. Raises SpecError or UsageError."""
    spec = load_spec(name_or_path)
    if not sets:
        return spec
    # The prefix check needs the spec's own name, which a spec given by path only tells once loaded.
    overrides = parse_sets(sets, spec.name)
    try:
        return load_spec(name_or_path, overrides=overrides)
    except SpecError as exc:
        # The loader blames the spec file ("specs/vipps.toml: overrides.x"), but the bad value came
        # from the command line, so point the user there.
        if not exc.path.startswith(_OVERRIDES):
            raise
        raise UsageError(f"--set {exc.path[len(_OVERRIDES):]}: {exc.reason}") from None
