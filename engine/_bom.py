"""The UTF-8 byte-order mark, read the same way by every reader: ignored at the start of a file.

Notepad and PowerShell write one at the start of UTF-8 files. It belongs to the file, not to its first
line, record or key (RFC 8259 section 8.1 lets a parser ignore it), so histories, plans, logs, specs and
credentials all drop it through this one function, and nowhere but at the start.
"""

from __future__ import annotations

from codecs import BOM_UTF8
from typing import overload

_TEXT_BOM = "\ufeff"


@overload
def strip_bom(data: bytes) -> bytes: ...
@overload
def strip_bom(data: str) -> str: ...
@overload
def strip_bom(data: str | bytes) -> str | bytes: ...
def strip_bom(data: str | bytes) -> str | bytes:
    """`data` without a leading UTF-8 byte-order mark (bytes or the decoded U+FEFF)."""
    if isinstance(data, bytes):
        return data.removeprefix(BOM_UTF8)
    return data.removeprefix(_TEXT_BOM)
