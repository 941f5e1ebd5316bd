"""The CLI's JSON documents, built from engine values. Field names here are a public contract."""

from __future__ import annotations

import json
from typing import Any

import orjson

from .._policy import POLICY_PARSERS
from .._spec import Spec
from .._time import format_instant
from .._values import Capture, Decision


def dumps(obj: Any) -> bytes:
    """One JSON document and a newline. orjson, except for an integer beyond int64 (a capture of
    99999999999999999999 is AMOUNT_INVALID, and --json must say so, not fail): the standard library
    writes it exactly, in the same compact form."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def provider(spec: Spec) -> dict[str, Any]:
    """One entry of `capstate providers --json`."""
    return {
        "name": spec.name,
        "title": spec.title,
        "doc": spec.doc,
        "file": spec.file,
        "policy": spec.policy.summary(),
        "defaults": sorted(n for n, src in spec.policy.sources.items() if src.default),
    }


def spec(s: Spec) -> dict[str, Any]:
    """`capstate spec NAME --json`: states, transitions as declared, and every policy rule with its basis."""
    values = s.policy.summary()
    policy: dict[str, Any] = {}
    for name in POLICY_PARSERS:
        source = s.policy.sources.get(name)
        policy[name] = {
            "value": values[name],
            "doc": source.doc if source else None,
            "default": source.default if source else False,
            "note": source.note if source else None,
            "overridden": source.overridden if source else False,
            # False: the file does not state the rule, so the engine's default applies.
            "stated": source is not None,
        }
    return {
        "name": s.name,
        "title": s.title,
        "doc": s.doc,
        "file": s.file,
        "initial": s.initial,
        "states": list(s.states),
        "terminal": [state for state in s.states if state in s.terminal],
        "transitions": [
            {"trigger": t.trigger.value, "source": t.source, "dest": t.dest, "when": t.when,
             "guards": list(t.guards), "doc": t.doc, "note": t.note}
            for t in s.transitions
        ],
        "policy": policy,
    }


def decision(d: Decision, *, key_derived: bool = False) -> dict[str, Any]:
    """`capstate validate --json`: allowed, violations, warnings, capture (with the instant and key it was
    decided for; `key_derived` when capstate derived the key) and after."""
    cmd = d.command
    capture = ({"amount": cmd.amount, "currency": cmd.currency or d.before.currency,
                "at": format_instant(cmd.at), "key": cmd.key, "key_derived": key_derived, "final": cmd.final}
               if isinstance(cmd, Capture) else None)
    return {
        "allowed": d.allowed,
        "violations": [v.to_dict() for v in d.violations],
        "warnings": [w.to_dict() for w in d.warnings],
        "capture": capture,
        "after": d.after.summary() if d.after is not None else None,
    }
