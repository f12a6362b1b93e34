"""Planning on int8 backbone weights (`AgentMem(weights=...)`, `Backbone.with_weights`) on a tiny
Llama: the body's Linear layers are quantized for decoding steps (prompts in bfloat16 where native,
else float32), the embedding table, the LM head and the memory
rows stay float32, learning keeps the float32 backbone, and a bank saved from an int8-planning
AgentMem plans the same once loaded at int8. A backbone makes its int8 or bfloat16 copy once:
every AgentMem on it plans on that one copy, and an adapted backbone makes its own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agentmem import AgentMem
from agentmem import backbone as backbone_module
from agentmem.backbone import WEIGHTS, Int8DecodeLinear
from agentmem.precision import native_bf16
from agentmem.tools import demo
from tests.conftest import plan_signature, tiny_backbone

FAST = {"epochs": 1, "progress": False}
REQUESTS = ["What's the weather in Oslo?", "Convert 20 EUR to USD please"]
QUANTIZED = torch.ao.nn.quantized.dynamic.Linear


def _learn(mem: AgentMem):
    pack = [(demo.TOOLS[name], demo.training_examples(name, n=6)) for name in ("get_weather", "convert_currency")]
    return mem.learn_tools(pack, **FAST)


def _plans(mem: AgentMem) -> list:
    return [plan_signature(p) for p in mem.plan_batch(REQUESTS, tool_choice="any", max_calls=2)]


def _planning(tiny, weights: str):
    """An AgentMem planning at ``weights``, its planner, and the float32 backbone's parameters before."""
    before = {name: p.detach().clone() for name, p in tiny.model.named_parameters()}
    mem = AgentMem(tiny, weights=weights)
    planner = mem._decoder.backbone
    assert mem.weights == weights and planner.weights == weights and mem.backbone.weights == "float32"
    return mem, planner, before


def test_int8_quantizes_the_body_and_keeps_embeddings_head_and_rows_float32(tiny):
    table = tiny.model.get_input_embeddings().weight
    mem, planner, before = _planning(tiny, "int8")
    body = [name for name, m in tiny.model.model.named_modules() if isinstance(m, torch.nn.Linear)]
    wrapped = {name: m for name, m in planner.model.model.named_modules() if isinstance(m, Int8DecodeLinear)}
    assert len(body) == 14 and list(wrapped) == body  # every Linear of the body: 7 per layer
    assert all(isinstance(m.quantized, QUANTIZED) for m in wrapped.values())
    # each wrapper's float32 path is the backbone's own weight, not a copy
    assert all(m.linear.weight is tiny.model.model.get_submodule(n).weight for n, m in wrapped.items())
    # the embedding table and the tied LM head: the very same float32 tensor, not a copy
    assert planner.model.get_input_embeddings().weight is table and table.dtype == torch.float32
    head = planner.model.get_output_embeddings()
    assert type(head) is torch.nn.Linear and head.weight is table
    assert planner.fingerprint == tiny.fingerprint and planner.vocab_size == tiny.vocab_size
    # learning trains float32 rows on the float32 backbone, which stays untouched
    report = _learn(mem)
    assert report.last_loss > 0 and mem.bank.rows.dtype == torch.float32
    assert not any(isinstance(m, (QUANTIZED, Int8DecodeLinear)) for m in tiny.model.modules())
    assert all(torch.equal(p, before[name]) for name, p in tiny.model.named_parameters())
    assert len(mem.plan_batch(REQUESTS, max_calls=1)) == 2


@pytest.mark.parametrize("native", [False, True])
def test_int8_layers_compute_decoding_steps_in_int8_and_prompts_in_float(tiny, native):
    linear = tiny.model.model.layers[0].mlp.up_proj
    torch.manual_seed(0)
    layer = Int8DecodeLinear(linear, torch.rand(linear.in_features) * 4, bfloat16_prompts=native)
    step, prompt = torch.randn(2, 8, linear.in_features), torch.randn(1, 40, linear.in_features)
    with torch.no_grad():
        want = linear(prompt)
        got = layer(prompt)  # a prompt (more rows than a decoding step's batch): the float layer
        if native:  # bfloat16 products where the hardware has them, float32 out
            assert layer.prefill.weight.dtype == torch.bfloat16 and got.dtype == torch.float32
            assert not torch.equal(got, want) and torch.allclose(got, want, atol=0.02 * want.abs().max().item())
        else:  # exactly the float32 layer
            assert layer.prefill is linear and torch.equal(got, want)
        # a decoding step's rows: the int8 product, close to float32 but not it
        got, want = layer(step), linear(step)
    assert not torch.equal(got, want)
    assert torch.allclose(got, want, atol=0.05 * want.abs().max().item())


