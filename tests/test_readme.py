"""The README stays true: its Python example runs, its main-job command works, CI runs its test command."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def test_python_example_runs() -> None:
    (example,) = _blocks("python")
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert "payment" in namespace


def test_ci_runs_the_readme_test_command() -> None:
    _main_job, tests = _blocks("sh")
    command = tests.strip()
    # One line, found by the hooks that run it: it installs what the tests need (Python and Node), then runs them.
    assert "\n" not in command and "pip install" in command and "pytest" in command and "npm ci" in command
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert command in ci.splitlines()
    # Verbatim, with nothing installed before it from a registry: a fresh clone runs exactly what CI runs.
    before = ci[: ci.index(command)]
    code = [line for line in before.splitlines() if not line.lstrip().startswith("#")]
    assert not [line for line in code if "pip " in line or "npm " in line or "uv " in line], code
    assert "export CAPSTATE_TEST_POSTGRES=" in before and "service postgresql start" in before


def test_main_job_command_works_on_the_bundled_example() -> None:
    main_job = _blocks("sh")[0].strip()
    capstate_part = main_job.split("&& .venv/bin/capstate ", 1)[1]
    args = shlex.split(capstate_part)
    out = subprocess.run([sys.executable, "-m", "capstate", *args, "--json"], cwd=ROOT, capture_output=True,
                         check=False, text=True, timeout=60)
    # The README promises exit 1: three providers refuse the second capture, and Vipps takes all three.
    assert out.returncode == 1, out.stderr
    results = orjson.loads(out.stdout)["results"]
    assert sorted(results) == ["bambora", "hellgate", "pipwave", "vipps"]
    assert results["vipps"]["ok"] is True
    assert [s["allowed"] for s in results["vipps"]["steps"]][:3] == [True, True, True]
    for name in ("bambora", "hellgate", "pipwave"):
        assert [v["code"] for v in results[name]["steps"][1]["violations"]] == ["MULTIPLE_CAPTURES_UNSUPPORTED"]


def test_package_docstring_example_runs() -> None:
    import doctest

    import capstate

    result = doctest.testmod(capstate, raise_on_error=False)
    assert result.attempted >= 4
    assert result.failed == 0


def test_first_screen_shows_real_output() -> None:
    # The README opens with what `capstate simulate` prints in an 80-column terminal: the pinned snapshot.
    shown = _blocks("text")[0].splitlines()
    snapshot = (ROOT / "tests" / "snapshots" / "simulate-matrix.txt").read_text(encoding="utf-8").splitlines()
    assert len(shown) > 15
    at = 0
    for line in shown:
        if not line:
            continue
        at = snapshot.index(line, at) + 1  # in the snapshot, in this order
    assert max(len(line) for line in shown) <= 80


def test_readme_points_only_inside_the_repository() -> None:
    assert "../shared/DESIGN" not in README and "DESIGN §" not in README
    for target in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / target).is_file(), target
