"""The executed agent evaluation on BFCL's development domains."""

from __future__ import annotations

import json

import pytest

from agentmem.eval import agent, bfcl
from agentmem.eval.agent import (
    AgentRunConfig,
    irrelevance,
    run_agent,
    run_conversations,
    training_turns,
    transcript,
    unlearned_turns,
    value_sources,
)
from agentmem.eval.methods import MethodSettings, Prediction


@pytest.fixture(scope="module")
def data() -> bfcl.BFCLData:
    return bfcl.load_bfcl()


def test_training_turns_carry_the_gold_conversation_so_far(data):
    conversation = next(c for c in data.conversations if len(c.turns) > 2 and all(c.gold[:2]))
    with_context = [e for e in training_turns([conversation], data, context=True)]
    alone = training_turns([conversation], data, context=False)
    second = with_context[1]["messages"]
    assert second[0] == conversation.turns[0][0] and second[-1] == conversation.turns[1][-1]
    calls = [c["function"] for m in second if m["role"] == "assistant" for c in m["tool_calls"]]
    assert calls == conversation.gold[0]
    assert sum(m["role"] == "tool" for m in second) == len(conversation.gold[0])
    assert alone[1]["messages"] == conversation.turns[1]
    assert [e["calls"] for e in alone] == [e["calls"] for e in with_context]
    text = transcript(second, {n: t["parameters"] for n, t in data.tools.items()})
    assert text.startswith("User: ") and "Tool result: " in text and conversation.gold[0][0]["name"] in text


def test_an_agent_that_plans_the_gold_calls_scores_full_marks_and_reaches_the_gold_state(data):
    conversations = data.conversations[:4]
    gold = {c.turns[t][-1]["content"]: c.gold[t] for c in conversations for t in range(len(c.turns))}
    seen: list[list[str]] = []

    def oracle(requests, tools):
        seen.append(tools)
        out = []
        for messages in requests:
            resumed = messages[-1]["role"] == "tool"
            last_user = next(m for m in reversed(messages) if m["role"] == "user")["content"]
            calls = [] if resumed else gold[last_user]
            out.append(Prediction(calls=calls, invalid=[], prompt_tokens=1, generated_tokens=1))
        return out

    records = run_conversations(conversations, data, oracle, True, True, data.tools)
    assert all(r["state_match"] for r in records)
    turns = [t for r in records for t in r["turns"]]
    assert all(t["calls"] == t["gold"] for t in turns)
    assert {t["plans"] for t in turns if t["gold"]} == {2}  # a plan with calls, then a resumed one that ends
    # each plan was given its conversation's tools, as BFCL gives them
    assert all(any(set(tools) == set(data.tools_of(c)) for c in conversations) for tools in seen)

    def idle(requests, tools):
        return [Prediction(calls=[], invalid=[], prompt_tokens=1, generated_tokens=1) for _ in requests]

    records = run_conversations(conversations, data, idle, True, True, data.tools)
    assert not all(r["state_match"] for r in records)


