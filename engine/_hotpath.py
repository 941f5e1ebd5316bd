"""Which build of the audit's hot loop runs: `_hot` compiled by mypyc, or the same source as plain Python
(`_builds` does the same for decide's capture plan).

`pip install` compiles `_hot` where a C compiler is available (setup.py); the compiled extension is
then what `from . import _hot` imports. CAPSTATE_NO_MYPYC=1 runs the plain-Python source instead (for
comparison, and to rule the compiled build out when chasing a problem); so does an install without a
compiler, where no extension was built. `plain()` loads the source under its own module name, so both
builds can run side by side in one process (the differential tests compare them).
"""

from __future__ import annotations

import os
from types import ModuleType

from . import _hot as _imported
from ._builds import is_compiled
from ._builds import plain as plain_source


def plain() -> ModuleType:
    """`_hot` from its source file, as plain Python, whether or not a compiled build is installed."""
    return plain_source(_imported)


hot: ModuleType = plain() if os.environ.get("CAPSTATE_NO_MYPYC") == "1" else _imported
COMPILED = is_compiled(hot)
"""True when the audit runs the mypyc-compiled hot loop."""
