"""The Vipps ePayment event log parser: the mapping to canonical events, failed attempts, the
pretty-printed array export with line numbers, and the example exports against Vipps's own schema."""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_schema_validator import OAS30Validator

from capstate import Event, EventError
from capstate.providers.vipps.events import BadRecord, records, split_array, to_canonical

LOGS = Path(__file__).resolve().parents[1] / "examples" / "logs"

# vippsas/vipps-epayment-api@e7a5c6e:docs/epayment.v1.yml#/components/schemas/PaymentEvent (and the
# schemas it refers to), copied. `required` lists `paymentAction`, a property the spec no longer has
# (research/providers.md 2.7, quirk 2); real payloads carry `name`, so `name` stands in for it here.
PAYMENT_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "reference": {"type": "string", "minLength": 8, "maxLength": 50, "pattern": "^[a-zA-Z0-9-]{8,50}$"},
        "pspReference": {"type": "string"},
        "name": {"type": "string", "enum": ["CREATED", "ABORTED", "EXPIRED", "CANCELLED", "CAPTURED", "REFUNDED",
                                             "AUTHORIZED", "TERMINATED"]},
        "amount": {"type": "object", "required": ["value", "currency"], "properties": {
            "currency": {"type": "string", "enum": ["NOK", "DKK", "EUR"]},
            "value": {"type": "integer", "minimum": 0, "maximum": 65000000}}},
        "timestamp": {"type": "string", "format": "date-time"},
        "idempotencyKey": {"type": "string", "nullable": True, "maxLength": 50},
        "success": {"type": "boolean"},
    },
    "required": ["reference", "pspReference", "name", "amount", "timestamp", "success"],
}


def pe(name: str, value: int = 10000, *, success: bool = True, key: str | None = "k-1",
       ts: str = "2026-01-05T10:00:00Z", currency: str = "NOK") -> dict[str, Any]:
    return {"reference": "acme-no-0001", "pspReference": "123", "name": name,
            "amount": {"currency": currency, "value": value}, "timestamp": ts, "idempotencyKey": key,
            "success": success}


def test_example_exports_obey_the_payment_event_schema() -> None:
    validator = OAS30Validator(PAYMENT_EVENT_SCHEMA)
    doc = orjson.loads((LOGS / "vipps-events-acme-dk-20260103-4711.json").read_bytes())
    lines = (LOGS / "vipps-events-2026-01.jsonl").read_bytes().splitlines()
    objs = [*doc, *(orjson.loads(raw) for raw in lines)]
    broken = [o for o in objs if not validator.is_valid(o)]
    # Exactly one line is broken on purpose (success: "yes"); it is pinned as LOG_MALFORMED.
    assert [o["reference"] for o in broken] == ["acme-no-20260112-0007"]


@pytest.mark.parametrize(("name", "canonical", "with_amount"), [
    ("AUTHORIZED", "authorized", True),
    ("CAPTURED", "captured", True),
    ("REFUNDED", "refunded", True),
    ("CANCELLED", "cancelled", False),
    ("TERMINATED", "cancelled", False),
])
def test_facts_map_to_canonical_events(name: str, canonical: str, with_amount: bool) -> None:
    out = to_canonical(pe(name, 4990))
    assert out is not None
    event = Event.from_dict(out)
    assert (event.type.value, event.payment, event.provider, event.key, event.currency) == \
           (canonical, "acme-no-0001", "vipps", "k-1", "NOK")
    assert event.amount == (4990 if with_amount else None)


@pytest.mark.parametrize("name", ["CREATED", "ABORTED", "EXPIRED"])
def test_states_before_any_reservation_are_no_fact(name: str) -> None:
    assert to_canonical(pe(name)) is None


@pytest.mark.parametrize("name", ["AUTHORIZED", "CAPTURED", "REFUNDED", "CANCELLED", "TERMINATED"])
def test_a_failed_attempt_is_not_a_fact(name: str) -> None:
    assert to_canonical(pe(name, success=False)) is None


def test_seven_fraction_digits_are_read_and_a_null_key_is_absent() -> None:
    out = to_canonical(pe("CAPTURED", ts="2026-01-05T10:00:00.1234567Z", key=None))
    assert out is not None and "key" not in out
    assert Event.from_dict(out).at.microsecond == 123456


def test_paymentaction_of_older_exports_is_read_as_name() -> None:
    old = pe("CAPTURED")
    old["paymentAction"] = old.pop("name")
    out = to_canonical(old)
    assert out is not None and out["type"] == "captured"


@pytest.mark.parametrize(("change", "field"), [
    ({"reference": ""}, "reference"),
    ({"name": "SETTLED"}, "name"),
    ({"success": "true"}, "success"),
    ({"amount": 100}, "amount"),
    # Wrong types are named by the export's own fields, not the canonical ones (at, amount, key).
    ({"timestamp": None}, "timestamp"),
    ({"timestamp": 1767607200}, "timestamp"),
    ({"amount": {"currency": "NOK", "value": 100.0}}, "amount.value"),
    ({"amount": {"currency": "NOK", "value": True}}, "amount.value"),
    ({"amount": {"currency": "NOK"}}, "amount.value"),
    ({"amount": {"currency": 578, "value": 100}}, "amount.currency"),
    ({"idempotencyKey": 5}, "idempotencyKey"),
])
def test_broken_payment_events_name_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(EventError) as err:
        to_canonical({**pe("CAPTURED"), **change})
    assert err.value.field == field


