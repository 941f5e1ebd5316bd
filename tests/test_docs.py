"""The documentation in docs/ is complete and true: every code, every event field, every plan field."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

import capstate
from capstate import Code, EventType, NoteCode
from capstate._cli.codes import entries
from capstate._codes import VIOLATION_CODES, WARNING_CODES

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_every_code_is_explained_once_with_its_kind() -> None:
    found = entries()
    kinds = {e.code: e.kind for e in found}
    assert len(kinds) == len(found), "a code is explained twice"
    expected = {**{c.value: "refusal" for c in VIOLATION_CODES}, **{c.value: "warning" for c in WARNING_CODES},
                **{n.value: "note" for n in NoteCode}}
    assert kinds == expected
    for e in found:
        assert len(e.text) > 40 and e.summary.endswith("."), e.code


def test_the_shipped_copy_is_the_repository_copy() -> None:
    from importlib import resources

    shipped = resources.files("capstate.docs").joinpath("codes.md").read_text(encoding="utf-8")
    assert shipped == (DOCS / "codes.md").read_text(encoding="utf-8")


def test_event_format_names_every_field_and_type() -> None:
    text = (DOCS / "events.md").read_text(encoding="utf-8")
    for field in attrs.fields(capstate.Event):
        assert f"| `{field.name}` |" in text, field.name
    for etype in EventType:
        assert f"`{etype.value}`" in text, etype.value
    (example,) = re.findall(r"```json\n(.*?)\n```", text, flags=re.S)
    event = capstate.Event.from_json(example)
    assert event.type is EventType.CAPTURED and event.amount == 25000


def test_plan_format_example_parses() -> None:
    text = (DOCS / "plans.md").read_text(encoding="utf-8")
    toml_example = re.findall(r"```toml\n(.*?)```", text, flags=re.S)[0]
    plan = capstate.Plan.from_toml(toml_example.replace('outcome = "failed"', 'outcome = "succeeded"'))
    assert plan.amount == 100000 and len(plan.steps) == 1
    json_example = re.findall(r"```json\n(.*?)```", text, flags=re.S)[0]
    assert len(capstate.Plan.from_json(json_example).steps) == 2


def test_codes_and_explain_commands() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "capstate", *args], capture_output=True, text=True,
                              check=False, cwd=ROOT)

    listed = run("codes")
    assert listed.returncode == 0
    for code in Code:
        assert f"  {code.value}: " in listed.stdout, code
    one = run("explain", "remainder-held")
    assert one.returncode == 0 and one.stdout.startswith("! REMAINDER_HELD (warning)\n")
    unknown = run("explain", "EXCEEDS_CAPTURABL")
    assert unknown.returncode == 2
    assert unknown.stderr == ("capstate: error: explain: no code 'EXCEEDS_CAPTURABL'; did you mean "
                              "EXCEEDS_CAPTURABLE?\n")


@pytest.mark.parametrize("name", ["events.md", "codes.md", "plans.md", "performance.md"])
def test_docs_are_linked_from_the_readme(name: str) -> None:
    assert f"(docs/{name})" in (ROOT / "README.md").read_text(encoding="utf-8")
