"""ChatAgentMem on the tiny Llama: LangChain's standard unit tests, then the adapter's behaviour.

The tiny model has random weights, so these tests assert what the adapter guarantees whatever
the model prefers: routing masks, conversions, chunking, errors. Tools with enum or boolean
arguments keep constrained decoding short.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Literal

import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_tests.unit_tests import ChatModelUnitTests
from pydantic import BaseModel
from transformers import AutoTokenizer

from agentmem import AgentMem
from agentmem.adapters.langchain import ChatAgentMem, _convert_messages, _plan_chunks
from agentmem.backbone import DEFAULT_BACKBONE, resolve
from agentmem.chat import tool_choice_policy
from agentmem.encoding import argument_ids, prompt_ids, resumed_prompt_ids
from agentmem.errors import BackboneError, InvalidExampleError, UnknownToolError, UnsupportedInputError
from agentmem.tools.calls import Plan
from tests.conftest import LIGHT, UNIT, tiny_backbone, tool_schema

FAST = {"epochs": 1, "progress": False}


FLIGHT = tool_schema("book_flight", {"seat": {"type": "string", "enum": ["aisle", "window"]}}, "Book a seat.")


class Unit(BaseModel):
    """The unit to report temperatures in."""

    unit: Literal["celsius", "fahrenheit"]


def _memory(backbone) -> AgentMem:
    mem = AgentMem(backbone)
    mem.learn_tools(
        [
            (UNIT, [{"query": "use celsius", "arguments": {"unit": "celsius"}}]),
            (LIGHT, [{"query": "lights on", "arguments": {"on": True}}]),
        ],
        **FAST,
    )
    return mem


@functools.cache
def _standard_memory() -> AgentMem:
    """A tiny bank holding the tools the standard unit tests bind, under their names."""
    mem = AgentMem(tiny_backbone(AutoTokenizer.from_pretrained(resolve(DEFAULT_BACKBONE))))
    adder = {"a": {"type": "integer"}, "b": {"type": "integer"}}
    mem.learn_tools(
        [
            (tool_schema("my_adder_tool", adder), [{"query": "add 1 and 2", "arguments": {"a": 1, "b": 2}}]),
            (tool_schema("my_adder", adder), [{"query": "3 plus 4", "arguments": {"a": 3, "b": 4}}]),
            (
                tool_schema("PersonA", {"name": {"type": "string"}, "age": {"type": "integer"}}),
                [{"query": "Ana is 30", "arguments": {"name": "Ana", "age": 30}}],
            ),
        ],
        **FAST,
    )
    return mem


class TestChatAgentMemStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatAgentMem]:
        return ChatAgentMem

    @property
    def chat_model_params(self) -> dict:
        return {"memory": _standard_memory()}


def _merged(chunks):
    full = chunks[0]
    for chunk in chunks[1:]:
        full = full + chunk
    return full


@pytest.mark.parametrize(
    ("choice", "names", "expected"),
    [
        (None, ["a", "b"], "auto"),
        (None, [], "none"),
        ("auto", ["a"], "auto"),
        ("any", ["a"], "any"),
        ("required", ["a"], "any"),
        ("none", ["a"], "none"),
        (True, ["a"], "a"),
        (True, ["a", "b"], "any"),
        (False, ["a"], "none"),
        ("b", ["a", "b"], "b"),
        ({"type": "function", "function": {"name": "b"}}, ["a", "b"], "b"),
        ({"type": "tool", "name": "a"}, ["a", "b"], "a"),
        ({"type": "any"}, ["a"], "any"),
    ],
)
def test_tool_choice_forms(choice, names, expected):
    assert tool_choice_policy(choice, names) == expected


def test_tool_choice_naming_no_bound_tool_is_refused():
    with pytest.raises(UnknownToolError, match="'c'.*a, b"):
        tool_choice_policy("c", ["a", "b"])


def test_unlearned_tool_is_named_with_how_to_learn_it(tiny):
    chat = ChatAgentMem(memory=_memory(tiny))
    with pytest.raises(UnknownToolError, match=r"'book_flight'.*set_unit, toggle_light.*learn_tool.*agentmem learn"):
        chat.bind_tools([UNIT, FLIGHT])
    with pytest.raises(UnknownToolError, match="book_flight"):
        chat.invoke("hi", tools=[FLIGHT])


def test_examples_learn_a_missing_tool_once(tiny):
    mem = _memory(tiny)
    chat = ChatAgentMem(memory=mem)
    before = mem.bank.rows.clone()
    examples = {"book_flight": [{"query": "window seat please", "arguments": {"seat": "window"}}]}
    chat.bind_tools([UNIT, FLIGHT], examples=examples, train_options=FAST)
    assert mem.bank.names == ["set_unit", "toggle_light", "book_flight"]
    assert torch.equal(mem.bank.rows[:2], before)  # learning one tool leaves the others' rows alone
    learned = mem.bank.rows.clone()
    chat.bind_tools([FLIGHT], examples=examples, train_options=FAST)  # already learned: not relearned
    assert torch.equal(mem.bank.rows, learned)
    with pytest.raises(InvalidExampleError, match="nope"):
        chat.bind_tools([UNIT], examples={"nope": examples["book_flight"]})


def test_invoke_and_stream_give_the_same_calls(tiny, tokenizer):
    mem = _memory(tiny)
    bound = ChatAgentMem(memory=mem).bind_tools([UNIT, LIGHT], tool_choice="toggle_light")
    message = bound.invoke("hi")
    call = message.tool_calls[0]
    assert call["name"] == "toggle_light" and call["type"] == "tool_call" and call["id"].startswith("call_")
    fired = message.response_metadata["memory_tokens"]
    assert fired[0] == {"name": "toggle_light", "token_id": mem.memory_token_id("toggle_light"), "valid": True}
    assert len(fired) == len(message.tool_calls) + len(message.invalid_tool_calls)
    usage = message.usage_metadata
    assert usage["input_tokens"] == len(prompt_ids(tokenizer, "hi")) and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]

    chunks = list(bound.stream("hi"))
    assert chunks[-1].chunk_position == "last"
    assert [c.usage_metadata is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    streamed = _merged(chunks)
    assert [(c["name"], c["args"]) for c in streamed.tool_calls] == [(c["name"], c["args"]) for c in message.tool_calls]
    assert streamed.usage_metadata == usage


def test_tool_choice_reaches_the_decoder(tiny):
    chat = ChatAgentMem(memory=_memory(tiny), max_tokens=4)
    silent = chat.bind_tools([UNIT, LIGHT], tool_choice="none").invoke("use celsius")
    assert (
        silent.tool_calls == [] and silent.invalid_tool_calls == [] and silent.response_metadata["memory_tokens"] == []
    )
    forced = chat.bind_tools([UNIT, LIGHT], tool_choice="any").invoke("hi")
    assert forced.response_metadata["memory_tokens"]
    only = chat.bind_tools([LIGHT], tool_choice="any").invoke("use celsius")
    assert {step["name"] for step in only.response_metadata["memory_tokens"]} == {"toggle_light"}


def test_invalid_call_keeps_its_reason_and_is_never_a_call(tiny):
    # Unconstrained, the random model's arguments never form a valid object.
    bound = ChatAgentMem(memory=_memory(tiny), constrained=False).bind_tools([UNIT], tool_choice="any")
    message = bound.invoke("hi")
    assert message.tool_calls == []
    bad = message.invalid_tool_calls[0]
    assert bad["name"] == "set_unit" and bad["error"] and bad["id"].startswith("call_")
    assert "invalid_tool_calls" not in message.response_metadata
    streamed = _merged(list(bound.stream("hi")))
    assert streamed.tool_calls == [] and streamed.tool_call_chunks == []
    assert streamed.response_metadata["invalid_tool_calls"][0]["error"] == bad["error"]


def test_history_renders_calls_and_continues_an_agent_run(tiny, tokenizer):
    mem = _memory(tiny)
    history = [
        SystemMessage("Be brief."),
        HumanMessage("lights on"),
        AIMessage("", tool_calls=[{"name": "toggle_light", "args": {"on": True}, "id": "1"}]),
        ToolMessage("the light is on", tool_call_id="1"),
    ]
    converted = _convert_messages(history, mem.bank)
    assert [m["role"] for m in converted] == ["system", "user", "assistant", "tool"]
    assert converted[2]["tool_calls"] == [{"name": "toggle_light", "args": {"on": True}}]

    ids, after = resumed_prompt_ids(tokenizer, converted, mem.memory_token_id, {"toggle_light": LIGHT["parameters"]})
    expected = prompt_ids(tokenizer, converted[:2]) + [mem.memory_token_id("toggle_light")]
    assert ids == expected + argument_ids(tokenizer, {"on": True}, LIGHT["parameters"])
    assert (after.name, after.arguments) == ("toggle_light", {"on": True})  # the call it resumes after
    # Anything after the calls other than their results is a new turn, rendered as it is.
    rendered, after = resumed_prompt_ids(
        tokenizer, [*converted, {"role": "user", "content": "and?"}], mem.memory_token_id, {}
    )
    assert after is None and "the light is on" in tokenizer.decode(rendered)

    # A continued plan offers only the next call or the end of the plan, never text.
    message = ChatAgentMem(memory=mem).bind_tools([UNIT, LIGHT]).invoke(history)
    assert message.content == "" and message.response_metadata["finish_reason"] in ("stop", "max_calls")

    foreign = _convert_messages(
        [AIMessage("", tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "2"}])], mem.bank
    )
    assert "tool_calls" not in foreign[0] and '"name": "search"' in foreign[0]["content"]


def test_structured_output(tiny):
    chat = ChatAgentMem(memory=_memory(tiny))
    with pytest.raises(UnknownToolError, match="'Unit'"):
        chat.with_structured_output(Unit)
    structured = chat.with_structured_output(
        Unit, examples=[{"query": "in fahrenheit", "arguments": {"unit": "fahrenheit"}}], train_options=FAST
    )
    assert isinstance(structured.invoke("hi"), Unit)
    raw = chat.with_structured_output(Unit, include_raw=True).invoke("hi")
    assert isinstance(raw["raw"], AIMessage) and raw["raw"].tool_calls[0]["name"] == "Unit"
    assert isinstance(raw["parsed"], Unit) and raw["parsing_error"] is None
    as_dict = chat.with_structured_output(Unit.model_json_schema(), method="json_schema").invoke("hi")
    assert set(as_dict) == {"unit"}


def test_async_matches_sync(tiny):
    bound = ChatAgentMem(memory=_memory(tiny)).bind_tools([UNIT, LIGHT], tool_choice="set_unit")

    async def run():
        message = await bound.ainvoke("hi")
        chunks = [chunk async for chunk in bound.astream("hi")]
        return message, _merged(chunks)

    message, streamed = asyncio.run(run())
    expected = [(c["name"], c["args"]) for c in bound.invoke("hi").tool_calls]
    assert [(c["name"], c["args"]) for c in message.tool_calls] == expected
    assert [(c["name"], c["args"]) for c in streamed.tool_calls] == expected


def test_text_limit_and_stop(tiny):
    message = ChatAgentMem(memory=_memory(tiny), max_tokens=5).invoke("hi")
    assert message.usage_metadata["output_tokens"] <= 5
    chunks = _plan_chunks(Plan(text="Hello, how are you?"), model="m", token_id=lambda name: 0, stop=["are", "you"])
    assert chunks[0].content == "Hello, how " and chunks[-1].response_metadata["finish_reason"] == "stop"


def test_what_the_model_cannot_take_is_refused(tiny):
    chat = ChatAgentMem(memory=_memory(tiny))
    with pytest.raises(ValueError, match="greedily"):
        ChatAgentMem(memory=chat.memory, temperature=0.7)
    image = HumanMessage([{"type": "text", "text": "what is this?"}, {"type": "image", "url": "https://x/y.png"}])
    with pytest.raises(UnsupportedInputError, match="'image'"):
        chat.invoke([image])
    with pytest.raises(UnsupportedInputError, match="top_p"):
        chat.invoke("hi", top_p=0.5)
    with pytest.raises(UnsupportedInputError, match="other-model"):
        chat.invoke("hi", model="other-model")


def test_model_loads_on_first_use(tmp_path):
    chat = ChatAgentMem(model=str(tmp_path / "missing"))  # constructing loads nothing
    assert chat.memory is None and chat._get_ls_params()["ls_model_name"] == str(tmp_path / "missing")
    with pytest.raises(BackboneError):
        chat.invoke("hi")
