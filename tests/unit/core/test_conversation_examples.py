"""Training examples that are conversations: an agent's trace, with its context in front."""

from __future__ import annotations

import pytest

from agentmem import AgentMem
from agentmem.encoding import encode_example, prompt_ids
from agentmem.errors import InvalidExampleError
from agentmem.tools import normalize_examples, to_tool_spec
from tests.conftest import LIGHT, UNIT, plan_signature, tool_schema

CONVERSATION = {
    "messages": [
        {"role": "system", "content": "The user's home is flat 7."},
        {"role": "user", "content": "Use celsius please."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"function": {"name": "set_unit", "arguments": {"unit": "celsius"}}}],
        },
        {"role": "tool", "content": "unit set"},
        {"role": "user", "content": "And switch the light on."},
    ],
    "calls": [{"name": "toggle_light", "arguments": {"on": True}}],
}


def test_a_conversation_example_encodes_with_its_context_in_front(tiny):
    mem = AgentMem(tiny, adapted=False)
    mem.learn_tools(
        [
            (UNIT, [{"query": "Use celsius", "arguments": {"unit": "celsius"}}]),
            (LIGHT, [{"query": "Light on", "arguments": {"on": True}}]),
        ],
        epochs=1,
    )
    (example,) = normalize_examples(to_tool_spec(LIGHT), [CONVERSATION], {s.name: s for s in mem.tools})
    assert example.query == "And switch the light on."
    encoded = encode_example(tiny.tokenizer, example, mem.memory_token_id, tiny.eos_token_id, mem.schemas)
    whole = prompt_ids(tiny.tokenizer, CONVERSATION["messages"], mem.memory_token_id, mem.schemas)
    alone = prompt_ids(tiny.tokenizer, "And switch the light on.")
    assert list(encoded.prefix) == whole
    assert len(encoded.prefix) > len(alone)
    assert mem.memory_token_id("set_unit") in encoded.prefix  # the earlier call, as its memory token
    text = tiny.tokenizer.decode([i for i in encoded.prefix if i < len(tiny.tokenizer)])
    assert "flat 7" in text and "unit set" in text
    assert encoded.target[0] == mem.memory_token_id("toggle_light")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"query": "both"}, "exactly one of 'query'"),
        ({"messages": []}, "non-empty list"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "message 0"),
        ({"messages": [{"role": "user", "content": 3}]}, "'content' must be a string"),
        ({"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}]}, "last message"),
        (
            {
                "messages": [
                    {"role": "assistant", "content": None, "tool_calls": [{"name": "nope", "args": {}}]},
                    {"role": "user", "content": "hi"},
                ]
            },
            "unknown tool 'nope'",
        ),
    ],
)
def test_a_bad_conversation_example_names_the_problem(change, problem):
    light = to_tool_spec(LIGHT)
    with pytest.raises(InvalidExampleError, match="example 0") as info:
        normalize_examples(light, [{**CONVERSATION, **change}], {"set_unit": to_tool_spec(UNIT)})
    assert problem in str(info.value)


def test_training_on_conversation_examples_runs_and_plans_from_messages(tiny, tmp_path):
    mem = AgentMem(tiny, adapted=False)
    report = mem.learn_tools(
        [
            (UNIT, [{"query": "Use celsius", "arguments": {"unit": "celsius"}}]),
            (LIGHT, [CONVERSATION, {"query": "Light off", "arguments": {"on": False}}]),
        ],
        epochs=2,
    )
    assert report.examples == 4  # and the conversation's last turn alone, for routing (the default)
    assert report.last_loss < report.first_loss
    plan = mem.plan(CONVERSATION["messages"], max_calls=1)
    assert len(plan.calls) + len(plan.invalid_calls) <= 1
    mem.save(tmp_path / "bank")  # a kept conversation example round-trips through bank.json
    loaded = AgentMem.load(tmp_path / "bank", backbone=tiny)
    kept = [ex for exs in loaded._kept.values() for ex in exs]
    assert any(ex.messages and ex.messages[-1]["content"] == "And switch the light on." for ex in kept)


def test_rehearsal_leaves_out_a_kept_conversation_whose_earlier_call_was_forgotten(tiny):
    mem = AgentMem(tiny, adapted=False)
    mem.learn_tools(
        [(UNIT, [{"query": "Use celsius", "arguments": {"unit": "celsius"}}]), (LIGHT, [CONVERSATION])], epochs=1
    )
    mem.forget("set_unit")  # the kept conversation's earlier call can no longer be written
    fan = tool_schema("set_fan", {"speed": {"type": "integer"}}, "Set the fan speed.")
    report = mem.learn_tool(fan, [{"query": "Fan to 3", "arguments": {"speed": 3}}], epochs=1, rehearse=4)
    assert report.examples == 1
    assert [t.name for t in mem.tools] == ["toggle_light", "set_fan"]


