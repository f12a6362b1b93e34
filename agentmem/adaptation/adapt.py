"""The adaptation phase: a LoRA trained once on auxiliary tools, then merged into the backbone.

TokMem's strongest results come after a one-time adaptation of the backbone: a LoRA (r=8,
alpha 32, dropout 0.1 on the query and value projections) trained jointly with temporary
memory rows for the tools of an auxiliary corpus, with the loss on memory-token and
argument positions only. The backbone learns to route to memory tokens and to copy argument
values; the LoRA is then merged into the weights (peft ``merge_and_unload``), everything is
frozen again, and the temporary rows are dropped. The user's tools, disjoint from the
corpus's, are learned afterwards as usual.

The training loop is the LoRA trainer's (`agentmem.adaptation.lora`); the result is an
`agentmem.adaptation.adapter.Adapter`, saved with banks and resolved by `resolve_backbone`. The
default corpus is `agentmem.adaptation.corpus.adaptation_corpus`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from agentmem import memory
from agentmem.adaptation.adapter import Adapter, merge_lora
from agentmem.adaptation.lora import LoRAConfig, lora_copy, train_lora
from agentmem.adaptation.resolve import adapted_backbone
from agentmem.backbone import Backbone
from agentmem.chat import read_call
from agentmem.encoding import encode_example
from agentmem.errors import BackboneError, InvalidExampleError
from agentmem.memory import MemoryBank
from agentmem.tools.examples import Example, normalize_examples, request_calls
from agentmem.tools.spec import ToolSpec, to_tool_spec

__all__ = ["AdaptConfig", "AdaptReport", "adapt_backbone", "read_corpus"]

#: Settings of the adaptation phase: the LoRA trainer's, whose defaults are the phase's.
AdaptConfig = LoRAConfig


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
        return [
            round(sum(w) / len(w), 4) for w in (self.losses[i : i + size] for i in range(0, len(self.losses), size))
        ]


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
        raise BackboneError(
            f"backbone {backbone.name!r} is already adapted ({backbone.adapter.id}); adapt the base backbone instead"
        )
    if not examples:
        raise ValueError("the adaptation corpus has no examples")
    started = time.perf_counter()
    work, peft_model = lora_copy(backbone, config)

    # temporary rows, one per corpus tool, trained with the LoRA and dropped afterwards
    bank = MemoryBank(backbone.hidden_size)
    bank.add([s.name for s in specs], memory.mean_embedding(backbone))
    rows = torch.nn.Parameter(bank.rows.to(backbone.device))
    schemas = {s.name: s.parameters for s in specs}
    encoded = [
        encode_example(
            backbone.tokenizer, e, lambda n: backbone.vocab_size + bank.index(n), backbone.eos_token_id, schemas
        )
        for e in examples
    ]
    run = train_lora(work, rows, encoded, config, desc="adapting")
    losses = run.losses

    weights = {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(peft_model).items()}
    merged = merge_lora(peft_model)
    seconds = time.perf_counter() - started
    report = AdaptReport(
        tools=len(specs),
        examples=len(encoded),
        steps=len(losses),
        seconds=seconds,
        tokens_per_second=run.tokens / seconds,
        first_loss=losses[0],
        last_loss=losses[-1],
        losses=losses,
        trainable_parameters=sum(v.numel() for v in weights.values()),
    )
    adapter = Adapter(
        lora=config.lora(),
        weights=weights,
        base_name=backbone.name,
        base_fingerprint=backbone.fingerprint,
        training=_record(report, config, run.bf16),
    )
    return adapted_backbone(backbone, merged, adapter), report


def _record(report: AdaptReport, config: AdaptConfig, bf16: bool) -> dict[str, Any]:
    """How the adapter was trained, as saved in ``adapter.json``."""
    return {
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


def read_corpus(corpus: Any) -> tuple[list[ToolSpec], list[Example]]:
    """The tools and validated requests of an adaptation corpus.

    Args:
        corpus: An object with ``tools`` (schemas, or a dict of them by name) and
            ``examples`` (``{"query", "calls": [...]}``, or ``{"query", "calls": [],
            "answer": str}`` for a request the model should answer in words), or a
            ``(tools, examples)`` pair. A request may be a conversation (``"messages"``)
            that ends in the results of its calls so far, followed by the plan's next
            calls or none (``"calls": []``: it is done).

    Raises:
        SchemaError: A tool is not a valid definition.
        InvalidExampleError: A request is malformed, breaks a schema or calls an unknown tool.
    """
    tools, raw = corpus if isinstance(corpus, tuple) else (corpus.tools, corpus.examples)
    specs = {spec.name: spec for spec in map(to_tool_spec, tools.values() if isinstance(tools, Mapping) else tools)}
    # normalize_examples checks a tool's own examples: group requests by their first call
    # (a trace done after its results joins the group of a call it made)
    groups: dict[str, list[Any]] = {}
    answered: list[Example] = []
    done: list[tuple[int, Any]] = []
    for i, example in enumerate(raw):
        if isinstance(example, Mapping) and "answer" in example:
            answered.append(_answered(i, example))
            continue
        calls = example.get("calls") if isinstance(example, Mapping) else None
        if calls == [] and isinstance(example.get("messages"), list):
            done.append((i, example))
            continue
        first = calls[0].get("name") if isinstance(calls, list) and calls and isinstance(calls[0], Mapping) else None
        if first not in specs:
            raise InvalidExampleError(
                f"corpus request {i}: expected {{'query', 'calls': [{{'name', 'arguments'}}, ...]}} whose first "
                f"call names a corpus tool, got {example!r:.120}"
            )
        groups.setdefault(first, []).append(example)
    for i, example in done:
        made = [read_call(c).name for c in request_calls(example["messages"])]
        group = next((n for n in reversed(made) if n in groups), None)
        if group is None:
            raise InvalidExampleError(
                f"corpus request {i}: a request done after its calls' results (no calls) must end in the results "
                f"of calls to corpus tools that other requests call, got {example!r:.120}"
            )
        groups[group].append(example)
    examples = [e for name, group in groups.items() for e in normalize_examples(specs[name], group, specs)]
    return list(specs.values()), examples + answered


def _answered(i: int, example: Mapping[str, Any]) -> Example:
    """A request that needs no tool: its query and the answer in words."""
    query, answer = example.get("query"), example.get("answer")
    if not (isinstance(query, str) and query.strip() and isinstance(answer, str) and answer.strip()):
        raise InvalidExampleError(
            f"corpus request {i}: a request answered in words needs a non-empty 'query' and 'answer', got {example!r:.120}"
        )
    if example.get("calls"):
        raise InvalidExampleError(f"corpus request {i}: give 'answer' (no tool) or 'calls', not both")
    return Example(query=query.strip(), calls=(), answer=answer.strip())
