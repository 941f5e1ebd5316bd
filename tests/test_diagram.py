"""`capstate diagram`: drawn by transitions' GraphMachine from the spec, guards and numbers on the edges.

svg and png run the real `dot` program. Where it is absent the test skips with the reason, except in
CI (CI=true), where .ci/run installs graphviz and a missing `dot` is a failure.
"""

from __future__ import annotations

import os
import sys
from importlib import resources
from pathlib import Path

import pytest
from _requires import dot
from test_cli import Run, assert_error, run_cli, write

from capstate import Spec, load_spec, shipped_specs
from capstate._diagram import edge_label, graphviz, mermaid, policy_numbers


def seed_text(name: str) -> str:
    return resources.files("capstate.specs").joinpath(f"{name}.toml").read_text(encoding="utf-8")


def diagram(tmp_path: Path, *args: str | Path, **env: str) -> Run:
    return run_cli(tmp_path, "diagram", *args, **env)


def need_dot() -> None:
    dot()


# -------------------------------------------------------------------------------------------- mermaid


@pytest.mark.parametrize("guards", [False, True], ids=["shape", "guards"])
@pytest.mark.parametrize("name", shipped_specs())
def test_mermaid_has_every_state_and_transition(name: str, guards: bool) -> None:
    spec = load_spec(name)
    text = mermaid(spec, guards=guards)
    lines = text.splitlines()
    assert lines[:4] == ["---", f'title: "{spec.title}"', "---", "stateDiagram-v2"]
    for state in spec.states:
        assert f'  state "{state}" as {state}' in lines
    assert f"  [*] --> {spec.initial}" in lines
    for state in spec.states:
        assert (f"  {state} --> [*]" in lines) == (state in spec.terminal)
    # Each transition is on the edge from its source to its destination, with its whole label.
    edges = {line.split(": ", 1)[0].strip(): line.split(": ", 1)[1] for line in lines if " --> " in line
             and ": " in line}
    for t in spec.transitions:
        label = edge_label(spec, t, guards=guards)
        assert label in edges[f"{t.source} --> {t.dest}"].split(" | "), (t, label)
        for guard in t.guards:
            assert (guard in label) == guards
    assert all(line == line.rstrip() for line in lines)
    assert text.endswith("\n") and "\n\n\n" not in text


@pytest.mark.parametrize("name", shipped_specs())
def test_mermaid_is_deterministic(name: str) -> None:
    # Two independent loads, so nothing cached can make them agree.
    first = mermaid(Spec.from_toml(seed_text(name), file=f"specs/{name}.toml"))
    second = mermaid(Spec.from_toml(seed_text(name), file=f"specs/{name}.toml"))
    assert first == second


def test_policy_numbers_on_the_edges() -> None:
    vipps, hellgate = load_spec("vipps"), load_spec("hellgate")
    partial = next(t for t in vipps.transitions if t.when == "leaves_remainder" and t.source == "authorized")
    label = edge_label(vipps, partial, guards=True)
    assert label.startswith("captured when leaves_remainder [key_valid, key_unique, amount_valid,")
    assert "valid 180d NOK/14d DKK/14d EUR" in label
    assert "min 1.00 NOK/0.01 DKK/0.01 EUR" in label and "key required" in label
    request = next(t for t in hellgate.transitions if t.trigger.value == "capture_requested")
    assert edge_label(hellgate, request, guards=True).endswith("≤ 1 capture")
    # Hellgate's validity is unknown: no number, though not_expired is on the edge.
    assert not any(n.startswith("valid") for n in policy_numbers(hellgate.policy, request.guards))
    assert "valid 7d" in mermaid(load_spec("bambora"), guards=True)
    assert "decimal(11,2)" in mermaid(load_spec("pipwave"), guards=True)


def test_overrides_change_the_numbers_drawn() -> None:
    spec = load_spec("hellgate", overrides={"authorization_validity": "7d", "max_captures": 2,
                                            "over_capture_percent": 10, "partial_capture": "no"})
    request = next(t for t in spec.transitions if t.trigger.value == "capture_requested")
    numbers = policy_numbers(spec.policy, request.guards)
    assert numbers == ["valid 7d", "≤ 2 captures", "full only", "+10 percent over-capture"]
    assert "≤ 2 captures" in mermaid(spec, guards=True)


