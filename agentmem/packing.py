"""A key/value cache that packs many sequences into one, for ragged batched decoding.

A padded batch (``[rows, width]``) decodes one token per row per step and must prefill a
joining row in a forward pass of its own, which reads every weight once more: on a CPU a
single-row prefill costs about as much as a step of 16 rows. Packed, every token of a step
lies in one sequence (batch size 1): the running rows' next tokens and the joining rows'
prompt tokens go through the model in one forward pass, and each cache column records the
sequence that owns it and its position, from which the attention mask is built (a query
sees its own sequence's earlier columns, and the shared prefix when its prompt starts with
it). Columns of sequences gone are compacted away once they outnumber the live ones.

The shared prefix (`SHARED`) is a prompt start many requests have in common, the chat
template's system prompt and header: its key/values are computed once and every sequence
that starts with it attends to the one copy, so a prompt is prefilled from its own tokens on.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PretrainedConfig
from transformers.cache_utils import Cache, DynamicLayer

#: The owner of the shared prefix's columns.
SHARED = -2
#: The owner of a column whose sequence left (dead until compacted).
GONE = -1
# Columns are allocated in chunks of at least this many, doubling, so a step rarely copies.
_MIN_CAPACITY = 256


class _Layer(DynamicLayer):
    """One layer's keys and values, ``[1, heads, capacity, dim]``, written where `PackedCache` says."""

    def __init__(self, cache: PackedCache) -> None:
        super().__init__()
        self.cache = cache

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.cache.written, self.cache.length
        if not self.is_initialized or self.keys.shape[2] < end:
            self._grow(key_states, value_states, end)
        self.keys[:, :, start:end] = key_states
        self.values[:, :, start:end] = value_states
        return self.keys[:, :, :end], self.values[:, :, :end]

    def _grow(self, keys: torch.Tensor, values: torch.Tensor, needed: int) -> None:
        old = self.keys.shape[2] if self.is_initialized else 0
        capacity = max(needed, 2 * old, _MIN_CAPACITY)
        new_keys = keys.new_zeros(1, keys.shape[1], capacity, keys.shape[3])
        new_values = values.new_zeros(1, values.shape[1], capacity, values.shape[3])
        if old:
            new_keys[:, :, :old] = self.keys
            new_values[:, :, :old] = self.values
        self.keys, self.values, self.is_initialized = new_keys, new_values, True


class PackedCache(Cache):
    """Key/values of many sequences in one packed row of columns, each owned by one sequence.

    Before each forward pass, `append` records who owns the columns the pass will write and
    returns the attention mask; the model's attention layers then write them.

    Attributes:
        length: Columns in use (live or dead).
        owner: Each column's sequence (an int the caller chooses; `SHARED`, `GONE`).
        position: Each column's position in its sequence.
    """

    def __init__(self, config: PretrainedConfig, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__(layers=[_Layer(self) for _ in range(config.num_hidden_layers)])
        self.config, self.dtype, self.device = config, dtype, device
        self.length = 0
        self.written = 0  # where the pass under way writes from
        self.owner = torch.zeros(0, dtype=torch.long)
        self.position = torch.zeros(0, dtype=torch.long)

    def store_prefix(self, layers: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Puts the shared prefix's key/values (per layer, ``[1, heads, length, dim]``) first."""
        if self.length:
            raise ValueError("the shared prefix goes into an empty cache")
        size = layers[0][0].shape[2]
        self.append(torch.full((size,), SHARED), torch.arange(size), torch.zeros(size, dtype=torch.bool))
        for layer, (keys, values) in zip(self.layers, layers):
            layer.update(keys, values)

    def append(self, owners: torch.Tensor, positions: torch.Tensor, shared: torch.Tensor) -> torch.Tensor | dict:
        """Reserves columns for the tokens of the next forward pass; returns its attention mask.

        Args:
            owners: Each new token's sequence.
            positions: Each new token's position in its sequence.
            shared: Whether each new token's sequence sees the shared prefix.

        Returns:
            The additive mask, ``[1, 1, tokens, columns]``; for a model with sliding-window
            layers, one per layer type, as its forward pass takes them.
        """
        self.written = self.length
        self.length += len(owners)
        self.owner = torch.cat([self.owner, owners])
        self.position = torch.cat([self.position, positions])
        seen = (self.owner[None, :] == owners[:, None]) | (shared[:, None] & (self.owner[None, :] == SHARED))
        seen &= self.position[None, :] <= positions[:, None]
        full = self._additive(seen)
        if "sliding_attention" not in (getattr(self.config, "layer_types", None) or ()):
            return full
        near = positions[:, None] - self.position[None, :] < self.config.sliding_window
        return {"full_attention": full, "sliding_attention": self._additive(seen & near)}

    def _additive(self, seen: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(seen.shape, dtype=self.dtype)
        mask.masked_fill_(~seen, torch.finfo(self.dtype).min)
        return mask[None, None].to(self.device)

    def take_back(self, owner: int, count: int) -> None:
        """Marks a sequence's last ``count`` columns gone: it rewinds, and its next tokens
        take their positions (the decoder rerouting a call, `agentmem.decoding.policies.Reroute`)."""
        mine = (self.owner == owner).nonzero().squeeze(1)
        self.owner[mine[len(mine) - count :]] = GONE

    def release(self, owners: Sequence[int]) -> None:
        """Marks the columns of sequences gone; compacts once dead columns outnumber live ones."""
        if not owners:
            return
        gone = torch.isin(self.owner, torch.tensor(list(owners), dtype=torch.long))
        self.owner[gone] = GONE
        dead = int((self.owner == GONE).sum())
        if dead * 2 > self.length:
            self._compact()

    def _compact(self) -> None:
        live = (self.owner != GONE).nonzero().squeeze(1)
        for layer in self.layers:
            if layer.is_initialized:
                on_device = live.to(layer.keys.device)
                kept = len(live)
                layer.keys[:, :, :kept] = layer.keys.index_select(2, on_device)
                layer.values[:, :, :kept] = layer.values.index_select(2, on_device)
        self.owner, self.position = self.owner[live], self.position[live]
        self.length = self.written = len(live)


__all__ = ["GONE", "SHARED", "PackedCache"]
