"""Grouped-query attention read in place (`agentmem.attention`): a backbone uses it, and it
computes what transformers' ``sdpa`` computes, packed masks and gradients included."""

from __future__ import annotations

import torch

from agentmem.attention import GROUPED_SDPA
from agentmem.backbone import cache_argument
from agentmem.packing import PackedCache


def _packed_pass(tiny, ids: list[int], owners: list[int]) -> torch.Tensor:
    """Logits of one forward pass of several sequences packed into one, as `Batch` runs it."""
    cache = PackedCache(tiny.model.config, torch.float32, torch.device("cpu"))
    positions = [sum(o == owner for o in owners[:i]) for i, owner in enumerate(owners)]
    mask = cache.append(torch.tensor(owners), torch.tensor(positions), torch.zeros(len(ids), dtype=torch.bool))
    out = tiny.model(
        input_ids=torch.tensor([ids]),
        attention_mask=mask,
        position_ids=torch.tensor([positions]),
        **cache_argument(tiny.model, cache),
        use_cache=True,
    )
    return out.logits


def test_a_backbone_attends_with_grouped_heads_read_in_place(tiny):
    assert tiny.model.config.num_key_value_heads < tiny.model.config.num_attention_heads
    assert tiny.model.config._attn_implementation == GROUPED_SDPA


def test_a_packed_pass_gives_the_logits_of_transformers_sdpa_bit_for_bit(tiny, monkeypatch):
    ids, owners = [5, 17, 300, 4000, 9, 12, 77], [1, 1, 1, 2, 2, 3, 1]
    sdpa, grouped_calls = torch.nn.functional.scaled_dot_product_attention, []

    def spy(*args, **kwargs):
        grouped_calls.append(kwargs.get("enable_gqa", False))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    with torch.inference_mode():
        grouped = _packed_pass(tiny, ids, owners)
        assert grouped_calls == [True] * tiny.model.config.num_hidden_layers  # read in place, every layer
        tiny.model.set_attn_implementation("sdpa")
        copied = _packed_pass(tiny, ids, owners)
    assert torch.equal(grouped, copied)


def test_with_gradients_attention_is_transformers_sdpa_itself(tiny):
    """Row training's numbers stay what they were: with a gradient flowing, the in-place
    kernel would sum a group's key/value gradients in another order."""
    ids, owners = [5, 17, 300, 4000, 9], [1, 1, 2, 2, 1]
    embeds = tiny.model.get_input_embeddings()(torch.tensor([ids])).detach().requires_grad_(True)

    def gradient() -> torch.Tensor:
        embeds.grad = None
        cache = PackedCache(tiny.model.config, torch.float32, torch.device("cpu"))
        positions = [0, 1, 0, 1, 2]
        mask = cache.append(torch.tensor(owners), torch.tensor(positions), torch.zeros(5, dtype=torch.bool))
        out = tiny.model(
            inputs_embeds=embeds,
            attention_mask=mask,
            position_ids=torch.tensor([positions]),
            **cache_argument(tiny.model, cache),
        )
        out.logits.square().mean().backward()
        return embeds.grad.clone()

    grouped = gradient()
    tiny.model.set_attn_implementation("sdpa")
    assert torch.equal(grouped, gradient())