def test_run_agent_on_the_tiny_model_writes_rows_for_both_lever_settings(tiny, tmp_path, monkeypatch):
    runs = []
    real = agent.run_conversations
    monkeypatch.setattr(agent, "run_conversations", lambda *a, **k: runs.append(1) or real(*a, **k))
    config = AgentRunConfig(
        out=tmp_path,
        methods=("tokmem",),
        limit=1,
        levers=("defaults", "off"),
        train_per_tool=1,
        settings=MethodSettings(epochs=1, max_calls=1, progress=False),  # a random model plans long
    )
    summary = run_agent(config, backbone=tiny)
    assert set(summary["methods"]) == {"tokmem", "tokmem-levers-off"}
    for row in ("tokmem", "tokmem-levers-off"):
        result = summary["methods"][row]
        assert result["status"] == "ok" and 0.0 <= result["scores"]["tool_f1"] <= 1.0
        saved = json.loads((tmp_path / "methods" / f"{row}.json").read_text())
        assert len(saved["conversations"]) == 1 and saved["conversations"][0]["turns"]
        values = result["gold_values"]  # where the run lost its gold values (value_recall)
        assert values["values"] > 0 and values["written"] <= values["call_planned"] <= values["values"]
    report = (tmp_path / "report.md").read_text()
    assert "state match" in report and "tokmem-levers-off" in report
    values = summary["methods"]["tokmem"]["gold_values"]
    assert f"{values['call_planned']} / {values['written']} of {values['values']}" in report
    setup = summary["setup"]
    assert 0 <= setup["test_tool_turns_calling_unlearned_tools"] <= setup["test_tool_turns"]
    assert ("no training turn calls" in report) == bool(setup["unlearned_tools"])
    # four levers are on by default: the levers-off row is planned again without them
    assert (
        agent.LEVERS_OFF
        == {
            "copy_bias": 0.0,
            "route_by_last_turn": False,
            "unique_enum_items": False,
            "strip_leading_space": False,
        }
        and len(runs) == 2
    )
    with pytest.raises(ValueError, match="levers"):
        AgentRunConfig(out=tmp_path, levers=("fast",))


def test_test_turns_calling_a_tool_no_training_turn_calls_are_counted(data):
    test = data.conversations[:6]
    called = sorted({c["name"] for conversation in test for gold in conversation.gold for c in gold})
    tool_turns = sum(bool(gold) for conversation in test for gold in conversation.gold)
    everything = unlearned_turns(test, {n: data.tools[n] for n in called})
    assert everything == {
        "test_tool_turns": tool_turns,
        "test_tool_turns_calling_unlearned_tools": 0,
        "unlearned_tools": [],
    }
    missing = called[0]
    without = unlearned_turns(test, {n: data.tools[n] for n in called[1:]})
    needing = sum(any(c["name"] == missing for c in gold) for conversation in test for gold in conversation.gold)
    assert without["unlearned_tools"] == [missing]
    assert without["test_tool_turns_calling_unlearned_tools"] == needing > 0


def test_gold_values_are_traced_to_where_the_conversation_first_writes_them(data):
    # multi_turn_base_71: the distance between two cities is asked for by their zip codes,
    # which only the results of the turn's own get_zipcode_based_on_city calls give
    conversation = next(c for c in data.conversations if c.id == "multi_turn_base_71")
    turn = next(i for i, gold in enumerate(conversation.gold) if any(c["name"] == "estimate_distance" for c in gold))
    distance = next(c for c in conversation.gold[turn] if c["name"] == "estimate_distance")["arguments"]
    said = " ".join(m["content"] for m in conversation.turns[turn])
    assert not any(str(v) in said for v in distance.values())
    counts = value_sources([conversation], data)
    assert list(counts) == list(agent.VALUE_SOURCES)
    assert counts["this turn's earlier results"] >= 2  # the two zip codes
    leaves = [v for gold in conversation.gold for c in gold for v in agent.leaf_values(c["arguments"])]
    assert sum(counts.values()) == len(leaves) and counts["this turn's messages"] > 0
    # no conversation, no values
    assert value_sources([], data) == dict.fromkeys(agent.VALUE_SOURCES, 0)


def test_irrelevant_requests_answered_in_words_are_counted(data):
    def words(requests, tools):
        return [Prediction(calls=None, invalid=[], prompt_tokens=1, generated_tokens=1, text="No.") for _ in requests]

    def calls(requests, tools):
        return [
            Prediction(calls=[{"name": tools[0], "arguments": {}}], invalid=[], prompt_tokens=1, generated_tokens=1)
        ] * len(requests)

    tools, requests = list(data.tools), bfcl.irrelevance_requests(3)
    assert irrelevance(words, tools, requests) == {"requests": 6, "answered_in_words": 1.0}
    assert irrelevance(calls, tools, requests)["answered_in_words"] == 0.0