def test_switching_weights_plans_as_a_fresh_agentmem_at_those_weights(tiny):
    mem = AgentMem(tiny)
    _learn(mem)
    float32 = _plans(mem)
    mem.weights = "int8"
    int8 = _plans(mem)
    other = AgentMem(tiny, weights="int8")
    other.bank, other._specs = mem.bank, mem._specs
    other.weights = "int8"  # a decoder over the shared bank
    assert _plans(other) == int8
    mem.weights = "float32"
    assert mem.weights == "float32" and mem._decoder.backbone is mem.backbone and _plans(mem) == float32


def test_a_bank_saved_from_an_int8_planner_loads_and_plans_identically(tiny, tmp_path: Path):
    mem = AgentMem(tiny, weights="int8")
    _learn(mem)
    before = _plans(mem)
    path = mem.save(tmp_path / "bank")
    meta = json.loads((path / "bank.json").read_text())
    assert meta["backbone"]["fingerprint"] == tiny.fingerprint  # the float32 weights', nothing about int8
    loaded = AgentMem.load(path, backbone=tiny, weights="int8")
    assert loaded.weights == "int8" and torch.equal(loaded.bank.rows, mem.bank.rows)
    assert _plans(loaded) == before
    # and the same bank plans at float32 too (the default)
    assert AgentMem.load(path, backbone=tiny).weights == "float32"


@pytest.mark.parametrize("bad", ["bf16", "INT8", "int4", ""])
def test_bad_weights_raise_naming_the_allowed_values(tiny, tmp_path: Path, bad):
    allowed = ", ".join(WEIGHTS)
    assert allowed == "float32, int8, bfloat16"
    with pytest.raises(ValueError, match=f"allowed: {allowed}"):
        AgentMem(tiny, weights=bad)
    mem = AgentMem(tiny)
    with pytest.raises(ValueError, match=f"allowed: {allowed}"):
        mem.weights = bad
    assert mem.weights == "float32"
    path = mem.save(tmp_path / "bank")
    with pytest.raises(ValueError, match=f"allowed: {allowed}"):
        AgentMem.load(path, backbone=tiny, weights=bad)


def test_bfloat16_casts_the_body_and_keeps_embeddings_head_and_rows_float32(tiny):
    table = tiny.model.get_input_embeddings().weight
    mem, planner, before = _planning(tiny, "bfloat16")
    linear = [m for m in planner.model.model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear) == 14 and all(m.weight.dtype == torch.bfloat16 for m in linear)
    assert planner.model.get_input_embeddings().weight is table and table.dtype == torch.float32
    assert planner.model.get_output_embeddings().weight is table
    # the body's forward runs under autocast: its hidden states come out float32 (final norm), close to float32's
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        got = planner.model.model(input_ids=ids).last_hidden_state
        want = tiny.model.model(input_ids=ids).last_hidden_state
    assert got.dtype == torch.float32 and torch.allclose(got, want, rtol=0.05, atol=0.05)
    report = _learn(mem)  # learning: float32 rows on the untouched float32 backbone
    assert report.last_loss > 0 and mem.bank.rows.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in tiny.model.parameters())
    assert all(torch.equal(p, before[name]) for name, p in tiny.model.named_parameters())
    assert len(mem.plan_batch(REQUESTS, max_calls=1)) == 2
    with pytest.raises(ValueError, match="keep the float32 one"):
        planner.with_weights("int8")


