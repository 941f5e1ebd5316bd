"""The audit's HTML report: one self-contained file an auditor can open and archive.

No script, no external stylesheet, font or image: totals, an inline SVG bar chart of violations by
code, and the evidence grouped by payment. Every value from a log (payment references, messages, file
names) is escaped, because a log is untrusted input and the report is opened in a browser.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from html import escape

from .._audit import AuditReport, Finding
from .options import UsageError

MAX_ROWS = 10_000
"""Evidence rows written; a larger report says how many more there are (all are in --json)."""

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:72rem;color:#1d1d1f;
padding:0 1rem}
h1{font-size:1.4rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:2rem}
.meta{color:#555}.totals{display:flex;gap:1rem;margin:1rem 0;flex-wrap:wrap}
.totals div{border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem;min-width:8rem}
.totals b{display:block;font-size:1.4rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eee;
vertical-align:top}
th{background:#f6f6f6}td.code{font-family:ui-monospace,monospace;color:#b00020;white-space:nowrap}
td.where,td.at{font-family:ui-monospace,monospace;white-space:nowrap}tr.first td{border-top:2px solid #ccc}
.clean{color:#0a7d28;font-weight:bold}svg text{font:12px ui-monospace,monospace}
"""


def _chart(counts: dict[str, int]) -> str:
    """Horizontal bars, one per code, scaled to the largest count."""
    if not counts:
        return ""
    bar_height, gap, label_width, bar_width = 18, 6, 260, 420
    top = max(counts.values())
    rows = []
    for i, (code, n) in enumerate(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))):
        y = i * (bar_height + gap)
        width = max(1, round(bar_width * n / top))
        rows.append(f'<text x="0" y="{y + 13}">{escape(code)}</text>'
                    f'<rect x="{label_width}" y="{y}" width="{width}" height="{bar_height}" fill="#c0392b">'
                    f"<title>{escape(code)}: {n}</title></rect>"
                    f'<text x="{label_width + width + 6}" y="{y + 13}">{n}</text>')
    height = len(counts) * (bar_height + gap)
    return (f'<svg role="img" aria-label="violations by code" width="{label_width + bar_width + 60}" '
            f'height="{height}" xmlns="http://www.w3.org/2000/svg">{"".join(rows)}</svg>')


def _evidence(violations: Sequence[Finding]) -> str:
    """Rows grouped by payment, payments in order of their first violation; lines within a payment."""
    groups: dict[str | None, list[Finding]] = {}
    for f in violations:
        groups.setdefault(f.payment, []).append(f)
    rows = []
    written = 0
    for payment, findings in groups.items():
        for i, f in enumerate(findings):
            if written >= MAX_ROWS:
                break
            cls = ' class="first"' if i == 0 else ""
            name = escape(payment) if payment is not None else "<i>unknown</i>"
            rows.append(f"<tr{cls}><td>{name if i == 0 else ''}</td><td class=\"code\">{escape(f.code.value)}</td>"
                        f'<td class="where">{escape(f.file)}:{f.line}</td><td class="at">{escape(f.at or "")}</td>'
                        f"<td>{escape(f.message)}</td></tr>")
            written += 1
    more = len(violations) - written
    note = f"<p class=\"meta\">{more} more violations are not shown here; run with --json for all.</p>" if more else ""
    return ("<table><thead><tr><th>payment</th><th>code</th><th>where</th><th>at</th><th>evidence</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>{note}")


def render_report(report: AuditReport, files: Sequence[str]) -> str:
    """The whole HTML document."""
    totals = (("events", report.events), ("payments", report.payments), ("violations", len(report.violations)),
              ("codes", len(report.counts)))
    cards = "".join(f"<div>{label}<b>{value}</b></div>" for label, value in totals)
    provider = escape(report.provider or "per event (each payment's provider)")
    body = [f"<h1>capstate audit</h1><p class=\"meta\">{escape(', '.join(files))} &middot; provider {provider}"
            + (f" &middot; dangling authorizations judged as of {escape(report.as_of)}" if report.as_of else "")
            + "</p>", f'<div class="totals">{cards}</div>']
    if not report.violations:
        body.append('<p class="clean">Clean: no violations.</p>')
    else:
        body.append("<h2>Violations by code</h2>" + _chart(dict(report.counts)))
        body.append("<h2>Evidence by payment</h2>" + _evidence(report.violations))
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>capstate audit</title><style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")


def check_report_path(path: str) -> None:
    """Refuse a report path that cannot be written before the audit starts, not after hours of it.
    Raises UsageError."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"cannot write report {path}: Is a directory")
    if not os.path.isdir(directory):
        raise UsageError(f"cannot write report {path}: no such directory {directory}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write report {path}: Permission denied")


def write_report(report: AuditReport, path: str, files: Sequence[str]) -> None:
    """Write the report atomically: a reader never sees half a file. Raises UsageError."""
    text = render_report(report, files)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".capstate-report-", suffix=".html", dir=directory)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        # mkstemp makes the file private (0600); a report is meant to be shared, so give it the mode any new
        # file gets under the user's umask, as `open(path, "w")` would.
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise UsageError(f"cannot write report {path}: {exc.strerror or exc}") from None
