"""The audit's hot loop and decide's capture plan ship two ways: compiled by mypyc at `pip install`, and as
plain Python where no C compiler is available (or with CAPSTATE_NO_MYPYC=1). Both must install and give
the same report and the same decisions; the differential tests in test_audit_fastpath.py and
test_hot_paths.py compare them on random logs and commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import capstate
from capstate import _audit, _builds, _engine, _hotpath

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "histories"
# What a fresh interpreter reports: the build it runs, the audit of every example history, and the build
# decide runs with its answers to captures around the bench's (allowed, refused, replayed, partial, final).
PROBE = (
    "import sys, orjson\n"
    "from datetime import timedelta\n"
    "import capstate\n"
    "from capstate import _builds, _hotpath\n"
    "from capstate._cli.audit_run import run_audit\n"
    "report = run_audit(sys.argv[1:], spec=None)\n"
    "print(_hotpath.COMPILED, _hotpath.hot.__file__)\n"
    "print(orjson.dumps(report.to_dict()).decode())\n"
    "print(_builds.CAPTURE_COMPILED, _builds.capture.__file__)\n"
    "answers = []\n"
    "for name in capstate.shipped():\n"
    "    spec = capstate.load_spec(name)\n"
    "    at = capstate.Event.from_json(b'{\"payment\": \"order-10001\", \"type\": \"expired\", '\n"
    "                                  b'\"at\": \"2026-01-05T10:00:00Z\"}').at\n"
    "    ref = '0b7c1a2e-5f3d-4c8a-9e21-7d6f4b3a2c10'  # 36 characters: Hellgate's reference rule\n"
    "    p = capstate.Payment.authorized_for(spec, ref, amount=100000, currency='NOK', at=at)\n"
    "    for amount in (None, 1, 20000, 100000, 100001):\n"
    "        for key in (None, 'cap-1'):\n"
    "            for final in (False, True):\n"
    "                cmd = capstate.Capture(at=at + timedelta(days=1), amount=amount, key=key, final=final)\n"
    "                d = capstate.decide(p, cmd)\n"
    "                answers.append([d.to_dict(), [v.message for v in d.violations],\n"
    "                                [w.message for w in d.warnings]])\n"
    "print(orjson.dumps(answers).decode())\n"
    "from capstate import _audit, _engine\n"
    "print(_engine._rules.__file__, _audit._exact.__file__)\n"
)


def _probe(env: dict[str, str], cwd: Path) -> tuple[bool, str, str, bool, str, str, list[str]]:
    """The audit's build, where it was loaded from and its report; then the same for decide's capture plan
    and its answers; then where the rules (`_rules`) and the audit's exact path (`_exact`) were loaded from."""
    histories = sorted(str(p) for p in EXAMPLE.glob("*.jsonl"))
    done = subprocess.run([sys.executable, "-c", PROBE, *histories], capture_output=True, text=True, env=env,
                          cwd=cwd, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    head, report, capture_head, answers, judging = done.stdout.splitlines()[:5]
    compiled, where = head.split(" ", 1)
    capture_compiled, capture_where = capture_head.split(" ", 1)
    return compiled == "True", where, report, capture_compiled == "True", capture_where, answers, judging.split()


def test_the_installed_hot_loop_and_capture_plan_are_compiled() -> None:
    if not (_hotpath.COMPILED and _builds.CAPTURE_COMPILED):
        reason = "capstate was installed without mypyc (no C compiler, or CAPSTATE_NO_MYPYC=1 at install)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert _hotpath.hot.__file__.endswith((".so", ".pyd"))
    assert _builds.capture.__file__.endswith((".so", ".pyd"))
    assert capstate.decide is _builds.capture.decide
    assert _engine.RULES_COMPILED and _audit._exact.__file__.endswith((".so", ".pyd"))


def test_capstate_no_mypyc_runs_the_same_source_as_plain_python(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CAPSTATE_NO_MYPYC"}
    compiled, _, installed, capture_compiled, _, decided, _ = _probe(env, tmp_path)
    plain, where, report, capture_plain, capture_where, answers, judging = _probe({**env, "CAPSTATE_NO_MYPYC": "1"},
                                                                                  tmp_path)
    assert [Path(f).name for f in judging] == ["_rules.py", "_exact.py"]
    assert not plain and where.endswith("_hot.py")
    assert compiled == _hotpath.is_compiled(_hotpath._imported)
    assert report == installed and '"events":' in report
    assert not capture_plain and capture_where.endswith("_capture.py")
    assert capture_compiled == _builds.is_compiled(_builds.capture_imported)
    assert answers == decided and '"EXCEEDS_CAPTURABLE"' in answers and '"allowed":true' in answers


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
    assert {"capstate/_hot.py", "capstate/_capture.py", "capstate/_rules.py", "capstate/_exact.py"} <= set(names)
    assert not [n for n in names if n.endswith((".so", ".pyd"))], names
    site = tmp_path / "site" / "capstate"
    compiled, where, report, capture_compiled, capture_where, answers, judging = _probe(
        {**os.environ, "PYTHONPATH": str(tmp_path / "site")}, tmp_path)
    assert not compiled and Path(where).resolve() == (site / "_hot.py").resolve()
    assert not capture_compiled and Path(capture_where).resolve() == (site / "_capture.py").resolve()
    assert [Path(f).resolve() for f in judging] == [(site / "_rules.py").resolve(), (site / "_exact.py").resolve()]
    _, _, installed, _, _, decided, _ = _probe(dict(os.environ), tmp_path)
    assert report == installed and answers == decided
