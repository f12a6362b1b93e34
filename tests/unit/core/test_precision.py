"""Learning under bfloat16 autocast (`TrainConfig.bf16`, `agentmem.precision`) on a tiny Llama:
what is trained stays float32, the backbone comes back untouched, a bank learned so plans
as any bank."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from agentmem import AgentMem, precision
from agentmem.adaptation import lora
from agentmem.tools import demo
from tests.conftest import plan_signature

FAST = {"epochs": 1, "progress": False}
REQUESTS = ["What's the weather in Oslo?", "Convert 20 EUR to USD please"]


def _learn(mem: AgentMem, bf16: bool | None):
    pack = [(demo.TOOLS[name], demo.training_examples(name, n=6)) for name in ("get_weather", "convert_currency")]
    return mem.learn_tools(pack, bf16=bf16, **FAST)


def test_both_trainers_ask_one_helper_whether_bf16_is_native():
    assert lora.native_bf16 is precision.native_bf16
    assert isinstance(precision.native_bf16(torch.device("cpu")), bool)


@pytest.mark.parametrize("bf16", [False, True])
def test_rows_and_optimizer_stay_float32_and_the_backbone_is_untouched(tiny, monkeypatch, bf16):
    seen: list[tuple[torch.dtype, ...]] = []

    class SpyAdamW(torch.optim.AdamW):
        def step(self, closure=None):  # type: ignore[override]
            result = super().step(closure)
            for group in self.param_groups:
                for p in group["params"]:
                    state = self.state[p]
                    seen.append((p.dtype, p.grad.dtype, state["exp_avg"].dtype, state["exp_avg_sq"].dtype))
            return result

    monkeypatch.setattr(torch.optim, "AdamW", SpyAdamW)
    # what the backbone's linear layers compute with while learning
    products: set[tuple[torch.dtype, torch.dtype]] = set()
    probe = tiny.model.model.layers[0].mlp.down_proj
    hook = probe.register_forward_hook(lambda m, args, out: products.add((m.weight.dtype, out.dtype)))
    before = {name: (p, p.detach().clone()) for name, p in tiny.model.named_parameters()}

    mem = AgentMem(tiny)
    report = _learn(mem, bf16)
    hook.remove()

    assert report.bf16 is bf16 and mem._training["get_weather"]["bf16"] is bf16
    assert mem.bank.rows.dtype == torch.float32 and torch.isfinite(mem.bank.rows).all()
    assert seen and set(seen) == {(torch.float32,) * 4}
    assert products == ({(torch.bfloat16, torch.bfloat16)} if bf16 else {(torch.float32, torch.float32)})
    # the very same float32 tensors are back, bit-identical, still frozen
    after = dict(tiny.model.named_parameters())
    for name, (param, value) in before.items():
        assert after[name] is param and param.dtype == torch.float32 and not param.requires_grad
        assert torch.equal(param, value)
    assert tiny.model.get_output_embeddings().weight is tiny.model.get_input_embeddings().weight


def test_bf16_learns_rows_close_to_float32(tiny, tokenizer):
    from tests.conftest import tiny_backbone

    rows = {}
    for bf16 in (False, True):
        mem = AgentMem(tiny_backbone(tokenizer))
        _learn(mem, bf16)
        rows[bf16] = mem.bank.rows
    assert not torch.equal(rows[False], rows[True])  # it did run in another precision
    assert torch.nn.functional.cosine_similarity(rows[False], rows[True], dim=-1).min() > 0.99


def test_a_bank_learned_in_bf16_saves_loads_and_plans_like_the_live_one(tiny, tmp_path: Path):
    mem = AgentMem(tiny)
    _learn(mem, True)
    before = mem.plan_batch(REQUESTS, tool_choice="any", max_calls=2)
    path = mem.save(tmp_path / "bank")
    meta = json.loads((path / "bank.json").read_text())
    assert all(tool["training"]["bf16"] is True for tool in meta["tools"])
    loaded = AgentMem.load(path, backbone=tiny)
    assert loaded.bank.rows.dtype == torch.float32 and torch.equal(loaded.bank.rows, mem.bank.rows)
    after = loaded.plan_batch(REQUESTS, tool_choice="any", max_calls=2)
    assert [plan_signature(p) for p in after] == [plan_signature(p) for p in before]


def test_none_follows_the_hardware_and_true_works_without_native_bf16(tiny, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert _learn(AgentMem(tiny), None).bf16 is False
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    assert _learn(AgentMem(tiny), None).bf16 is True
    # explicit True on a machine without native bfloat16: autocast works on any CPU
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    mem = AgentMem(tiny)
    report = _learn(mem, True)
    assert report.bf16 is True and report.last_loss > 0
    assert mem.bank.rows.dtype == torch.float32 and len(mem.plan_batch(REQUESTS, max_calls=1)) == 2


def test_native_bf16_reads_the_cpu_flags(monkeypatch):
    cpu = torch.device("cpu")
    for flags, native in [("fpu avx512f amx_bf16 amx_tile", True), ("fpu avx512_bf16", True), ("fpu avx2", False)]:
        monkeypatch.setattr(precision.Path, "read_text", lambda self, flags=flags: f"flags\t: {flags}\n")
        assert precision.native_bf16(cpu) is native

    def unreadable(self):
        raise OSError("no /proc here")

    monkeypatch.setattr(precision.Path, "read_text", unreadable)
    assert precision.native_bf16(cpu) is False
    assert precision.native_bf16(torch.device("meta")) is False


def test_bf16_weights_puts_the_originals_back_even_on_an_error(tiny):
    model = tiny.model
    originals = {name: p for name, p in model.named_parameters()}
    with pytest.raises(RuntimeError, match="stop"):
        with precision.bf16_weights(model):
            assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
            # tied output layer: its own bfloat16 copy; the input embeddings stay float32
            assert model.get_output_embeddings().weight.dtype == torch.bfloat16
            assert model.get_input_embeddings().weight.dtype == torch.float32
            raise RuntimeError("stop")
    assert all(model.get_parameter(name) is p for name, p in originals.items())
    assert all(p.dtype == torch.float32 for p in originals.values())
    with precision.bf16_weights(model, enabled=False):
        assert model.model.layers[0].self_attn.q_proj.weight is originals["model.layers.0.self_attn.q_proj.weight"]
