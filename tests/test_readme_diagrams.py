"""The README's state diagrams are the ones the shipped specs draw today, and its `check` example is real.

When a spec changes, refresh the diagrams with
    python -m capstate._cli.diagram --update-readme README.md
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from test_check import over_capture_bambora
from test_cli import run_cli, write

from capstate import load_spec, shipped_specs
from capstate._diagram import readme_block, update_readme

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REFRESH = "python -m capstate._cli.diagram --update-readme README.md"


def test_readme_shows_the_current_diagram_of_every_seed_spec() -> None:
    text = README.read_text(encoding="utf-8")
    stale = [name for name in shipped_specs() if readme_block(load_spec(name)) not in text]
    assert not stale, f"README.md diagrams are stale for {', '.join(stale)}; refresh them with `{REFRESH}`"
    assert text.count("```mermaid\n") >= len(shipped_specs())
    assert update_readme(text, [load_spec(n) for n in shipped_specs()]) == text


def test_refresh_command_rewrites_a_stale_readme(tmp_path: Path) -> None:
    current = README.read_text(encoding="utf-8")
    stale = current.replace("stateDiagram-v2", "stateDiagram-v1")
    assert stale != current
    copy = write(tmp_path, "README.md", stale)
    done = subprocess.run([sys.executable, "-m", "capstate._cli.diagram", "--update-readme", str(copy)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "diagrams refreshed" in done.stdout
    assert copy.read_text(encoding="utf-8") == current


def test_refresh_command_needs_the_markers(tmp_path: Path) -> None:
    copy = write(tmp_path, "README.md", "# capstate\n\nno diagrams here\n")
    done = subprocess.run([sys.executable, "-m", "capstate._cli.diagram", "--update-readme", str(copy)],
                          capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("capstate: error: ") and len(done.stderr.splitlines()) == 1
    assert "<!-- diagram:bambora -->" in done.stderr
    assert copy.read_text(encoding="utf-8") == "# capstate\n\nno diagrams here\n"


def test_readme_check_example_is_what_check_prints(tmp_path: Path) -> None:
    (example,) = re.findall(r"```console\n\$ capstate check (\S+).*?\n(.*?)```", README.read_text(encoding="utf-8"),
                            flags=re.S)
    name, body = example
    write(tmp_path, name, over_capture_bambora())
    r = run_cli(tmp_path, "check", name)
    assert r.code == 1, r.err
    shown = [line for line in body.splitlines() if line != "..."]
    assert shown, body
    for line in shown:
        assert line in r.out.splitlines(), line
