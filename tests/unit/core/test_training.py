from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from agentmem import memory
from agentmem.encoding import EncodedExample
from agentmem.memory import MemoryBank
from agentmem.training import TrainConfig, _length_groups, batch_loss, encode_prefixes, train_rows


def _examples(tiny, n_tools: int, first_row: int = 0) -> list[EncodedExample]:
    tok = tiny.tokenizer
    out = []
    for i in range(8):
        row = first_row + i % n_tools
        prefix = tok(f"request number {i} for tool {row}, please")["input_ids"][: 4 + i]
        args = tok('{"x":' + str(i) + "}")["input_ids"]
        out.append(EncodedExample(prefix=tuple(prefix), target=(tiny.vocab_size + row, *args, tiny.eos_token_id)))
    return out


def _naive_loss(tiny, rows, examples):
    """Full-sequence reference: whole sequences through the model, loss on target tokens
    (for a routing-only example, on its memory tokens and final end of plan)."""
    total, count = 0.0, 0
    for ex in examples:
        ids = torch.tensor([ex.prefix + ex.target])
        hidden = memory.decoder(tiny)(inputs_embeds=memory.embed(tiny, rows, ids)).last_hidden_state[0]
        start = len(ex.prefix) - 1
        logits = memory.logits(tiny, rows, hidden)[start : start + len(ex.target)]
        labels = torch.tensor(ex.target)
        if ex.routing_only:
            scored = (labels >= tiny.vocab_size) | (torch.arange(len(labels)) == len(labels) - 1)
            logits, labels = logits[scored], labels[scored]
        total = total + F.cross_entropy(logits, labels, reduction="sum")
        count += len(labels)
    return total / count


def test_cached_prefix_loss_equals_full_sequence_loss(tiny):
    bank = MemoryBank(tiny.hidden_size)
    bank.add(["a", "b"], torch.randn(tiny.hidden_size))
    examples = _examples(tiny, 2)
    prefixes = encode_prefixes(tiny, [e.prefix for e in examples], batch_size=3)
    with torch.no_grad():
        loss, count = batch_loss(tiny, bank.rows, examples, prefixes)
        reference = _naive_loss(tiny, bank.rows, examples)
    assert count == sum(len(e.target) for e in examples)
    assert torch.allclose(loss, reference, atol=1e-5)


def test_prefixes_batched_by_length_come_back_in_the_prompts_order(tiny):
    tok = tiny.tokenizer
    prompts = [tok("word " * n)["input_ids"] for n in (30, 3, 17, 4, 29, 16, 2)]
    together = encode_prefixes(tiny, prompts, batch_size=4)
    for prompt, prefix in zip(prompts, together):
        (alone,) = encode_prefixes(tiny, [prompt])
        assert prefix.length == len(prompt)
        assert torch.allclose(prefix.last_hidden, alone.last_hidden, atol=1e-5)
        assert torch.allclose(prefix.keys[-1], alone.keys[-1], atol=1e-5)


def test_length_groups_cover_every_prompt_once_within_the_padding_allowed():
    lengths = [30, 3, 17, 4, 29, 16, 2, 31, 30, 30, 30]
    groups = _length_groups(lengths, batch_size=4)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len(g) <= 4 for g in groups)
    for group in groups:
        padded = max(lengths[i] for i in group) * len(group)
        assert len(group) == 1 or padded <= 1.25 * sum(lengths[i] for i in group)
    assert [len(g) for g in groups if min(lengths[i] for i in g) >= 29] == [4, 2]  # the six long ones batch together


