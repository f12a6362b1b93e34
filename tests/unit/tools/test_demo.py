"""Tests of the demo tool pack: schemas, implementations and example generators."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from agentmem.tools import demo

VALIDATORS = {
    name: jsonschema.Draft202012Validator(
        tool["parameters"], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    for name, tool in demo.TOOLS.items()
}


def _training_calls(seeds: range = range(3), n: int = 20) -> list[tuple[str, dict[str, Any]]]:
    """(query, call) pairs from every training generator."""
    pairs = [
        (ex["query"], {"name": name, "arguments": ex["arguments"]})
        for name in demo.TOOLS
        for seed in seeds
        for ex in demo.training_examples(name, n=n, seed=seed)
    ]
    for seed in seeds:
        examples = demo.multi_call_examples(seed=seed)
        pairs += [(ex["query"], call) for ex in examples for call in ex["calls"]]
    return pairs


def _held_out_calls() -> list[tuple[str, dict[str, Any]]]:
    return [(ex["query"], call) for ex in demo.held_out_examples() for call in ex["calls"]]


def _assert_values_in_query(query: str, arguments: dict[str, Any]) -> None:
    for key, value in arguments.items():
        if key == "unit":
            assert value in query.lower(), (query, key)
        elif isinstance(value, str):
            assert value in query, (query, key, value)
        else:
            assert json.dumps(value) in query.split(), (query, key, value)


def test_schemas_are_strict_json_schema_objects() -> None:
    assert (
        set(demo.TOOLS)
        == set(demo.IMPLEMENTATIONS)
        == {"get_weather", "convert_currency", "send_email", "create_reminder"}
    )
    for name, tool in demo.TOOLS.items():
        assert tool["name"] == name and tool["description"]
        schema = tool["parameters"]
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["type"] == "object" and schema["additionalProperties"] is False
        assert set(schema["required"]) <= set(schema["properties"])
        assert all(prop["description"] for prop in schema["properties"].values())


@pytest.mark.parametrize("source", ["training", "held_out"])
def test_every_example_validates_and_copies_its_values(source: str) -> None:
    pairs = _training_calls() if source == "training" else _held_out_calls()
    for query, call in pairs:
        VALIDATORS[call["name"]].validate(call["arguments"])
        _assert_values_in_query(query, call["arguments"])
        assert len(query.split()) <= 25, query


def test_unit_is_omitted_exactly_when_the_query_does_not_name_it() -> None:
    for query, call in _training_calls() + _held_out_calls():
        if call["name"] == "get_weather" and "unit" not in call["arguments"]:
            assert "celsius" not in query.lower() and "fahrenheit" not in query.lower(), query


@pytest.mark.parametrize(("name", "optional"), [("get_weather", "unit"), ("create_reminder", "date")])
def test_optional_arguments_are_sometimes_given_and_omitted(name: str, optional: str) -> None:
    given = [optional in ex["arguments"] for ex in demo.training_examples(name, n=20)]
    assert any(given) and not all(given)


def test_training_examples_shape_and_determinism() -> None:
    for name in demo.TOOLS:
        examples = demo.training_examples(name, n=20, seed=0)
        assert len(examples) == 20 and len({ex["query"] for ex in examples}) == 20
        assert examples == demo.training_examples(name, n=20, seed=0)
        assert examples != demo.training_examples(name, n=20, seed=1)
        assert len(demo.training_examples(name, n=5, seed=3)) == 5
        assert len(demo._TEMPLATES["train"][name]) >= 8


def test_multi_call_examples_combine_two_tools_in_asked_order() -> None:
    examples = demo.multi_call_examples(n=12, seed=0)
    assert len(examples) == 12 and examples == demo.multi_call_examples(n=12, seed=0)
    assert examples != demo.multi_call_examples(n=12, seed=1)
    for ex in examples:
        first, second = ex["calls"]
        assert first["name"] != second["name"]
        position = [
            min(
                ex["query"].find(v if isinstance(v, str) else json.dumps(v))
                for k, v in call["arguments"].items()
                if k != "unit"
            )
            for call in ex["calls"]
        ]
        assert position[0] < position[1], ex["query"]


def test_held_out_shape_and_determinism() -> None:
    examples = demo.held_out_examples()
    assert examples == demo.held_out_examples(seed=1)
    singles = [ex for ex in examples if len(ex["calls"]) == 1]
    doubles = [ex for ex in examples if len(ex["calls"]) == 2]
    assert len(singles) + len(doubles) == len(examples)
    for name in demo.TOOLS:
        assert sum(ex["calls"][0]["name"] == name for ex in singles) == 8
    assert len(doubles) == 8
    assert all(ex["calls"][0]["name"] != ex["calls"][1]["name"] for ex in doubles)


def test_held_out_is_disjoint_from_training() -> None:
    training = _training_calls(seeds=range(5), n=40)
    held_out = _held_out_calls()
    assert not {q for q, _ in training} & {q for q, _ in held_out}
    seen = {(k, json.dumps(v)) for _, call in training for k, v in call["arguments"].items()}
    for query, call in held_out:
        for key, value in call["arguments"].items():
            if key != "unit":
                assert (key, json.dumps(value)) not in seen, (query, key, value)
    for kind in (demo._TEMPLATES, demo._CLAUSES):
        for name in demo.TOOLS:
            assert not set(kind["train"][name]) & set(kind["held"][name])
    assert not set(demo._JOINERS["train"]) & set(demo._JOINERS["held"])


def test_run_call_executes_every_generated_call() -> None:
    for _, call in _training_calls(seeds=range(1)) + _held_out_calls():
        result = demo.run_call(call["name"], call["arguments"])
        assert isinstance(result, dict) and result


def test_tool_results_are_deterministic_and_correct() -> None:
    assert demo.run_call("get_weather", {"city": "Paris"})["temperature"] == 18
    fahrenheit = demo.run_call("get_weather", {"city": "Paris", "unit": "fahrenheit"})
    assert fahrenheit["temperature"] == 64 and fahrenheit["summary"].endswith("64°F in Paris")
    unknown = demo.run_call("get_weather", {"city": "Ulaanbaatar"})
    assert unknown == demo.run_call("get_weather", {"city": "Ulaanbaatar"})
    assert -5 <= unknown["temperature"] <= 30
    converted = demo.run_call("convert_currency", {"amount": 100, "from_currency": "USD", "to_currency": "EUR"})
    assert converted["converted"] == 92.0
    email = demo.run_call("send_email", {"to": "a@b.co", "subject": "Hi", "body": "Yo"})
    assert email["simulated"] is True and email["to"] == "a@b.co"
    assert email == demo.run_call("send_email", {"to": "a@b.co", "subject": "Hi", "body": "Yo"})
    reminder = demo.run_call("create_reminder", {"text": "stretch", "time": "18:30"})
    assert reminder["date"] == "today" and reminder["time"] == "18:30"


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("get_weather", {"city": "Paris", "unit": "kelvin"}),
        ("convert_currency", {"amount": 1, "from_currency": "USD", "to_currency": "XYZ"}),
        ("create_reminder", {"text": "stretch", "time": "25:00"}),
    ],
)
def test_bad_arguments_raise_value_error(name: str, arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        demo.run_call(name, arguments)


def test_unknown_tool_raises_key_error_naming_the_tools() -> None:
    with pytest.raises(KeyError) as error:
        demo.run_call("book_flight", {})
    assert all(name in str(error.value) for name in demo.TOOLS)
    with pytest.raises(KeyError):
        demo.training_examples("book_flight")


def test_demo_request_needs_two_tools() -> None:
    names = [call["name"] for call in demo.DEMO_CALLS]
    assert len(names) == 2 and len(set(names)) == 2
    for call in demo.DEMO_CALLS:
        VALIDATORS[call["name"]].validate(call["arguments"])
        _assert_values_in_query(demo.DEMO_REQUEST, call["arguments"])
        assert demo.run_call(call["name"], call["arguments"])
