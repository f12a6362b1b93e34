from __future__ import annotations

import pytest
import torch

from agentmem import memory
from agentmem.errors import DuplicateToolError, UnknownToolError
from agentmem.memory import MemoryBank


def test_empty_bank_is_a_no_op(tiny):
    ids = torch.tensor([tiny.tokenizer("What's the weather in Paris?")["input_ids"]])
    bank = MemoryBank(tiny.hidden_size)
    with torch.no_grad():
        expected = tiny.model(input_ids=ids).logits
        hidden = memory.decoder(tiny)(inputs_embeds=memory.embed(tiny, bank.rows, ids)).last_hidden_state
        got = memory.logits(tiny, bank.rows, hidden)
    assert got.shape == expected.shape
    assert torch.equal(got, expected)


def test_rows_are_spliced_in_and_appended_to_logits(tiny):
    bank = MemoryBank(tiny.hidden_size)
    bank.add(["a", "b"], torch.randn(tiny.hidden_size))
    bank.rows[1] = torch.randn(tiny.hidden_size)
    ids = torch.tensor([[5, tiny.vocab_size + 1, 7, tiny.vocab_size]])
    embeds = memory.embed(tiny, bank.rows, ids)
    table = tiny.model.get_input_embeddings().weight
    assert torch.equal(embeds[0, 0], table[5])
    assert torch.equal(embeds[0, 1], bank.rows[1])
    assert torch.equal(embeds[0, 3], bank.rows[0])
    hidden = torch.randn(3, tiny.hidden_size)
    out = memory.logits(tiny, bank.rows, hidden)
    assert out.shape == (3, tiny.vocab_size + 2)
    assert torch.allclose(out[:, -2:], hidden @ bank.rows.T)


def test_logits_at_computes_the_columns_asked_for_alone(tiny):
    bank = MemoryBank(tiny.hidden_size)
    bank.add(["a", "b"], torch.randn(tiny.hidden_size))
    bank.rows[1] = torch.randn(tiny.hidden_size)
    hidden = torch.randn(3, tiny.hidden_size)
    ids = torch.tensor([tiny.vocab_size + 1, 7, 0, tiny.vocab_size, tiny.vocab_size - 1])
    with torch.no_grad():
        full = memory.logits(tiny, bank.rows, hidden)
        assert torch.allclose(memory.logits_at(tiny, bank.rows, hidden, ids), full[:, ids], atol=1e-5)
        assert torch.allclose(memory.logits_at(tiny, bank.rows, hidden[0], ids), full[0, ids], atol=1e-5)


def test_new_rows_start_at_the_vocabulary_mean(tiny):
    mean = memory.mean_embedding(tiny)
    assert torch.allclose(mean, tiny.model.get_input_embeddings().weight.mean(0))
    bank = MemoryBank(tiny.hidden_size)
    bank.add(["a"], mean)
    assert torch.equal(bank.rows[0], mean)


def test_bank_names_errors_and_removal():
    bank = MemoryBank(4)
    bank.add(["a", "b", "c"], torch.zeros(4))
    bank.rows[2] = torch.ones(4)
    with pytest.raises(DuplicateToolError, match="'b'"):
        bank.add(["b"], torch.zeros(4))
    with pytest.raises(UnknownToolError, match="unknown tool 'zz'.*a, b, c"):
        bank.index("zz")
    bank.remove("b")
    assert bank.names == ["a", "c"]
    assert torch.equal(bank.rows[1], torch.ones(4))
    assert bank.mean_norm() == pytest.approx(1.0)
    assert bank.mean_norm(exclude=[0, 1]) is None


def test_renormalize_sets_every_row_to_the_target_norm():
    rows = torch.randn(5, 8) * torch.arange(1, 6).unsqueeze(1)
    memory.renormalize_(rows, 3.0)
    assert torch.allclose(rows.norm(dim=-1), torch.full((5,), 3.0))
    zero = torch.zeros(1, 8)
    memory.renormalize_(zero, 3.0)  # eps guard: no NaN
    assert torch.equal(zero, torch.zeros(1, 8))
