"""The chat boundary (agentmem.chat): conversions with no model, then plan_batch against plan."""

from __future__ import annotations

import json
import threading

import pytest

from agentmem import AgentMem
from agentmem.chat import (
    Call,
    Turn,
    content_text,
    cut_at_stop,
    plan_from_dict,
    plan_options,
    plan_to_dict,
    prompt_messages,
    read_call,
    read_turn,
    tool_choice_policy,
)
from agentmem.copying import unfounded
from agentmem.encoding import source_text
from agentmem.errors import ChatInputError, ToolChoiceError, UnknownToolError, UnsupportedInputError
from agentmem.tools.calls import InvalidToolCall, Plan, ToolCall
from tests.conftest import LIGHT, UNIT, plan_signature, tiny_backbone


def test_openai_and_langchain_calls_read_the_same():
    openai = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"b": 1, "a": [2]}'}}
    langchain = {"id": "call_1", "name": "f", "args": {"b": 1, "a": [2]}, "type": "tool_call"}
    assert read_call(openai) == read_call(langchain) == Call("f", {"b": 1, "a": [2]}, "call_1")
    assert list(read_call(openai).arguments) == ["b", "a"]  # the order the call was written in
    with pytest.raises(ChatInputError, match="not JSON") as caught:
        read_call({"function": {"name": "f", "arguments": "{broken"}}, "messages[1].tool_calls[0]")
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"
    with pytest.raises(ChatInputError, match="expected a name and an arguments object"):
        read_call({"function": {"arguments": "{}"}})


def test_content_parts():
    assert content_text(None) == "" and content_text("hi") == "hi"
    assert content_text([{"type": "text", "text": "a"}, "b", {"type": "text", "text": "c"}]) == "abc"
    reasoning = [{"type": "reasoning", "reasoning": "..."}, {"type": "text", "text": "x"}]
    assert content_text(reasoning, strict=False) == "x"  # LangChain's blocks: passed over
    with pytest.raises(ChatInputError, match="'reasoning': agentmem reads text parts only"):
        content_text(reasoning)  # OpenAI's API: refused
    with pytest.raises(ChatInputError) as caught:
        content_text([{"type": "text", "text": "a"}, {"type": "image_url"}], "messages[2].content", strict=False)
    assert (caught.value.param, caught.value.code) == ("messages[2].content[1]", "unsupported_content")
    assert isinstance(caught.value, UnsupportedInputError)


def test_turns_and_the_prompt_they_give():
    turns = [
        read_turn("developer", "be brief"),
        read_turn("user", [{"type": "text", "text": "lights on"}]),
        read_turn("assistant", None, [{"name": "light", "args": {"on": True}}, {"name": "web", "args": {"q": "x"}}]),
        read_turn("function", "done"),
    ]
    assert [t.role for t in turns] == ["system", "user", "assistant", "tool"]
    messages = prompt_messages(turns, known={"light"})
    assert messages[2]["tool_calls"] == [{"name": "light", "args": {"on": True}}]  # a memory token can write it
    assert json.loads(messages[2]["content"]) == {"name": "web", "arguments": {"q": "x"}}  # no token: as text
    assert "tool_calls" not in messages[1]
    with pytest.raises(ChatInputError, match="a user message cannot hold tool_calls") as caught:
        read_turn("user", "x", [{"name": "light", "args": {}}], where="messages[3]")
    assert caught.value.param == "messages[3].tool_calls"
    with pytest.raises(ChatInputError, match="'wizard' is not one of system, developer"):
        read_turn("wizard", "x")


@pytest.mark.parametrize(
    ("choice", "names", "expected"),
    [
        (None, ["a"], "auto"),
        (None, [], "none"),
        ("auto", ["a"], "auto"),
        ("none", ["a"], "none"),
        ("required", ["a"], "any"),
        ({"type": "function", "function": {"name": "b"}}, ["a", "b"], "b"),
    ],
)
def test_openai_tool_choice(choice, names, expected):
    assert tool_choice_policy(choice, names, openai=True) == expected


