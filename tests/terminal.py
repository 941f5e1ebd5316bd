"""Run the real `capstate` in a pseudo-terminal of a given width, as a person would see it.

Snapshot tests pin the 80-column rendering of every command's human output. Styles (bold, dim) are
escape codes even without colour, so they are removed; what remains is the text a reader sees.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_terminal(args: list[str], *, cwd: Path, columns: int = 80, env: dict[str, str] | None = None,
                    timeout: float = 120) -> tuple[int, str]:
    """Exit status and the text `python -m capstate ARGS` shows in a `columns`-wide terminal."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 60, columns, 0, 0))
    full = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "COLUMNS", "LINES", "TTY_COMPATIBLE")}
    full.update({"NO_COLOR": "1", "TERM": "xterm", **(env or {})})
    proc = subprocess.Popen([sys.executable, "-m", "capstate", *args], stdout=follower, stderr=follower,
                            stdin=subprocess.DEVNULL, env=full, cwd=cwd)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    code = proc.wait(timeout=timeout)
    text = ANSI.sub("", b"".join(chunks).decode("utf-8")).replace("\r\n", "\n")
    return code, "\n".join(line.rstrip() for line in text.splitlines()) + "\n"
