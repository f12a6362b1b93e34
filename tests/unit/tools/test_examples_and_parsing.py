from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmem.errors import InvalidExampleError
from agentmem.tools import InvalidToolCall, ToolCall, canonical_json, normalize_examples, parse_call, to_tool_spec
from agentmem.tools.examples import Call

WEATHER = to_tool_spec(
    {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    }
)
EMAIL = to_tool_spec({"name": "send_email", "parameters": {"type": "object", "properties": {"to": {"type": "string"}}}})


def test_single_and_multi_call_examples():
    examples = normalize_examples(
        WEATHER,
        [
            {"query": " Weather in Oslo? ", "arguments": {"city": "Oslo"}},
            {
                "query": "Weather in Rome, then email bob",
                "calls": [
                    {"name": "get_weather", "arguments": {"city": "Rome"}},
                    {"name": "send_email", "arguments": {"to": "bob"}},
                ],
            },
        ],
        known={"send_email": EMAIL},
    )
    assert examples[0].query == "Weather in Oslo?"
    assert examples[0].calls == (Call("get_weather", {"city": "Oslo"}),)
    assert [c.name for c in examples[1].calls] == ["get_weather", "send_email"]


@pytest.mark.parametrize(
    "examples, message",
    [
        ([], "no examples"),
        (["text"], "example 0: expected a dict"),
        ([{"query": "", "arguments": {"city": "x"}}], "example 0: 'query'"),
        ([{"query": "q"}], "exactly one of"),
        ([{"query": "q", "arguments": {}, "calls": []}], "exactly one of"),
        ([{"query": "q", "calls": []}], "non-empty list"),
        (
            [{"query": "ok", "arguments": {"city": "x"}}, {"query": "q", "arguments": {"town": "x"}}],
            "example 1.*schema",
        ),
        ([{"query": "q", "calls": [{"name": "fly", "arguments": {}}]}], "unknown tool 'fly'.*get_weather"),
        ([{"query": "q", "calls": [{"name": "send_email", "arguments": {}}]}], "none of its 1 examples calls it"),
    ],
)
def test_bad_examples_name_index_and_problem(examples, message):
    with pytest.raises(InvalidExampleError, match=message):
        normalize_examples(WEATHER, examples, known={"send_email": EMAIL})


def test_parse_call_accepts_valid_and_explains_invalid():
    ok = parse_call(WEATHER, '{"city":"Oslo"}')
    assert isinstance(ok, ToolCall) and ok.arguments == {"city": "Oslo"} and ok.id.startswith("call_")
    cases = {
        '{"city": "Oslo"': "not valid JSON",
        '["Oslo"]': "must be a JSON object",
        '{"city":"Oslo"} trailing': "unexpected text",
        '{"town":"Oslo"}': "break the schema",
    }
    for text, reason in cases.items():
        bad = parse_call(WEATHER, text)
        assert isinstance(bad, InvalidToolCall) and reason in bad.reason and bad.raw == text


def test_canonical_json_is_compact_and_ordered():
    assert canonical_json({"b": 1, "a": "é"}) == '{"b":1,"a":"é"}'


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_call_never_raises(text):
    assert isinstance(parse_call(WEATHER, text), (ToolCall, InvalidToolCall))


def test_raw_control_characters_that_the_grammar_admits_inside_strings_parse():
    spec = to_tool_spec({"name": "note", "parameters": {"type": "object", "properties": {"text": {"type": "string"}}}})
    call = parse_call(spec, '{"text":"a\x00b"}')
    assert call.arguments == {"text": "a\x00b"}


def test_a_result_reference_is_refused_in_examples_and_in_generated_arguments():
    reference = {"query": "Weather where my meeting is", "arguments": {"city": "$var1.location$"}}
    with pytest.raises(InvalidExampleError, match=r"example 0, call 0 .*\$var1.location\$.*literal value"):
        normalize_examples(WEATHER, [reference])
    call = parse_call(WEATHER, '{"city":"near $var2$ today"}')
    assert isinstance(call, InvalidToolCall) and "$var2$" in call.reason and "no executor resolves" in call.reason
    assert isinstance(parse_call(WEATHER, '{"city":"$5 town"}'), ToolCall)  # a dollar sign alone is a value


def test_skip_leaves_out_invalid_examples_and_reports_each():
    raw = [
        {"query": "Weather in Oslo?", "arguments": {"city": "Oslo"}},
        {"query": "Weather in 7?", "arguments": {"city": 7}},
        {"query": "", "arguments": {"city": "Rome"}},
        {"query": "Weather in Rome?", "arguments": {"city": "Rome"}},
    ]
    with pytest.raises(InvalidExampleError, match="example 1"):
        normalize_examples(WEATHER, raw)  # strict by default
    skipped: list = []
    kept = normalize_examples(WEATHER, raw, invalid="skip", skipped=skipped)
    assert [e.query for e in kept] == ["Weather in Oslo?", "Weather in Rome?"]
    assert [(s.tool, s.index) for s in skipped] == [("get_weather", 1), ("get_weather", 2)]
    assert "break the schema" in skipped[0].reason and "'query'" in skipped[1].reason
    assert str(skipped[0]).startswith("tool 'get_weather', example 1: call 0")
    with pytest.raises(InvalidExampleError, match="all 2 were skipped"):
        normalize_examples(WEATHER, raw[1:3], invalid="skip", skipped=[])
    with pytest.raises(ValueError, match="'raise' or 'skip'"):
        normalize_examples(WEATHER, raw, invalid="ignore")
