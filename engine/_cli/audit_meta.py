"""What an audit report must say about its own making, so that an auditor can sign it and a second
run can be checked against it: the capstate version, when it ran and for how long, every input (name,
format, size, sha256), the instant dangling authorizations were judged at and why that one, and the
policy in force (each spec used, its file and that file's sha256, and every --set override with the
value it took).

The CLI reads the clock and the files here; the core never does.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from attrs import frozen

from .._audit import overrides_for
from .._spec import Spec, load_spec, shipped
from .._time import format_instant
from .options import UsageError

_CHUNK = 1 << 20


def capstate_version() -> str:
    try:
        return version("capstate")
    except PackageNotFoundError:  # pragma: no cover - run from a tree that was never installed
        return "unknown"


@frozen
class InputInfo:
    """One input as the audit read it. `size` and `sha256` are of the bytes as stored (gzip compressed)."""

    name: str
    format: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "format": self.format, "size": self.size, "sha256": self.sha256}


@frozen
class SpecInfo:
    """A spec that judged payments: where its rules came from and which of them the run overrode.

    `overrides` maps each overridden rule to (the spec's own value, the value in force), both as a spec
    file spells them.
    """

    name: str
    title: str
    file: str
    shipped: bool
    sha256: str
    overrides: Mapping[str, tuple[Any, Any]]
    judges_expiry: bool = True
    """False when the authorization validity in force is unknown: no expiry, no dangling judged."""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "file": self.file, "shipped": self.shipped,
                "sha256": self.sha256, "judges_expiry": self.judges_expiry,
                "overrides": {k: {"spec": old, "in_force": new} for k, (old, new) in self.overrides.items()}}


@frozen
class RunInfo:
    """The report's provenance (see the module docstring)."""

    version: str
    started_at: str
    seconds: float
    inputs: tuple[InputInfo, ...]
    as_of: str | None
    as_of_given: bool
    sets: tuple[str, ...]
    specs: tuple[SpecInfo, ...]
    settled_window: int

    def to_dict(self) -> dict[str, Any]:
        return {"capstate": self.version, "started_at": self.started_at, "seconds": self.seconds,
                "inputs": [i.to_dict() for i in self.inputs],
                "as_of": {"instant": self.as_of, "source": "--as-of" if self.as_of_given else "latest event"},
                "overrides": {"set": list(self.sets), "specs": [s.to_dict() for s in self.specs]},
                "settled_window": self.settled_window}


def now() -> datetime:
    return datetime.now(UTC)


def stamp(when: datetime) -> str:
    return format_instant(when.replace(microsecond=0))


def sha256_file(path: str) -> tuple[int, str]:
    """(size, sha256 hex) of a file's bytes. Raises UsageError when it cannot be read."""
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    return size, digest.hexdigest()


def describe_specs(names: Sequence[str], spec_arg: str | None, overrides: Mapping[str, Any] | None) -> tuple[
        SpecInfo, ...]:
    """The specs that judged the audit's payments, with the overrides that applied to each."""
    out = []
    for name in names:
        source = spec_arg if spec_arg is not None else name
        base = load_spec(source)
        mine = overrides_for(base.name, overrides) if overrides else {}
        changed: dict[str, tuple[Any, Any]] = {}
        effective = load_spec(source, mine) if mine else base
        if mine:
            before, after = base.policy.summary(), effective.policy.summary()
            for rule in sorted({str(k).partition(".")[0] for k in mine}):
                changed[rule] = (before.get(rule), after.get(rule))
        out.append(_spec_info(base, source in shipped(), changed, effective.policy.authorization_validity is not None))
    return tuple(out)


def _spec_info(spec: Spec, is_shipped: bool, changed: Mapping[str, tuple[Any, Any]], judges_expiry: bool) -> SpecInfo:
    if is_shipped:
        # Named by where it sits in the package, not by this machine's site-packages path.
        data = resources.files("capstate.specs").joinpath(f"{spec.name}.toml").read_bytes()
        digest, shown = hashlib.sha256(data).hexdigest(), f"capstate/specs/{spec.name}.toml"
    else:
        _, digest = sha256_file(spec.file)
        shown = os.path.abspath(spec.file)
    return SpecInfo(spec.name, spec.title, shown, is_shipped, digest, dict(changed), judges_expiry)
