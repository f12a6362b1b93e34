"""The packed key/value cache of `Batch` on a tiny Llama: who sees which columns, dead
columns compacted away, the shared prefix and chunked prefill leaving plans unchanged."""

from __future__ import annotations

import torch

from agentmem.decoding import MODEL_LOCK, Batch, DecodeSettings
from agentmem.encoding import prompt_ids
from agentmem.packing import GONE, SHARED, PackedCache
from tests.unit.core.test_scheduler import REQUESTS, _signature, mem  # noqa: F401 (a fixture)


def _cache(tiny) -> PackedCache:
    return PackedCache(tiny.model.config, torch.float32, torch.device("cpu"))


def test_a_token_sees_its_own_earlier_columns_and_the_shared_prefix_when_it_starts_with_it(tiny):
    cache = _cache(tiny)
    cache.append(torch.tensor([SHARED, SHARED]), torch.tensor([0, 1]), torch.tensor([False, False]))
    mask = cache.append(torch.tensor([1, 1, 2]), torch.tensor([2, 3, 0]), torch.tensor([True, True, False]))
    seen = mask[0, 0] == 0
    assert seen.tolist() == [
        [True, True, True, False, False],  # row 1's first token: the prefix and itself
        [True, True, True, True, False],  # its second: the prefix, its first and itself
        [False, False, False, False, True],  # row 2 does not start with the prefix
    ]


def test_columns_of_sequences_gone_are_compacted_once_they_outnumber_the_live_ones(tiny):
    cache = _cache(tiny)
    cache.append(torch.tensor([1, 2, 2, 3]), torch.tensor([0, 0, 1, 0]), torch.zeros(4, dtype=torch.bool))
    heads, dim = tiny.model.config.num_key_value_heads, tiny.model.config.head_dim
    for layer in cache.layers:
        layer.update(torch.arange(4.0).view(1, 1, 4, 1).expand(1, heads, 4, dim), torch.zeros(1, heads, 4, dim))
    cache.release([2])
    assert cache.length == 4 and cache.owner.tolist() == [1, GONE, GONE, 3]  # half dead: kept
    cache.release([1])
    assert cache.length == 1 and cache.owner.tolist() == [3]
    assert float(cache.layers[0].keys[0, 0, 0, 0]) == 3.0  # row 3's column moved first


def test_shared_prefix_and_chunked_prefill_leave_plans_unchanged(mem, monkeypatch):  # noqa: F811
    decoder, settings = mem._decoder, DecodeSettings(tool_choice="auto", max_text_tokens=12)
    prompts = [prompt_ids(mem.backbone.tokenizer, r) for r in REQUESTS]
    prefix, _ = decoder.shared_prefix()
    assert prefix and all(tuple(p[: len(prefix)]) == prefix for p in prompts)

    def plans(prefill_tokens: int) -> list:
        with MODEL_LOCK:
            batch = Batch(decoder, prefill_tokens=prefill_tokens)
            rows = batch.add(prompts, [settings] * len(prompts), REQUESTS, [None] * len(prompts))
            while batch.rows:
                batch.step()
        return [_signature(r.plan) for r in rows]

    shared = plans(256)
    assert plans(3) == shared  # prompts fed 3 tokens a step
    monkeypatch.setattr(decoder, "shared_prefix", lambda: ((), []))
    assert plans(256) == shared  # every prompt prefilled whole


def test_a_prompt_with_its_own_system_message_is_prefilled_whole_beside_one_that_shares(mem):  # noqa: F811
    own = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "lights on"}]
    tokenizer = mem.backbone.tokenizer
    with MODEL_LOCK:
        batch = Batch(mem._decoder)
        rows = batch.add(
            [prompt_ids(tokenizer, own), prompt_ids(tokenizer, "lights on")],
            [DecodeSettings()] * 2,
            ["lights on"] * 2,
            [None] * 2,
        )
        while batch.rows:
            batch.step()
    assert [r.slot.shared for r in rows] == [False, True]
    assert [_signature(r.plan) for r in rows] == [_signature(mem.plan(own)), _signature(mem.plan("lights on"))]
