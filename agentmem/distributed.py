"""Data-parallel training under a launcher (``accelerate launch``, ``torchrun``).

A launcher starts one process per device and tells each its place through the environment
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). Every process
runs the user's script as it is, loads the same backbone and draws the same batches (same
seed); the training loops then need only these helpers:

* `shard`: each process takes its contiguous part of every batch;
* `backward`: gradients of the part, then summed over processes weighted by each part's
  number of scored tokens, so that every process holds the gradient of the whole batch's
  mean loss and takes the same optimizer step (parameters stay identical, nothing is
  broadcast);
* `is_main_process`: only the first process shows progress bars and writes files.

Without a launcher (``WORLD_SIZE`` unset or 1) every helper is a pass-through: a single
process trains exactly as if this module did not exist. The process group is created on
first use (gloo for CPU tensors, NCCL for CUDA ones) unless the caller, an ``Accelerator``
for instance, has created it already.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def world_size() -> int:
    """How many processes train together; creates the process group on first call under a launcher."""
    if not dist.is_available():
        return 1
    if dist.is_initialized():
        return dist.get_world_size()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1:
        backend = "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(_local_rank())
            backend = "cpu:gloo,cuda:nccl"  # whichever device the backbone is on
        dist.init_process_group(backend)
    return size


def is_main_process() -> bool:
    """True in a single process, and in the first process under a launcher."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def default_device(requested: str | None = None) -> str:
    """Where to load a backbone: ``requested``, or CUDA when available, else the CPU.

    Under a launcher, ``None`` and ``"cuda"`` mean this process's own GPU
    (``cuda:LOCAL_RANK``), so that processes do not all share the first one.
    """
    if requested not in (None, "cuda") or not torch.cuda.is_available():
        return requested or "cpu"
    return f"cuda:{_local_rank()}" if world_size() > 1 else "cuda"


def shard(batch: Sequence[T]) -> list[T]:
    """This process's contiguous part of a batch: all of it in a single process. Under a
    launcher the parts differ in size by one at most; some are empty when the batch has
    fewer items than there are processes."""
    size = world_size()
    if size == 1:
        return list(batch)
    rank = dist.get_rank()
    return list(batch[rank * len(batch) // size : (rank + 1) * len(batch) // size])


def backward(loss: torch.Tensor | None, tokens: int, params: Sequence[torch.Tensor]) -> float:
    """Backpropagates this process's loss; then every process holds the whole batch's gradient.

    Args:
        loss: Mean loss over this process's scored tokens, or None for an empty part.
        tokens: How many scored tokens that mean is over.
        params: The trained parameters; their ``.grad`` is replaced by the whole batch's.

    Returns:
        The whole batch's mean loss (this process's loss in a single process).
    """
    if loss is not None:
        loss.backward()
    if world_size() == 1:
        return loss.item()
    # A mean over the batch's tokens is the sum over processes of (part's tokens x part's
    # mean) over the batch's tokens: one all-reduce of [tokens * grads..., tokens * loss, tokens].
    device = params[0].device
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    local = loss.detach().float() if loss is not None else torch.zeros((), device=device)
    flat = torch.cat([g.reshape(-1).float() for g in grads] + [local.reshape(1), torch.ones(1, device=device)]) * tokens
    dist.all_reduce(flat)
    flat /= flat[-1].clone()
    offset = 0
    for param in params:
        param.grad = flat[offset : offset + param.numel()].view_as(param).to(param.dtype)
        offset += param.numel()
    return flat[-2].item()


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))
