"""The fine-tuning baseline: a LoRA trained on the training requests, tools named in text.

The LoRA has the shape of TokMem's adaptation (rank ``lora_r`` on the query and value
projections, alpha ``4 * lora_r``, dropout 0.1) and is trained, with the backbone frozen,
on the same training requests as TokMem, none holding a result reference (the runner
leaves those out for every method, so no plan text teaches ``"$varN.field$"``):

    chat(query) -> "Search_Hotel_Destination {"query":"Paris"}\\nSearch_Hotels {...}" <eos>

the request in the backbone's own chat template (no tool list: the model has to learn the
tools), the plan in the text format of `agentmem.eval.textplan`, the loss on the plan's
tokens only. Training is the adaptation phase's loop (`agentmem.adaptation.lora.train_lora`, no memory
rows): AdamW, linear warmup over the first 5% of steps then cosine decay to a tenth,
gradient norm clipped to 1, ``epochs`` passes over batches of similar length, in float32.
After training the LoRA is merged into a copy of the backbone (the backbone given stays
untouched) and plans are generated greedily and parsed like ICL's.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from agentmem.adaptation.adapter import merge_lora
from agentmem.adaptation.lora import LoRAConfig, lora_copy, train_lora
from agentmem.backbone import Backbone
from agentmem.encoding import EncodedExample, prompt_ids
from agentmem.eval.generation import generate_plans
from agentmem.eval.methods import FitRecord, Method, Prediction
from agentmem.eval.textplan import render_plan
from agentmem.tools.spec import ToolSpec, to_tool_spec

__all__ = ["LoRAMethod"]


class LoRAMethod(Method):
    """LoRA fine-tuning on the training requests, with tool names as plain text."""

    name = "lora"

    def fit(self, train: Sequence[dict], tools: dict[str, dict]) -> FitRecord:
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
        config = LoRAConfig(
            r=settings.lora_r,
            alpha=4 * settings.lora_r,
            lr=settings.lora_lr,
            epochs=settings.epochs,
            batch_size=settings.train_batch_size,
            bf16=False,
            seed=settings.seed,
            progress=settings.progress,
        )
        work, peft_model = lora_copy(self.backbone, config)  # only the LoRA's weights train
        run = train_lora(work, None, encoded, config, desc="lora: training")
        params = sum(p.numel() for p in work.model.parameters() if p.requires_grad)
        self.tuned = Backbone(
            name=self.backbone.name, model=merge_lora(peft_model), tokenizer=tokenizer, fingerprint="lora-baseline"
        )
        losses = run.losses
        return FitRecord(
            seconds=time.perf_counter() - started,
            trainable_parameters=params,
            examples=len(encoded),
            details={
                "steps": len(losses),
                "first_loss": round(losses[0], 4) if losses else None,
                "last_loss": round(losses[-1], 4) if losses else None,
                "training_tokens": run.tokens,
            },
        )

    def predict(self, queries: Sequence[str]) -> list[Prediction]:
        prompts = [prompt_ids(self.tuned.tokenizer, q) for q in queries]
        return generate_plans(self.tuned, prompts, self.specs, self.settings, self.name)
