"""Plain-text output that reads in a terminal and greps in a pipe.

In a terminal, each long line is wrapped at the terminal's width, at spaces only (a code, a key or a
path is never split), and its continuation is indented under the text it continues. To a pipe or a
file nothing is wrapped: one finding per line.
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from typing import IO


def width_of(stream: IO[str]) -> int | None:
    """The terminal's width when `stream` is a terminal, else None (do not wrap)."""
    if not stream.isatty():
        return None
    return shutil.get_terminal_size((80, 24)).columns


def fit(text: str, width: int | None, *, hang: int = 4) -> str:
    """`text` with each line longer than `width` wrapped at spaces, continued `hang` columns further in."""
    if width is None:
        return text
    out = []
    for line in text.splitlines():
        if len(line) <= width:
            out.append(line)
            continue
        lead = len(line) - len(line.lstrip(" "))
        out.extend(textwrap.wrap(line, width=width, initial_indent="", subsequent_indent=" " * (lead + hang),
                                 break_long_words=False, break_on_hyphens=False, drop_whitespace=True)
                   if lead == 0 else
                   textwrap.wrap(line.lstrip(" "), width=width, initial_indent=" " * lead,
                                 subsequent_indent=" " * (lead + hang), break_long_words=False,
                                 break_on_hyphens=False))
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def write(text: str, stream: IO[str] | None = None, *, hang: int = 4) -> None:
    out = stream if stream is not None else sys.stdout
    out.write(fit(text, width_of(out), hang=hang))
