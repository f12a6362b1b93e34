"""The LoRA trainer (peft): one loop for the adaptation phase and for every LoRA baseline.

`lora_copy` puts a fresh LoRA into a copy of a frozen backbone; `train_lora` trains it on
encoded examples (prompt, target tokens), with memory rows alongside when the targets hold
memory tokens (the adaptation phase) or none (a baseline that names tools in text); then
`agentmem.adaptation.adapter.merge_lora` folds it into the weights.

The loop: AdamW, a linear warmup over the first ``warmup`` share of the steps then a
cosine decay to a tenth, the LoRA's gradient norm clipped, batches of examples of similar
length in shuffled order, the loss on target tokens only. Unlike learning a tool, the
gradient must cross the whole backbone (the LoRA sits in every layer), so the prompt cannot
be cached across steps. The loop does the next best things: the prompt prefix shared by
every example (SmolLM2's chat template puts a 39-token system prompt there) runs once per
step for the whole batch, and logits are computed only at scored positions.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from agentmem import distributed, memory
from agentmem.adaptation.adapter import inject_lora
from agentmem.backbone import Backbone, returned_cache
from agentmem.encoding import EncodedExample, common_prefix
from agentmem.precision import native_bf16

__all__ = ["LoRAConfig", "LoRARun", "lora_copy", "shared_prefix_loss", "train_lora"]


@dataclass
class LoRAConfig:
    """A LoRA's shape and how it is trained (defaults: the adaptation phase, as in the TokMem paper)."""

    r: int = 8
    """LoRA rank."""
    alpha: int = 32
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.1
    """Dropout on the LoRA input during training."""
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    """Linear layers that get a LoRA (names as in the backbone's modules)."""
    lr: float = 5e-4
    """AdamW learning rate of the LoRA. The paper uses 5e-5 for 5,000 samples on a 1B model;
    the default adaptation corpus is about a quarter of that (one epoch is about 150 steps),
    so the rate is 10x higher to move the LoRA as far in fewer steps."""
    memory_lr: float = 5e-3
    """AdamW learning rate of memory rows trained alongside (as when learning tools)."""
    epochs: int = 1
    """Passes over the examples."""
    batch_size: int = 8
    """Examples per optimizer step (over all processes, under a launcher)."""
    warmup: float = 0.05
    """Share of the steps over which the learning rates rise linearly; they then decay
    along a cosine to a tenth."""
    max_grad_norm: float = 1.0
    """Clip the LoRA's gradient norm to this."""
    bf16: bool | None = None
    """Run forward and backward under bfloat16 autocast (weights, LoRA and optimizer stay
    float32). ``None``: where the hardware computes bfloat16 natively (CUDA, or a CPU with
    AVX512-BF16/AMX: about 2x faster there, measured on SmolLM2-135M); elsewhere it is
    emulated and slower."""
    seed: int = 0
    """Seeds the LoRA's initialisation, dropout and the batch order."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        rules = [
            ("r", self.r >= 1, ">= 1"),
            ("alpha", self.alpha > 0, "> 0"),
            ("dropout", 0 <= self.dropout < 1, "in [0, 1)"),
            ("target_modules", bool(self.target_modules), "at least one module name"),
            ("lr", self.lr > 0, "> 0"),
            ("memory_lr", self.memory_lr > 0, "> 0"),
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("warmup", 0 <= self.warmup < 1, "in [0, 1)"),
            ("max_grad_norm", self.max_grad_norm > 0, "> 0"),
        ]
        for name, ok, allowed in rules:
            if not ok:
                raise ValueError(f"{name} must be {allowed}, got {getattr(self, name)!r}")

    def lora(self) -> dict[str, Any]:
        """The LoRA's shape, as recorded in ``adapter.json``."""
        return {"r": self.r, "alpha": self.alpha, "dropout": self.dropout, "target_modules": list(self.target_modules)}


@dataclass
class LoRARun:
    """What `train_lora` did."""

    losses: list[float]
    """The loss of every step."""
    tokens: int
    """Tokens seen (prompts and targets, every epoch)."""
    bf16: bool
    """Whether it ran under bfloat16 autocast."""


def lora_copy(backbone: Backbone, config: LoRAConfig) -> tuple[Backbone, Any]:
    """A copy of ``backbone`` with a fresh LoRA in it (seeded by ``config.seed``).

    Returns:
        The working backbone (its model holds the LoRA; ``backbone`` stays untouched) and
        the peft wrapper (for its weights, and to merge it with `merge_lora`).
    """
    torch.manual_seed(config.seed)
    model = copy.deepcopy(backbone.model)
    peft_model = inject_lora(model, config.lora())
    work = Backbone(name=backbone.name, model=model, tokenizer=backbone.tokenizer, fingerprint=backbone.fingerprint)
    return work, peft_model


