"""The fine-tuning baseline: a LoRA trained on the training requests, tools named in text.

The LoRA has the shape of TokMem's adaptation (rank ``lora_r`` on the query and value
projections, alpha ``4 * lora_r``, dropout 0.1) and is trained, with the backbone frozen,
on the same training requests as TokMem:

    chat(query) -> "Search_Hotel_Destination {"query":"Paris"}\\nSearch_Hotels {...}" <eos>

the request in the backbone's own chat template (no tool list: the model has to learn the
tools), the plan in the text format of `agentmem.eval.textplan`, the loss on the plan's
tokens only (`shared_prefix_loss`, with no memory rows). AdamW, linear warmup over the
first 5% of steps then cosine decay to a tenth, gradient norm clipped to 1, ``epochs``
passes over batches of similar length. After training the LoRA is merged into a copy of
the backbone (the backbone given stays untouched) and plans are generated greedily and
parsed like ICL's.
"""

from __future__ import annotations

import copy
import math
import random
import time
import warnings
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from agentmem.adaptation import shared_prefix_loss
from agentmem.backbone import Backbone
from agentmem.encoding import EncodedExample, prompt_ids
from agentmem.eval.generation import common_prefix, generate_plans
from agentmem.eval.methods import FitRecord, Method, Prediction
from agentmem.eval.textplan import render_plan
from agentmem.tools.spec import ToolSpec, to_tool_spec

__all__ = ["LoRAMethod"]

_TARGET_MODULES = ["q_proj", "v_proj"]
_WARMUP = 0.05


class LoRAMethod(Method):
    """LoRA fine-tuning on the training requests, with tool names as plain text."""

    name = "lora"

    def fit(self, train: Sequence[dict], tools: dict[str, dict]) -> FitRecord:
        from peft import LoraConfig, get_peft_model

        started = time.perf_counter()
        settings, tokenizer = self.settings, self.backbone.tokenizer
        self.specs: dict[str, ToolSpec] = {name: to_tool_spec(tool) for name, tool in tools.items()}
        schemas = {name: spec.parameters for name, spec in self.specs.items()}
        encoded = [
            EncodedExample(
                prefix=tuple(prompt_ids(tokenizer, ex["query"])),
                target=tuple(tokenizer(render_plan(ex["calls"], schemas), add_special_tokens=False)["input_ids"])
                + (self.backbone.eos_token_id,),
            )
            for ex in train
        ]
        shared = common_prefix([e.prefix for e in encoded])

        # a LoRA in a copy of the backbone; only its weights train
        torch.manual_seed(settings.seed)
        model = copy.deepcopy(self.backbone.model)
        config = LoraConfig(
            r=settings.lora_r, lora_alpha=4 * settings.lora_r, lora_dropout=0.1, target_modules=_TARGET_MODULES, bias="none"
        )
        with warnings.catch_warnings():  # peft calls a transformers property deprecated in v5
            warnings.simplefilter("ignore", FutureWarning)
            peft_model = get_peft_model(model, config)
        work = Backbone(name=self.backbone.name, model=model, tokenizer=tokenizer, fingerprint=self.backbone.fingerprint)
        params = [p for p in model.parameters() if p.requires_grad]
        rows = torch.zeros(0, self.backbone.hidden_size, device=self.backbone.device)  # no memory tokens
        optimizer = torch.optim.AdamW(params, lr=settings.lora_lr, weight_decay=0.0)
        rng = random.Random(f"lora:{settings.seed}")
        plan = [b for _ in range(settings.epochs) for b in _batches([e.length for e in encoded], settings.train_batch_size, rng)]
        warmup = max(1, int(_WARMUP * len(plan)))

        losses: list[float] = []
        model.train()  # LoRA dropout on
        for step, chosen in enumerate(tqdm(plan, desc="lora: training", disable=not settings.progress, leave=False)):
            for group in optimizer.param_groups:
                group["lr"] = settings.lora_lr * _lr_factor(step, len(plan), warmup)
            # forward, backward, clip, update
            loss = shared_prefix_loss(work, rows, [encoded[i] for i in chosen], shared)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            losses.append(loss.item())

        merged = peft_model.merge_and_unload()
        merged.eval()
        for param in merged.parameters():
            param.requires_grad_(False)
        self.tuned = Backbone(name=self.backbone.name, model=merged, tokenizer=tokenizer, fingerprint="lora-baseline")
        return FitRecord(
            seconds=time.perf_counter() - started,
            trainable_parameters=sum(p.numel() for p in params),
            examples=len(encoded),
            details={
                "steps": len(losses),
                "first_loss": round(losses[0], 4) if losses else None,
                "last_loss": round(losses[-1], 4) if losses else None,
                "training_tokens": sum(e.length for e in encoded) * settings.epochs,
            },
        )

    def predict(self, queries: Sequence[str]) -> list[Prediction]:
        prompts = [prompt_ids(self.tuned.tokenizer, q) for q in queries]
        return generate_plans(self.tuned, prompts, self.specs, self.settings, self.name)


def _batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Batches of examples of similar length (little padding), in shuffled order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 8
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def _lr_factor(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))
