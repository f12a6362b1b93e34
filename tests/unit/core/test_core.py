"""AgentMem on a tiny Llama: learning, errors, forgetting, save/load."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from agentmem import AgentMem
from agentmem.errors import (
    BackboneMismatchError,
    BankError,
    BankFormatWarning,
    DuplicateToolError,
    InvalidExampleError,
    SchemaError,
    UnknownToolError,
)
from agentmem.tools import demo
from tests.conftest import tiny_backbone

FAST = {"epochs": 1, "progress": False}


def _learn(mem: AgentMem, *names: str, n: int = 6):
    return mem.learn_tools([(demo.TOOLS[name], demo.training_examples(name, n=n)) for name in names], **FAST)


def test_learn_tool_reports_and_registers(tiny):
    mem = AgentMem(tiny)
    report = mem.learn_tool(demo.TOOLS["get_weather"], demo.training_examples("get_weather", n=6), **FAST)
    assert report.tools == ["get_weather"] and report.examples == 6 and report.steps == 2
    assert report.seconds > 0 and report.tokens_per_second > 0
    assert report.row_norms["get_weather"] > 0
    assert [t.name for t in mem.tools] == ["get_weather"]
    assert mem.memory_token_id("get_weather") == tiny.vocab_size


def test_continual_round_leaves_old_rows_bit_identical(tiny):
    mem = AgentMem(tiny)
    _learn(mem, "get_weather", "convert_currency")
    before = mem.bank.rows.clone()
    multi = demo.multi_call_examples(n=4)  # calls get_weather (old) and the new tools
    mem.learn_tools(
        [
            (demo.TOOLS["create_reminder"], demo.training_examples("create_reminder", n=6) + multi),
            (demo.TOOLS["send_email"], demo.training_examples("send_email", n=6)),
        ],
        **FAST,
    )
    assert torch.equal(mem.bank.rows[:2], before)
    old_norm = before.norm(dim=-1).mean()
    assert torch.allclose(mem.bank.rows[2:].norm(dim=-1), old_norm.expand(2), rtol=1e-5)


def test_learning_errors_name_the_problem(tiny):
    mem = AgentMem(tiny)
    with pytest.raises(SchemaError):
        mem.learn_tool({"name": "bad tool!", "parameters": {"type": "object"}}, [{"query": "x", "arguments": {}}])
    with pytest.raises(SchemaError):
        mem.learn_tool({"name": "t", "parameters": {"type": "objekt"}}, [{"query": "x", "arguments": {}}])
    bad = demo.training_examples("get_weather", n=3)
    bad[2] = {"query": "weather?", "arguments": {"city": 7}}
    with pytest.raises(InvalidExampleError, match="2"):
        mem.learn_tool(demo.TOOLS["get_weather"], bad)
    with pytest.raises(InvalidExampleError):
        mem.learn_tool(demo.TOOLS["get_weather"], [])
    with pytest.raises(InvalidExampleError, match="nope"):
        mem.learn_tool(demo.TOOLS["get_weather"], [{"query": "q", "calls": [{"name": "nope", "arguments": {}}]}])
    assert mem.tools == [] and len(mem.bank) == 0  # nothing half-learned
    _learn(mem, "get_weather")
    with pytest.raises(DuplicateToolError, match="get_weather"):
        _learn(mem, "get_weather")


def test_skip_invalid_learns_the_rest_and_reports_what_it_left_out(tiny):
    mem = AgentMem(tiny)
    examples = demo.training_examples("get_weather", n=6)
    examples[3] = {"query": "weather for booking 17", "arguments": {"city": 17}}  # noisy data: an id for a city
    report = mem.learn_tool(demo.TOOLS["get_weather"], examples, invalid="skip", **FAST)
    assert report.examples == 5 and [(s.tool, s.index) for s in report.skipped] == [("get_weather", 3)]
    assert "skipped 1 invalid examples" in str(report) and "example 3" in str(report)


# Properties deliberately out of alphabetical order: a bank must keep the order the rows learned.
BOOK_TABLE = {
    "name": "book_table",
    "description": "Book a restaurant table.",
    "parameters": {
        "type": "object",
        "properties": {
            "restaurant": {"type": "string"},
            "people": {"type": "integer", "minimum": 1, "maximum": 12},
            "time": {"type": "string", "enum": ["18:00", "19:30", "21:00"]},
        },
        "required": ["restaurant", "people", "time"],
    },
}


def test_saved_bank_keeps_property_order_and_plans_like_the_live_one(tiny, tmp_path: Path):
    mem = AgentMem(tiny)
    examples = [
        {"query": f"table for {n} at {r} at {t}", "arguments": {"restaurant": r, "people": n, "time": t}}
        for n, r, t in [(2, "Nopa", "19:30"), (4, "Zuni", "18:00"), (3, "Spice Route", "21:00")]
    ]
    mem.learn_tool(BOOK_TABLE, examples, **FAST)
    requests = ["a table for 2 at Spice Route at 21:00", "book Zuni for 5 people"]
    before = mem.plan_batch(requests, tool_choice="any", max_calls=1)
    path = mem.save(tmp_path / "bank")
    meta = json.loads((path / "bank.json").read_text())
    assert list(meta["tools"][0]["spec"]["parameters"]["properties"]) == ["restaurant", "people", "time"]
    loaded = AgentMem.load(path, backbone=tiny)
    after = loaded.plan_batch(requests, tool_choice="any", max_calls=1)
    for a, b in zip(before, after):
        assert [(s.name, getattr(s, "raw", None), list(getattr(s, "arguments", {}).items())) for s in a.steps] == [
            (s.name, getattr(s, "raw", None), list(getattr(s, "arguments", {}).items())) for s in b.steps
        ]


def test_a_format_1_bank_loads_with_a_warning_that_its_order_is_lost(tiny, tmp_path: Path):
    mem = AgentMem(tiny)
    _learn(mem, "get_weather")
    path = mem.save(tmp_path / "bank")
    meta = json.loads((path / "bank.json").read_text())
    (path / "bank.json").write_text(json.dumps({**meta, "format_version": 1}, sort_keys=True))
    with pytest.warns(BankFormatWarning, match="alphabetically"):
        loaded = AgentMem.load(path, backbone=tiny)
    assert [t.name for t in loaded.tools] == ["get_weather"]


def test_forget_and_unknown_tools(tiny):
    mem = AgentMem(tiny)
    _learn(mem, "get_weather", "convert_currency")
    kept = mem.bank.rows[1].clone()
    mem.forget("get_weather")
    assert [t.name for t in mem.tools] == ["convert_currency"]
    assert torch.equal(mem.bank.rows[0], kept)
    with pytest.raises(UnknownToolError, match="get_weather"):
        mem.forget("get_weather")
    with pytest.raises(UnknownToolError, match="send_email"):
        mem.plan("hi", tools=["send_email"])


def test_learning_and_planning_use_the_installed_transformers_cache_argument(tiny):
    # transformers renamed `past_key_values` to `cache` and warns of the old name at every
    # forward (FutureWarning, removed in 5.40): none may come from learning or planning
    mem = AgentMem(tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        _learn(mem, "get_weather", "convert_currency")
        mem.plan("What's the weather in Oslo?", tool_choice="any")
        mem.plan_batch(["What's the weather in Oslo?", "Convert 20 EUR to USD please"], tool_choice="any")


def test_save_load_round_trip_gives_identical_plans(tiny, tmp_path: Path):
    mem = AgentMem(tiny)
    _learn(mem, "get_weather", "convert_currency")
    requests = ["What's the weather in Oslo?", "Convert 20 EUR to USD please"]
    before = mem.plan_batch(requests, tool_choice="any", max_calls=2)
    path = mem.save(tmp_path / "bank")
    assert sorted(p.name for p in path.iterdir()) == ["bank.json", "bank.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["bank"]  # no staging folders left
    loaded = AgentMem.load(path, backbone=tiny)
    assert torch.equal(loaded.bank.rows, mem.bank.rows)
    assert loaded.tools == mem.tools
    after = loaded.plan_batch(requests, tool_choice="any", max_calls=2)
    for a, b in zip(before, after):
        assert [(s.name, getattr(s, "arguments", None), getattr(s, "raw", None)) for s in a.steps] == [
            (s.name, getattr(s, "arguments", None), getattr(s, "raw", None)) for s in b.steps
        ]
    # saving again replaces the bank atomically
    mem.forget("get_weather")
    mem.save(path)
    assert [t.name for t in AgentMem.load(path, backbone=tiny).tools] == ["convert_currency"]
    assert [p.name for p in tmp_path.iterdir()] == ["bank"]


def test_load_errors(tiny, tokenizer, tmp_path: Path):
    mem = AgentMem(tiny)
    _learn(mem, "get_weather")
    path = mem.save(tmp_path / "bank")

    with pytest.raises(BankError, match="no memory bank"):
        AgentMem.load(tmp_path / "missing", backbone=tiny)
    with pytest.raises(BackboneMismatchError, match="learned on"):
        AgentMem.load(path, backbone=tiny_backbone(tokenizer, seed=1))

    meta = json.loads((path / "bank.json").read_text())
    (path / "bank.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(BankError, match="format version 99"):
        AgentMem.load(path, backbone=tiny)
    (path / "bank.json").write_text("{not json")
    with pytest.raises(BankError, match="corrupted"):
        AgentMem.load(path, backbone=tiny)
    broken = json.loads(json.dumps(meta))
    broken["tools"][0]["kept_examples"] = [{"query": "weather?"}]  # a kept request without calls
    (path / "bank.json").write_text(json.dumps(broken))
    with pytest.raises(BankError, match=r"bank.json is corrupted: tools\[0\].kept_examples\[0\] has no 'calls'"):
        AgentMem.load(path, backbone=tiny)
    (path / "bank.json").write_text(json.dumps(meta))
    (path / "bank.safetensors").write_bytes(b"garbage")
    with pytest.raises(BankError, match="bank.safetensors is corrupted"):
        AgentMem.load(path, backbone=tiny)
    (path / "bank.safetensors").unlink()
    with pytest.raises(BankError, match="missing bank.safetensors"):
        AgentMem.load(path, backbone=tiny)
