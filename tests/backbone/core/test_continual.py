"""Continual learning on the real backbone (adapted): rehearsal keeps old requests on old rows."""

from __future__ import annotations

import pytest
import torch

from agentmem import AgentMem
from agentmem.adaptation.corpus import synthetic_examples, synthetic_tools


@pytest.mark.backbone
def test_rehearsal_keeps_old_requests_routed_to_old_tools_on_the_real_backbone(smollm_adapted, tmp_path):
    """Round 2 learns the siblings of round 1's tools (same object, other verb: the closest
    a new tool comes to an old one); rehearsal must keep round 1's held-out requests on
    their own tools' rows, by a wider logit margin over the new rows than without it."""
    from agentmem.encoding import prompt_ids
    from agentmem.memory import logits
    from agentmem.training import encode_prefixes

    tools = synthetic_tools(60, seed=0, split="eval")
    by_object: dict[str, list[str]] = {}
    for name in tools:
        by_object.setdefault(name.split("_", 1)[1], []).append(name)
    pairs = [names for names in by_object.values() if len(names) == 2][:3]
    old, new = [p[0] for p in pairs], [p[1] for p in pairs]

    def requests(names, n, sample_seed):
        examples = synthetic_examples(names, n, seed=0, split="eval", multi=0.0, sample_seed=sample_seed)
        return [(tools[name], [e for e in examples if e["calls"][0]["name"] == name]) for name in names]

    seen = {e["query"] for _, examples in requests(old, 30, 0) for e in examples}
    held_out = [e for _, examples in requests(old, 40, 1) for e in examples if e["query"] not in seen][:12]
    mem = AgentMem(smollm_adapted)
    # the library's learning settings (5 epochs): at 3 epochs under the linear schedule, the
    # default since 2026-12-07, the margins came out 4.9 without rehearsal and 3.3 with it
    mem.learn_tools(requests(old, 30, 0), progress=False)
    bank = mem.save(tmp_path / "round1")
    prefixes = encode_prefixes(smollm_adapted, [prompt_ids(smollm_adapted.tokenizer, e["query"]) for e in held_out])
    hidden = torch.stack([p.last_hidden for p in prefixes])
    margins = {}
    for rehearse in (0, 8):
        mem = AgentMem.load(bank, backbone=smollm_adapted)
        mem.learn_tools(requests(new, 30, 0), progress=False, rehearse=rehearse)
        scores = logits(smollm_adapted, mem.bank.rows, hidden)
        gold = scores[torch.arange(len(held_out)), [mem.memory_token_id(e["calls"][0]["name"]) for e in held_out]]
        rival = scores[:, [mem.memory_token_id(name) for name in new]].max(dim=-1).values
        margins[rehearse] = (gold - rival).mean().item()
    assert margins[8] > margins[0] + 1.0, margins
