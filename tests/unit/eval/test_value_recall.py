"""Where a BFCL run's argument values are lost (`agentmem.eval.value_recall`)."""

from __future__ import annotations

import copy
import json

import pytest

from agentmem.eval import agent, bfcl, value_recall
from agentmem.eval.agent import value_sources


@pytest.fixture(scope="module")
def data() -> bfcl.BFCLData:
    return bfcl.load_bfcl()


def _record(conversation: bfcl.Conversation, plans: list[list[dict]]) -> dict:
    """A records file as `bench_levers --records` writes it, for one conversation."""
    turns = [{"gold": gold, "calls": calls} for gold, calls in zip(conversation.gold, plans)]
    return {"conversations": [{"id": conversation.id, "turns": turns}]}


def test_values_are_split_into_unplanned_planned_and_written(data, tmp_path, capsys):
    # multi_turn_base_71: values from the turn's messages, earlier turns and the turn's own results
    conversation = next(c for c in data.conversations if c.id == "multi_turn_base_71")
    sources = value_sources([conversation], data)

    gold = agent.value_recall(_record(conversation, conversation.gold)["conversations"], data)
    assert {s: c["values"] for s, c in gold.items()} == sources
    assert all(c["call_planned"] == c["written"] == c["values"] for c in gold.values())

    nothing = agent.value_recall(_record(conversation, [[] for _ in conversation.gold])["conversations"], data)
    assert all(c["call_planned"] == c["written"] == 0 for c in nothing.values())

    # the right tools with one value changed: that value is planned, not written
    wrong = copy.deepcopy(conversation.gold)
    turn, call = next((t, c) for t, calls in enumerate(wrong) for c in calls if c["arguments"])
    argument = next(iter(call["arguments"]))
    call["arguments"][argument] = "nowhere"
    changed = agent.value_recall(_record(conversation, wrong)["conversations"], data)
    assert sum(c["call_planned"] for c in changed.values()) == sum(sources.values())
    assert sum(c["written"] for c in changed.values()) < sum(sources.values())

    # a turn's gold tools by how often the training turns call them: the gold plan makes them all
    bands = value_recall.calls_by_training(_record(conversation, conversation.gold)["conversations"], data, seed=0)
    tools = sum(len({c["name"] for c in calls}) for calls in conversation.gold)  # a turn's tools, as a set
    assert sum(row[2] for row in bands) == tools == sum(row[3] for row in bands)
    assert sum(row[1] for row in bands) == len(data.tools) and all(row[4] == 0 for row in bands)

    # the command pools files and prints the table with a total
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    paths[0].write_text(json.dumps(_record(conversation, conversation.gold)))
    paths[1].write_text(json.dumps(_record(conversation, [[] for _ in conversation.gold])))
    assert value_recall.main([str(p) for p in paths]) == 0
    total = sum(sources.values())
    assert f"| all | {2 * total} | {total} | {total} | 1.00 |" in capsys.readouterr().out


def test_a_nestful_records_file_is_refused_by_name(tmp_path, capsys):
    path = tmp_path / "cfb.json"
    path.write_text(json.dumps({"requests": []}))
    with pytest.raises(SystemExit):
        value_recall.main([str(path)])
    assert "BFCL records" in capsys.readouterr().err
