"""The decoding bench's scoring and plan listing, on plans built by hand."""

from __future__ import annotations

from agentmem.eval.bench_decoding import score_plans, show_answers, show_plans
from agentmem.tools import demo
from agentmem.tools.calls import InvalidToolCall, Plan, ToolCall

HELD = [
    {"query": "weather in Lima?", "calls": [{"name": "get_weather", "arguments": {"city": "Lima"}}]},
    {
        "query": "weather in Oslo, then 5 EUR in USD",
        "calls": [
            {"name": "get_weather", "arguments": {"city": "Oslo"}},
            {"name": "convert_currency", "arguments": {"amount": 5, "from_currency": "EUR", "to_currency": "USD"}},
        ],
    },
]


def test_scores_split_by_call_count_and_plans_are_marked():
    right = Plan(steps=[ToolCall("get_weather", {"city": "Lima"})])
    half = Plan(steps=[ToolCall("get_weather", {"city": "Oslo"}), InvalidToolCall("convert_currency", "{", "not JSON")])
    scores = score_plans(HELD, [right, half])
    assert scores["single"].argument_f1 == 1.0 and scores["single"].exact_match == 1.0
    assert 0 < scores["two-call"].argument_f1 < 1 and scores["two-call"].exact_match == 0.0
    assert scores["all"].exact_match == 0.5
    text = show_plans(HELD, [right, half])
    assert (
        text.startswith("- ok  'weather in Lima?'") and "- BAD" in text and "INVALID convert_currency: not JSON" in text
    )


def test_requests_that_need_no_tool_are_ok_only_when_answered_in_words():
    plans = [Plan(text="Shakespeare wrote it."), Plan(steps=[ToolCall("get_weather", {"city": "Italy"})])]
    lines = show_answers(plans).splitlines()
    assert lines[0] == f"- ok  {demo.NO_TOOL_REQUESTS[0]!r}" and "Shakespeare" in lines[1]
    assert lines[2] == f"- BAD {demo.NO_TOOL_REQUESTS[1]!r}" and "get_weather({'city': 'Italy'})" in lines[3]


def test_weights_flag_is_checked_and_differing_plans_are_listed():
    import pytest

    from agentmem.eval.bench_decoding import main, show_differences

    with pytest.raises(SystemExit) as exited:  # checked before any model loads
        main(["--weights", "float32,bf16"])
    assert exited.value.code == 2
    same = Plan(steps=[ToolCall("get_weather", {"city": "Lima"})])
    other = Plan(steps=[ToolCall("get_weather", {"city": "Lim"})])
    lines = show_differences(["a", "b"], [same, same], [same, other], "int8")
    assert len(lines) == 1 and lines[0].startswith("- 'b'") and "{'city': 'Lim'}" in lines[0]