def test_wrong_value_types_are_left_for_the_canonical_check() -> None:
    out = to_canonical(pe("CAPTURED", value=10))
    assert out is not None
    bad = {**out, "amount": "10.00"}
    with pytest.raises(EventError):
        Event.from_dict(bad)


def test_split_array_gives_each_element_its_first_line() -> None:
    data = (b'[\n  {"a": "x,]\\\\", "b": [1, {"c": "}"}]},\n'
            b'  {"d": "\\"]"}\n'
            b']\n')
    assert list(split_array(data)) == [(2, b'{"a": "x,]\\\\", "b": [1, {"c": "}"}]}'), (3, b'{"d": "\\"]"}')]
    assert list(split_array(b"[]")) == []


@pytest.mark.parametrize("data", [b'[\n {"a": 1},\n {"b": ', b'[{"a": 1}] trailing', b'{"a": 1}', b"[{},,{}]"])
def test_split_array_reports_what_breaks(data: bytes) -> None:
    parts = list(split_array(data))
    assert any(isinstance(p, BadRecord) for _, p in parts)


@pytest.mark.parametrize("cut", [b"]\n", b"]", b"\n]\n"])
@pytest.mark.parametrize("pretty", [True, False])
def test_an_export_missing_only_its_final_bracket_keeps_every_event(cut: bytes, pretty: bool) -> None:
    # Before: the last complete PaymentEvent was swallowed into "the JSON array breaks off".
    doc = [pe("AUTHORIZED"), pe("CAPTURED", 10000, key="s1", ts="2026-01-06T10:00:00Z")]
    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2) if pretty else orjson.dumps(doc)
    data += b"\n"
    whole = list(records(io.BytesIO(data)))
    truncated = data.rstrip()
    assert truncated.endswith(b"]")
    truncated = truncated[:-1]
    got = list(records(io.BytesIO(truncated)))
    assert got[:-1] == whole and len(whole) == 2
    line, bad = got[-1]
    assert isinstance(bad, BadRecord) and "breaks off" in bad.message and "]" in bad.message
    assert line == truncated.rstrip().count(b"\n") + 1  # the last line of the document
    # Cut after a comma too: every element before it is whole.
    comma = list(split_array(orjson.dumps(doc)[:-1] + b","))
    assert [orjson.loads(e) for _, e in comma if isinstance(e, bytes)] == doc and isinstance(comma[-1][1], BadRecord)
    # Cut inside the last element: that one is lost (and reported where it starts), the first is kept.
    inside = list(split_array(orjson.dumps(doc)[:-5]))
    assert [orjson.loads(e) for _, e in inside if isinstance(e, bytes)] == doc[:1]
    assert "inside" in inside[-1][1].message  # type: ignore[union-attr]


def test_pretty_responses_appended_to_one_file_are_all_read() -> None:
    # `for r in $refs; do curl .../payments/$r/events | jq .; done > export.json`: one pretty array per
    # payment. Everything after the first array used to be one LOG_MALFORMED ("text after the end of the
    # JSON array") and every later payment's events were lost unaudited.
    first = [pe("AUTHORIZED"), pe("CAPTURED", 10000, key="s1", ts="2026-01-06T10:00:00Z")]
    second = [{**pe("AUTHORIZED"), "reference": "acme-no-0002"},
              {**pe("CAPTURED", 10001, key="s2", ts="2026-01-06T10:00:00Z"), "reference": "acme-no-0002"}]
    pretty = [orjson.dumps(doc, option=orjson.OPT_INDENT_2) for doc in (first, second)]
    data = pretty[0] + b"\n" + pretty[1] + b"\n"
    got = list(records(io.BytesIO(data)))
    assert [(rec["payment"], rec["type"]) for _, rec in got if isinstance(rec, dict)] == [
        ("acme-no-0001", "authorized"), ("acme-no-0001", "captured"),
        ("acme-no-0002", "authorized"), ("acme-no-0002", "captured")]
    lines = data.split(b"\n")
    starts = [n for n, text in enumerate(lines, start=1) if text.strip() == b"{"]
    assert [n for n, _ in got] == starts
    assert all(isinstance(rec, dict) for _, rec in got)
    # Text that is not another array is still reported, after the elements before it.
    tail = list(split_array(b'[{"a": 1}]\n[{"b": 2}]\noops'))
    assert tail[:2] == [(1, b'{"a": 1}'), (2, b'{"b": 2}')] and isinstance(tail[2][1], BadRecord)
    assert len(tail) == 3


