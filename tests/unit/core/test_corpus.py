"""The adaptation corpus and the synthetic tool generator: determinism, validity, disjointness."""

from __future__ import annotations

import collections
import json
import random
import re

import pytest

from agentmem.adaptation import corpus
from agentmem.adaptation.adapt import read_corpus
from agentmem.compose import CONNECTORS, compose_examples, join_requests
from agentmem.errors import InvalidExampleError
from agentmem.tools.examples import Call, Example
from agentmem.tools.parsing import find_reference
from agentmem.tools.spec import to_tool_spec


def test_synthetic_draws_are_deterministic():
    assert corpus.synthetic_tools(20, seed=3) == corpus.synthetic_tools(20, seed=3)
    assert corpus.synthetic_tools(20, seed=3) != corpus.synthetic_tools(20, seed=4)
    assert corpus.synthetic_examples(10, 30, seed=3) == corpus.synthetic_examples(10, 30, seed=3)
    assert corpus.synthetic_examples(10, 30, seed=3) != corpus.synthetic_examples(10, 30, seed=3, sample_seed=9)
    # A tool's definition does not depend on how many tools were drawn.
    few, many = corpus.synthetic_tools(10, seed=3), corpus.synthetic_tools(40, seed=3)
    assert all(many[name] == tool for name, tool in few.items())


def test_synthetic_requests_say_their_values_and_chain_with_connectors():
    tools = {name: to_tool_spec(t) for name, t in corpus.synthetic_tools(30, seed=1).items()}
    examples = corpus.synthetic_examples(30, 300, seed=1)
    assert len({e["query"] for e in examples}) == 300
    sizes = [len(e["calls"]) for e in examples]
    assert set(sizes) == {1, 2, 3, 4} and 0.3 < sizes.count(1) / len(sizes) < 0.7
    for example in examples:
        names = [c["name"] for c in example["calls"]]
        assert len(set(names)) == len(names)
        if len(names) > 1:
            assert sum(example["query"].count(c) for c in CONNECTORS) >= len(names) - 1
        for call in example["calls"]:
            assert tools[call["name"]].validate_arguments(call["arguments"]) is None
            for value in call["arguments"].values():
                if not isinstance(value, bool):  # a boolean is implied by its phrase
                    assert str(value) in example["query"], (value, example["query"])


def test_splits_and_the_adaptation_corpus_are_disjoint_from_evaluation_tools():
    adapt, held = corpus.synthetic_tools(60, 0, "adapt"), corpus.synthetic_tools(60, 0, "eval")
    assert not set(adapt) & set(held)
    assert not {n.split("_", 1)[1] for n in adapt} & {n.split("_", 1)[1] for n in held}  # no object in both

    data = corpus.adaptation_corpus(n_synthetic=40, seed=0)
    reserved = corpus.reserved_tool_names()
    assert {"get_weather", "convert_currency", "send_email", "create_reminder", "Search_Hotels"} <= reserved
    assert not set(data.tools) & reserved
    assert not [n for n in data.tools if any(t in n.lower() for t in corpus.RESERVED_TOPICS)]
    assert not set(data.tools) & set(held)
    # NESTFUL requests that pass an earlier result ("$var1...$") are left out: a few glaive and
    # executable requests stay, no sgd one (every sgd plan chains results)
    assert {"search_books", "NewsAPISearchByKeyWord"} <= set(data.tools)
    assert all(find_reference(c["arguments"]) is None for e in data.examples for c in e["calls"])
    assert {c["name"] for e in data.examples for c in e["calls"]} == set(data.tools)
    specs = {name: to_tool_spec(t) for name, t in data.tools.items()}
    assert all(specs[c["name"]].validate_arguments(c["arguments"]) is None for e in data.examples for c in e["calls"])
    # requests that need no tool are answered in words, and none touches a demo topic
    assert not [e for e in data.examples if not e["calls"]]  # none by default
    words = [e for e in corpus.adaptation_corpus(n_synthetic=40, n_no_tool=30).examples if not e["calls"]]
    assert len(words) == 30 and all(e["answer"] for e in words)
    assert not [e for e in words if any(t in e["query"].lower() for t in corpus.RESERVED_TOPICS)]
    again = corpus.adaptation_corpus(n_synthetic=40, seed=0)
    assert again.examples == data.examples and again.tools == data.tools
    assert corpus.adaptation_corpus(n_synthetic=40, seed=1).examples != data.examples


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="unknown split 'test'"):
        corpus.synthetic_tools(5, split="test")
    with pytest.raises(ValueError, match="has 76 synthetic tools; asked for n=77"):
        corpus.synthetic_tools(77)
    with pytest.raises(ValueError, match="not synthetic tools"):
        corpus.synthetic_examples(["get_weather"], 5)
    with pytest.raises(ValueError, match="complexfuncbench"):
        corpus.adaptation_corpus(10, subsets=["complexfuncbench"])


