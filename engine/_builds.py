"""Which build of a module written for mypyc runs: the compiled extension, or the same source as plain Python.

Three modules are written for mypyc: `_hot`, the audit's hot loop (chosen in `_hotpath`), `_capture`,
decide's capture plan (chosen here, so that a service that only decides never loads the audit), and
`_rules`, the judgement of one fact (chosen in `_engine`, as it imports the guards that import this).
`pip install` compiles them where a C compiler is available (setup.py); the compiled extension is then
what `import capstate._capture` loads. CAPSTATE_NO_MYPYC=1 runs the plain-Python sources instead (for
comparison, and to rule the compiled build out when chasing a problem); so does an install without a
compiler, where no extension was built. `plain()` loads a source under its own module name, so both
builds can run side by side in one process (the differential tests compare them).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType


def is_compiled(module: ModuleType) -> bool:
    """Whether `module` is a compiled extension (mypyc), not Python source."""
    return not (getattr(module, "__file__", "") or "").endswith(".py")


def plain(imported: ModuleType) -> ModuleType:
    """The module `imported` from its source file, as plain Python, whether or not a compiled build is
    installed (`imported` itself when it is the source)."""
    package, _, base = imported.__name__.rpartition(".")
    name = f"{package}.{base}_plain"
    found = sys.modules.get(name)
    if found is not None:
        return found
    if not is_compiled(imported):
        return imported
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{base}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - the source ships beside the extension
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


NO_MYPYC = os.environ.get("CAPSTATE_NO_MYPYC") == "1"
# Imported by name: `decide` reads this module, and a static `from . import` would pull the package's
# __init__ into the core's import cycle (where mypy can no longer type `capstate.shipped`).
capture_imported: ModuleType = importlib.import_module(f"{__package__}._capture")
capture: ModuleType = plain(capture_imported) if NO_MYPYC else capture_imported
CAPTURE_COMPILED = is_compiled(capture)
"""True when decide runs the mypyc-compiled capture plan."""

def chosen(imported: ModuleType) -> ModuleType:
    """The build of `imported` that runs: itself, or its plain-Python source with CAPSTATE_NO_MYPYC=1."""
    return plain(imported) if NO_MYPYC else imported
