"""The one interface every evaluated method implements, and the registry of methods.

A method is fitted once on the training requests and the tool inventory, then predicts
plans for batches of test requests::

    method = build_method("rag", backbone, settings)
    record = method.fit(train, tools)          # FitRecord: seconds, trainable parameters
    predictions = method.predict(queries)      # one Prediction per query

Methods (all on the same frozen backbone, fitted on the same training requests):

* ``icl``: every tool's compact schema in the system prompt, plus a few demonstrations
  (`agentmem.eval.icl`);
* ``rag``: the top-k tools by BM25 for each request, then as ICL;
* ``lora``: a LoRA on the query and value projections fine-tuned on the training requests,
  tool names written as plain text (`agentmem.eval.lora`);
* ``tokmem``: one memory token per tool, `AgentMem.learn_tools` then `AgentMem.plan_batch`
  (`agentmem.eval.tokmem`);
* ``tokmem-adapted``: the same on the adapted backbone (the shipped adaptation, or an
  adapter folder given in the settings); unavailable when there is none.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from agentmem.backbone import Backbone
from agentmem.decoding import DecodeSettings
from agentmem.errors import AgentMemError
from agentmem.training import LrSchedule, TrainConfig

__all__ = [
    "METHODS",
    "FitRecord",
    "Method",
    "MethodSettings",
    "MethodUnavailableError",
    "Prediction",
    "build_method",
]

#: Every method name `build_method` knows, in report order.
METHODS: tuple[str, ...] = ("icl", "rag", "lora", "tokmem", "tokmem-adapted")


class MethodUnavailableError(AgentMemError, RuntimeError):
    """A method cannot run here (e.g. no adaptation exists for the backbone)."""


@dataclass
class MethodSettings:
    """Settings shared by the runner and the methods (defaults sized for a 2-core CPU)."""

    batch_size: int = 8
    """Requests planned together."""
    max_calls: int = 8
    """Most calls per plan (every method stops there)."""
    max_new_tokens: int = 512
    """Most tokens a text baseline may generate per request (99% of ComplexFuncBench's
    2-4-call gold plans fit in 518)."""
    max_line_tokens: int = 160
    """Most tokens in one line (one call) of a text baseline: TokMem's decoder ends a call
    whose arguments pass 128 tokens; 160 leaves room for the tool name."""
    demonstrations: int = 3
    """Training requests shown as demonstrations to ICL and RAG."""
    rag_k: int = 5
    """Tools retrieved per request by RAG."""
    epochs: int = 10
    """Passes over the training requests (LoRA and TokMem). A benchmark's training part is
    small (ComplexFuncBench: about 65 requests after the per-tool cap), so 3 passes gave
    each memory row too few steps: plans stopped early (BENCHMARKS.md)."""
    train_batch_size: int = 4
    """Training requests per optimizer step (LoRA and TokMem)."""
    tokmem_lr: float = 5e-3
    """Learning rate of the memory rows."""
    lora_lr: float = 1e-3
    """Learning rate of the LoRA baseline."""
    lora_r: int = 8
    """Rank of the LoRA baseline (on q_proj and v_proj, alpha 4r, as TokMem's adaptation)."""
    adapter: str | None = None
    """Adapter folder for ``tokmem-adapted`` (default: the one shipped for the backbone)."""
    route_from_last_turn: bool = True
    """TokMem's training: also teach each conversation example's routing from its last user
    message alone (`AgentMem.learn_tools`; True, as its default)."""
    reroute_unfounded: bool | None = None
    """TokMem's decoding: reroute calls that invent a value (`DecodeSettings.reroute_unfounded`).
    None: the library's default, as `AgentMem.plan` (no setting chosen per dataset)."""
    optional_bias: float = DecodeSettings.optional_bias
    """TokMem's decoding: the bonus to writing optional arguments (`DecodeSettings.optional_bias`)."""
    averaged_runs: int = 1
    """TokMem's training: runs averaged into the rows (`TrainConfig.averaged_runs`; 1, as its
    default)."""
    lr_schedule: LrSchedule = TrainConfig.lr_schedule
    """TokMem's training: the rows' learning-rate schedule (`TrainConfig.lr_schedule`; its
    default)."""
    seed: int = 0
    """Seeds demonstrations, training order and initialisation."""
    progress: bool = True
    """Show progress bars."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FitRecord:
    """What fitting a method cost.

    Attributes:
        seconds: Wall-clock seconds of `Method.fit`.
        trainable_parameters: Parameters trained (0 for prompting methods).
        examples: Training requests the method drew on (trained on, or picked
            demonstrations from).
        details: Method-specific facts (losses, prompt sizes, ...), JSON-serialisable.
    """

    seconds: float
    trainable_parameters: int
    examples: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Prediction:
    """One request's plan as a method produced it.

    Attributes:
        calls: Valid calls ``{"name", "arguments"}`` in order; None when the output could
            not be read as calls at all (a parse failure).
        invalid: Attempted calls that did not parse or validate: ``{"name", "raw", "reason"}``.
        prompt_tokens: Tokens of the prompt the model read for this request.
        generated_tokens: Tokens the model generated.
        text: The raw text output (text baselines) or free text (TokMem).
    """

    calls: list[dict[str, Any]] | None
    invalid: list[dict[str, str]]
    prompt_tokens: int
    generated_tokens: int
    text: str = ""


class Method(abc.ABC):
    """A way of planning tool calls with the backbone."""

    name: str

    def __init__(self, backbone: Backbone, settings: MethodSettings) -> None:
        self.backbone = backbone
        self.settings = settings

    @abc.abstractmethod
    def fit(self, train: Sequence[dict], tools: dict[str, dict]) -> FitRecord:
        """Prepares the method on the training requests and the tool inventory.

        Args:
            train: Requests ``{"query", "calls": [{"name", "arguments"}, ...]}``.
            tools: The inventory, by name: ``{"name", "description", "parameters"}``.
        """

    @abc.abstractmethod
    def predict(self, queries: Sequence[str]) -> list[Prediction]:
        """Plans each query; one `Prediction` per query, in order. Never raises on
        model output."""


def check_methods(methods: Sequence[str]) -> None:
    """Raises ValueError naming every unknown method and the allowed ones."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; allowed: {', '.join(METHODS)}")


def build_method(name: str, backbone: Backbone, settings: MethodSettings) -> Method:
    """A fresh, unfitted method.

    Raises:
        ValueError: Unknown method name (the message lists the known ones).
        MethodUnavailableError: The method cannot run with this backbone.
    """
    from agentmem.eval.icl import ICLMethod, RAGMethod
    from agentmem.eval.lora import LoRAMethod
    from agentmem.eval.tokmem import TokMemMethod

    if name == "icl":
        return ICLMethod(backbone, settings)
    if name == "rag":
        return RAGMethod(backbone, settings)
    if name == "lora":
        return LoRAMethod(backbone, settings)
    if name in ("tokmem", "tokmem-adapted"):
        return TokMemMethod(backbone, settings, adapted=name == "tokmem-adapted")
    raise ValueError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}")
