"""Export of a bank learned on the real backbone: its vocabulary needs no filler rows and the
exported checkpoint computes agentmem's logits."""

from __future__ import annotations

import pytest
import torch

from agentmem import AgentMem
from agentmem.export import export_checkpoint, tool_token
from agentmem.tools import demo
from tests.unit.core.test_export import _agentmem_logits, _load, _plan_sequence


@pytest.mark.backbone
def test_real_backbone_export_keeps_agentmem_logits(smollm, tmp_path):
    assert len(smollm.tokenizer) == smollm.model.config.vocab_size == smollm.vocab_size  # no filler needed
    mem = AgentMem(smollm)
    mem.learn_tool(demo.TOOLS["get_weather"], demo.training_examples("get_weather", n=2), epochs=1, progress=False)
    path = export_checkpoint(mem, tmp_path / "export")
    model, exported = _load(path)
    assert exported.convert_tokens_to_ids(tool_token("get_weather")) == mem.memory_token_id("get_weather") == 49152
    ids = _plan_sequence(mem, ["get_weather"])
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, _agentmem_logits(mem, ids), atol=1e-4, rtol=1e-4)
    assert smollm.vocab_size == 49152 and smollm.model.get_input_embeddings().weight.shape[0] == 49152  # untouched