def train_lora(
    backbone: Backbone,
    rows: torch.nn.Parameter | None,
    encoded: Sequence[EncodedExample],
    config: LoRAConfig,
    desc: str = "LoRA",
) -> LoRARun:
    """Trains the LoRA already injected into ``backbone.model`` (and memory rows, if any)
    on encoded examples, the loss on their target tokens.

    Args:
        backbone: The backbone whose model holds the LoRA (its trainable parameters).
        rows: Memory rows trained along (``memory_lr``), or None when the targets hold no
            memory token (plain fine-tuning).
        encoded: The examples.
        config: Learning rates, epochs, batch size, seed...
        desc: Progress-bar label.
    """
    from tqdm.auto import tqdm

    model = backbone.model
    lora_params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": lora_params, "lr": config.lr}]
    if rows is not None:
        groups.append({"params": [rows], "lr": config.memory_lr})
    trained = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    base_lrs = [g["lr"] for g in groups]
    table = rows if rows is not None else torch.zeros(0, backbone.hidden_size, device=backbone.device)
    bf16 = native_bf16(backbone.device) if config.bf16 is None else config.bf16
    shared = common_prefix([e.prefix for e in encoded])
    order_rng = random.Random(config.seed)
    plan = [
        b for _ in range(config.epochs) for b in _batches([e.length for e in encoded], config.batch_size, order_rng)
    ]
    warmup = int(config.warmup * len(plan))
    losses: list[float] = []
    tokens = 0
    model.train()  # LoRA dropout on
    bar = tqdm(total=len(plan), desc=desc, disable=not (config.progress and distributed.is_main_process()))
    for step, chosen in enumerate(plan):
        # learning rates: linear warmup, cosine decay to a tenth
        factor = _lr_factor(step, len(plan), warmup)
        for group, base in zip(optimizer.param_groups, base_lrs):
            group["lr"] = base * factor
        # forward on this process's part of the batch (all of it without a launcher),
        # backward (gradient of the whole batch on every process), clip the LoRA's gradient, update
        batch = [encoded[i] for i in distributed.shard(chosen)]
        with torch.autocast(backbone.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = shared_prefix_loss(backbone, table, batch, shared) if batch else None
        optimizer.zero_grad(set_to_none=True)
        losses.append(distributed.backward(loss, sum(len(e.target) for e in batch), trained))
        torch.nn.utils.clip_grad_norm_(lora_params, config.max_grad_norm)
        optimizer.step()
        tokens += sum(encoded[i].length for i in chosen)
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    bar.close()
    model.eval()
    return LoRARun(losses=losses, tokens=tokens, bf16=bf16)


def shared_prefix_loss(
    backbone: Backbone,
    rows: torch.Tensor,
    batch: Sequence[EncodedExample],
    shared: Sequence[int],
) -> torch.Tensor:
    """Mean cross-entropy over the target tokens of a batch whose prompts all start with ``shared``.

    The shared prefix runs once (batch of one, with gradient), its key/value cache is
    broadcast to the batch, and each example's own tokens (rest of the prompt, then the
    target inputs) follow right-padded. Logits are computed only at scored positions.
    """
    device = backbone.device
    start = len(shared)
    prefix = returned_cache(
        memory.decoder(backbone)(input_ids=torch.tensor([list(shared)], device=device), use_cache=True)
    )
    n = len(batch)
    layers = [(layer.keys.expand(n, -1, -1, -1), layer.values.expand(n, -1, -1, -1)) for layer in prefix.layers]
    cache = DynamicCache(layers, config=backbone.model.config)

    own = [e.prefix[start:] + e.target[:-1] for e in batch]
    width = max(len(o) for o in own)
    ids = torch.full((n, width), backbone.eos_token_id, dtype=torch.long)
    mask = torch.zeros(n, start + width, dtype=torch.long)
    mask[:, :start] = 1
    for row, tokens in enumerate(own):
        ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask[row, start : start + len(tokens)] = 1
    positions = (start + torch.arange(width)).expand(n, -1)
    hidden = memory.continue_cache(backbone, rows, ids, mask, positions, cache)

    # target[j] is predicted at the position of the token before it
    selected, labels = [], []
    for row, example in enumerate(batch):
        first = len(example.prefix) - start - 1
        selected.append(hidden[row, first : first + len(example.target)])
        labels.extend(example.target)
    h = torch.cat(selected, dim=0)
    return F.cross_entropy(memory.logits(backbone, rows, h).float(), torch.tensor(labels, device=device))


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of examples of similar length (little padding), in shuffled order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 16
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
