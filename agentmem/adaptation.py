"""The adaptation phase: a LoRA trained once on auxiliary tools, then merged into the backbone.

TokMem's strongest results come after a one-time adaptation of the backbone: a LoRA (r=8,
alpha 32, dropout 0.1 on the query and value projections) trained jointly with temporary
memory rows for the tools of an auxiliary corpus, with the loss on memory-token and
argument positions only. The backbone learns to route to memory tokens and to copy argument
values; the LoRA is then merged into the weights (peft ``merge_and_unload``), everything is
frozen again, and the temporary rows are dropped. The user's tools, disjoint from the
corpus's, are learned afterwards as usual.

An `Adapter` keeps only what reproduces the merge: the LoRA weights
(``adapter.safetensors``, about 2 MB for SmolLM2-135M) and ``adapter.json`` (LoRA settings,
the base backbone's fingerprint, the training record). An adapted backbone's fingerprint
is derived from the base fingerprint and the adapter's hash (not from the merged floats,
which may differ in the last bit between machines), so banks learned on it refuse any other
backbone. The adapter made for the embedded backbone ships in ``agentmem/adaptations/``
and `prepare_backbone` applies it by default.

Training cost: unlike learning a tool, the gradient must cross the whole backbone (the LoRA
sits in every layer), so the prompt cannot be cached across steps. The loop does the next
best things: the prompt prefix shared by every example (SmolLM2's chat template puts a
39-token system prompt there) runs once per step for the whole batch, batches group
examples of similar length, and logits are computed only at scored positions.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers import DynamicCache

from agentmem import distributed, memory
from agentmem.atomic import atomic_folder
from agentmem.backbone import Backbone, adapted_fingerprint, load_backbone
from agentmem.encoding import EncodedExample, encode_example
from agentmem.errors import BackboneError, BackboneMismatchError, BankError, InvalidExampleError
from agentmem.memory import MemoryBank
from agentmem.tools.examples import Example, normalize_examples
from agentmem.tools.spec import ToolSpec, to_tool_spec

ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_CONFIG = "adapter.json"
ADAPTER_FORMAT = 1
#: Adapters shipped with the package, one folder per backbone alias.
SHIPPED_DIR = Path(__file__).parent / "adaptations"


@dataclass
class AdaptConfig:
    """Settings of the adaptation phase (LoRA shape as in the TokMem paper)."""

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
    the default corpus here is about a quarter of that (one epoch is about 150 steps), so the
    rate is 10x higher to move the LoRA as far in fewer steps."""
    memory_lr: float = 5e-3
    """AdamW learning rate of the temporary memory rows (as when learning tools)."""
    epochs: int = 1
    """Passes over the corpus."""
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
class Adapter:
    """The LoRA of an adaptation: enough to rebuild the adapted backbone from the base.

    Attributes:
        lora: ``{"r", "alpha", "dropout", "target_modules"}``.
        weights: The LoRA matrices, keyed as peft's ``get_peft_model_state_dict`` names them.
        base_name: The backbone it was trained on (alias, id or path).
        base_fingerprint: That backbone's fingerprint; the adapter refuses any other.
        training: How it was trained (command, corpus, steps, losses, seconds...).
    """

    lora: dict[str, Any]
    weights: dict[str, torch.Tensor]
    base_name: str
    base_fingerprint: str
    training: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Hash of the LoRA settings and weights."""
        digest = hashlib.sha256(json.dumps(self.lora, sort_keys=True).encode())
        for key in sorted(self.weights):
            digest.update(key.encode())
            digest.update(self.weights[key].detach().float().cpu().contiguous().numpy().tobytes())
        return "sha256:" + digest.hexdigest()[:24]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Writes ``adapter.safetensors`` and ``adapter.json`` into a folder, atomically.
        Under a multi-process launcher only the main process writes."""
        if not distributed.is_main_process():
            return Path(path)
        meta = {
            "format_version": ADAPTER_FORMAT,
            "id": self.id,
            "lora": self.lora,
            "base": {"name": self.base_name, "fingerprint": self.base_fingerprint},
            "training": self.training,
        }
        tensors = {k: v.detach().float().cpu().contiguous() for k, v in self.weights.items()}
        target = Path(path)
        with atomic_folder(target) as staging:
            save_file(tensors, str(staging / ADAPTER_WEIGHTS))
            (staging / ADAPTER_CONFIG).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Adapter:
        """Reads an adapter folder; raises BankError naming what is missing or corrupted."""
        folder = Path(path)
        for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
            if not (folder / name).is_file():
                raise BankError(f"adapter folder {folder} is missing {name}")
        try:
            meta = json.loads((folder / ADAPTER_CONFIG).read_text())
            if meta.get("format_version") != ADAPTER_FORMAT:
                raise BankError(f"{folder} has adapter format {meta.get('format_version')!r}; this agentmem reads {ADAPTER_FORMAT}")
            adapter = cls(
                lora=dict(meta["lora"]),
                weights=load_file(str(folder / ADAPTER_WEIGHTS)),
                base_name=str(meta["base"]["name"]),
                base_fingerprint=str(meta["base"]["fingerprint"]),
                training=dict(meta.get("training", {})),
            )
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError, SafetensorError, OSError) as exc:
            raise BankError(f"adapter folder {folder} is corrupted: {type(exc).__name__}: {exc}") from exc
        if meta.get("id") != adapter.id:
            raise BankError(f"adapter folder {folder} is corrupted: its weights hash to {adapter.id}, not {meta.get('id')}")
        return adapter