def test_routing_only_examples_score_memory_tokens_and_the_end_of_plan(tiny):
    bank = MemoryBank(tiny.hidden_size)
    bank.add(["a", "b"], torch.randn(tiny.hidden_size))
    examples = _examples(tiny, 2)
    examples[1::2] = [replace(e, routing_only=True) for e in examples[1::2]]  # mixed in one batch
    prefixes = encode_prefixes(tiny, [e.prefix for e in examples])
    with torch.no_grad():
        loss, count = batch_loss(tiny, bank.rows, examples, prefixes)
        reference = _naive_loss(tiny, bank.rows, examples)
    assert count == sum(len(e.target) for e in examples[::2]) + 2 * len(examples[1::2])
    assert torch.allclose(loss, reference, atol=1e-5)


def _state(tiny):
    return {k: v.clone() for k, v in tiny.model.state_dict().items()}


def test_only_the_new_rows_change(tiny):
    bank = MemoryBank(tiny.hidden_size)
    bank.add(["old1", "old2"], torch.randn(tiny.hidden_size))
    bank.rows[1] *= 2
    old = bank.rows.clone()
    weights = _state(tiny)
    new = bank.add(["new"], memory.mean_embedding(tiny))
    report = train_rows(tiny, bank, new, _examples(tiny, 3), TrainConfig(epochs=2, progress=False))
    assert torch.equal(bank.rows[:2], old)  # bit-identical
    assert not torch.equal(bank.rows[2], memory.mean_embedding(tiny))
    for key, value in tiny.model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert report.steps == 4 and report.tools == ["new"]
    assert all(not p.requires_grad for p in tiny.model.parameters())


def test_new_rows_are_renormalised_to_the_old_rows_mean_norm(tiny):
    bank = MemoryBank(tiny.hidden_size)
    bank.add(["old1", "old2"], torch.randn(tiny.hidden_size))
    bank.rows[1] *= 3
    target = bank.rows.norm(dim=-1).mean().item()
    new = bank.add(["n1", "n2"], memory.mean_embedding(tiny))
    train_rows(tiny, bank, new, _examples(tiny, 4), TrainConfig(epochs=1, progress=False))
    assert torch.allclose(bank.rows[2:].norm(dim=-1), torch.full((2,), target), rtol=1e-5)

    unnormalised = MemoryBank(tiny.hidden_size)
    unnormalised.add(["old1", "old2"], torch.randn(tiny.hidden_size))
    unnormalised.rows = bank.rows[:2].clone()
    new = unnormalised.add(["n1", "n2"], memory.mean_embedding(tiny))
    train_rows(tiny, unnormalised, new, _examples(tiny, 4), TrainConfig(epochs=1, renormalize=False, progress=False))
    assert not torch.allclose(unnormalised.rows[2:].norm(dim=-1), torch.full((2,), target), rtol=1e-3)


def test_training_reduces_the_loss_and_is_reproducible(tiny):
    def run(cache_bytes):
        bank = MemoryBank(tiny.hidden_size)
        rows = bank.add(["a", "b"], memory.mean_embedding(tiny))
        config = TrainConfig(epochs=6, lr=2e-2, progress=False, prefix_cache_bytes=cache_bytes)
        report = train_rows(tiny, bank, rows, _examples(tiny, 2), config)
        return bank.rows, report

    rows1, report1 = run(1 << 30)
    rows2, _ = run(1 << 30)
    rows3, _ = run(0)  # prompts re-encoded every step instead of cached
    assert report1.last_loss < report1.first_loss
    assert torch.equal(rows1, rows2)
    assert torch.allclose(rows1, rows3, atol=1e-4)
    assert report1.tokens_per_second > 0 and report1.seconds > 0


