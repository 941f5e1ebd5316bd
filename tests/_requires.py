"""What a test needs from outside the repository, and the one policy for when it is absent.

Some tests need what a clone cannot contain: the providers' API documents in `../shared/provider-specs/`
(beside the repository), or a system program (graphviz's `dot`, PostgreSQL, Chromium, Node.js and the
`node_modules` that `npm ci` installs). Where one is absent the test SKIPS with a one-line reason that
says how to get it, so a newcomer's first `pytest` is green; under CI=true the same absence FAILS,
because `.ci/run` installs everything and a contract test that did not run proves nothing.

Every such test calls one of the functions below (directly, or from a fixture); tests/test_requires.py
runs them in a copy of the repository without any of it and checks each skips with its reason.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PROVIDER_SPECS = SHARED / "provider-specs"
NODE_BIN = ROOT / "node_modules" / ".bin"
POSTGRES_ENV = "CAPSTATE_TEST_POSTGRES"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"true", "1"}


def absent(reason: str) -> None:
    """Skip with `reason`, or fail with it under CI=true. Never returns."""
    if in_ci():
        pytest.fail(f"CI must run this test, but {reason}", pytrace=False)
    pytest.skip(reason)


def provider_spec(name: str) -> Path:
    """The path of one of the providers' API documents in ../shared/provider-specs/."""
    path = PROVIDER_SPECS / name
    if not path.is_file():
        absent(f"needs the providers' API documents: {path} is missing (../shared beside the clone)")
    return path


def program(name: str, how: str) -> str:
    """The path of a program on PATH; `how` says how to install it."""
    found = shutil.which(name)
    if found is None:
        absent(f"needs the program `{name}` on PATH ({how})")
    assert found is not None
    return found


def dot() -> str:
    return program("dot", "apt-get install graphviz")


def chromium() -> str:
    """Debian's headless browser, as `chromium` (or `chromium-browser` elsewhere)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found is not None:
            return found
    absent("needs the program `chromium` on PATH (apt-get install chromium chromium-driver)")
    raise AssertionError  # unreachable: absent() never returns


def node_tool(tool: str) -> Path:
    """A tool `npm ci` installs into node_modules/.bin (Prism), with `node` on PATH to run it."""
    program("node", "Node.js 20 and npm")
    path = NODE_BIN / tool
    if not path.exists():
        absent(f"needs {path.relative_to(ROOT)}: run `npm ci` (package-lock.json pins it)")
    return path


def postgres_url() -> str:
    """The libpq URL of a PostgreSQL server for tests, from CAPSTATE_TEST_POSTGRES."""
    url = os.environ.get(POSTGRES_ENV, "")
    if not url:
        absent(f"needs a PostgreSQL server: set {POSTGRES_ENV}=postgresql://user:pass@127.0.0.1:5432/db")
    return url
