"""Training memory rows on a frozen backbone.

Only the rows of the tools being learned receive gradient; every other row and every
backbone weight stays bit-identical. The loop does as little as the loss needs:

* the prompt (prefix) of every example is encoded without gradient (a conversation's
  earlier calls are the only memory tokens it may hold), and its key/value cache reused
  across epochs unless it holds a row being trained (then it is encoded at each step with
  the rows as they are);
* each step runs only the target tokens, batched, on top of the cached prefixes;
* logits are computed only at labelled positions.

Under a launcher (``accelerate launch``, ``torchrun``) each process takes its part of every
batch and the gradients are averaged before the step (`agentmem.distributed`).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from transformers import DynamicCache, get_linear_schedule_with_warmup

from agentmem import distributed, memory, precision
from agentmem.backbone import Backbone, returned_cache
from agentmem.encoding import EncodedExample
from agentmem.memory import MemoryBank
from agentmem.tools.examples import SkippedExample

#: The rows' learning-rate schedules (`TrainConfig.lr_schedule`). The CLIs, which must not import
#: torch, write the names out; a test holds them to this tuple.
LrSchedule = Literal["constant", "linear"]
LR_SCHEDULES: tuple[LrSchedule, ...] = get_args(LrSchedule)


@dataclass
class TrainConfig:
    """Settings of one training run (paper defaults)."""

    epochs: int = 5
    """Passes over the examples. The paper uses 1-3 on thousands of examples; with about 20
    per tool, 5 measured better (demo pack: loss 0.78 -> 0.28, tool F1 0.63 -> 0.78)."""
    lr: float = 5e-3
    """AdamW learning rate of the memory rows (no weight decay); the peak of `lr_schedule`."""
    lr_schedule: LrSchedule = "linear"
    """``"linear"`` (default): as the paper's code trains its rows (transformers'
    ``get_linear_schedule_with_warmup``): up from 0 over the first tenth of a run's steps,
    then down to 0 at its last. ``"constant"``: ``lr`` at every step (the default until
    2026-12-07). Over four learning seeds each, linear against constant: BFCL dev exact match
    +4.3 points with the conversation and turn alone, argument F1 +1.9 / +3.0, tool F1 the
    same, requests that need no tool answered in words 0.71 -> 0.95; ComplexFuncBench tool F1
    +1.3, argument F1 +2.0; the demo pack's first held-out draw -3.9 argument F1, its second
    the same (BENCHMARKS.md, "The rows' learning rate decays")."""
    batch_size: int = 4
    """Examples per optimizer step (over all processes, under a launcher)."""
    seed: int = 0
    """Seeds shuffling, so a run is reproducible."""
    renormalize: bool = True
    """After each step, scale trained rows to the mean norm of the bank's other rows."""
    rehearse: int = 8
    """In a later round, replay this many kept requests of every tool learned before (their
    rows stay frozen; only their routing decisions are scored), so the new rows also learn
    where *not* to fire. Without it, new rows take over requests of similar old tools at
    routing (BENCHMARKS.md, forgetting: about 15 points of the first round's argument F1
    lost over 4 rounds of 10 tools without rehearsal, 0-4 with 8)."""
    prefix_cache_bytes: int = 1 << 30
    """Keep prompts' key/value caches across epochs, as many as fit in this many bytes (the
    rest are encoded again at each step)."""
    bf16: bool | None = False
    """Run the backbone's forward and backward (the prompts' encoding too) under bfloat16
    autocast, as the LoRA trainer does (`agentmem.adaptation.lora.LoRAConfig.bf16`), on
    bfloat16 copies of its frozen weights made for the run (`agentmem.precision`). The
    trained rows, their gradient, the AdamW state and the renormalisation stay float32, the
    loss is taken on float32 logits, and the bank saved is float32: it plans as any bank
    (planning is float32). ``True`` works on any CPU (emulated there, and slower); ``None``:
    where the hardware computes bfloat16 natively (`agentmem.precision.native_bf16`: CUDA,
    or a CPU with AVX512-BF16/AMX), float32 elsewhere. Off by default: on the project's
    AMX CPU it took ``learn_tool`` (20 examples, 5 epochs) to 0.7x the float32 time and the
    demo pack's learning to 0.6x, but moved the demo pack's held-out scores by 2-6 points
    (up on one draw, down on the other), beyond the 1 point a default may move them."""
    averaged_runs: int = 1
    """Learn the new rows this many times, each run from the same start over its own order
    of the examples (shuffled with ``seed``, ``seed + 1``, ...), and keep their average, each
    row at the mean of its runs' norms (a "model soup" of the rows; `memory.average_rows`).
    Learning takes this many times as long (the prompts without trained rows are encoded
    once for all runs). The order of the examples alone moved BFCL's dev tool F1 by up to 9
    points between single runs under the constant schedule; the average of 4 runs was above
    every one of them (BENCHMARKS.md, "Rows averaged over runs"). Under the linear schedule,
    single runs spread 6 points and their average of 4 gained 5.8 points of tool F1."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.rehearse < 0:
            raise ValueError(f"rehearse must be >= 0, got {self.rehearse}")
        if self.averaged_runs < 1:
            raise ValueError(f"averaged_runs must be >= 1, got {self.averaged_runs}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {self.lr_schedule!r}")


@dataclass
class LearnReport:
    """What a training run did and how fast."""

    tools: list[str]
    examples: int
    steps: int
    seconds: float
    tokens_per_second: float
    first_loss: float
    last_loss: float
    row_norms: dict[str, float] = field(default_factory=dict)
    skipped: list[SkippedExample] = field(default_factory=list)  # left out under invalid="skip"
    bf16: bool = False  # whether forward and backward ran under bfloat16 autocast (`TrainConfig.bf16`)
    runs: int = 1  # runs averaged into the rows (`TrainConfig.averaged_runs`); steps counts them all

    def __str__(self) -> str:
        text = (
            f"learned {', '.join(self.tools)} from {self.examples} examples: {self.steps} steps in "
            f"{self.seconds:.1f} s ({self.tokens_per_second:.0f} tokens/s), "
            f"loss {self.first_loss:.3f} -> {self.last_loss:.3f}"
        )
        if self.runs > 1:
            text += f", {self.runs} runs averaged into the rows"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} invalid examples:" + "".join(f"\n  {s}" for s in self.skipped)
        return text


@dataclass
class _Prefix:
    """A prompt encoded once: per-layer keys/values and the last position's hidden state."""

    keys: list[torch.Tensor]  # each [kv_heads, length, head_dim]
    values: list[torch.Tensor]
    last_hidden: torch.Tensor  # [hidden]

    @property
    def length(self) -> int:
        return self.keys[0].shape[1]