def _single(name: str, query: str, **arguments) -> Example:
    return Example(query=query, calls=(Call(name=name, arguments=arguments),))


def test_compose_chains_single_call_examples():
    by_tool = {
        "a": [_single("a", f"Open door {i}.", door=i) for i in range(5)],
        "b": [_single("b", "Paris weather now?", city="Paris"), _single("b", "Call Ana.", who="Ana")],
        "c": [_single("c", "Water the plants", what="plants")],
    }
    composed = compose_examples(by_tool, 20, seed=0)
    assert composed == compose_examples(by_tool, 20, seed=0)
    assert all(2 <= len(e.calls) <= 3 and len({c.name for c in e.calls}) == len(e.calls) for e in composed)
    assert "Then, paris" not in " ".join(e.query for e in composed)  # a value keeps its capital
    with pytest.raises(ValueError, match="at least 2 tools"):
        compose_examples({"a": by_tool["a"]}, 3)
    text = join_requests([("Open door 1", [1]), ("Paris weather?", ["Paris"]), ("I'd like tea", [])], random.Random(0))
    assert text.startswith("Open door 1. ") and " Paris weather?" in text and " I'd like tea." in text


def test_adaptation_tools_teach_free_text_copying_and_masked_names():
    adapt = corpus.synthetic_tools(76, 0, "adapt")
    masked = [name for name in adapt if name.startswith("tool_")]
    assert 0.1 < len(masked) / len(adapt) < 0.4  # about a quarter: the memory token must carry the tool
    assert all("_" not in adapt[name]["description"] and adapt[name]["description"] for name in masked)
    free = [
        name for name, t in adapt.items() if set(t["parameters"]["properties"]) & {"task", "message", "item", "label"}
    ]
    assert len(free) >= 8
    examples = corpus.synthetic_examples(free, 60, seed=0, multi=0.0)
    spans = [
        v
        for e in examples
        for c in e["calls"]
        for k, v in c["arguments"].items()
        if k in ("task", "message", "item", "label")
    ]
    assert spans and all(" " in v for v in spans)  # multi-word spans, each said verbatim (checked above for all values)
    assert all(
        str(v) in e["query"]
        for e in examples
        for c in e["calls"]
        for v in c["arguments"].values()
        if not isinstance(v, bool)
    )
    # the benchmarks' split is untouched: plain verb_object names, no free-text parameters
    held = corpus.synthetic_tools(60, 0, "eval")
    assert not [n for n in held if n.startswith("tool_")]
    assert not [n for n, t in held.items() if set(t["parameters"]["properties"]) & {"task", "message", "item", "label"}]


def _said(value, text: str) -> bool:
    """Whether ``text`` says ``value`` as a whole word ("10" is not said by "2026-10-12")."""
    return re.search(rf"(?<![\d.-]){re.escape(str(value))}(?![\d-]|\.\d)", text) is not None


