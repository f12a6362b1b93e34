"""bfloat16 for training on a frozen backbone: where it is native, and how the trainers use it.

Both trainers (`agentmem.training.train_rows`, the memory rows; `agentmem.adaptation.lora`,
the LoRA) take ``bf16: bool | None``: ``None`` means `native_bf16` of the backbone's device.
Under bf16 the backbone's forward runs under `torch.autocast` (matrix products in bfloat16,
reductions such as norms and softmax in float32) and so does its backward; what is trained
and its optimizer state stay float32.

Learning rows adds two things on top of autocast (`autocast` and `bf16_weights`), both found
by profiling one ``learn_tool`` (20 examples, 5 epochs) on a CPU with AMX-BF16, where plain
autocast made it *slower* than float32 (1.1x the time): autocast casts a frozen weight to
bfloat16 again at every call (it caches casts of trainable leaves only), and with a few
dozen target tokens per step that cast costs as much as the product (the 49,152 x 576
output layer: 30 ms to cast, 9 ms to multiply); and at these shapes the CPU's fused
attention takes 3.7x as long (forward and backward) in bfloat16 as in float32, its math
kernel 1.8x. With both, that ``learn_tool`` took 0.70x the float32 time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

__all__ = ["autocast", "bf16_weights", "native_bf16"]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU
    with AVX512-BF16 or AMX-BF16 (read from ``/proc/cpuinfo``; False where it cannot be
    read). A trainer's ``bf16=None`` means this; elsewhere autocast still works (any CPU),
    but bfloat16 is emulated there and slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """The forward of a row-training step: under bfloat16 autocast when ``enabled`` (the
    backward, run after it, follows each operation's forward dtype), else as it is.

    On CPU, scaled-dot-product attention takes its math kernel meanwhile: in bfloat16, the
    fused (flash) kernel's forward and backward take about twice the math kernel's time at
    the shapes of row training (a few dozen queries on a cached prompt)."""
    with ExitStack() as stack:
        if enabled:
            stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
            if device.type == "cpu":
                stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
        yield


@contextmanager
def bf16_weights(model: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """For the duration, every frozen float32 weight and bias of a ``Linear`` layer of
    ``model`` is replaced by a bfloat16 copy made once, so that autocast, which would cast
    it at every call, finds it cast already; the originals are put back on exit (the same
    tensors: nothing of the model changes). Products come out exactly as under autocast
    alone. Embeddings stay float32 (an output layer tied to the input embeddings gets its
    own copy), and so do trainable parameters (autocast caches their casts itself).

    Use it only while the model runs under bfloat16 autocast (`autocast`), and keep the
    model to this thread meanwhile (`agentmem.core.AgentMem.lock`). It holds the copies: half
    the bytes of the layers' float32 weights.
    """
    swapped: list[tuple[torch.nn.Module, str, torch.nn.Parameter]] = []
    copies: dict[int, torch.nn.Parameter] = {}
    if enabled:
        for module in model.modules():
            if not isinstance(module, torch.nn.Linear):
                continue
            for name in ("weight", "bias"):
                param = module._parameters.get(name)
                if param is None or param.requires_grad or param.dtype != torch.float32:
                    continue
                if id(param) not in copies:
                    copies[id(param)] = torch.nn.Parameter(param.detach().to(torch.bfloat16), requires_grad=False)
                setattr(module, name, copies[id(param)])
                swapped.append((module, name, param))
    try:
        yield
    finally:
        for module, name, param in reversed(swapped):
            setattr(module, name, param)