@pytest.mark.parametrize(
    ("choice", "match"),
    [
        ("any", "must be one of auto, required, none"),
        (True, "must be one of"),
        ({"type": "tool", "name": "a"}, "with N one of"),
        ({"type": "function", "function": {"name": "c"}}, r"request's tools \(a, b\)"),
    ],
)
def test_openai_tool_choice_takes_openai_forms_only(choice, match):
    with pytest.raises(ToolChoiceError, match=match) as caught:
        tool_choice_policy(choice, ["a", "b"], openai=True)
    assert caught.value.param == "tool_choice"
    assert isinstance(caught.value, UnknownToolError) and isinstance(caught.value, ValueError)


def test_required_with_no_tools_is_refused_in_openai_terms():
    with pytest.raises(ToolChoiceError, match="'required' with no tools"):
        tool_choice_policy("required", [], openai=True)


def test_plan_options():
    assert plan_options(
        ["a"], tool_choice="required", openai=True, parallel_tool_calls=False, max_tokens=5, resume=True
    ) == {"tool_choice": "any", "tools": ["a"], "max_calls": 1, "max_text_tokens": 5, "resume": True}
    assert (
        "max_text_tokens" not in plan_options(["a"], max_calls=3) and plan_options(["a"], max_calls=3)["max_calls"] == 3
    )


def test_cut_at_stop():
    assert cut_at_stop("Hello, how are you?", ["you", "are"]) == ("Hello, how ", True)
    assert cut_at_stop("Hello", "lo") == ("Hel", True)
    assert cut_at_stop("Hello", ["", "x"]) == ("Hello", False) and cut_at_stop("Hello", None) == ("Hello", False)


def test_plan_to_dict_and_back():
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}}
    plan = Plan(
        steps=[
            ToolCall("weather", {"unit": "c", "city": "Oslo"}, id="call_a"),
            InvalidToolCall("weather", '{"city": 3', "arguments did not close", id="call_b"),
        ],
        finish_reason="length",
        usage={"prompt_tokens": 7, "generated_tokens": 9},
        notes=["n"],
    )
    data = plan_to_dict(plan, {"weather": schema})
    assert data["tool_calls"] == [
        {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo","unit":"c"}'}}
    ]  # schema order
    assert data["invalid_tool_calls"] == [
        {
            "id": "call_b",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": 3'},
            "error": "arguments did not close",
        }
    ]
    assert json.loads(json.dumps(data)) == data  # plain data
    back = plan_from_dict(data)
    assert back.calls == [ToolCall("weather", {"city": "Oslo", "unit": "c"}, id="call_a")]
    assert back.invalid_calls == plan.invalid_calls
    assert (back.finish_reason, back.usage, back.notes) == ("length", plan.usage, ["n"])
    assert plan_to_dict(back, {"weather": schema}) == data


# plan_batch is plan, request by request, whatever the options


@pytest.fixture(scope="module")
def mem(tokenizer):
    """A tiny bank of two tools with short arguments (enum, boolean): quick to decode."""
    mem = AgentMem(tiny_backbone(tokenizer))
    mem.learn_tools(
        [
            (UNIT, [{"query": "use celsius", "arguments": {"unit": "celsius"}}]),
            (LIGHT, [{"query": "lights on", "arguments": {"on": True}}]),
        ],
        epochs=1,
        progress=False,
    )
    return mem


REQUESTS = [
    "use fahrenheit please",
    "switch the lights off",
    [
        {"role": "user", "content": "lights on, then celsius"},
        {"role": "assistant", "content": "", "tool_calls": [{"name": "toggle_light", "args": {"on": True}}]},
        {"role": "tool", "content": "the light is on"},
    ],
]


def _signature(plan) -> tuple:
    return (*plan_signature(plan), plan.finish_reason, plan.usage)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"tool_choice": "any"},
        {"tool_choice": "required"},
        {"tool_choice": "none"},
        {"tool_choice": "set_unit"},
        {"tools": ["toggle_light"]},
        {"max_calls": 1},
        {"max_text_tokens": 2},
        {"max_prompt_tokens": 4096},
        {"resume": True},
        {"constrained": False, "max_calls": 1},
        {"copy_bias": 2.0},
    ],
    ids=lambda o: ",".join(o) or "defaults",
)
def test_plan_batch_equals_plan_one_by_one(mem, options):
    options = {"max_calls": 3, "max_text_tokens": 8, **options}  # bounds the random model's output: quick
    batch = mem.plan_batch(REQUESTS, batch_size=2, **options)
    assert [_signature(p) for p in batch] == [_signature(mem.plan(r, **options)) for r in REQUESTS]