def test_route_from_last_turn_adds_the_last_message_alone_scored_for_routing_only(tiny, monkeypatch):
    from agentmem import learning

    seen = []
    real = learning.train_rows
    monkeypatch.setattr(learning, "train_rows", lambda *a: seen.append(list(a[3])) or real(*a))
    light_off = {"query": "Light off", "arguments": {"on": False}}
    for flag in (False, True):
        mem = AgentMem(tiny, adapted=False)
        mem.learn_tools(
            [(UNIT, [{"query": "Use celsius", "arguments": {"unit": "celsius"}}]), (LIGHT, [CONVERSATION, light_off])],
            epochs=1,
            route_from_last_turn=flag,
        )
    without, with_last_turn = seen
    assert len(with_last_turn) == len(without) + 1  # one conversation example, one last turn
    added = with_last_turn[-1]
    assert added.routing_only
    assert list(added.prefix) == prompt_ids(tiny.tokenizer, "And switch the light on.")
    assert added.target[0] == mem.memory_token_id("toggle_light")
    assert not any(e.routing_only for e in without)
    assert mem._training["toggle_light"]["routed_from_last_turn"] == 1


def test_route_by_last_turn_sends_a_conversations_first_call_where_its_last_message_alone_routes(tiny):
    from agentmem.encoding import last_turn_ids

    mem = AgentMem(tiny, adapted=False)
    fan = tool_schema("set_fan", {"speed": {"type": "integer"}}, "Set the fan speed.")
    mem.learn_tools(
        [
            (UNIT, [{"query": "Use celsius", "arguments": {"unit": "celsius"}}]),
            (LIGHT, [{"query": "Light on", "arguments": {"on": True}}]),
            (fan, [{"query": "Fan to 3", "arguments": {"speed": 3}}]),
        ],
        epochs=1,
    )
    ids = lambda request: last_turn_ids(tiny.tokenizer, request, mem.memory_token_id, mem.schemas)  # noqa: E731
    # the same prompt route_from_last_turn learns routing from; a bare request has no other
    assert ids(CONVERSATION["messages"]) == prompt_ids(tiny.tokenizer, "And switch the light on.")
    assert ids("And switch the light on.") is None
    assert ids(CONVERSATION["messages"][-1:]) is None

    decoder = mem._decoder
    differing = 0
    for last in ("And switch the light on.", "Fan to 3 now", "Celsius, and the fan off", "What next?"):
        messages = [*CONVERSATION["messages"][:-1], {"role": "user", "content": last}]
        scores = decoder.memory_scores(ids(messages), decoder.view())
        expected = mem.bank.names[int(scores.argmax())]
        options = {"tool_choice": "required", "max_calls": 1}
        routed = mem.plan(messages, route_by_last_turn=True, **options)
        assert routed.steps[0].name == expected
        submitted = mem.submit(messages, route_by_last_turn=True, **options).result(timeout=60)
        assert plan_signature(submitted) == plan_signature(routed)  # the scheduler's path
        differing += mem.plan(messages, route_by_last_turn=False, **options).steps[0].name != expected
        # a bare request is its own last turn: the lever changes nothing
        assert plan_signature(mem.plan(last, route_by_last_turn=True, **options)) == plan_signature(
            mem.plan(last, route_by_last_turn=False, **options)
        )
    assert differing  # the lever changed at least one first call (else this test proves little)


# An agent's trace that goes on after the results of the request's own calls.
RESUMED = [
    {"role": "user", "content": "Switch the light on, then set the unit it reports."},
    {"role": "assistant", "content": "", "tool_calls": [{"name": "toggle_light", "args": {"on": True}}]},
    {"role": "tool", "content": '{"reports": "celsius"}'},
]


def test_a_trace_may_go_on_after_its_results_and_end_with_no_call():
    light, unit = to_tool_spec(LIGHT), to_tool_spec(UNIT)
    known = {"set_unit": unit}
    after = {"messages": RESUMED, "calls": [{"name": "set_unit", "arguments": {"unit": "celsius"}}]}
    done = {
        "messages": [
            *RESUMED,
            {"role": "assistant", "content": "", "tool_calls": [{"name": "set_unit", "args": {"unit": "celsius"}}]},
            {"role": "tool", "content": "ok"},
        ],
        "calls": [],
    }
    first = {"messages": RESUMED[:1], "calls": [{"name": "toggle_light", "arguments": {"on": True}}]}
    examples = normalize_examples(light, [first, after, done], known)
    assert [ex.resumes for ex in examples] == [False, True, True]
    assert examples[1].query == examples[2].query == RESUMED[0]["content"]  # the request they serve
    assert examples[2].calls == ()
    # no call is allowed only once the request's calls have their results
    with pytest.raises(InvalidExampleError, match="non-empty list"):
        normalize_examples(light, [{**first, "calls": []}], known)
    # a result must follow a call made for the request, and the calls must have their results
    for messages in (
        [RESUMED[0], RESUMED[2]],
        RESUMED[:2],
        [*RESUMED, {"role": "assistant", "content": "It is on."}],
    ):
        with pytest.raises(InvalidExampleError, match="last message must be the user's request, or the result"):
            normalize_examples(light, [{"messages": messages, "calls": []}], known)


