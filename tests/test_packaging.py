"""Packaging: one import package, `capstate`, with the specs as package data.

Users embed capstate in services that have their own `engine` or `providers` packages, so the folder
names must never be installed as top-level packages.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from importlib import metadata, resources
from pathlib import Path

import capstate

ROOT = Path(__file__).resolve().parents[1]


def test_no_top_level_engine_or_providers_package(tmp_path: Path) -> None:
    # In a fresh interpreter outside the source tree: `python -m pytest` puts the repo root on sys.path,
    # where the engine/ folder would be importable by accident.
    code = "import importlib.util as u; print(u.find_spec('engine'), u.find_spec('providers'), u.find_spec('capstate'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    engine, providers, found = out.stdout.split(" ", 2)
    assert (engine, providers) == ("None", "None")
    assert found != "None"


def test_tests_import_the_installed_package_not_the_source_tree() -> None:
    # The source folder is engine/, so `import capstate` works only through an installed distribution:
    # a wheel in site-packages, or setuptools' editable mapping of capstate -> engine/.
    assert not (ROOT / "capstate").exists()
    assert metadata.distribution("capstate").version
    where = Path(capstate.__file__).resolve().parent
    assert where.name == "capstate" or where == ROOT / "engine"


def test_specs_ship_as_package_data() -> None:
    names = sorted(p.name for p in resources.files("capstate.specs").iterdir() if p.name.endswith(".toml"))
    assert names == ["bambora.toml", "hellgate.toml", "pipwave.toml", "vipps.toml"]
    assert capstate.shipped_specs() == ("bambora", "hellgate", "pipwave", "vipps")


def test_public_surface_is_sorted_and_importable() -> None:
    assert capstate.__all__ == sorted(capstate.__all__)
    for name in capstate.__all__:
        assert hasattr(capstate, name), name


def test_engine_never_imports_providers_or_io_libraries() -> None:
    # Run in a fresh interpreter so that other tests' imports cannot hide a leak.
    code = (
        "import sys, capstate, capstate._machine\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'httpx', 'sqlite3', 'socket', 'rich'}"
        " or m.startswith('capstate.providers'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT.parent)
    assert out.stdout.strip() == ""


def test_wheel_holds_only_the_capstate_package(tmp_path: Path) -> None:
    # Without mypyc: what is packaged does not depend on it (test_hot_build.py builds the other ways).
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, env={**os.environ, "CAPSTATE_NO_MYPYC": "1"})
    (wheel,) = tmp_path.glob("capstate-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        tops = {name.split("/")[0] for name in zf.namelist()}
        names = set(zf.namelist())
    assert tops == {"capstate", next(t for t in tops if t.endswith(".dist-info"))}
    assert {"capstate/specs/vipps.toml", "capstate/providers/__init__.py", "capstate/py.typed"} <= names
    # The documentation `capstate codes` and `capstate explain` read ships with the code.
    assert {"capstate/docs/codes.md", "capstate/docs/events.md", "capstate/docs/plans.md"} <= names


def test_every_public_name_is_imported_lazily_and_declared_for_type_checkers() -> None:
    import ast

    source = (ROOT / "engine" / "__init__.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    guarded = next(node for node in tree.body if isinstance(node, ast.If))  # if TYPE_CHECKING:
    declared = {alias.asname or alias.name for node in guarded.body if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    declared |= {target.id for node in guarded.body if isinstance(node, ast.Assign) for target in node.targets
                 if isinstance(target, ast.Name)}
    assert declared == set(capstate._LAZY)
    assert set(capstate.__all__) <= declared


def test_help_starts_without_the_engine() -> None:
    # `capstate --help` imports no engine module, rich or transitions: its start-up is the interpreter's.
    # (Its time is measured by `capstate bench`, not asserted here.)
    code = ("import sys, io, contextlib\nfrom capstate._cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['--help'])\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'rich', 'transitions', 'httpx', 'iso4217'}"
            " or m in {'capstate._engine', 'capstate._spec', 'capstate._audit'})\nprint(','.join(heavy))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT.parent)
    assert out.stdout.strip() == ""
