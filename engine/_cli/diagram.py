"""`capstate diagram NAME|SPEC [--format mermaid|svg|png] [-o FILE]`: draw a spec's state diagram.

mermaid is text and needs nothing native. svg and png go through graphviz: the Python package (the
`graph` extra) and the `dot` program; without either, one line and exit 2.

Maintainers refresh the README's diagrams of the shipped specs with
`python -m capstate._cli.diagram --update-readme README.md` (tests/test_readme_diagrams.py fails when
they are stale).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .._diagram import FORMATS, DiagramError, graphviz, mermaid, update_readme
from .._errors import CapstateError
from .._spec import load_spec, shipped
from .check import refuse_directory
from .options import UsageError, load_with_sets
from .outputs import refuse_overwrite


def configure(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("spec", metavar="NAME|SPEC", help="a shipped provider name or a spec file")
    sub.add_argument("--format", choices=FORMATS, default="mermaid", help="mermaid text (default), or svg/png")
    sub.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    sub.add_argument("--guards", action="store_true",
                     help="also label each edge with its guards and the policy numbers they read")


def run(args: argparse.Namespace) -> int:
    if args.json:
        raise UsageError("diagram has no --json output; choose --format mermaid, svg or png")
    refuse_directory(args.spec)
    if args.format == "png" and not args.output and sys.stdout.isatty():
        # Binary on a terminal garbles it and proves nothing; svg is text, so it may go there.
        raise UsageError("png is binary: give -o FILE, or redirect stdout to a file")
    if args.output:
        refuse_overwrite(args.output, args, option="-o")
    spec = load_with_sets(args.spec, args.sets)
    data = (mermaid(spec, guards=args.guards).encode() if args.format == "mermaid"
            else _render(graphviz(spec, guards=args.guards), args.format))
    if args.output:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            raise UsageError(f"-o {args.output}: cannot write: {exc.strerror or exc}") from None
    else:
        sys.stdout.buffer.write(data)
    return 0


def _render(graph: object, fmt: str) -> bytes:
    import graphviz as gv  # type: ignore[import-untyped]

    try:
        data: bytes = graph.pipe(format=fmt)  # type: ignore[attr-defined]
    except gv.ExecutableNotFound:
        raise DiagramError(f"{fmt} needs the graphviz program `dot` on PATH (e.g. apt-get install graphviz, "
                           f"brew install graphviz); --format mermaid needs nothing") from None
    except gv.CalledProcessError as exc:
        raise DiagramError(f"dot failed: {exc}") from None
    return data


def _update_readme(path: str) -> int:
    readme = Path(path)
    old = readme.read_text(encoding="utf-8")
    new = update_readme(old, [load_spec(name) for name in shipped()])
    if new != old:
        readme.write_text(new, encoding="utf-8")
    sys.stdout.write(f"{path}: {'diagrams refreshed' if new != old else 'diagrams already current'}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capstate._cli.diagram",
                                     description="refresh the README's diagrams of the shipped specs")
    parser.add_argument("--update-readme", required=True, metavar="README", help="the README.md to rewrite")
    args = parser.parse_args(argv)
    try:
        return _update_readme(args.update_readme)
    except (CapstateError, OSError, ValueError) as exc:
        sys.stderr.write(f"capstate: error: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
