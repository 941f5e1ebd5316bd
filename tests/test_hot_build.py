"""The audit's hot loop ships two ways: compiled by mypyc at `pip install`, and as plain Python where no
C compiler is available (or with CAPSTATE_NO_MYPYC=1). Both must install and give the same report; the
differential tests in test_audit_fastpath.py compare them line by line on random logs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from capstate import _hotpath

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "histories"
# What a fresh interpreter reports: the build it runs, and the audit of every example history.
PROBE = (
    "import sys, orjson\n"
    "from capstate import _hotpath\n"
    "from capstate._cli.audit_run import run_audit\n"
    "report = run_audit(sys.argv[1:], spec=None)\n"
    "print(_hotpath.COMPILED, _hotpath.hot.__file__)\n"
    "print(orjson.dumps(report.to_dict()).decode())\n"
)


def _probe(env: dict[str, str], cwd: Path) -> tuple[bool, str, str]:
    histories = sorted(str(p) for p in EXAMPLE.glob("*.jsonl"))
    done = subprocess.run([sys.executable, "-c", PROBE, *histories], capture_output=True, text=True, env=env,
                          cwd=cwd, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    head, report = done.stdout.splitlines()[:2]
    compiled, where = head.split(" ", 1)
    return compiled == "True", where, report


def test_the_installed_hot_loop_is_compiled() -> None:
    if not _hotpath.COMPILED:
        reason = "the hot loop was installed without mypyc (no C compiler, or CAPSTATE_NO_MYPYC=1 at install)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert _hotpath.hot.__file__.endswith((".so", ".pyd"))


def test_capstate_no_mypyc_runs_the_same_source_as_plain_python(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CAPSTATE_NO_MYPYC"}
    compiled, _, installed = _probe(env, tmp_path)
    plain, where, report = _probe({**env, "CAPSTATE_NO_MYPYC": "1"}, tmp_path)
    assert not plain and where.endswith("_hot.py")
    assert compiled == _hotpath.is_compiled(_hotpath._imported)
    assert report == installed and '"events":' in report


def test_pip_install_works_without_a_c_compiler(tmp_path: Path) -> None:
    """`pip install .` where no C compiler runs: the wheel builds, holds no extension, and its plain-Python
    hot loop gives the installed build's report."""
    env = {**{k: v for k, v in os.environ.items() if k != "CAPSTATE_NO_MYPYC"}, "CC": "false", "CXX": "false"}
    # A copy of the source alone: the working tree's build/ and in-place extensions (from an earlier
    # install) would otherwise be packed into the wheel as they are.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        "build", "dist", ".venv", "node_modules", "*.egg-info", "*.so", "*.pyd", "__pycache__", ".git", ".*_cache",
        ".hypothesis"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                           str(source)], capture_output=True, text=True, env=env, check=False, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("capstate-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(tmp_path / "site")
    assert "capstate/_hot.py" in names
    assert not [n for n in names if n.endswith((".so", ".pyd"))], names
    compiled, where, report = _probe({**os.environ, "PYTHONPATH": str(tmp_path / "site")}, tmp_path)
    assert not compiled and Path(where).resolve() == (tmp_path / "site" / "capstate" / "_hot.py").resolve()
    _, _, installed = _probe(dict(os.environ), tmp_path)
    assert report == installed