def test_only_prompts_holding_a_row_in_training_are_encoded_per_step(tiny):
    from agentmem.training import _cache_bytes_per_token, _prefixes_once

    bank = MemoryBank(tiny.hidden_size)
    bank.add(["old", "new"], torch.randn(tiny.hidden_size))
    examples = _examples(tiny, 1)
    old_call, new_call = tiny.vocab_size, tiny.vocab_size + 1
    examples[1] = replace(examples[1], prefix=(*examples[1].prefix, old_call))  # an earlier call of a frozen tool
    examples[2] = replace(examples[2], prefix=(*examples[2].prefix, new_call))  # of the tool being learned
    cached = _prefixes_once(tiny, examples, bank.rows, [1], TrainConfig())
    assert [c is None for c in cached] == [i == 2 for i in range(len(examples))]
    assert cached[1].length == len(examples[1].prefix)
    assert all(c is None for c in _prefixes_once(tiny, examples, bank.rows, [1], TrainConfig(prefix_cache_bytes=1)))
    # a budget for the first two prompts keeps those two, not none of them
    budget = (len(examples[0].prefix) + len(examples[1].prefix)) * _cache_bytes_per_token(tiny)
    partly = _prefixes_once(tiny, examples, bank.rows, [1], TrainConfig(prefix_cache_bytes=budget))
    assert [c is not None for c in partly] == [i < 2 for i in range(len(examples))]
    assert torch.equal(partly[1].keys[0], cached[1].keys[0])


def test_averaged_runs_keep_the_average_of_the_runs_each_order_would_learn_alone(tiny):
    def learned(**config) -> tuple[torch.Tensor, object]:
        bank = MemoryBank(tiny.hidden_size)
        new = bank.add(["a", "b"], memory.mean_embedding(tiny))
        report = train_rows(tiny, bank, new, _examples(tiny, 2), TrainConfig(epochs=2, progress=False, **config))
        return bank.rows[new].clone(), report

    alone = torch.stack([learned(seed=seed, renormalize=False)[0] for seed in (3, 4, 5)])
    averaged, report = learned(seed=3, averaged_runs=3, renormalize=False)
    assert torch.allclose(averaged, memory.average_rows(alone), atol=1e-6)
    assert not torch.allclose(averaged, alone[0], atol=1e-3)  # the runs differ, so the average is a fourth row
    assert report.runs == 3 and report.steps == 3 * 2 * 2 and "3 runs averaged" in str(report)


def test_average_rows_rescales_each_row_to_the_mean_of_its_runs_norms():
    runs = torch.tensor([[[3.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 3.0]]])  # 2 runs of 2 rows
    averaged = memory.average_rows(runs)
    assert torch.allclose(averaged.norm(dim=-1), torch.tensor([2.0, 2.0]))
    assert torch.allclose(averaged[0] / averaged[0].norm(), torch.tensor([3.0, 1.0]) / 10**0.5)


def test_averaged_runs_below_one_are_refused():
    with pytest.raises(ValueError, match="averaged_runs must be >= 1"):
        TrainConfig(averaged_runs=0)


def test_a_linear_schedule_warms_up_over_a_tenth_of_each_run_then_decays_to_zero(tiny, monkeypatch):
    seen: list[float] = []
    step = torch.optim.AdamW.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", spy)
    examples = _examples(tiny, 2) * 5  # 40 examples: 10 steps an epoch
    config = TrainConfig(epochs=2, lr=1e-2, lr_schedule="linear", averaged_runs=2, progress=False)
    bank = MemoryBank(tiny.hidden_size)
    train_rows(tiny, bank, bank.add(["a", "b"], memory.mean_embedding(tiny)), examples, config)
    total, warmup = 20, 2  # per run
    expected = [1e-2 * (k / warmup if k < warmup else (total - k) / (total - warmup)) for k in range(total)]
    assert seen == pytest.approx(expected * 2)  # each averaged run has its own schedule
    assert seen[0] == 0.0 and seen[total - 1] == pytest.approx(1e-2 / 18)

    seen.clear()
    train_rows(tiny, bank, [0, 1], examples, replace(config, lr_schedule="constant", averaged_runs=1))
    assert seen == [1e-2] * total


def test_an_unknown_lr_schedule_is_refused():
    with pytest.raises(ValueError, match="lr_schedule must be one of constant, linear, got 'cosine'"):
        TrainConfig(lr_schedule="cosine")
