"""The plain-text plan format of the baselines, BM25 retrieval, and tool assignment for TokMem."""

from __future__ import annotations

import pytest

from agentmem.eval.bm25 import BM25, words
from agentmem.eval.datasets import REFERENCE_SCHEMA, load_nestful, split
from agentmem.eval.textplan import compact_tool, parse_plan, render_plan, should_stop, system_prompt
from agentmem.eval.tokmem import assign_to_tools
from agentmem.tools.parsing import find_reference
from agentmem.tools.spec import to_tool_spec

HOTELS = {
    "name": "Search_Hotels",
    "description": "Search hotels by destination.  Returns a list.\nMore text here.",
    "parameters": {
        "type": "object",
        "properties": {
            "dest_id": {
                "description": "From Search_Hotel_Destination.",
                "anyOf": [{"type": "number"}, REFERENCE_SCHEMA],
            },
            "sort_by": {"anyOf": [{"type": "string", "enum": ["price", "distance"]}, REFERENCE_SCHEMA]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "note": {},
        },
        "required": ["dest_id"],
        "additionalProperties": False,
    },
}
DEST = {
    "name": "Search_Hotel_Destination",
    "description": "Find a destination id.",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
}
SPECS = {t["name"]: to_tool_spec(t) for t in (HOTELS, DEST)}


def test_compact_tool_line() -> None:
    assert compact_tool(HOTELS) == (
        'Search_Hotels(dest_id: number, sort_by?: "price"|"distance", tags?: array[string], note?: any): '
        "Search hotels by destination."
    )
    many = {"name": "f", "parameters": {"type": "object", "properties": {"x": {"enum": list(range(10))}}}}
    assert compact_tool(many) == "f(x?: 0|1|2|3|4|5|6|7|...)"
    long = {"name": "g", "description": "word " * 40}
    assert compact_tool(long).endswith("...") and len(compact_tool(long)) == len("g(): ") + 100


def test_system_prompt_lists_every_tool_once() -> None:
    prompt = system_prompt([HOTELS, DEST])
    assert prompt.count("\nSearch_Hotels(") == 1 and prompt.count("\nSearch_Hotel_Destination(") == 1
    # no method is taught result references: the prompt neither shows nor describes them
    assert "$var" not in prompt and "result of" not in prompt


def test_render_then_parse_round_trips() -> None:
    calls = [
        {"name": "Search_Hotel_Destination", "arguments": {"query": "Tokyo Tower"}},
        {"name": "Search_Hotels", "arguments": {"sort_by": "price", "dest_id": 5}},
    ]
    schemas = {n: s.parameters for n, s in SPECS.items()}
    text = render_plan(calls, schemas)
    # keys follow the schema's order, as constrained decoding writes them
    assert text.splitlines()[1] == 'Search_Hotels {"dest_id":5,"sort_by":"price"}'
    parsed = parse_plan(text, SPECS)
    assert parsed.calls == calls and parsed.invalid == []

    # a result reference renders, but parses as an invalid call whose reason names it
    calls[1]["arguments"]["dest_id"] = "$var1.dest_id$"
    parsed = parse_plan(render_plan(calls, schemas), SPECS)
    assert parsed.calls == calls[:1]
    assert [bad["name"] for bad in parsed.invalid] == ["Search_Hotels"]
    assert "'$var1.dest_id$'" in parsed.invalid[0]["reason"]
    assert parsed.invalid[0]["raw"] == '{"dest_id":"$var1.dest_id$","sort_by":"price"}'


def test_round_trip_on_every_complexfuncbench_training_plan() -> None:
    ds = load_nestful("complexfuncbench")
    specs = {n: to_tool_spec(t) for n, t in ds.tools.items()}
    schemas = {n: s.parameters for n, s in specs.items()}
    train, _ = split(ds, 0.2, seed=0, min_calls=2, max_calls=4)
    n_valid = n_invalid = 0
    for ex in train:
        parsed = parse_plan(render_plan(ex["calls"], schemas), specs)
        # the parser stops at a call repeating the one before it, as the TokMem decoder does
        kept = list(ex["calls"])
        repeat = next((i for i in range(1, len(kept)) if kept[i] == kept[i - 1]), None)
        kept = kept[:repeat]
        # a call holding a reference is invalid, its reason naming the reference; the
        # others round-trip exactly
        assert parsed.calls == [c for c in kept if find_reference(c["arguments"]) is None]
        referring = [c for c in kept if find_reference(c["arguments"]) is not None]
        assert [bad["name"] for bad in parsed.invalid] == [c["name"] for c in referring]
        for bad, c in zip(parsed.invalid, referring):
            references = {find_reference(v) for v in c["arguments"].values()} - {None}
            assert any(repr(r) in bad["reason"] for r in references), bad["reason"]
        n_valid += len(parsed.calls)
        n_invalid += len(parsed.invalid)
    assert n_valid > 500 and n_invalid > 100  # both kinds are exercised


@pytest.mark.parametrize(
    ("text", "calls", "reasons"),
    [
        ("", [], []),
        ("   \n\n", [], []),
        ("I cannot help with that.", None, []),
        ('Search_Hotel_Destination {"query":"Oslo"}', [("Search_Hotel_Destination", {"query": "Oslo"})], []),
        ('- Search_Hotel_Destination({"query": "Oslo"})', [("Search_Hotel_Destination", {"query": "Oslo"})], []),
        ('1. Search_Hotel_Destination {"query":"Oslo"}\nSure!', [("Search_Hotel_Destination", {"query": "Oslo"})], []),
        ('Fly_Away {"to":"Oslo"}', [], ["unknown tool 'Fly_Away'"]),
        ('Search_Hotels {"dest_id": 5', [], ["not valid JSON"]),
        ('Search_Hotels {"dest_id":"five"}', [], ["break the schema"]),
        ('Search_Hotels {"dest_id":5} trailing', [], ["unexpected text"]),
    ],
)
def test_parse_plan_cases(text: str, calls: list | None, reasons: list[str]) -> None:
    parsed = parse_plan(text, SPECS)
    if calls is None:
        assert parsed.calls is None
    else:
        assert [(c["name"], c["arguments"]) for c in parsed.calls] == calls
    assert len(parsed.invalid) == len(reasons)
    assert all(r in bad["reason"] for r, bad in zip(reasons, parsed.invalid))


def test_parse_plan_stops_at_a_repeat() -> None:
    line = 'Search_Hotel_Destination {"query":"Oslo"}'
    other = 'Search_Hotels {"dest_id":1}'
    parsed = parse_plan("\n".join([line, other, other, line]), SPECS)
    assert [c["name"] for c in parsed.calls] == ["Search_Hotel_Destination", "Search_Hotels"]
    assert len(parse_plan("\n".join([line, other, line]), SPECS).calls) == 3


def test_should_stop() -> None:
    assert not should_stop("a\nb", max_calls=2)  # the second line is not complete yet
    assert should_stop("a\nb\n", max_calls=2)
    assert should_stop("a\nb\nb\n", max_calls=8)
    assert not should_stop("a\n\nb\n", max_calls=8)


def test_bm25_ranks_the_matching_document_first() -> None:
    assert words("Search_Hotels_ByCoordinates pickUpDate") == [
        "search",
        "hotels",
        "by",
        "coordinates",
        "pick",
        "up",
        "date",
    ]
    index = BM25(["find hotels near a place", "rent a car at an airport", "flight prices between airports"])
    assert index.top("cheap hotels in Paris", 1) == [0]
    assert index.top("car rental at the airport", 2)[0] == 1
    assert index.scores("zebra") == [0.0, 0.0, 0.0]
    assert index.top("zebra", 3) == [0, 1, 2]


def test_assign_to_tools_gives_each_request_to_its_rarest_tool() -> None:
    def request(*names: str) -> dict:
        return {"query": "-".join(names), "calls": [{"name": n, "arguments": {}} for n in names]}

    train = [request("a", "b"), request("a", "c"), request("a"), request("b", "a"), request("d", "a")]
    groups = assign_to_tools(train)
    assert list(groups) == ["a", "b", "c", "d"]
    # uses: a 5, b 2, c 1, d 1; a request goes to its least-used tool
    assert [ex["query"] for ex in groups["b"]] == ["a-b", "b-a"]
    assert [ex["query"] for ex in groups["c"]] == ["a-c"]
    assert [ex["query"] for ex in groups["a"]] == ["a"]
    # "x" only appears next to a rarer tool: it gets a copy of such a request
    groups = assign_to_tools([request("x", "y"), request("x", "z")])
    assert {n: [ex["query"] for ex in g] for n, g in groups.items()} == {"x": ["x-y"], "y": ["x-y"], "z": ["x-z"]}