def test_a_bank_saved_from_a_bfloat16_planner_loads_and_plans_identically(tiny, tmp_path: Path):
    mem = AgentMem(tiny, weights="bfloat16")
    _learn(mem)
    before = _plans(mem)
    path = mem.save(tmp_path / "bank")
    assert json.loads((path / "bank.json").read_text())["backbone"]["fingerprint"] == tiny.fingerprint
    loaded = AgentMem.load(path, backbone=tiny, weights="bfloat16")
    assert loaded.weights == "bfloat16" and torch.equal(loaded.bank.rows, mem.bank.rows)
    assert _plans(loaded) == before
    loaded.weights = "float32"
    assert loaded._decoder.backbone is loaded.backbone and loaded.weights == "float32"


def test_agentmems_on_one_backbone_share_one_planning_copy_per_weights(tiny, tokenizer):
    first, second = AgentMem(tiny, weights="bfloat16"), AgentMem(tiny, weights="bfloat16")
    copy = first._decoder.backbone
    assert copy is not tiny and copy is second._decoder.backbone is tiny.with_weights("bfloat16")
    int8 = AgentMem(tiny, weights="int8")._decoder.backbone
    assert int8.weights == "int8" and int8 is not copy and tiny.with_weights("int8") is int8
    first.weights = "float32"
    assert first._decoder.backbone is tiny and tiny.with_weights("float32") is tiny
    first.weights = "bfloat16"  # switching back: the same copy, not a new one
    assert first._decoder.backbone is copy
    # another backbone with the very same weights makes its own copy
    other = tiny_backbone(tokenizer)
    assert other.fingerprint == tiny.fingerprint and other.with_weights("bfloat16") is not copy
    assert "_planners" not in repr(tiny)  # the cache is not shown


def test_adapt_plans_on_a_copy_of_the_adapted_weights_not_the_cached_one(tiny):
    from agentmem.adaptation.corpus import synthetic_examples, synthetic_tools

    mem = AgentMem(tiny, weights="bfloat16")
    before = mem._decoder.backbone
    mem.adapt((synthetic_tools(2, seed=0), synthetic_examples(2, 8, seed=0)), batch_size=4, progress=False, bf16=False)
    after = mem._decoder.backbone
    assert mem.weights == "bfloat16" and mem.backbone is not tiny and after is not before
    assert after is mem.backbone.with_weights("bfloat16") and tiny.with_weights("bfloat16") is before
    # the planner's bfloat16 query projection is the adapted one's, not the base's
    adapted = mem.backbone.model.model.layers[0].self_attn.q_proj.weight
    base = tiny.model.model.layers[0].self_attn.q_proj.weight
    planned = after.model.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(adapted, base)
    assert torch.equal(planned, adapted.to(torch.bfloat16)) and not torch.equal(
        planned, before.model.model.layers[0].self_attn.q_proj.weight
    )


@pytest.mark.skipif(not native_bf16(torch.device("cpu")), reason="prepacking is for a CPU with native bfloat16")
def test_bfloat16_prepacked_layers_plan_and_compute_exactly_as_autocast(tiny, tokenizer, monkeypatch):
    mem, planner, _ = _planning(tiny, "bfloat16")
    linear = [m for m in planner.model.model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linear) == 14 and all("forward" in vars(m) for m in linear)  # every body layer packed
    assert "forward" not in vars(planner.model.get_output_embeddings())  # the float32 head untouched
    _learn(mem)
    packed = _plans(mem)
    # the same weights without packing: autocast's products
    other = tiny_backbone(tokenizer)
    monkeypatch.setattr(backbone_module, "_prepack_bf16_linear", lambda layer: False)
    plain = AgentMem(other, weights="bfloat16")
    unpacked = [m for m in plain._decoder.backbone.model.model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(unpacked) == 14 and not any("forward" in vars(m) for m in unpacked)
    plain.bank, plain._specs = mem.bank, mem._specs
    plain.weights = "bfloat16"  # a decoder over the shared bank
    assert _plans(plain) == packed
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7]])
    with torch.no_grad():
        got = planner.model.model(input_ids=ids).last_hidden_state
        want = plain._decoder.backbone.model.model(input_ids=ids).last_hidden_state
    assert torch.equal(got, want)