@torch.no_grad()
def encode_prefixes(
    backbone: Backbone, prompts: Sequence[Sequence[int]], batch_size: int = 8, rows: torch.Tensor | None = None
) -> list[_Prefix]:
    """Runs prompts through the backbone (left-padded batches) and keeps their caches, in
    the order of ``prompts``.

    Batches hold prompts of similar length (`_length_groups`): conversations' prompts run
    from tens to hundreds of tokens, and padding every one to its batch's longest cost 1.7x
    the tokens of BFCL's training prompts. ``rows`` (the bank's rows) are spliced in where
    a prompt holds memory tokens: a conversation's earlier calls (`prompt_ids`)."""
    out: dict[int, _Prefix] = {}
    body = memory.decoder(backbone)
    for group in _length_groups([len(p) for p in prompts], batch_size):
        chunk = [prompts[i] for i in group]
        width = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), width), backbone.eos_token_id, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, prompt in enumerate(chunk):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        result = body(
            inputs_embeds=memory.embed(backbone, rows if rows is not None else torch.zeros(0), ids.to(backbone.device)),
            attention_mask=mask.to(backbone.device),
            position_ids=positions.to(backbone.device),
            use_cache=True,
        )
        cache = returned_cache(result)
        for row, (index, prompt) in enumerate(zip(group, chunk)):
            pad = width - len(prompt)
            out[index] = _Prefix(
                keys=[layer.keys[row, :, pad:].clone() for layer in cache.layers],
                values=[layer.values[row, :, pad:].clone() for layer in cache.layers],
                last_hidden=result.last_hidden_state[row, -1].clone(),
            )
    return [out[i] for i in range(len(prompts))]


# A batch may pad its prompts to at most this many times their own tokens.
_PADDING_ALLOWED = 1.25


