"""Never write over an input.

Every place the CLI writes (a file named by `-o` or `--report`, and stdout when it is redirected to a file)
is compared, by device and inode, with every file the command reads: its history, logs, plan, spec (a
shipped one included), credentials, and stdin when it is a file (`capstate audit - --report LOG < LOG`).
Comparing paths would miss a symlink, a hard link, `./LOG` against `LOG`, and stdin. Only regular files
are compared: a terminal, a pipe or /dev/null can be read and written at once without loss.

The one exception is the documented way to record what a capture proved, `capstate capture --history H
>> H`: the history is read whole before a byte is written, and appending adds only its new events.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Iterator
from importlib import resources

from .._spec import shipped
from .options import UsageError

_SPLIT = ","  # simulate's --provider takes a comma-separated list


def file_id(path: str) -> tuple[int, int] | None:
    """(device, inode) of the regular file `path` names ("-" is stdin), or None: no such file, or not a regular
    file."""
    try:
        st = os.fstat(sys.stdin.fileno()) if path == "-" else os.stat(path)
    except (OSError, ValueError, AttributeError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _spec_file(name_or_path: str) -> str:
    """The file a spec argument reads: a shipped spec's own file in the installed package, or the path."""
    if name_or_path in shipped():
        # On disk for any ordinary install; from a zip, str() names no file, and there is none to write over.
        return str(resources.files("capstate.specs").joinpath(f"{name_or_path}.toml"))
    return name_or_path


def inputs_of(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """(option, path) for every file the parsed command line reads."""
    for option in ("history", "plan", "credentials"):
        value = getattr(args, option, None)
        if isinstance(value, str):
            yield f"--{option}" if option != "plan" else "PLAN", value
    for path in getattr(args, "files", None) or ():
        yield "FILE", path
    spec = getattr(args, "spec", None)
    if isinstance(spec, str):
        yield "SPEC", _spec_file(spec)
    provider = getattr(args, "provider", None)
    if isinstance(provider, str):
        for item in provider.split(_SPLIT) if args.command == "simulate" else (provider,):
            yield "--provider", _spec_file(item.strip())


def _clash(target: tuple[int, int] | None, args: argparse.Namespace) -> tuple[str, str] | None:
    if target is None:
        return None
    return next(((option, path) for option, path in inputs_of(args) if file_id(path) == target), None)


def refuse_overwrite(output: str, args: argparse.Namespace, *, option: str) -> None:
    """Raise UsageError when the file `output` (given by `option`) is one the command reads."""
    clash = _clash(file_id(output), args)
    if clash is not None:
        shown = "stdin" if clash[1] == "-" else clash[1]
        raise UsageError(f"{option} {output} is {shown}, which this command reads ({clash[0]}); refusing to "
                         f"write over an input")


def refuse_stdout_overwrite(args: argparse.Namespace) -> None:
    """Raise UsageError when stdout is redirected to a file the command reads (`capstate audit LOG >> LOG`)."""
    try:
        fd = sys.stdout.fileno()
        st = os.fstat(fd)
    except (OSError, ValueError, AttributeError):
        return
    if not stat.S_ISREG(st.st_mode):
        return
    clash = _clash((st.st_dev, st.st_ino), args)
    if clash is None:
        return
    option, path = clash
    appending = _appending(fd)
    if (appending and option == "--history" and args.command == "capture" and not args.json
            and not getattr(args, "dry_run", False)):
        return  # the documented `capture --history H >> H`: H is read whole first, and only events are added
    shown = "stdin" if path == "-" else path
    emptied = "" if appending else " (opened with '>', it has most likely been emptied already)"
    raise UsageError(f"stdout is {shown}, which this command reads ({option}); refusing to write over an "
                     f"input{emptied}")


def _appending(fd: int) -> bool:
    """Whether `fd` was opened to append (the shell's `>>`)."""
    try:
        import fcntl
    except ImportError:  # Windows: no way to tell, so never the exception
        return False
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND)