def test_a_trace_after_results_trains_from_the_prompt_a_reading_bank_resumes_from(tiny):
    from agentmem.encoding import resumed_prompt_ids

    mem = AgentMem(tiny, adapted=False)
    mem.learn_tools(
        [
            (UNIT, [{"query": "Use celsius", "arguments": {"unit": "celsius"}}]),
            (LIGHT, [{"messages": RESUMED[:1], "calls": [{"name": "toggle_light", "arguments": {"on": True}}]}]),
        ],
        epochs=1,
    )
    after, done = normalize_examples(
        to_tool_spec(UNIT),
        [
            {"messages": RESUMED, "calls": [{"name": "set_unit", "arguments": {"unit": "celsius"}}]},
            {"messages": RESUMED, "calls": []},
        ],
        {"toggle_light": to_tool_spec(LIGHT)},
    )
    shown, _ = resumed_prompt_ids(tiny.tokenizer, RESUMED, mem.memory_token_id, mem.schemas, True)
    whole = prompt_ids(tiny.tokenizer, RESUMED, mem.memory_token_id, mem.schemas)
    # the results, then the turn's call again: the next call or the end follows arguments
    assert shown[: len(whole)] == whole and shown[len(whole)] == mem.memory_token_id("toggle_light")
    for example, first in ((after, mem.memory_token_id("set_unit")), (done, tiny.eos_token_id)):
        encoded = encode_example(tiny.tokenizer, example, mem.memory_token_id, tiny.eos_token_id, mem.schemas)
        assert list(encoded.prefix) == shown and encoded.target[0] == first
    assert encode_example(tiny.tokenizer, done, mem.memory_token_id, tiny.eos_token_id, mem.schemas).target == (
        tiny.eos_token_id,
    )


def test_a_bank_that_learned_from_results_is_shown_them_when_it_resumes_and_saves_that(tiny, tmp_path):
    from agentmem.encoding import resumed_prompt_ids

    def bank(with_results: bool) -> AgentMem:
        mem = AgentMem(tiny, adapted=False)
        light = [{"messages": RESUMED[:1], "calls": [{"name": "toggle_light", "arguments": {"on": True}}]}]
        if with_results:
            light.append({"messages": RESUMED, "calls": []})
        report = mem.learn_tools(
            [(UNIT, [{"query": "Use celsius", "arguments": {"unit": "celsius"}}]), (LIGHT, light)], epochs=1
        )
        # a trace that resumes after results is not also trained on its last user message alone
        assert report.examples == 2 + with_results + 1
        return mem

    plain, reading = bank(False), bank(True)
    assert not plain.reads_results and reading.reads_results
    resumed, _ = resumed_prompt_ids(tiny.tokenizer, RESUMED, plain.memory_token_id, plain.schemas)
    request = prompt_ids(tiny.tokenizer, RESUMED[:1], plain.memory_token_id, plain.schemas)
    calls = resumed[len(request) :]  # the plan's calls, after the request, without their results
    assert resumed[: len(request)] == request and calls[0] == plain.memory_token_id("toggle_light")
    # a bank that reads results sees the whole conversation, then the turn's calls again
    whole = prompt_ids(tiny.tokenizer, RESUMED, reading.memory_token_id, reading.schemas)
    shown, _ = resumed_prompt_ids(tiny.tokenizer, RESUMED, reading.memory_token_id, reading.schemas, True)
    assert shown == whole + calls
    for mem, expected in ((plain, resumed), (reading, shown)):
        plan = mem.plan(RESUMED, resume=True, max_calls=1)
        assert plan.usage["prompt_tokens"] == len(expected)
        assert plan.text == ""  # a resumed plan makes a call or ends: no words
    reading.save(tmp_path / "bank")
    loaded = AgentMem.load(tmp_path / "bank", backbone=tiny)
    assert loaded.reads_results
    assert plan_signature(loaded.plan(RESUMED, resume=True)) == plan_signature(reading.plan(RESUMED, resume=True))