def test_agent_shaped_requests_take_a_value_from_the_conversation_not_the_request():
    examples = corpus.agent_examples(200, seed=0)
    assert examples == corpus.agent_examples(200, seed=0)
    assert examples != corpus.agent_examples(200, seed=1)
    assert len({str(e["messages"]) for e in examples}) == 200
    # each one is a valid conversation example of the adaptation corpus: the tools, the
    # messages, earlier calls of known tools, the calls under their schemas
    tools = corpus.synthetic_tools(76, 0, "adapt")
    specs, validated = read_corpus((tools, examples))
    assert len(validated) == 200 and all(e.messages for e in validated)
    where = collections.Counter()
    for example in examples:
        *earlier, request = example["messages"]
        assert request["role"] == "user" and earlier
        first = example["calls"][0]["arguments"]
        # the first call holds a value the request does not say and the conversation does
        unsaid = [v for v in first.values() if not isinstance(v, bool) and not _said(v, request["content"])]
        assert len(unsaid) == 1, (first, request["content"])
        said_in = [m for m in earlier if _said(unsaid[0], json.dumps(m, ensure_ascii=False))]
        assert said_in, example
        where[said_in[0]["role"]] += 1
        # a second call, when there is one, says every value in the request
        for call in example["calls"][1:]:
            assert all(_said(v, request["content"]) for v in call["arguments"].values() if not isinstance(v, bool))
    # the system prompt, an earlier user turn, an earlier call's arguments or result
    assert set(where) == {"system", "user", "tool"} and min(where.values()) > 30
    assert sum(len(e["calls"]) == 2 for e in examples) > 30
    assert sum(any(m["role"] == "tool" for m in e["messages"]) for e in examples) > 60


def test_the_adaptation_corpus_holds_agent_shaped_requests_when_asked():
    plain = corpus.adaptation_corpus(n_synthetic=40, seed=0)
    agent = corpus.adaptation_corpus(n_synthetic=40, seed=0, n_agent=30)
    assert "agent=30" in agent.name and "agent" not in plain.name
    assert len(agent.examples) == len(plain.examples) + 30
    assert sum("messages" in e for e in agent.examples) == 30
    assert not set(agent.tools) & corpus.reserved_tool_names()
    specs, validated = read_corpus(agent)
    assert len(validated) == len(agent.examples)


def test_traces_after_results_end_in_the_results_then_go_on_or_end():
    examples = corpus.result_traces(300, seed=0)
    assert examples == corpus.result_traces(300, seed=0)
    assert examples != corpus.result_traces(300, seed=1)
    tools = corpus.synthetic_tools(76, 0, "adapt")
    # valid beside requests of the same tools (a trace done after its results is checked
    # with the requests of a tool it called)
    specs, validated = read_corpus((tools, examples + corpus.synthetic_examples(76, 500, 0, "adapt")))
    # each one resumes: its messages end in the results of calls made for its request
    assert sum(e.resumes for e in validated) == 300
    done = [e for e in examples if not e["calls"]]
    assert 0.6 < len(done) / 300 < 0.8
    # a share begin with an earlier turn whose call and result stay in the conversation
    assert 0.5 < sum(sum(m["role"] == "user" for m in e["messages"]) == 2 for e in examples) / 300 < 0.7
    read = 0
    for example in examples:
        messages = example["messages"]
        request = max(i for i, m in enumerate(messages) if m["role"] == "user")
        made = [c["id"] for m in messages[request + 1 :] for c in m.get("tool_calls") or ()]
        answered = [m["tool_call_id"] for m in messages[request + 1 :] if m["role"] == "tool"]
        assert made and answered == made and messages[-1]["role"] == "tool"
        text = messages[request]["content"]
        for call in example["calls"]:
            unsaid = [v for v in call["arguments"].values() if not isinstance(v, bool) and not _said(v, text)]
            # a value the request does not say is in the last result, and only there
            if unsaid:
                read += 1
                assert len(unsaid) == 1 and _said(unsaid[0], messages[-1]["content"]), example
    assert read > 30


def test_the_adaptation_corpus_holds_traces_after_results_when_asked():
    plain = corpus.adaptation_corpus(n_synthetic=400, seed=0)
    traced = corpus.adaptation_corpus(n_synthetic=400, seed=0, n_results=30)
    assert "results=30" in traced.name and "results" not in plain.name
    assert len(traced.examples) == len(plain.examples) + 30
    specs, validated = read_corpus(traced)
    assert sum(e.resumes for e in validated) == 30
    assert any(e.resumes and not e.calls for e in validated)
    # a request done after results needs calls of tools that other requests call
    lone = corpus.result_traces(30, seed=0)
    with pytest.raises(InvalidExampleError, match="done after its calls' results"):
        read_corpus((corpus.synthetic_tools(76, 0, "adapt"), [e for e in lone if not e["calls"]]))
