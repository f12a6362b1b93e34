"""Grouped-query attention that reads each key/value head in place instead of copying it.

transformers' ``sdpa`` attention, given an attention mask and more than one query per
sequence, copies every key/value head once per query head that shares it (``repeat_kv``)
before calling `torch.nn.functional.scaled_dot_product_attention`, because CUDA's fused
kernels take no mask with grouped heads. agentmem masks every such pass: a packed batch's
step (`agentmem.packing.PackedCache`), a draft checked in one pass (`agentmem.decoding.drafts`),
a prompt's prefill. On the CPU the fused kernel takes grouped heads with a mask
(``enable_gqa=True``) and gives the same numbers without the copy; the copy grows with the
cache, so the saving is largest in batches and on long conversations (BENCHMARKS.md,
"Grouped key/value heads read in place": `bench_drafts --attention agentmem_sdpa,sdpa`).

`grouped_sdpa` is registered with transformers as ``agentmem_sdpa``: ``sdpa`` with that one
change, on the CPU, where nothing is being trained through the attention (an inference pass;
with gradients, the in-place kernel sums the key/value gradients of a group in another order,
so row training stays bit for bit what it was). `use_grouped_sdpa` switches a model to it
when the model uses ``sdpa``. Outputs are identical to ``sdpa``'s (checked in the tests).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import AttentionInterface, PreTrainedModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

__all__ = ["GROUPED_SDPA", "grouped_sdpa", "use_grouped_sdpa"]

#: The name `grouped_sdpa` is registered under with transformers.
GROUPED_SDPA = "agentmem_sdpa"


def grouped_sdpa(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' ``sdpa`` attention, with grouped key/value heads read in place on the CPU
    when a mask is given to more than one query and no gradient flows (else ``sdpa`` itself)."""
    in_place = (
        getattr(module, "num_key_value_groups", 1) > 1
        and query.device.type == "cpu"
        and query.shape[2] > 1  # one query: sdpa already folds the group into the queries
        and attention_mask is not None
        and kwargs.get("position_bias") is None
        and kwargs.get("softcap") is None
        and not (torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad))
    )
    if not in_place:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    output = torch.nn.functional.scaled_dot_product_attention(
        query,
        key,
        value,
        attn_mask=attention_mask,
        dropout_p=kwargs.get("dropout", 0.0),
        scale=kwargs.get("scaling"),
        enable_gqa=True,
    )
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(GROUPED_SDPA, grouped_sdpa)
AttentionMaskInterface.register(GROUPED_SDPA, sdpa_mask)  # the masks sdpa gets


def use_grouped_sdpa(model: PreTrainedModel) -> None:
    """Switches ``model`` from ``sdpa`` attention to `grouped_sdpa` (same outputs, less
    copying); a model on any other attention is left as it is."""
    if getattr(model.config, "_attn_implementation", None) == "sdpa":
        model.set_attn_implementation(GROUPED_SDPA)