def test_plan_batch_resumes_each_request_that_ends_in_results(mem):
    resumed = mem.plan_batch(REQUESTS, resume=True, tool_choice="any")
    fresh = mem.plan_batch(REQUESTS, resume=False, tool_choice="any")
    assert [p.usage["prompt_tokens"] for p in resumed[:2]] == [p.usage["prompt_tokens"] for p in fresh[:2]]
    # resumed, the third prompt ends in its call (not the rendered tool result): a different prompt
    assert resumed[2].usage["prompt_tokens"] != fresh[2].usage["prompt_tokens"]


def test_plan_batch_refuses_a_long_prompt_before_decoding(mem):
    with pytest.raises(UnsupportedInputError, match="over the limit of 5"):
        mem.plan_batch(REQUESTS, max_prompt_tokens=5)


def test_turns_are_frozen():
    with pytest.raises(AttributeError):
        Turn("user", "x").content = "y"  # type: ignore[misc]


def test_plan_batch_options_take_effect(mem):
    texts = mem.plan_batch(REQUESTS, tool_choice="none", max_text_tokens=2)
    assert all(not p.steps and p.usage["generated_tokens"] <= 2 for p in texts)
    restricted = mem.plan_batch(REQUESTS[:2], tools=["toggle_light"], tool_choice="any", max_calls=2)
    assert all(p.steps and {s.name for s in p.steps} == {"toggle_light"} for p in restricted)
    assert all(p.steps[0].name == "set_unit" for p in mem.plan_batch(REQUESTS[:2], tool_choice="set_unit", max_calls=2))
    assert all(len(p.steps) == 1 for p in mem.plan_batch(REQUESTS[:2], tool_choice="any", max_calls=1))


def test_the_model_lock_serialises_planning(mem):
    done = threading.Event()
    worker = threading.Thread(target=lambda: (mem.plan("use celsius", max_calls=1), done.set()))
    with AgentMem.lock:  # whoever holds the model's lock (another bank, a learning call) goes first
        worker.start()
        assert not done.wait(1.0)
    worker.join(60)
    assert done.is_set()


def test_a_value_from_anywhere_in_the_conversation_is_founded():
    """An agent's values come from the system prompt, earlier turns, earlier calls and tool
    results, not only the last message: each counts as where a value may be read."""
    schema = {
        "type": "object",
        "properties": {"user_id": {"type": "string"}, "order_id": {"type": "string"}, "amount": {"type": "number"}},
        "required": ["user_id", "order_id", "amount"],
    }
    arguments = {"user_id": "USR-7731", "order_id": "ORD-5521", "amount": 42.5}
    messages = [
        {"role": "system", "content": "The signed-in user is USR-7731."},  # only the system prompt says it
        {"role": "user", "content": "Show my latest order."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"function": {"name": "latest_order", "arguments": '{"max_total": 42.5}'}}],
        },
        {"role": "tool", "content": '{"order_id": "ORD-5521", "status": "open"}'},  # only a result says it
        {"role": "user", "content": "Cancel that order."},
    ]
    assert unfounded(schema, arguments, source_text(messages)) == []
    # the last message alone founds none of them: each value came from the context
    assert unfounded(schema, arguments, source_text(messages[-1:])) == ["user_id", "order_id", "amount"]
    assert unfounded(schema, arguments, source_text(messages[:1] + messages[-1:])) == ["order_id", "amount"]
