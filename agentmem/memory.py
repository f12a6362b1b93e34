"""The memory bank: one row per tool, spliced into a frozen backbone without resizing it.

Memory-token ids sit past the backbone's vocabulary (``vocab_size + row``). On the way in, a
row replaces the embedding at its token's positions; on the way out, ``h @ rows.T`` is
appended to the backbone's logits. Rows are tied: the same vector is the token's input
embedding and its output (routing) row. With no memory token in the input, the backbone's
logits are untouched, so an empty bank is a no-op.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from agentmem.backbone import Backbone, cache_argument
from agentmem.errors import DuplicateToolError, UnknownToolError

NORM_EPS = 1e-8


class MemoryBank:
    """Names and rows of the memory tokens, in row order.

    Args:
        hidden_size: Width of a row (the backbone's hidden size).
    """

    def __init__(self, hidden_size: int) -> None:
        self.names: list[str] = []
        self.rows = torch.zeros(0, hidden_size)

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def index(self, name: str) -> int:
        """Row of a tool; raises UnknownToolError naming the known tools."""
        try:
            return self.names.index(name)
        except ValueError:
            known = ", ".join(self.names) or "none yet"
            raise UnknownToolError(f"unknown tool {name!r}; the bank holds: {known}") from None

    def add(self, names: Sequence[str], init: torch.Tensor) -> list[int]:
        """Appends one row per name, each initialised to ``init``; returns their indices."""
        for name in names:
            if name in self.names:
                raise DuplicateToolError(f"tool {name!r} is already in the bank; forget it first to relearn it")
        if len(set(names)) != len(names):
            raise DuplicateToolError(f"duplicate tool names in {list(names)}")
        start = len(self.names)
        self.names.extend(names)
        new = init.to(self.rows).expand(len(names), -1)
        self.rows = torch.cat([self.rows, new], dim=0)
        return list(range(start, start + len(names)))

    def remove(self, name: str) -> None:
        """Drops a tool's row; later rows move up one index."""
        i = self.index(name)
        del self.names[i]
        self.rows = torch.cat([self.rows[:i], self.rows[i + 1 :]], dim=0)

    def mean_norm(self, exclude: Sequence[int] = ()) -> float | None:
        """Mean L2 norm of the rows not in ``exclude``; None when there are none."""
        keep = [i for i in range(len(self.names)) if i not in set(exclude)]
        if not keep:
            return None
        return self.rows[keep].norm(dim=-1).mean().item()


def mean_embedding(backbone: Backbone) -> torch.Tensor:
    """The initial value of a new memory row: the mean of the vocabulary embeddings."""
    return backbone.model.get_input_embeddings().weight.detach().float().mean(dim=0).cpu()


def renormalize_(rows: torch.Tensor, target_norm: float) -> None:
    """In place: ``m <- m * target_norm / max(||m||, eps)`` for every row."""
    with torch.no_grad():
        norms = rows.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
        rows.mul_(target_norm / norms)


def average_rows(runs: torch.Tensor) -> torch.Tensor:
    """The mean of ``runs`` (``[n_runs, n_rows, hidden]``: the same rows learned several
    times), each row rescaled to the mean of its runs' norms: averaging shrinks the norm
    where runs disagree, and a row's norm sets how strongly it routes."""
    mean = runs.mean(0)
    norms = runs.norm(dim=-1).mean(0).unsqueeze(-1)
    return mean * (norms / mean.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS))


def embed(backbone: Backbone, rows: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Input embeddings with memory rows spliced in at memory-token positions.

    Args:
        backbone: The frozen backbone.
        rows: All memory rows, ``[n_memory, hidden]`` (may carry gradient).
        input_ids: ``[batch, length]``; ids >= ``backbone.vocab_size`` are memory tokens.
    """
    vocab = backbone.vocab_size
    is_memory = input_ids >= vocab
    table = backbone.model.get_input_embeddings()
    embeds = table(input_ids.clamp(max=vocab - 1))
    if not bool(is_memory.any()):
        return embeds
    memory = rows.to(embeds.dtype)[(input_ids - vocab).clamp(min=0)]
    # Gemma's embedding layer multiplies every row by sqrt(hidden): a memory row goes in as a
    # vocabulary row would (and as it does once exported into the embedding matrix).
    scale = getattr(table, "embed_scale", None)
    if scale is not None:
        memory = memory * scale.to(embeds.dtype)
    return torch.where(is_memory.unsqueeze(-1), memory, embeds)


def logits(backbone: Backbone, rows: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Backbone logits with one column per memory row appended (tied output rows)."""
    vocab_logits = backbone.model.get_output_embeddings()(hidden)
    memory_logits = hidden @ rows.to(hidden.dtype).T
    return torch.cat([vocab_logits, memory_logits], dim=-1)


def logits_at(backbone: Backbone, rows: torch.Tensor, hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """``logits(backbone, rows, hidden)[..., ids]``, computing those columns only: a
    decoding step that reads a few tokens' scores (a key, an enum value, end-of-plan and the
    memory tokens) need not pay for the whole LM head (49,152 x 576 on the default backbone:
    on a CPU as long as a tenth of a forward pass)."""
    head = backbone.model.get_output_embeddings()
    if not isinstance(head, torch.nn.Linear):
        return logits(backbone, rows, hidden)[..., ids]
    vocab = backbone.vocab_size
    words = ids < vocab
    out = hidden.new_empty((*hidden.shape[:-1], len(ids)))
    bias = head.bias[ids[words]] if head.bias is not None else None
    out[..., words] = torch.nn.functional.linear(hidden, head.weight[ids[words]], bias)
    out[..., ~words] = hidden @ rows[ids[~words] - vocab].to(hidden.dtype).T
    return out


def decoder(backbone: Backbone) -> torch.nn.Module:
    """The transformer body (everything but the LM head)."""
    return backbone.model.get_decoder()


def continue_cache(
    backbone: Backbone,
    rows: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    cache: Any,
) -> torch.Tensor:
    """Last hidden states of ``input_ids`` (memory rows spliced in) after a prefix held in
    ``cache`` (a transformers ``Cache``, extended in place); the training losses' forward."""
    device = backbone.device
    body = decoder(backbone)
    return body(
        inputs_embeds=embed(backbone, rows, input_ids.to(device)),
        attention_mask=attention_mask.to(device),
        position_ids=position_ids.to(device),
        use_cache=True,
        **cache_argument(body, cache),
    ).last_hidden_state