@dataclass
class AdaptReport:
    """What an adaptation run did and how fast."""

    tools: int
    examples: int
    steps: int
    seconds: float
    tokens_per_second: float
    first_loss: float
    last_loss: float
    losses: list[float]
    trainable_parameters: int

    def __str__(self) -> str:
        return (
            f"adapted on {self.examples} examples of {self.tools} tools: {self.steps} steps in {self.seconds:.0f} s "
            f"({self.tokens_per_second:.0f} tokens/s, {self.trainable_parameters / 1e6:.2f} M LoRA parameters), "
            f"loss {self.first_loss:.3f} -> {self.last_loss:.3f}"
        )

    def loss_curve(self, points: int = 20) -> list[float]:
        """The step losses averaged over ``points`` equal windows (for records and plots)."""
        size = max(1, math.ceil(len(self.losses) / points))
        return [round(sum(w) / len(w), 4) for w in (self.losses[i : i + size] for i in range(0, len(self.losses), size))]


def adapt_backbone(
    backbone: Backbone, specs: Sequence[ToolSpec], examples: Sequence[Example], config: AdaptConfig
) -> tuple[Backbone, AdaptReport]:
    """Trains a LoRA with temporary memory rows on a corpus, then merges it.

    Args:
        backbone: The base backbone (not modified: the LoRA goes into a copy).
        specs: The corpus's tools (`ToolSpec`), one temporary memory row each.
        examples: Validated examples calling those tools.
        config: Training settings.

    Returns:
        The adapted backbone (merged, frozen, with its own fingerprint and `Adapter`) and
        the report.

    Raises:
        BackboneError: The backbone is already adapted.
    """
    from peft import get_peft_model_state_dict

    if backbone.adapter is not None:
        raise BackboneError(f"backbone {backbone.name!r} is already adapted ({backbone.adapter.id}); adapt the base backbone instead")
    if not examples:
        raise ValueError("the adaptation corpus has no examples")
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    model = copy.deepcopy(backbone.model)
    peft_model = inject_lora(model, config.lora())
    work = Backbone(name=backbone.name, model=model, tokenizer=backbone.tokenizer, fingerprint=backbone.fingerprint)

    # temporary rows, one per corpus tool, trained with the LoRA and dropped afterwards
    bank = MemoryBank(backbone.hidden_size)
    bank.add([s.name for s in specs], memory.mean_embedding(backbone))
    rows = torch.nn.Parameter(bank.rows.to(backbone.device))
    schemas = {s.name: s.parameters for s in specs}
    encoded = [
        encode_example(backbone.tokenizer, e, lambda n: backbone.vocab_size + bank.index(n), backbone.eos_token_id, schemas)
        for e in examples
    ]
    losses, tokens, bf16 = train_lora(work, rows, encoded, config)

    weights = {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
    merged = peft_model.merge_and_unload()
    seconds = time.perf_counter() - started
    report = AdaptReport(
        tools=len(specs),
        examples=len(encoded),
        steps=len(losses),
        seconds=seconds,
        tokens_per_second=tokens / seconds,
        first_loss=losses[0],
        last_loss=losses[-1],
        losses=losses,
        trainable_parameters=sum(v.numel() for v in weights.values()),
    )
    record = {
        "tools": report.tools,
        "examples": report.examples,
        "epochs": config.epochs,
        "lr": config.lr,
        "memory_lr": config.memory_lr,
        "batch_size": config.batch_size,
        "warmup": config.warmup,
        "bf16": bf16,
        "seed": config.seed,
        "steps": report.steps,
        "seconds": round(report.seconds, 1),
        "tokens_per_second": round(report.tokens_per_second, 1),
        "first_loss": round(report.first_loss, 4),
        "last_loss": round(report.last_loss, 4),
        "loss_curve": report.loss_curve(),
    }
    adapter = Adapter(
        lora=config.lora(), weights=weights, base_name=backbone.name, base_fingerprint=backbone.fingerprint, training=record
    )
    return _adapted(backbone, merged, adapter), report


def train_lora(
    backbone: Backbone, rows: torch.nn.Parameter | None, encoded: Sequence[EncodedExample], config: AdaptConfig, desc: str = "adapting"
) -> tuple[list[float], int, bool]:
    """The training loop: a LoRA already injected into ``backbone.model`` (and memory rows,
    if any) trained on encoded examples, the loss on their target tokens.

    Args:
        backbone: The backbone whose model holds the LoRA (its trainable parameters).
        rows: Memory rows trained along (``memory_lr``), or None when the targets hold no
            memory token (plain fine-tuning).
        encoded: The examples.
        config: Learning rates, epochs, batch size, seed...
        desc: Progress-bar label.

    Returns:
        The loss of every step, the number of tokens seen, and whether bfloat16 was used.
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
    bf16 = _native_bf16(backbone.device) if config.bf16 is None else config.bf16
    shared = _shared_prefix([e.prefix for e in encoded])
    order_rng = random.Random(config.seed)
    plan = [b for _ in range(config.epochs) for b in _batches([e.length for e in encoded], config.batch_size, order_rng)]
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
    return losses, tokens, bf16


def read_corpus(corpus: Any) -> tuple[list[ToolSpec], list[Example]]:
    """The tools and validated requests of an adaptation corpus.

    Args:
        corpus: An object with ``tools`` (schemas, or a dict of them by name) and
            ``examples`` (``{"query", "calls": [...]}``), or a ``(tools, examples)`` pair.

    Raises:
        SchemaError: A tool is not a valid definition.
        InvalidExampleError: A request is malformed, breaks a schema or calls an unknown tool.
    """
    tools, raw = corpus if isinstance(corpus, tuple) else (corpus.tools, corpus.examples)
    specs = {spec.name: spec for spec in map(to_tool_spec, tools.values() if isinstance(tools, Mapping) else tools)}
    # normalize_examples checks a tool's own examples: group requests by their first call
    groups: dict[str, list[Any]] = {}
    for i, example in enumerate(raw):
        calls = example.get("calls") if isinstance(example, Mapping) else None
        first = calls[0].get("name") if isinstance(calls, list) and calls and isinstance(calls[0], Mapping) else None
        if first not in specs:
            raise InvalidExampleError(
                f"corpus request {i}: expected {{'query', 'calls': [{{'name', 'arguments'}}, ...]}} whose first "
                f"call names a corpus tool, got {example!r:.120}"
            )
        groups.setdefault(first, []).append(example)
    examples = [e for name, group in groups.items() for e in normalize_examples(specs[name], group, specs)]
    return list(specs.values()), examples


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
    body = memory.decoder(backbone)
    start = len(shared)
    prefix = body(input_ids=torch.tensor([list(shared)], device=device), use_cache=True).past_key_values
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
    hidden = body(
        inputs_embeds=memory.embed(backbone, rows, ids.to(device)),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        past_key_values=cache,
        use_cache=True,
    ).last_hidden_state

    # target[j] is predicted at the position of the token before it
    selected, labels = [], []
    for row, example in enumerate(batch):
        first = len(example.prefix) - start - 1
        selected.append(hidden[row, first : first + len(example.target)])
        labels.extend(example.target)
    h = torch.cat(selected, dim=0)
    return F.cross_entropy(memory.logits(backbone, rows, h).float(), torch.tensor(labels, device=device))


def apply_adapter(backbone: Backbone, adapter: Adapter, *, copy_model: bool = True) -> Backbone:
    """Merges an adapter into a base backbone.

    Args:
        backbone: The base backbone the adapter was trained on.
        adapter: The adapter.
        copy_model: Merge into a copy (default) so that ``backbone`` stays as it was;
            pass False for a backbone nobody else holds.

    Raises:
        BackboneError: The backbone is already adapted.
        BackboneMismatchError: The adapter was trained on other base weights.
    """
    from peft import set_peft_model_state_dict

    if backbone.adapter is not None:
        raise BackboneError(f"backbone {backbone.name!r} is already adapted ({backbone.adapter.id})")
    if backbone.fingerprint != adapter.base_fingerprint:
        raise BackboneMismatchError(
            f"adapter {adapter.id} was trained on backbone {adapter.base_name!r} ({adapter.base_fingerprint}), "
            f"not on {backbone.name!r} ({backbone.fingerprint})"
        )
    model = copy.deepcopy(backbone.model) if copy_model else backbone.model
    peft_model = inject_lora(model, adapter.lora)
    result = set_peft_model_state_dict(peft_model, {k: v.to(backbone.device) for k, v in adapter.weights.items()})
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing or result.unexpected_keys:
        raise BackboneMismatchError(
            f"adapter {adapter.id} does not fit backbone {backbone.name!r}: "
            f"missing {missing[:3]}, unexpected {list(result.unexpected_keys)[:3]}"
        )
    return _adapted(backbone, peft_model.merge_and_unload(), adapter)


def shipped_adapter(name: str) -> Adapter | None:
    """The adapter shipped with agentmem for a backbone alias, if there is one."""
    folder = SHIPPED_DIR / name
    return Adapter.load(folder) if (folder / ADAPTER_CONFIG).is_file() else None


def prepare_backbone(backbone: str | Backbone, adapted: bool | None = None, device: str | None = None) -> Backbone:
    """The backbone `AgentMem` runs on, with or without the shipped adaptation.

    Args:
        backbone: A name (loaded here) or a `Backbone` (used as given unless ``adapted``
            asks for the shipped adapter, which is then merged into a copy).
        adapted: ``None`` (default): a name gets its shipped adapter when one exists;
            ``True``: require it; ``False``: the plain backbone.
        device: Where to load a named backbone.

    Raises:
        BackboneError: ``adapted=True`` but nothing is shipped for this backbone, or
            ``adapted=False`` for a `Backbone` that is already adapted.
    """
    if isinstance(backbone, Backbone):
        if adapted is False and backbone.adapter is not None:
            raise BackboneError(f"backbone {backbone.name!r} is already adapted ({backbone.adapter.id}); load the base one")
        if adapted and backbone.adapter is None:
            return apply_adapter(backbone, _require_shipped(backbone.name))
        return backbone
    base = load_backbone(backbone, device=device)
    if adapted is False:
        return base
    adapter = _require_shipped(backbone) if adapted else shipped_adapter(backbone)
    if adapter is None:
        return base
    if adapted is None and adapter.base_fingerprint != base.fingerprint:
        warnings.warn(
            f"the shipped adaptation of {backbone!r} was made for weights {adapter.base_fingerprint}, these are "
            f"{base.fingerprint}; running without it (pass adapted=False to silence this)",
            stacklevel=3,
        )
        return base
    return apply_adapter(base, adapter, copy_model=False)


def _require_shipped(name: str) -> Adapter:
    adapter = shipped_adapter(name)
    if adapter is None:
        have = sorted(p.name for p in SHIPPED_DIR.iterdir() if p.is_dir()) if SHIPPED_DIR.is_dir() else []
        raise BackboneError(
            f"no shipped adaptation for backbone {name!r} (shipped: {', '.join(have) or 'none'}); "
            "make one with AgentMem.adapt(corpus) or `agentmem adapt`"
        )
    return adapter


def _adapted(base: Backbone, merged: torch.nn.Module, adapter: Adapter) -> Backbone:
    merged.eval()
    for param in merged.parameters():
        param.requires_grad_(False)
    return Backbone(
        name=base.name,
        model=merged,
        tokenizer=base.tokenizer,
        fingerprint=adapted_fingerprint(base.fingerprint, adapter.id),
        adapter=adapter,
    )


def inject_lora(model: torch.nn.Module, lora: dict[str, Any]) -> Any:
    """Injects a fresh LoRA into ``model`` in place; returns the peft wrapper."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=int(lora["r"]),
        lora_alpha=lora["alpha"],
        lora_dropout=float(lora["dropout"]),
        target_modules=list(lora["target_modules"]),
        bias="none",
    )
    with warnings.catch_warnings():  # peft calls a transformers property deprecated in v5
        warnings.simplefilter("ignore", FutureWarning)
        return get_peft_model(model, config)


def _shared_prefix(prompts: Sequence[Sequence[int]]) -> tuple[int, ...]:
    """The longest common start of every prompt, leaving each at least one token of its own
    (whose hidden state predicts the first target token)."""
    shortest = min(len(p) for p in prompts)
    length = 0
    while length < shortest - 1 and all(p[length] == prompts[0][length] for p in prompts):
        length += 1
    return tuple(prompts[0][:length])


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


def _native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