def _length_groups(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices of ``lengths`` in batches of at most ``batch_size``, shortest first, each
    closed before padding to its longest would exceed `_PADDING_ALLOWED` of its tokens."""
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        group = groups[-1] if groups else None
        if (
            group is None
            or len(group) == batch_size
            or lengths[i] * (len(group) + 1) > _PADDING_ALLOWED * (sum(lengths[j] for j in group) + lengths[i])
        ):
            groups.append([i])
        else:
            group.append(i)
    return groups


def batch_loss(
    backbone: Backbone, rows: torch.Tensor, batch: Sequence[EncodedExample], prefixes: Sequence[_Prefix]
) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over every target token of a batch, on top of cached prefixes.

    The prefix is left-padded so every prompt ends at the same column; the target inputs
    (all target tokens but the last) follow, right-padded. The prediction of target[0]
    comes from the prompt's last hidden state, target[j+1] from target input j.

    Returns:
        The loss and the number of scored tokens.
    """
    device = backbone.device
    prefix_width = max(p.length for p in prefixes)
    target_width = max(len(e.target) - 1 for e in batch)
    n = len(batch)
    ids = torch.full((n, max(target_width, 1)), backbone.eos_token_id, dtype=torch.long)
    mask = torch.zeros(n, prefix_width + ids.shape[1], dtype=torch.long)
    positions = torch.zeros_like(ids)
    for row, (example, prefix) in enumerate(zip(batch, prefixes)):
        inputs = example.target[:-1]
        ids[row, : len(inputs)] = torch.tensor(inputs, dtype=torch.long)
        mask[row, prefix_width - prefix.length : prefix_width + len(inputs)] = 1
        positions[row] = prefix.length + torch.arange(ids.shape[1])

    layers = []
    for layer in range(len(prefixes[0].keys)):
        keys = torch.stack([F.pad(p.keys[layer], (0, 0, prefix_width - p.length, 0)) for p in prefixes])
        values = torch.stack([F.pad(p.values[layer], (0, 0, prefix_width - p.length, 0)) for p in prefixes])
        layers.append((keys, values))
    cache = DynamicCache(layers, config=backbone.model.config)

    hidden = memory.continue_cache(backbone, rows, ids, mask, positions, cache)

    # Hidden states at the scored positions only, and the token each one must predict.
    selected, labels = [], []
    for row, (example, prefix) in enumerate(zip(batch, prefixes)):
        states = torch.cat([prefix.last_hidden.unsqueeze(0), hidden[row, : len(example.target) - 1]])
        if example.routing_only:
            last = len(example.target) - 1
            keep = [i for i, t in enumerate(example.target) if t >= backbone.vocab_size or i == last]
            states, wanted = states[keep], [example.target[i] for i in keep]
        else:
            wanted = list(example.target)
        selected.append(states)
        labels.extend(wanted)
    h = torch.cat(selected, dim=0)
    target = torch.tensor(labels, dtype=torch.long, device=device)
    loss = F.cross_entropy(memory.logits(backbone, rows, h).float(), target)
    return loss, len(labels)


def train_rows(
    backbone: Backbone,
    bank: MemoryBank,
    train_indices: Sequence[int],
    examples: Sequence[EncodedExample],
    config: TrainConfig,
) -> LearnReport:
    """Trains the bank rows at ``train_indices`` on ``examples``; all else stays frozen.

    Under ``config.bf16`` the backbone's forward passes (the prompts' encoding too) run under
    `agentmem.precision.autocast`, on bfloat16 copies of its frozen weights
    (`agentmem.precision.bf16_weights`); the rows, their gradient, AdamW and the
    renormalisation stay float32.

    Args:
        backbone: The frozen backbone.
        bank: The memory bank; its rows at ``train_indices`` are replaced in place.
        train_indices: Rows to train (the new tools).
        examples: Encoded examples; may use any row of the bank.
        config: Training settings.
    """
    from tqdm.auto import tqdm

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    device = backbone.device
    index = torch.tensor(list(train_indices), dtype=torch.long, device=device)
    frozen = bank.rows.to(device=device, dtype=torch.float32)
    target_norm = bank.mean_norm(exclude=train_indices) if config.renormalize else None
    bf16 = precision.native_bf16(device) if config.bf16 is None else config.bf16

    with precision.bf16_weights(backbone.model, enabled=bf16):
        with precision.autocast(device, bf16):
            cached = _prefixes_once(backbone, examples, frozen, train_indices, config)

        steps_per_epoch = math.ceil(len(examples) / config.batch_size)
        show = config.progress and distributed.is_main_process()
        total = config.averaged_runs * config.epochs * steps_per_epoch
        bar = tqdm(total=total, desc="learning", disable=not show, leave=False)
        losses: list[float] = []
        tokens = 0
        runs = []
        for run in range(config.averaged_runs):
            trainable = torch.nn.Parameter(frozen[index].clone())  # float32, and so is AdamW's state
            optimizer = torch.optim.AdamW([trainable], lr=config.lr, weight_decay=0.0)
            run_steps = config.epochs * steps_per_epoch
            schedule = (
                get_linear_schedule_with_warmup(optimizer, run_steps // 10, run_steps)
                if config.lr_schedule == "linear"
                else None
            )
            order_rng = random.Random(config.seed + run)
            for _ in range(config.epochs):
                order = list(range(len(examples)))
                order_rng.shuffle(order)
                for start in range(0, len(order), config.batch_size):
                    chosen = order[start : start + config.batch_size]
                    mine = distributed.shard(chosen)  # the whole batch, unless a launcher started several processes
                    batch = [examples[i] for i in mine]
                    # frozen rows with the trainable ones spliced in, so only they get gradient
                    rows = frozen.index_copy(0, index, trainable)
                    with precision.autocast(device, bf16):
                        prefixes = _batch_prefixes(backbone, cached, mine, examples, rows)
                        loss, count = batch_loss(backbone, rows, batch, prefixes) if batch else (None, 0)
                    # backward (outside autocast, as torch advises: each operation's backward
                    # follows its forward's dtype) with the gradient of the whole batch on every
                    # process, update (float32), then keep new rows on the scale of the old ones
                    optimizer.zero_grad(set_to_none=True)
                    losses.append(distributed.backward(loss, count, [trainable]))
                    optimizer.step()
                    if schedule is not None:
                        schedule.step()
                    if target_norm is not None:
                        memory.renormalize_(trainable.data, target_norm)
                    tokens += sum(examples[i].length for i in chosen)
                    bar.update(1)
                    bar.set_postfix(loss=f"{losses[-1]:.3f}")
            runs.append(trainable.detach())
        bar.close()

    learned = runs[0] if len(runs) == 1 else memory.average_rows(torch.stack(runs))
    bank.rows[list(train_indices)] = learned.to(bank.rows)
    seconds = time.perf_counter() - started
    return LearnReport(
        tools=[bank.names[i] for i in train_indices],
        examples=len(examples),
        steps=len(losses),
        seconds=seconds,
        tokens_per_second=tokens / seconds,
        first_loss=losses[0],
        last_loss=losses[-1],
        row_norms={bank.names[i]: bank.rows[i].norm().item() for i in train_indices},
        bf16=bf16,
        runs=config.averaged_runs,
    )


def _prefixes_once(
    backbone: Backbone,
    examples: Sequence[EncodedExample],
    rows: torch.Tensor,
    train_indices: Sequence[int],
    config: TrainConfig,
) -> list[_Prefix | None]:
    """Each prompt encoded once while the caches fit in the budget; None where a prompt is
    encoded per step instead: the prompts past the budget, and one holding a row being
    trained (a conversation's earlier call of a new tool), encoded with the rows as they
    are at that step (still without gradient through it).

    The budget is filled in order rather than all or nothing: a set of prompts a little
    over it keeps most of its caches, instead of re-encoding every prompt at every step."""
    trained_ids = {backbone.vocab_size + i for i in train_indices}
    per_token = _cache_bytes_per_token(backbone)
    fixed, used = [], 0
    for i, example in enumerate(examples):
        size = len(example.prefix) * per_token
        if not trained_ids.intersection(example.prefix) and used + size <= config.prefix_cache_bytes:
            fixed.append(i)
            used += size
    encoded = encode_prefixes(backbone, [examples[i].prefix for i in fixed], rows=rows) if fixed else []
    out: list[_Prefix | None] = [None] * len(examples)
    for i, prefix in zip(fixed, encoded):
        out[i] = prefix
    return out


def _batch_prefixes(
    backbone: Backbone,
    cached: Sequence[_Prefix | None],
    batch: Sequence[int],
    examples: Sequence[EncodedExample],
    rows: torch.Tensor,
) -> list[_Prefix]:
    """The prefixes of the examples at ``batch``: cached ones as they are, the others
    encoded now with ``rows``."""
    fresh = [i for i in batch if cached[i] is None]
    encoded = dict(zip(fresh, encode_prefixes(backbone, [examples[i].prefix for i in fresh], rows=rows)))
    return [encoded[i] if i in encoded else cached[i] for i in batch]


def _cache_bytes_per_token(backbone: Backbone) -> int:
    config = backbone.model.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = backbone.model.get_input_embeddings().weight.element_size()
    return 2 * config.num_hidden_layers * heads * head_dim * element
