"""Continual learning on a tiny Llama: rounds of new tools never touch the old rows."""

from __future__ import annotations

import pytest
import torch

from agentmem import AgentMem
from agentmem.adaptation.corpus import synthetic_examples, synthetic_tools
from agentmem.errors import UnknownToolError
from agentmem.tools import demo

FAST = {"epochs": 1, "progress": False}
TOOLS = synthetic_tools(6, seed=0, split="eval")
NAMES = list(TOOLS)


def _round(mem: AgentMem, names: list[str], **train):
    examples = synthetic_examples(names, 4 * len(names), seed=0, split="eval", multi=0.0)
    by_tool = {name: [e for e in examples if e["calls"][0]["name"] == name] for name in names}
    return mem.learn_tools([(TOOLS[name], by_tool[name]) for name in names], **{**FAST, **train})


def test_rounds_train_only_new_rows_at_the_old_rows_mean_norm(tiny):
    mem = AgentMem(tiny)
    _round(mem, NAMES[:2])
    for start, stop in [(2, 3), (3, 6)]:
        before = mem.bank.rows.clone()
        _round(mem, NAMES[start:stop])
        assert torch.equal(mem.bank.rows[:start], before)  # bit-identical
        norms = mem.bank.rows[start:stop].norm(dim=-1)
        assert torch.allclose(norms, before.norm(dim=-1).mean().expand_as(norms), rtol=1e-5)
    assert mem.bank.names == NAMES


def test_without_renormalisation_new_rows_keep_their_own_norm(tiny):
    mem = AgentMem(tiny)
    _round(mem, NAMES[:2])
    old_mean = mem.bank.rows.norm(dim=-1).mean()
    _round(mem, NAMES[2:4], renormalize=False, lr=0.05)
    new = mem.bank.rows[2:].norm(dim=-1)
    assert not torch.allclose(new, old_mean.expand_as(new), rtol=1e-3)


def test_a_round_after_save_and_load_leaves_the_saved_rows_alone(tiny, tmp_path):
    mem = AgentMem(tiny)
    _round(mem, NAMES[:3])
    path = mem.save(tmp_path / "bank")
    loaded = AgentMem.load(path, backbone=tiny)
    _round(loaded, NAMES[3:5])
    assert torch.equal(loaded.bank.rows[:3], mem.bank.rows)
    assert loaded._training[NAMES[0]] == mem._training[NAMES[0]]


def test_forget_removes_one_tool_and_keeps_the_others(tiny):
    mem = AgentMem(tiny)
    _round(mem, NAMES[:4])
    before = {name: mem.bank.rows[i].clone() for i, name in enumerate(mem.bank.names)}
    mem.forget(NAMES[1])
    assert mem.bank.names == [NAMES[0], *NAMES[2:4]] and NAMES[1] not in [t.name for t in mem.tools]
    assert all(torch.equal(mem.bank.rows[mem.bank.index(n)], before[n]) for n in mem.bank.names)
    assert mem.memory_token_id(NAMES[2]) == tiny.vocab_size + 1
    assert mem.plan("anything", tools=[NAMES[2]], max_calls=1) is not None
    with pytest.raises(UnknownToolError, match=NAMES[1]):
        mem.forget(NAMES[1])
    with pytest.raises(UnknownToolError):
        mem.plan("anything", tool_choice=NAMES[1])
    _round(mem, [NAMES[1]])  # relearned later, as a new row
    assert mem.bank.names[-1] == NAMES[1]
    assert all(torch.equal(mem.bank.rows[mem.bank.index(n)], before[n]) for n in (NAMES[0], *NAMES[2:4]))


def test_compose_adds_multi_tool_requests_from_single_call_examples(tiny):
    mem = AgentMem(tiny)
    report = _round(mem, NAMES[:3], compose=5)
    assert report.examples == 12 + 5
    assert all(mem._training[name]["composed"] == 5 for name in NAMES[:3])
    with pytest.raises(ValueError, match="at least 2 tools"):
        mem.learn_tool(demo.TOOLS["get_weather"], demo.training_examples("get_weather", n=4), compose=3, **FAST)
    assert "get_weather" not in mem.bank


def test_rehearsal_replays_kept_requests_of_old_tools_and_trains_only_the_new_rows(tiny):
    mem = AgentMem(tiny)
    _round(mem, NAMES[:2])
    before = mem.bank.rows.clone()
    expected = sum(min(3, len(mem._kept[name])) for name in NAMES[:2])
    report = _round(mem, NAMES[2:3], rehearse=3)
    assert expected > 0 and mem._training[NAMES[2]]["rehearsed"] == expected
    assert report.examples == 4 + expected
    assert torch.equal(mem.bank.rows[:2], before)


def test_kept_requests_are_saved_with_the_bank_and_skip_forgotten_tools(tiny, tmp_path):
    mem = AgentMem(tiny)
    _round(mem, NAMES[:2])
    kept = {name: list(mem._kept[name]) for name in NAMES[:2]}
    assert sum(len(v) for v in kept.values()) == 8  # all of them (fewer than KEPT_EXAMPLES each)
    loaded = AgentMem.load(mem.save(tmp_path / "bank"), backbone=tiny)
    assert loaded._kept == kept
    loaded.forget(NAMES[0])
    report = _round(loaded, NAMES[2:3], rehearse=8)
    remaining = len(kept[NAMES[1]])  # only the remaining tool's requests
    assert loaded._training[NAMES[2]]["rehearsed"] == remaining
    assert report.examples == 4 + remaining


def test_rehearse_must_not_be_negative(tiny):
    with pytest.raises(ValueError, match="rehearse"):
        _round(AgentMem(tiny), NAMES[:1], rehearse=-1)
    with pytest.raises(ValueError, match="keep"):
        _round(AgentMem(tiny), NAMES[:1], keep=-1)


def test_keep_zero_stores_no_requests_so_nothing_is_rehearsed(tiny, tmp_path):
    mem = AgentMem(tiny)
    _round(mem, NAMES[:2], keep=0)
    assert mem._kept == {NAMES[0]: [], NAMES[1]: []}
    assert '"query"' not in (mem.save(tmp_path / "bank") / "bank.json").read_text()
    _round(mem, NAMES[2:3])
    assert mem._training[NAMES[2]]["rehearsed"] == 0
