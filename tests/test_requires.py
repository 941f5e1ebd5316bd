"""A newcomer's clone: the tests that need ../shared or a system program skip, each with its reason.

The tests are copied into a directory with no `../shared` beside it and no node_modules, and run with
PATH pointing at an empty directory (no dot, node, npm, chromium or psql), CI unset and no
CAPSTATE_TEST_POSTGRES: every test that needs one of them must skip with the one-line reason from
tests/_requires.py, and none may error or fail. Then the same tests under CI=true must fail, not skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _requires import POSTGRES_ENV

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _needing() -> list[str]:
    """Every test module that asks tests/_requires.py for something outside the repository."""
    found = [p.name for p in sorted(TESTS.glob("test_*.py"))
             if p.name != Path(__file__).name and re.search(r"^from _requires import", p.read_text(encoding="utf-8"),
                                                            flags=re.M)]
    return found


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("fresh") / "capstate"
    # What a clone holds (tracked files), without what the README's command or CI adds (.venv,
    # node_modules) and without ../shared beside it.
    for name in ("tests", "examples", "specs", "docs", "engine", "providers"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__", ".hypothesis"))
    for name in ("pyproject.toml", "README.md", "package.json", "package-lock.json"):
        shutil.copy2(ROOT / name, repo / name)
    assert not (repo.parent / "shared").exists()
    return repo


def _run(clone: Path, files: list[str], *, ci: bool) -> subprocess.CompletedProcess[str]:
    empty = clone.parent / "empty-path"
    empty.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", POSTGRES_ENV, "PYTEST_ADDOPTS")}
    env["PATH"] = str(empty)
    env["CAPSTATE_HYPOTHESIS_PROFILE"] = "dev"
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *files],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=900, check=False)


def test_the_modules_that_need_outside_things_are_found() -> None:
    needing = _needing()
    for name in ("test_prism.py", "test_contract_vipps_openapi.py", "test_contract_bambora_schema.py",
                 "test_diagram.py"):
        assert name in needing


def test_without_shared_and_programs_they_skip_each_with_its_reason(clone: Path) -> None:
    files = [f"tests/{name}" for name in _needing()]
    out = _run(clone, files, ci=False)
    summary = out.stdout.strip().splitlines()[-1]
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "error" not in summary and "failed" not in summary, summary
    skips = [line for line in out.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips, out.stdout[-3000:]
    for line in skips:
        # "SKIPPED [n] tests/x.py:12: needs ..." : every skip names what it needs
        assert re.search(r": needs ", line), line
    text = "\n".join(skips)
    assert "../shared beside the clone" in text
    assert "`dot`" in text
    assert "`node`" in text or "npm ci" in text


def test_under_ci_the_same_absence_fails(clone: Path) -> None:
    out = _run(clone, ["tests/test_contract_bambora_schema.py"], ci=True)
    assert out.returncode == 1, out.stdout[-3000:]
    assert "CI must run this test, but needs the providers' API documents" in out.stdout
    assert "skipped" not in out.stdout.strip().splitlines()[-1]
