"""The audit's output without what differs from run to run (when it ran, how long it took), so that two
runs over the same input compare equal byte for byte in everything else."""

from __future__ import annotations

import re

import orjson

_RUN_LINE = re.compile(r"^capstate \S+, run \S+ in [0-9.]+ s$", re.M)
_HTML_RUN = re.compile(r"<dt>run</dt><dd>[^<]*</dd>")


def stable(out: str) -> str:
    """`capstate audit` stdout (--json or text) or an HTML report, with the run time and duration masked."""
    if out.startswith("{"):
        report = orjson.loads(out)
        assert isinstance(report["started_at"], str) and isinstance(report["seconds"], float | int)
        report["started_at"], report["seconds"] = "<started>", "<seconds>"
        return orjson.dumps(report).decode()
    if out.startswith("<!DOCTYPE"):
        return _HTML_RUN.sub("<dt>run</dt><dd>&lt;run&gt;</dd>", out)
    masked, n = _RUN_LINE.subn("capstate <version>, run <started> in <seconds> s", out)
    assert n == 1, out
    return masked
