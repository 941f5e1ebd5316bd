"""The audit's HTML report: one self-contained file an auditor can open, archive and sign.

What it holds, top to bottom: the "showing N of M" notice (before anything else), the provenance
(capstate version, run time, inputs with size and sha256, as_of, specs and overrides in force), the
totals, the money at stake per currency and per code, the findings by code (a bar chart, severities
told apart by word and marker as well as colour), a filter, then one section per payment with its
timeline (its events from the log, in file order, with each finding at its line), the codes explained,
and the notes.

Self-contained: the style and the filter's script are inline, there is no external stylesheet, font,
image or script, and a Content-Security-Policy forbids the browser to fetch anything. Without script
every section is shown. Every value from a log (payment references, messages, file names, event
fields) is escaped: a log is untrusted input and the report is opened in a browser.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from .._audit import AuditReport, Finding
from .._codes import Code
from .audit_meta import RunInfo
from .audit_model import (
    EXPLAIN,
    HEADLINE,
    VIOLATION,
    WARNING,
    group,
    headline,
    major,
    money,
    money_kind,
    money_rows,
    rule_value,
    severity,
    severity_counts,
    showing,
)
from .audit_timeline import Timeline
from .options import UsageError

_MARK = {VIOLATION: "\u2716", WARNING: "\u26a0"}  # a shape as well as a colour: told apart in greyscale
_CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:76rem;color:#1d1d1f;
padding:0 1rem}
h1{font-size:1.4rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:2rem}h3{font-size:1rem;margin:0}
.notice{border:2px solid #b26a00;background:#fff4e0;padding:.6rem 1rem;border-radius:6px;font-weight:bold}
.notice.all{border-color:#0a7d28;background:#eaf7ee}
.meta{color:#555}dl.prov{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}
dl.prov dt{font-weight:bold}dl.prov dd{margin:0}code,.mono{font-family:ui-monospace,monospace}
.hash{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
.totals{display:flex;gap:1rem;margin:1rem 0;flex-wrap:wrap}
.totals div{border:1px solid #ddd;border-radius:6px;padding:.5rem 1rem;min-width:8rem}
.totals b{display:block;font-size:1.4rem}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eee;
vertical-align:top}th{background:#f6f6f6}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.sev{font-weight:bold;white-space:nowrap}.sev.violation{color:#b00020}.sev.warning{color:#8a5a00}
tr.finding.violation{background:#fdecee}tr.finding.warning{background:#fff6e0}
td.code{font-family:ui-monospace,monospace;white-space:nowrap}
td.where,td.at{font-family:ui-monospace,monospace;white-space:nowrap}
section.payment{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem;margin:.8rem 0}
.filters{display:flex;gap:1rem;flex-wrap:wrap;align-items:end;position:sticky;top:0;background:#fff;
padding:.5rem 0;border-bottom:1px solid #ddd}
.filters label{display:flex;flex-direction:column;font-size:12px;color:#555}
.clean{color:#0a7d28;font-weight:bold}svg text{font:12px ui-monospace,monospace}
"""

# The filter: sections (payments) and finding rows hidden by code, payment and severity. Plain DOM, no
# library; the count of what is visible is written back, with thousands separators.
_JS = """
(function(){
var code=document.getElementById('f-code'),pay=document.getElementById('f-payment'),
sev=document.getElementById('f-severity'),out=document.getElementById('f-count');
var sections=Array.prototype.slice.call(document.querySelectorAll('section.payment'));
function apply(){
 var c=code.value,p=pay.value.trim().toLowerCase(),s=sev.value,shown=0,rows=0;
 sections.forEach(function(sec){
  var any=false;
  sec.querySelectorAll('tr.finding').forEach(function(tr){
   var ok=(!c||tr.dataset.code===c)&&(!s||tr.dataset.severity===s);
   tr.hidden=!ok;if(ok){any=true;rows++;}
  });
  var ok=any&&(!p||sec.dataset.payment.toLowerCase().indexOf(p)>=0);
  sec.hidden=!ok;if(ok)shown++;
 });
 out.textContent=shown.toLocaleString('en-US')+' of '+sections.length.toLocaleString('en-US')+
  ' payments shown';
}
code.addEventListener('change',apply);sev.addEventListener('change',apply);pay.addEventListener('input',apply);
apply();
})();
"""


def _chart(counts: Mapping[str, int]) -> str:
    """Horizontal bars, one per code, scaled to the largest count, severity marked in the label."""
    if not counts:
        return ""
    bar_height, gap, label_width, bar_width = 18, 6, 290, 400
    top = max(counts.values())
    rows = []
    ordered = sorted(counts.items(), key=lambda kv: (severity(Code(kv[0])) != VIOLATION, -kv[1], kv[0]))
    for i, (code, n) in enumerate(ordered):
        y = i * (bar_height + gap)
        width = max(1, round(bar_width * n / top))
        sev = severity(Code(code))
        fill = "#c0392b" if sev == VIOLATION else "#d68910"
        rows.append(f'<text x="0" y="{y + 13}">{_MARK[sev]} {escape(code)}</text>'
                    f'<rect x="{label_width}" y="{y}" width="{width}" height="{bar_height}" fill="{fill}">'
                    f"<title>{escape(code)} ({sev}): {group(n)}</title></rect>"
                    f'<text x="{label_width + width + 6}" y="{y + 13}">{group(n)}</text>')
    height = len(counts) * (bar_height + gap)
    return (f'<svg role="img" aria-label="findings by code" width="{label_width + bar_width + 80}" '
            f'height="{height}" xmlns="http://www.w3.org/2000/svg">{"".join(rows)}</svg>')