def test_the_prompt_baselines_run_as_agents_listing_the_conversations_tools_only(tiny, tmp_path, monkeypatch):
    from agentmem.eval import icl

    listed: list[list[str]] = []
    system_prompt = icl.system_prompt
    monkeypatch.setattr(
        icl, "system_prompt", lambda tools: listed.append([t["name"] for t in tools]) or system_prompt(tools)
    )
    config = AgentRunConfig(
        out=tmp_path,
        methods=("icl", "rag"),
        limit=1,
        train_per_tool=1,
        settings=MethodSettings(max_new_tokens=4, demonstrations=1, progress=False),
    )
    summary = run_agent(config, backbone=tiny)
    assert {r["status"] for r in summary["methods"].values()} == {"ok"}
    data = bfcl.load_bfcl()
    test = bfcl.split_conversations(data.conversations)[2]
    allowed = {n for c in test for n in data.tools_of(c)}
    assert listed and all(set(names) <= allowed for names in listed)


def test_traces_that_read_results_cut_a_turn_where_a_call_needs_its_results(data):
    train = training_turns(data.conversations[:12], data, context=True)
    traces = training_turns(data.conversations[:12], data, context=True, read_results=True)
    by_turn: dict[tuple, list[dict]] = {}
    for ex in traces:
        by_turn.setdefault((ex["conversation"], ex["turn"]), []).append(ex)
    assert len(by_turn) == len(train)
    for ex in train:
        parts = by_turn[(ex["conversation"], ex["turn"])]
        # the parts hold the turn's calls in order, then the turn ends with no call after all the results
        assert [c for p in parts for c in p["calls"]] == ex["calls"]
        assert parts[-1]["calls"] == [] and parts[-1]["messages"][-1]["role"] == "tool"
        # the same conversation before (earlier turns' calls in their parts, each with its results)
        flat = lambda messages: [c for m in messages for c in m.get("tool_calls") or ()]  # noqa: E731
        assert flat(parts[0]["messages"]) == flat(ex["messages"]) and parts[0]["messages"][-1] == ex["messages"][-1]
        for p in parts[1:-1]:
            assert p["messages"][-1]["role"] == "tool"
    # the zip-code turn: the distance is asked between zip codes that only the lookups return
    cut = next(p for parts in by_turn.values() for p in parts[1:-1] if p["calls"][0]["name"] == "estimate_distance")
    results = " ".join(m["content"] for m in cut["messages"] if m["role"] == "tool")
    assert all(str(v) in results for v in cut["calls"][0]["arguments"].values())
    said = next(m for m in reversed(cut["messages"]) if m["role"] == "user")["content"]
    assert agent.needs_result(cut["calls"][0], said, "", results)
    assert not agent.needs_result(cut["calls"][0], said + results, "", results)


def test_a_turn_that_ends_with_no_call_is_handed_to_a_tool_its_last_calls_used():
    from agentmem.eval.tokmem import assign_to_tools

    call = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "b", "arguments": {}}}]}
    done = {"messages": [{"role": "user", "content": "x"}, call, {"role": "tool", "content": "1"}], "calls": []}
    first = {
        "messages": [{"role": "user", "content": "x"}],
        "calls": [{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}],
    }
    groups = assign_to_tools([first, done, {"messages": [], "calls": [{"name": "a", "arguments": {}}]}])
    assert groups["b"][0] is first and done in groups["b"]  # b: its own call, then the turn's end


def test_run_agent_with_read_results_learns_tokmem_from_the_cut_traces(tiny, tmp_path):
    config = AgentRunConfig(
        out=tmp_path,
        methods=("tokmem",),
        limit=1,
        train_per_tool=1,
        read_results=True,
        settings=MethodSettings(epochs=1, max_calls=1, progress=False),
    )
    summary = run_agent(config, backbone=tiny)
    setup, cost = summary["setup"], summary["methods"]["tokmem"]["cost"]
    assert setup["read_results"]
    # each capped turn: its part(s), the end after its results, and its last turn alone for routing
    assert cost["training_examples"] >= 3 * setup["train_requests"]
