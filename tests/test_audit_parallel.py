"""--workers N and --dask local give byte-identical output to a single process: same findings, same
file names and line numbers, same order, same totals."""

from __future__ import annotations

import gzip
import io
import random
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from audit_output import stable
from hypothesis import given
from hypothesis import strategies as st
from test_cli import Run, run_cli

from capstate._cli.audit_run import MAX_LINE, _blocks, _owner_of, _owners, _partition

LOGS = Path(__file__).resolve().parents[1] / "examples" / "logs"
SHOP = LOGS / "shop-2026-01.jsonl"


def generated_log(payments: int, seed: int) -> bytes:
    """A seeded mixed-provider log with breaches, garbage, and lines in other JSON layouts (key order,
    spaces, escapes) so that the cheap partitioning path and the parsing one both carry payments."""
    rnd = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    events: list[tuple[datetime, dict[str, Any]]] = []
    kinds = [("vipps", "NOK"), ("vipps", "DKK"), ("bambora", "DKK"), ("hellgate", "EUR"), ("pipwave", "MYR")]
    for i in range(payments):
        provider, currency = rnd.choice(kinds)
        ref = f"order-{i:06d}" if rnd.random() > 0.1 else f"order-\u00e6-{i:06d}"
        if provider == "hellgate":  # Hellgate's payment id is a UUID (specs/hellgate.toml, policy.reference)
            ref = f"{i:08x}-0000-4000-8000-{i:012x}"
        at = t0 + timedelta(minutes=rnd.randrange(0, 40 * 24 * 60))
        amount = rnd.randrange(1000, 100000)

        def add(when: datetime, ref: str = ref, provider: str = provider, **fields: Any) -> None:
            events.append((when, {"payment": ref, "at": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "provider": provider,
                                  **fields}))

        add(at, type="authorized", amount=amount, currency=currency)
        roll = rnd.random()
        if roll < 0.15:
            continue  # left authorized: dangling where a cancel could release it and validity is known
        if provider == "hellgate":
            add(at + timedelta(hours=1), type="capture_requested", amount=amount, key=f"c{i}")
            add(at + timedelta(hours=2), type="captured", amount=amount, key=f"c{i}")
        else:
            first = amount // 2 if provider == "vipps" else amount
            add(at + timedelta(days=9 if roll < 0.2 else 1), type="captured", amount=first, key=f"s{i}")
            if provider == "vipps":
                extra = amount if roll < 0.25 else amount - first
                add(at + timedelta(days=2), type="captured", amount=extra, key=f"s{i}" if roll < 0.3 else f"t{i}")
        if rnd.random() < 0.3:
            add(at + timedelta(days=5), type="refunded", amount=amount // 3 if roll > 0.3 else amount * 2)
    events.sort(key=lambda e: e[0])
    lines = []
    for _, obj in events:
        style = rnd.random()
        if style < 0.1:
            lines.append(orjson.dumps(dict(reversed(list(obj.items())))))
        elif style < 0.2:
            lines.append(orjson.dumps(obj).replace(b'":', b'": '))
        elif style < 0.25:
            lines.append(orjson.dumps(obj).replace(b'"order-', b'"\\u006frder-', 1))
        else:
            lines.append(orjson.dumps(obj))
        if rnd.random() < 0.01:
            lines.append(rnd.choice([b"\x00\xff garbage", b'{"payment":"order-000001","type":"settled"}',
                                     b'{"payment": 7}', lines[-1][: len(lines[-1]) // 2], b"[]"]))
    lines.insert(len(lines) // 2, b'{"payment":"' + b"x" * (MAX_LINE + 10) + b'"}')
    return b"\n".join(lines) + b"\n"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("parallel")
    big = root / "generated.jsonl.gz"
    big.write_bytes(gzip.compress(generated_log(1500, seed=4)))
    small = root / "generated-2.jsonl"
    small.write_bytes(generated_log(300, seed=5))
    return [big, SHOP, small]


def audit(cwd: Path, files: list[Path], *extra: str) -> Run:
    return run_cli(cwd, "audit", *files, "--json", *extra)


def test_the_generated_log_has_findings_of_many_kinds(inputs: list[Path], tmp_path: Path) -> None:
    report = orjson.loads(audit(tmp_path, inputs).out)
    assert report["events"] > 4000 and len(report["counts"]) >= 8, report["counts"]


def test_cheap_partition_key_equals_the_parsed_payment() -> None:
    lines = generated_log(200, seed=6).splitlines()
    for parts in (2, 3, 7):
        for raw in lines:
            owner, _ = _owner_of(raw, parts)
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            ref = obj.get("payment") if isinstance(obj, dict) else None
            if isinstance(ref, str):
                assert owner == _owner_of(orjson.dumps({"x": 1, "payment": ref}), parts)[0]


@pytest.mark.parametrize("workers", ["2", "3"])
def test_workers_output_is_byte_identical(inputs: list[Path], tmp_path: Path, workers: str) -> None:
    single = audit(tmp_path, inputs)
    assert single.code == 1 and single.err == ""
    parallel = audit(tmp_path, inputs, "--workers", workers)
    assert parallel.code == single.code and parallel.err == ""
    assert stable(parallel.out) == stable(single.out)


def test_a_small_settled_window_forgets_alike_in_every_partition(inputs: list[Path], tmp_path: Path) -> None:
    # The window counts input lines, which every partition counts alike, so forgetting is identical.
    single = audit(tmp_path, inputs, "--settled-window", "300")
    assert stable(single.out) != stable(audit(tmp_path, inputs).out)  # the window forgot payments that came back
    assert stable(audit(tmp_path, inputs, "--settled-window", "300", "--workers", "3").out) == stable(single.out)


def test_workers_read_stdin_and_write_the_same_human_report(inputs: list[Path], tmp_path: Path) -> None:
    data = inputs[2].read_bytes()
    single = run_cli(tmp_path, "audit", "-", stdin=data)
    parallel = run_cli(tmp_path, "audit", "-", "--workers", "2", stdin=data)
    assert single.code == parallel.code == 1
    assert stable(parallel.out) == stable(single.out) and "\n-:" in single.out


def test_dask_local_output_equals_single_process(inputs: list[Path], tmp_path: Path) -> None:
    single = audit(tmp_path, inputs)
    on_dask = audit(tmp_path, inputs, "--dask", "local", "--workers", "2")
    assert on_dask.err == "" and on_dask.code == single.code
    assert stable(on_dask.out) == stable(single.out)


@pytest.mark.parametrize("extra", [
    ("--as-of", "2026-03-01T00:00:00Z", "--set", "hellgate.authorization_validity=3d", "--set", "max_captures=2"),
    ("--format", "vipps-events", str(LOGS / "vipps-events-2026-01.jsonl"),
     str(LOGS / "vipps-events-acme-dk-20260103-4711.json")),
])
def test_workers_are_byte_identical_with_as_of_set_and_the_vipps_format(inputs: list[Path], tmp_path: Path,
                                                                        extra: tuple[str, ...]) -> None:
    files = [] if "vipps-events" in extra else inputs
    single = run_cli(tmp_path, "audit", *files, *extra, "--json")
    assert single.code == 1 and single.err == "" and orjson.loads(single.out)["violations"]
    assert stable(run_cli(tmp_path, "audit", *files, *extra, "--json", "--workers", "3").out) == stable(single.out)


# ------------------------------------------------------------------ reading and partitioning by block

_OBJECTS = st.dictionaries(st.sampled_from(["payment", "type", "x", "{", "pay"]),
                           st.one_of(st.text(max_size=6), st.integers(-5, 5),
                                     st.dictionaries(st.just("payment"), st.text(max_size=3))), max_size=4)

_LINE_BYTES = st.one_of(
    st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from([b"", b"\r", b'{"payment":"a"}', b'{"payment": "b", "x": 1}', b'{"x":{"payment":"c"}}',
                     b'{"payment":"d","payment":"e"}', b'{"payment":"d","payment":5}',
                     b'{"payment":"f\\u0041"}', b' {"payment":"g"}',
                     b'{"payment":5}', b'{"type":"captured"}', b'{"payment":"h"', b'{"payment":"\xff"}']),
)


def _readline_reference(data: bytes, max_line: int) -> list[bytes | None]:
    """What the line-by-line reader did: readline(max_line); a line of max_line bytes or more is None."""
    stream = io.BytesIO(data)
    out: list[bytes | None] = []
    while True:
        line = stream.readline(max_line)
        if not line:
            return out
        if len(line) >= max_line and not line.endswith(b"\n"):
            while (more := stream.readline(max_line)) and not more.endswith(b"\n"):
                pass
            out.append(None)
            continue
        out.append(line[:-1] if line.endswith(b"\n") else line)


@given(st.lists(_LINE_BYTES, max_size=30), st.booleans(), st.integers(1, 40), st.integers(1, 24))
def test_blocks_give_the_lines_readline_gives(lines: list[bytes], last_newline: bool, block: int,
                                               max_line: int) -> None:
    """Blocks of whole lines, split, are the lines `readline(max_line)` reads (too long ones as None), for
    any block size against any line length: blank lines, a last line without newline, \\r, garbage."""
    data = b"\n".join(lines) + (b"\n" if last_newline and lines else b"")
    got: list[bytes | None] = []
    for item in _blocks(io.BufferedReader(io.BytesIO(data), buffer_size=max(block, 1)), block, max_line):
        got.extend([None] if item is None else item.split(b"\n"))
    assert got == _readline_reference(data, max_line)


def test_blocks_never_hold_a_line_much_longer_than_the_limit() -> None:
    """A 5 MiB line is skipped block by block: nothing yielded or carried grows past limit + block."""
    data = b'{"payment":"a"}\n' + b"x" * (5 << 20) + b'\n{"payment":"b"}'
    seen = list(_blocks(io.BytesIO(data), 1 << 16, 1 << 20))
    assert seen == [b'{"payment":"a"}', None, b'{"payment":"b"}']


@given(st.lists(_LINE_BYTES | st.builds(orjson.dumps, _OBJECTS), min_size=1, max_size=80),
       st.integers(2, 5))
def test_partitioning_a_block_agrees_with_partitioning_each_line(lines: list[bytes], parts: int) -> None:
    """The block-wide shortcut (one regex and four counts for thousands of lines) gives every line the
    partition the line-by-line rule gives it, whatever garbage sits among them."""
    owners, parsed = _partition(b"\n".join(lines), lines, parts)
    assert owners == [_owner_of(line, parts)[0] for line in lines]
    for k, obj in parsed.items():
        assert obj == orjson.loads(lines[k])


@pytest.mark.parametrize("tricky", [
    b'{"payment":"d","payment":5}',     # a second "payment" key: the last one counts, and it is no string
    b'{"payment":"d","x":{"payment":"e"}}',  # a nested object's key
    b'{"x":{"payment":"e"}}',
    b'{"payment":"x\\u0041"}',           # an escape: the id's bytes are not its text
    b'{"payment" : "spaced"}',
    b' {"payment":"indented"}',
    b'{"payment":"cut',
    b"",
])
@pytest.mark.parametrize("parts", [2, 3, 5, 7])
def test_one_line_the_block_rule_cannot_vouch_for_gets_the_partition_of_the_line_rule(tricky: bytes,
                                                                                     parts: int) -> None:
    for lines in ([tricky], [b'{"payment":"p-1"}', tricky, b'{"payment": "p-2"}']):
        owners, _ = _partition(b"\n".join(lines), lines, parts)
        assert owners == [_owner_of(line, parts)[0] for line in lines], lines


def test_a_clean_block_is_partitioned_without_parsing_and_a_garbage_line_costs_only_its_run() -> None:
    good = [orjson.dumps({"type": "captured", "payment": f"p-{i}", "amount": i}) for i in range(300)]
    assert _owners(b"\n".join(good), good, 3) is not None
    spoiled = [*good[:100], b'{"payment":"x\\u0041"}', *good[100:]]
    assert _owners(b"\n".join(spoiled), spoiled, 3) is None
    owners, parsed = _partition(b"\n".join(spoiled), spoiled, 3)
    assert list(parsed) == [100] and parsed[100] == {"payment": "xA"}
    assert owners[100] == zlib.crc32(b"xA") % 3
