"""Which build of the audit's hot loop runs: `_hot` compiled by mypyc, or the same source as plain Python.

`pip install` compiles `_hot` where a C compiler is available (setup.py); the compiled extension is
then what `from . import _hot` imports. CAPSTATE_NO_MYPYC=1 runs the plain-Python source instead (for
comparison, and to rule the compiled build out when chasing a problem); so does an install without a
compiler, where no extension was built. `plain()` loads the source under its own module name, so both
builds can run side by side in one process (the differential tests compare them).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType

from . import _hot as _imported


def is_compiled(module: ModuleType) -> bool:
    """Whether `module` is a compiled extension (mypyc), not Python source."""
    return not (getattr(module, "__file__", "") or "").endswith(".py")


def plain() -> ModuleType:
    """`_hot` from its source file, as plain Python, whether or not a compiled build is installed."""
    name = f"{__package__}._hot_plain"
    found = sys.modules.get(name)
    if found is not None:
        return found
    if not is_compiled(_imported):
        return _imported
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_hot.py")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover - the source ships beside the extension
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


hot: ModuleType = plain() if os.environ.get("CAPSTATE_NO_MYPYC") == "1" else _imported
COMPILED = is_compiled(hot)
"""True when the audit runs the mypyc-compiled hot loop."""