def _sev(sev: str) -> str:
    return f'<span class="sev {sev}">{_MARK[sev]} {sev}</span>'


def _provenance(report: AuditReport, run: RunInfo) -> str:
    inputs = "".join(f"<li><code>{escape(i.name)}</code>: {escape(i.format)}, {group(i.size)} bytes<br>"
                     f'<span class="hash">sha256 {i.sha256}</span></li>' for i in run.inputs)
    specs = []
    for s in run.specs:
        changed = "".join(f"<li>override <code>{escape(rule)}</code>: {escape(rule_value(before))} &rarr; "
                          f"<b>{escape(rule_value(after))}</b></li>" for rule, (before, after) in s.overrides.items())
        specs.append(f"<li><b>{escape(s.name)}</b> ({escape(s.title)}): <code>{escape(s.file)}</code>"
                     f"{'' if s.shipped else ' (not shipped)'}<br><span class=\"hash\">sha256 {s.sha256}</span>"
                     f"{f'<ul>{changed}</ul>' if changed else ''}</li>")
    sets = " ".join(f"<code>--set {escape(item)}</code>" for item in run.sets) or "none"
    source = "given with --as-of" if run.as_of_given else "the latest event&#39;s at"
    return ('<dl class="prov">'
            f"<dt>capstate</dt><dd>{escape(run.version)}</dd>"
            f"<dt>run</dt><dd>{escape(run.started_at)}, {run.seconds:.2f} s</dd>"
            f"<dt>as of</dt><dd>{escape(report.as_of or '-')} ({source})</dd>"
            f"<dt>inputs</dt><dd><ul>{inputs}</ul></dd>"
            f"<dt>specs</dt><dd><ul>{''.join(specs) or '<li>none judged a payment</li>'}</ul></dd>"
            f"<dt>overrides</dt><dd>{sets}</dd>"
            f"<dt>settled window</dt><dd>{group(run.settled_window)} lines</dd></dl>")


def _money(report: AuditReport) -> str:
    rows = money_rows(report.violations)
    if not rows:
        return "<p>No money moved, held or refused in breach.</p>"
    heads = "".join(f'<th class="num">{kind}</th>' for kind in HEADLINE)
    totals = "".join(
        f"<tr><td>{escape(cur)}</td>"
        + "".join(f'<td class="num">{major(kinds[k], None if cur == "?" else cur)}</td>' for k in HEADLINE)
        + "</tr>" for cur, kinds in headline(rows).items())
    by_code = "".join(f'<tr><td class="code">{escape(r.code)}</td><td>{escape(r.currency or "?")}</td>'
                      f'<td class="num">{group(r.findings)}</td><td class="num">{major(r.amount, r.currency)}</td>'
                      f"<td>{escape(r.kind)}</td></tr>" for r in rows)
    return (f'<table id="money-totals"><thead><tr><th>currency</th>{heads}</tr></thead><tbody>{totals}</tbody>'
            "</table><h3 style=\"margin-top:1rem\">By code and currency</h3>"
            '<table id="money-by-code"><thead><tr><th>code</th><th>currency</th><th class="num">findings</th>'
            f'<th class="num">amount</th><th>what</th></tr></thead><tbody>{by_code}</tbody></table>')


def _step_cells(fields: Mapping[str, Any], authorized_in: str | None) -> str:
    what = escape(str(fields.get("type", "?")))
    amount = fields.get("amount")
    # A capture or refund may leave its currency out: it is the authorization's.
    currency = fields.get("currency", authorized_in)
    if isinstance(amount, int) and not isinstance(amount, bool):
        what += f" {major(amount, currency if isinstance(currency, str) else None)}"
        if isinstance(currency, str):
            what += f" {escape(currency)}"
    extra = ", ".join(f"{k} {escape(str(fields[k]))}" for k in ("key", "flow", "provider", "reason") if k in fields)
    return f"<td>{what}</td><td>{extra}</td>"


