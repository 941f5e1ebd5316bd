"""Build hook: compile the audit's hot loop (engine/_hot.py, imported as capstate._hot), decide's capture
plan (engine/_capture.py, capstate._capture), the judgement of one fact (engine/_rules.py) and the audit's
exact path (engine/_exact.py) with mypyc.

Everything else about the package is in pyproject.toml. The compiled modules are an optimisation only:
`capstate._hotpath`, `capstate._builds`, `_engine` and `_audit` run the same sources as plain Python where
no extension was built, so this never fails an install. It builds nothing when CAPSTATE_NO_MYPYC=1, when mypyc cannot be
imported, when mypyc refuses a module, or when no C compiler works (probed first; the extensions are also
`optional`, for a compiler that fails on the generated C itself).
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

from setuptools import setup


def _c_compiler_works() -> bool:
    """Whether the compiler build_ext would use ($CC, else the interpreter's) compiles a trivial file.
    Asked first because mypyc's type analysis costs ~20 s of CPU before any compiler is called."""
    try:
        from distutils.ccompiler import new_compiler  # setuptools' copy, through its distutils shim
        from distutils.sysconfig import customize_compiler

        compiler: Any = new_compiler()
        customize_compiler(compiler)
        with tempfile.TemporaryDirectory() as tmp:
            probe = os.path.join(tmp, "probe.c")
            with open(probe, "w", encoding="ascii") as f:
                f.write("int capstate_probe(void) { return 0; }\n")
            compiler.compile([probe], output_dir=tmp)
    except Exception:  # any failure means: no working compiler here
        return False
    return True


def _mypyc_extensions() -> list[Any]:
    if os.environ.get("CAPSTATE_NO_MYPYC") == "1":
        return []
    if not _c_compiler_works():
        sys.stderr.write("capstate: no working C compiler; the hot loop and capture plan run as plain Python\n")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        sys.stderr.write("capstate: mypyc not available; the audit's hot loop runs as plain Python\n")
        return []
    here = os.path.dirname(os.path.abspath(__file__))
    # mypyc names a module from its folders' __init__.py files: engine/ is installed as `capstate`, so
    # it compiles the files through a `capstate` link to engine/: the extensions are `capstate._hot`,
    # `capstate._capture` and so on. separate=True: each module's runtime library is then capstate.<module>__mypyc,
    # inside the package, instead of one library named by a hash at the top of site-packages.
    root = os.path.join("build", "mypyc-src")
    link = os.path.join(root, "capstate")
    try:
        os.makedirs(root, exist_ok=True)
        if not os.path.islink(link):
            os.symlink(os.path.join(here, "engine"), link, target_is_directory=True)
        extensions = mypycify([
            "--ignore-missing-imports", "--follow-imports=silent",
            os.path.join(link, "_hot.py"),
            os.path.join(link, "_capture.py"),
            os.path.join(link, "_rules.py"),
            os.path.join(link, "_exact.py"),
        ], opt_level="3", debug_level="0", separate=True)
    except (OSError, SystemExit, Exception) as exc:
        sys.stderr.write(f"capstate: not compiling the audit's hot loop ({exc}); it runs as plain Python\n")
        return []
    for ext in extensions:
        ext.optional = True  # no C compiler: build_ext warns and goes on
    return extensions


setup(ext_modules=_mypyc_extensions())