@given(st.lists(st.fixed_dictionaries({
    "reference": st.text(alphabet='ab-"\\,[]{}\n\u00e6', min_size=1, max_size=12),
    "name": st.sampled_from(["AUTHORIZED", "CAPTURED", "REFUNDED"]),
    "amount": st.fixed_dictionaries({"currency": st.just("NOK"), "value": st.integers(0, 10**6)}),
    "timestamp": st.just("2026-01-05T10:00:00Z"),
    "success": st.booleans()}), max_size=6), st.sampled_from([None, orjson.OPT_INDENT_2]))
def test_split_array_agrees_with_a_json_parser(objs: list[dict[str, Any]], option: int | None) -> None:
    data = orjson.dumps(objs, option=option) if option else orjson.dumps(objs)
    elements = list(split_array(data))
    assert [orjson.loads(e) for _, e in elements if isinstance(e, bytes)] == objs
    text_lines = data.split(b"\n")
    for line, element in elements:
        assert isinstance(element, bytes)
        assert element.split(b"\n")[0] in text_lines[line - 1]


def test_records_read_jsonl_lines_arrays_per_line_and_documents() -> None:
    one = orjson.dumps(pe("AUTHORIZED"))
    array_line = orjson.dumps([pe("CAPTURED", 1000, key="s1"), pe("CAPTURED", 1000, success=False)])
    jsonl = list(records(io.BytesIO(b"\n".join([one, b"", array_line, b"not json"]) + b"\n")))
    assert [(n, r["type"] if isinstance(r, dict) else "bad") for n, r in jsonl] == \
           [(1, "authorized"), (3, "captured"), (4, "bad")]
    doc = b"\n" + orjson.dumps([pe("AUTHORIZED"), pe("REFUNDED", 5)], option=orjson.OPT_INDENT_2)
    got = list(records(io.BytesIO(doc)))
    assert [(n, r["type"]) for n, r in got if isinstance(r, dict)] == [(3, "authorized"), (15, "refunded")]


def test_an_unclosed_document_is_read_only_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # A file that opens an array and never closes it: reading stops at the cap, not at the end of the
    # file (which may be gigabytes), and the audit hears why.
    from capstate.providers.vipps import events

    monkeypatch.setattr(events, "_MAX_DOCUMENT", 64 << 10)
    read = 0

    def lines() -> Iterator[bytes]:
        nonlocal read
        yield b"[\n"
        for _ in range(10_000):
            read += 1
            yield b'  {"reference": "acme-no-0001", "name": "AUTHORIZED", "pad": "' + b"x" * 1000 + b'"},\n'

    got = list(records(lines()))
    assert [(n, type(r).__name__) for n, r in got] == [(1, "BadRecord")]
    assert "a JSON document over" in got[0][1].message  # type: ignore[union-attr]
    assert read <= 70


@pytest.mark.parametrize("pretty", [False, True])
def test_a_cut_gzip_is_reported_at_the_line_it_breaks_on_even_after_lines_with_no_fact(pretty: bool) -> None:
    # CREATED records no fact, so no record names those lines; the break is still placed after them,
    # and what was read before it is kept.
    objs = [pe("AUTHORIZED"), *(pe("CREATED") for _ in range(300))]
    data = (orjson.dumps(objs, option=orjson.OPT_INDENT_2) if pretty
            else b"\n".join(orjson.dumps(o) for o in objs) + b"\n")
    packed = gzip.compress(data)
    got = list(records(gzip.GzipFile(fileobj=io.BytesIO(packed[: len(packed) * 3 // 4]))))
    assert got[0][1] == to_canonical(pe("AUTHORIZED"))
    line, last = got[-1]
    assert isinstance(last, BadRecord) and last.message.startswith(f"cannot read past line {line - 1}: ")
    assert line > (150 if not pretty else 150 * 11)


@pytest.mark.parametrize("pretty", [False, True])
def test_a_utf8_bom_at_the_start_of_an_export_is_ignored(pretty: bool) -> None:
    # PowerShell's `ConvertTo-Json | Out-File -Encoding utf8` starts the export with EF BB BF; the whole
    # array (or the first line's PaymentEvent) used to be LOG_MALFORMED and its facts lost.
    events = [pe("AUTHORIZED"), pe("CAPTURED", 4000, key="ship-1", ts="2026-01-06T10:00:00Z")]
    body = orjson.dumps(events, option=orjson.OPT_INDENT_2) if pretty else orjson.dumps(events)
    with_bom = list(records(io.BytesIO(b"\xef\xbb\xbf" + body + b"\n")))
    assert with_bom == list(records(io.BytesIO(body + b"\n")))
    assert [rec["type"] for _, rec in with_bom if isinstance(rec, dict)] == ["authorized", "captured"]


def test_records_skip_a_huge_line_without_losing_the_next() -> None:
    data = orjson.dumps(pe("AUTHORIZED")) + b"\n" + b"x" * 5000 + b"\n" + orjson.dumps(pe("CAPTURED")) + b"\n"
    got = list(records(io.BytesIO(data), max_line=1000))
    assert [(n, type(r).__name__) for n, r in got] == [(1, "dict"), (2, "BadRecord"), (3, "dict")]
