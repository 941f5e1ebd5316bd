"""Which build of the compiled modules runs: mypyc's, or the same source as plain Python.

Two modules are written for mypyc: `_hot` (the audit's hot loop) and `_capture` (decide's capture
plan). `pip install` compiles them where a C compiler is available (setup.py); the compiled extension
is then what `from . import _hot` imports. CAPSTATE_NO_MYPYC=1 runs the plain-Python source instead (for
comparison, and to rule the compiled build out when chasing a problem); so does an install without a
compiler, where no extension was built. `plain()` loads the source under its own module name, so both
builds can run side by side in one process (the differential tests compare them).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

# Imported by name: `decide` reads this module, and a static `from . import` would pull the package's
# __init__ into the core's import cycle (where mypy can no longer type `capstate.shipped`).
_imported = importlib.import_module(f"{__package__}._hot")
_capture_imported = importlib.import_module(f"{__package__}._capture")


def is_compiled(module: ModuleType) -> bool:
    """Whether `module` is a compiled extension (mypyc), not Python source."""
    return not (getattr(module, "__file__", "") or "").endswith(".py")


def plain(imported: ModuleType = _imported) -> ModuleType:
    """`_hot` (or the compiled module given) from its source file, as plain Python, whether or not a
    compiled build is installed."""
    base = imported.__name__.rpartition(".")[2]
    name = f"{__package__}.{base}_plain"
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


_NO_MYPYC = os.environ.get("CAPSTATE_NO_MYPYC") == "1"
hot: ModuleType = plain() if _NO_MYPYC else _imported
COMPILED = is_compiled(hot)
"""True when the audit runs the mypyc-compiled hot loop."""
capture: ModuleType = plain(_capture_imported) if _NO_MYPYC else _capture_imported
CAPTURE_COMPILED = is_compiled(capture)
"""True when decide runs the mypyc-compiled capture plan."""