def _payment_section(ref: str | None, findings: Sequence[Finding], timeline: Timeline | None,
                     one_input: bool) -> str:
    """A payment's findings among its events. With one input, a row names its line only (the file is in
    the provenance above), which leaves the width to the evidence."""

    def where(file: str, line: int) -> str:
        return f"line {line}" if one_input else f"{escape(file)}:{line}"

    codes = sorted({f.code.value for f in findings})
    rows: list[tuple[tuple[str, int, int], str]] = []
    if timeline is not None:
        authorized_in = next((str(step.fields["currency"]) for step in timeline.steps
                              if step.fields.get("type") == "authorized" and "currency" in step.fields), None)
        for step in timeline.steps:
            rows.append(((step.file, step.line, 0),
                         f'<tr class="event"><td class="where">{where(step.file, step.line)}</td>'
                         f'<td class="at">{escape(str(step.fields.get("at", "")))}</td>'
                         f"{_step_cells(step.fields, authorized_in)}</tr>"))
    for f in findings:
        sev = severity(f.code)
        at_stake = f" ({escape(money(f.amount, f.currency))} {money_kind(f.code.value)})" if f.amount else ""
        rows.append(((f.file, f.line, 1),
                     f'<tr class="finding {sev}" data-code="{escape(f.code.value)}" data-severity="{sev}">'
                     f'<td class="where">{where(f.file, f.line)}</td><td class="at">{escape(f.at or "")}</td>'
                     f'<td>{_sev(sev)} <span class="mono" title="{escape(EXPLAIN[f.code])}">'
                     f"{escape(f.code.value)}</span></td><td>{escape(f.message)}{at_stake}</td></tr>"))
    order = {name: i for i, name in enumerate(dict.fromkeys(k[0] for k, _ in rows))}
    rows.sort(key=lambda kv: (order[kv[0][0]], kv[0][1], kv[0][2]))
    more = (f'<p class="meta">{group(timeline.more)} more events of this payment are not shown.</p>'
            if timeline is not None and timeline.more else "")
    name = escape(ref) if ref is not None else "<i>no payment (lines too broken to name one)</i>"
    return (f'<section class="payment" data-payment="{escape(ref or "")}" data-codes="{" ".join(codes)}">'
            f"<h3>{name}</h3><table><thead><tr><th>where</th><th>at</th><th>event / finding</th><th>detail</th>"
            f"</tr></thead><tbody>{''.join(html for _, html in rows)}</tbody></table>{more}</section>")


def render_report(report: AuditReport, run: RunInfo, notes: Sequence[str], *, limit: int,
                  timelines: Mapping[str, Timeline] | None = None) -> str:
    """The whole HTML document; `limit` findings at most are written (all are in --json)."""
    findings = report.violations
    total = len(findings)
    shown = findings[:limit]
    cls = "notice all" if len(shown) >= total else "notice"
    more = "" if len(shown) >= total else "; the rest are in <code>capstate audit --json</code>"
    notice = f'<p class="{cls}" id="shown">{showing(len(shown), total)}{more}</p>'
    severities = severity_counts(findings)
    totals = (("events", report.events), ("payments", report.payments), ("violations", severities[VIOLATION]),
              ("warnings", severities[WARNING]), ("codes", len(report.counts)))
    cards = "".join(f'<div id="total-{label}">{label}<b>{group(value)}</b></div>' for label, value in totals)
    body = ["<h1>capstate audit</h1>", notice, _provenance(report, run), f'<div class="totals">{cards}</div>']
    if not findings:
        body.append('<p class="clean">Clean: no violations, no warnings.</p>')
    else:
        body.append("<h2>Money at stake</h2>" + _money(report))
        body.append("<h2>Findings by code</h2>" + _chart(report.counts))
        groups: dict[str | None, list[Finding]] = {}
        for f in shown:
            groups.setdefault(f.payment, []).append(f)
        options = "".join(f'<option value="{escape(code)}">{escape(code)} ({group(n)})</option>'
                          for code, n in report.counts.items())
        filters = ('<div class="filters"><label>code<select id="f-code"><option value="">all codes</option>'
                   f"{options}</select></label>"
                   '<label>severity<select id="f-severity"><option value="">all</option>'
                   '<option value="violation">violations</option><option value="warning">warnings</option>'
                   '</select></label><label>payment<input id="f-payment" type="search" '
                   'placeholder="payment reference contains"></label><span id="f-count"></span></div>')
        one_input = len(run.inputs) == 1
        sections = "".join(_payment_section(ref, fs, (timelines or {}).get(ref) if ref is not None else None,
                                            one_input) for ref, fs in groups.items())
        body.append(f"<h2>Payments: {group(len(groups))} with findings shown</h2>{filters}"
                    f'<div id="payments">{sections}</div>')
        codes = "".join(f'<dt id="code-{escape(code)}"><code>{escape(code)}</code> {_sev(severity(Code(code)))}</dt>'
                        f"<dd>{escape(EXPLAIN[Code(code)])}</dd>" for code in report.counts)
        body.append(f'<h2>Codes</h2><dl class="codes">{codes}</dl>')
    body.append("<h2>Notes</h2><ul id=\"notes\">" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    script = f"<script>{_JS}</script>" if findings else ""
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>capstate audit: {showing(len(shown), total)}</title><style>{_CSS}</style></head>"
            f"<body>{''.join(body)}{script}</body></html>\n")


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


def write_report(report: AuditReport, run: RunInfo, notes: Sequence[str], path: str, *, limit: int,
                 timelines: Mapping[str, Timeline] | None = None) -> None:
    """Write the report atomically: a reader never sees half a file. Raises UsageError."""
    text = render_report(report, run, notes, limit=limit, timelines=timelines)
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