def test_graphviz_source_marks_terminal_states() -> None:
    spec = load_spec("hellgate")
    source = graphviz(spec, guards=True).source
    for state in ("captured", "failed", "cancelled", "expired"):
        assert f"{state} [peripheries=2]" in source
    assert 'label="capture_requested\n[key_valid' in source  # graphviz labels break lines


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_mermaid_is_the_library_output(tmp_path: Path) -> None:
    r = diagram(tmp_path, "vipps")
    assert (r.code, r.err) == (0, "")
    assert r.out == mermaid(load_spec("vipps"))
    # By default states and triggers only; --guards adds the guards and the policy numbers.
    assert "within_capturable" not in r.out and "180d" not in r.out and "captured when takes_remainder" in r.out
    r = diagram(tmp_path, "vipps", "--guards")
    assert (r.code, r.err) == (0, "")
    assert r.out == mermaid(load_spec("vipps"), guards=True) and "within_capturable" in r.out and "180d" in r.out


def test_cli_draws_a_users_spec_file_to_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "mine.toml", seed_text("bambora").replace('name = "bambora"', 'name = "mybank"'))
    out = tmp_path / "mine.mmd"
    r = diagram(tmp_path, path, "-o", out)
    assert (r.code, r.out, r.err) == (0, "", "")
    assert out.read_text(encoding="utf-8") == mermaid(load_spec(path))


def test_cli_svg_and_png_through_dot(tmp_path: Path) -> None:
    need_dot()
    r = diagram(tmp_path, "hellgate", "--format", "svg", "--guards")
    assert (r.code, r.err) == (0, "")
    assert r.out.lstrip().startswith("<?xml") and "<svg" in r.out
    for text in ("capturing", "capture_failed", "≤ 1 capture", "Hellgate Commerce payments"):
        assert text in r.out, text
    png = tmp_path / "vipps.png"
    r = diagram(tmp_path, "vipps", "--format", "png", "-o", png)
    assert (r.code, r.out, r.err) == (0, "", "")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_cli_svg_without_dot_is_one_line(tmp_path: Path) -> None:
    # A PATH with no `dot` on it; the interpreter itself is called by its absolute path.
    empty = tmp_path / "bin"
    empty.mkdir()
    err = assert_error(diagram(tmp_path, "vipps", "--format", "svg", PATH=str(empty)), "`dot`")
    assert "mermaid" in err


def test_cli_png_without_the_graphviz_package_is_one_line(tmp_path: Path) -> None:
    # sitecustomize runs at start-up: the package is then "not installed" for this process only.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['graphviz'] = None\n", encoding="utf-8")
    pythonpath = os.pathsep.join([str(hide), *sys.path[1:]])
    assert_error(diagram(tmp_path, "vipps", "--format", "png", PYTHONPATH=pythonpath), "capstate[graph]")


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    assert_error(diagram(tmp_path, "no-such-provider"), "no shipped spec of that name")
    broken = write(tmp_path, "broken.toml", seed_text("vipps").replace("[machine]", "[machine", 1))
    assert_error(diagram(tmp_path, broken), "not valid TOML")
    assert_error(diagram(tmp_path, "vipps", "--json"), "no --json")
    assert_error(diagram(tmp_path, tmp_path), "is a directory; give a spec file")
    assert_error(diagram(tmp_path, "vipps", "-o", tmp_path / "missing-dir" / "x.mmd"), "cannot write")
    r = diagram(tmp_path, "vipps", "--format", "gif")
    assert r.code == 2 and "invalid choice" in r.err and "Traceback" not in r.err


def test_cli_set_draws_the_overridden_numbers(tmp_path: Path) -> None:
    r = diagram(tmp_path, "hellgate", "--guards", "--set", "max_captures=2", "--set", "authorization_validity=7d")
    assert (r.code, r.err) == (0, "")
    assert "≤ 2 captures" in r.out and "valid 7d" in r.out and "≤ 1 capture" not in r.out
    assert_error(diagram(tmp_path, "hellgate", "--set", "max_captures=-1"), "--set max_captures")


def test_a_title_with_yaml_syntax_stays_one_front_matter_line(tmp_path: Path) -> None:
    text = seed_text("bambora").replace('title = "Bambora native payments API (api-beta)"',
                                        'title = "Acme: \\"cards\\" # EU"')
    spec = load_spec(write(tmp_path, "acme.toml", text))
    assert mermaid(spec).splitlines()[:3] == ["---", 'title: "Acme: \\"cards\\" # EU"', "---"]


def test_png_is_never_written_to_a_terminal(tmp_path: Path) -> None:
    # stdout a real pseudo-terminal: the bytes of a PNG would garble it.
    import pty
    import subprocess

    primary, secondary = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "capstate", "diagram", "vipps", "--format", "png"],
                              cwd=tmp_path, stdout=secondary, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              timeout=60, check=False)
    finally:
        os.close(secondary)
        os.close(primary)
    assert done.returncode == 2
    assert done.stderr.decode() == "capstate: error: png is binary: give -o FILE, or redirect stdout to a file\n"
