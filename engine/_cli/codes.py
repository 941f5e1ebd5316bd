"""`capstate codes` and `capstate explain CODE`: the meaning of every code, from docs/codes.md.

docs/codes.md ships in the wheel (package data `capstate.docs`), so the explanation a user reads in a
terminal is the one in the repository, and tests/test_docs.py holds it equal to the codes in the code.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from importlib import resources

from attrs import frozen

from . import wrap
from .options import UsageError

EXIT_OK = 0
KINDS = {"Refusals": "refusal", "Warnings": "warning", "Simulation notes": "note"}
MARKS = {"refusal": "✗", "warning": "!", "note": "i"}


@frozen
class Entry:
    code: str
    kind: str
    text: str

    @property
    def summary(self) -> str:
        """The first sentence of the explanation."""
        flat = " ".join(self.text.split())
        end = re.search(r"\.(\s|$)", flat)
        return flat[: end.start() + 1] if end else flat


def document() -> str:
    return resources.files("capstate.docs").joinpath("codes.md").read_text(encoding="utf-8")


def entries(text: str | None = None) -> list[Entry]:
    """Every `### CODE` section of docs/codes.md, with the kind its `## ` heading gives it."""
    kind = ""
    found: list[Entry] = []
    code: str | None = None
    lines: list[str] = []

    def close() -> None:
        if code is not None:
            found.append(Entry(code, kind, "\n".join(lines).strip()))

    for line in (document() if text is None else text).splitlines():
        if line.startswith("## "):
            close()
            code, lines = None, []
            kind = KINDS.get(line[3:].strip(), "")
        elif line.startswith("### "):
            close()
            code, lines = line[4:].strip(), []
        elif code is not None:
            lines.append(line)
    close()
    return found


def configure(sub: argparse.ArgumentParser) -> None:
    if sub.prog.split()[-1] == "explain":
        sub.add_argument("code", metavar="CODE", help="a code, any case: EXCEEDS_CAPTURABLE, remainder_held")


def cmd_codes(args: argparse.Namespace) -> int:
    found = entries()
    if args.json:
        import orjson

        sys.stdout.buffer.write(orjson.dumps({"codes": [{"code": e.code, "kind": e.kind, "summary": e.summary}
                                                        for e in found]}, option=orjson.OPT_APPEND_NEWLINE))
        return EXIT_OK
    # One code per line, its summary after it: greppable, and at 80 columns the summary wraps under itself.
    lines = []
    for kind in KINDS.values():
        lines.append(f"{MARKS[kind]} {kind}s" if kind != "note" else f"{MARKS[kind]} notes (capstate simulate)")
        lines += [f"  {e.code}: {e.summary}" for e in found if e.kind == kind]
        lines.append("")
    lines.append("'capstate explain CODE' for the whole explanation.")
    wrap.write("\n".join(lines) + "\n")
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    found = {e.code: e for e in entries()}
    wanted = args.code.strip().upper().replace("-", "_")
    entry = found.get(wanted)
    if entry is None:
        close = difflib.get_close_matches(wanted, list(found), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else " ('capstate codes' lists them)"
        raise UsageError(f"explain: no code {args.code!r}{hint}")
    # Each paragraph of docs/codes.md as one line, then wrapped to the terminal (never in a pipe).
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", entry.text) if p.strip()]
    wrap.write(f"{MARKS[entry.kind]} {entry.code} ({entry.kind})\n\n" + "\n\n".join(paragraphs) + "\n", hang=0)
    return EXIT_OK
