"""AgentMem: the object users hold. Learn tools, plan requests, save and load banks.

Learning and forgetting live in `agentmem.learning`, saving and loading in
`agentmem.persistence`; `AgentMem` takes their methods from the two mixins.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any, TypedDict

from typing_extensions import Unpack

from agentmem.adaptation.adapt import AdaptConfig, AdaptReport, adapt_backbone, read_corpus
from agentmem.adaptation.resolve import resolve_backbone
from agentmem.backbone import DEFAULT_BACKBONE, Backbone
from agentmem.chat import tool_choice_policy
from agentmem.decoding import MODEL_LOCK, Decoder, DecodeSettings
from agentmem.decoding.settings import options_help
from agentmem.encoding import (
    Messages,
    copy_source_text,
    last_turn_ids,
    prompt_ids,
    resumed_prompt_ids,
    source_text,
)
from agentmem.errors import BackboneError, PromptTooLongError
from agentmem.learning import LearningMixin
from agentmem.locking import FairLock, locked
from agentmem.memory import MemoryBank
from agentmem.persistence import PersistenceMixin
from agentmem.scheduler import Scheduler
from agentmem.tools.calls import Plan, ToolCall
from agentmem.tools.examples import Example
from agentmem.tools.spec import ToolSpec
from agentmem.training import LearnReport

__all__ = ["REQUEST_OPTIONS", "AdaptReport", "AgentMem", "LearnReport", "PlanOptions"]


class PlanOptions(TypedDict, total=False):
    """Options of `AgentMem.plan`, `plan_batch` and `submit`: every field of `DecodeSettings`
    (its meaning and default in the field's ``metadata["help"]``, listed in `AgentMem.plan`'s
    docstring), plus `REQUEST_OPTIONS`. The types are written here for type checkers; a
    test checks that the keys are exactly those."""

    tool_choice: Any
    tools: Sequence[str] | None
    max_calls: int
    max_argument_tokens: int
    max_text_tokens: int
    constrained: bool
    jump_forward: bool
    copy_drafts: bool
    copy_bias: float
    drop_unfounded: bool
    reroute_unfounded: bool
    optional_bias: float
    complete_plan: bool
    fall_back_to_text: bool
    route_by_last_turn: bool
    unique_enum_items: bool
    strip_leading_space: bool
    max_prompt_tokens: int | None
    resume: bool


#: The options of a request that are not the decoder's (`DecodeSettings`), with their help.
REQUEST_OPTIONS: tuple[tuple[str, str], ...] = (
    ("max_prompt_tokens", "Refuse a longer prompt (`PromptTooLongError`) before decoding. Default: None."),
    (
        "resume",
        "When the messages end in the results of calls made since the last user message (an "
        "agent run in progress), continue that plan: the model emits its next call or ends the "
        "plan, shown the results when the bank learned to read them (`AgentMem.reads_results`; "
        'see `resumed_prompt_ids`). Ignored with tool_choice="none". Default: False.',
    ),
)


class AgentMem(LearningMixin, PersistenceMixin):
    """A frozen language model with a procedural memory of tools.

    Each learned tool is one memory token: a trained embedding row the model emits when a
    request needs the tool, followed by the tool's arguments as JSON.

    Args:
        backbone: An alias (``"smollm2-135m"``, the embedded default, or ``"gemma3-270m"``),
            a Hugging Face id, a local folder, a ``.gguf`` file, or an already-loaded `Backbone`.
        device: ``"cpu"``, ``"cuda"``...; default: CUDA when available, else CPU.
        adapted: Whether to merge the adaptation shipped for a named backbone (the LoRA of
            the one-time adaptation phase; see `adapt`). ``None`` (default): when one is
            shipped (``"smollm2-135m"``; none yet for ``"gemma3-270m"``); ``True``: require it; ``False``: the plain
            backbone. A `Backbone` object is used as given unless ``adapted=True``.
        weights: The backbone weights planning computes with: ``"float32"`` (default),
            ``"int8"`` (CPU only) or ``"bfloat16"``; see `weights`. Learning always uses float32.

    Example:
        >>> mem = AgentMem()
        >>> mem.learn_tool(get_weather_schema, examples)
        >>> mem.plan("What's the weather in Paris in celsius?").calls

    Attributes:
        lock: Held by every call that uses the model or changes the bank (planning, learning,
            adapting, forgetting), so that AgentMem is safe to share between threads; one
            lock for the process (`agentmem.decoding.MODEL_LOCK`), since banks share
            backbones and tokenizers. Hold it to make several calls one step (check, then learn).
    """

    lock: FairLock = MODEL_LOCK

    def __init__(
        self,
        backbone: str | Backbone = DEFAULT_BACKBONE,
        *,
        device: str | None = None,
        adapted: bool | None = None,
        weights: str = "float32",
    ) -> None:
        self.backbone = resolve_backbone(backbone, adapted, device=device)
        self.bank = MemoryBank(self.backbone.hidden_size)
        self._specs: dict[str, ToolSpec] = {}
        self._training: dict[str, dict[str, Any]] = {}
        self._kept: dict[str, list[Example]] = {}  # per tool, a sample of its examples, for rehearsal
        self._planner = self.backbone.with_weights(weights)
        self._decoder = Decoder(self._planner, self.bank, self._specs)
        self._scheduler: Scheduler | None = None

    @property
    def weights(self) -> str:
        """The backbone weights planning computes with, one of `agentmem.backbone.WEIGHTS`:
        ``float32`` (default), ``int8`` (CPU only: the transformer body's ``Linear`` layers
        compute decoding steps in int8, prompts in bfloat16 where the CPU has it natively) or
        ``bfloat16`` (bfloat16 copies of those layers, the body under bfloat16 autocast);
        `agentmem.backbone.Backbone.with_weights`. On SmolLM2-135M and the project's AMX CPU,
        int8 planned the demo pack in about 0.65x the float32 time, within a point or ahead
        there, on ComplexFuncBench and on BFCL with the conversation, but 3 of 92 BFCL turns
        planned alone lost their exact match; bfloat16 prefills 2-3x faster but a one-row
        decoding step is no faster, and it changed 3 of 120 demo-pack plans (BENCHMARKS),
        hence both off by default.
        Learning and adapting always use the float32 backbone (``self.backbone``); memory
        rows, the embedding table and the LM head stay float32 either way. Setting it switches the
        planner: the backbone's copy at those weights, made on first use (a few seconds for int8)
        and shared by every AgentMem on the same backbone (`Backbone.with_weights`). Saved banks
        do not record it (the fingerprint is the float32 weights'), so pass ``weights=`` to `load`
        as to the constructor.

        Raises:
            ValueError: A value not in `agentmem.backbone.WEIGHTS` (the message names them).
        """
        return self._planner.weights

    @weights.setter
    def weights(self, weights: str) -> None:
        planner = self.backbone.with_weights(weights)
        with self.lock:
            self._planner = planner
            self._decoder = Decoder(planner, self.bank, self._specs)

    @property
    def scheduler(self) -> Scheduler:
        """The continuous-batching scheduler `submit` queues requests to (made on first use;
        set its ``max_batch`` and ``max_queue`` to bound it)."""
        with self.lock:  # two threads asking first must get one scheduler, or requests split
            if self._scheduler is None or self._scheduler.decoder is not self._decoder:
                self._scheduler = Scheduler(self._decoder)
            return self._scheduler

    @property
    def tools(self) -> list[ToolSpec]:
        """The learned tools, in memory-row order."""
        return [self._specs[name] for name in self.bank.names]

    def memory_token_id(self, name: str) -> int:
        """The token id of a learned tool (past the backbone's vocabulary)."""
        return self.backbone.vocab_size + self.bank.index(name)

    @property
    def reads_results(self) -> bool:
        """Whether a resumed plan (``plan(..., resume=True)``) is shown the results of its
        calls: True once some tool was learned from traces that go on after their calls'
        results (`agentmem.tools.examples.Example.resumes`; recorded in its training record,
        so a saved bank resumes as the live one). A bank never trained to read a result
        resumes after its calls without them (`resumed_prompt_ids`)."""
        return any(record.get("reads_results") for record in self._training.values())

    @property
    def schemas(self) -> dict[str, dict[str, Any]]:
        """Each learned tool's argument schema, by name (key order is the order arguments are written in)."""
        return {name: spec.parameters for name, spec in self._specs.items()}

    # adaptation

    @locked
    def adapt(self, corpus: Any, epochs: int = 1, **config: Any) -> AdaptReport:
        """Runs the one-time adaptation phase on a corpus of auxiliary tools.

        A LoRA (by default r=8, alpha 32, dropout 0.1 on the query and value projections)
        is trained jointly with temporary memory rows for the corpus's tools, the loss on
        memory-token and argument positions only; it is then merged into the backbone's
        weights, everything is frozen again, and the temporary rows are dropped. The
        backbone gets a new fingerprint, and banks saved from now on carry the adapter.

        Args:
            corpus: An object with ``tools`` (schemas, or a dict of them by name) and
                ``examples`` (``{"query", "calls": [...]}``), such as
                ``agentmem.adaptation.corpus.adaptation_corpus()``, or a ``(tools, examples)``
                pair. Use tools disjoint from the ones you will learn.
            epochs: Passes over the corpus.
            **config: Other fields of `AdaptConfig` (``lr``, ``memory_lr``, ``r``,
                ``alpha``, ``dropout``, ``target_modules``, ``batch_size``, ``seed``, ``progress``).

        Raises:
            BackboneError: Tools are already learned (their rows fit the old weights), or
                the backbone is already adapted.
            SchemaError, InvalidExampleError: A corpus tool or request is malformed.
        """
        if len(self.bank):
            raise BackboneError(
                f"adapt() changes the backbone under the {len(self.bank)} tools already learned "
                f"({', '.join(self.bank.names)}); adapt first, then learn (or forget them)"
            )
        settings = AdaptConfig(epochs=epochs, **config)
        specs, examples = read_corpus(corpus)
        self.backbone, report = adapt_backbone(self.backbone, specs, examples, settings)
        self.backbone.adapter.training["corpus"] = getattr(corpus, "name", None)
        # The adapted backbone is a new Backbone: its planning copy is made from the adapted
        # weights, never the one cached on the base backbone (`Backbone.with_weights`).
        self._planner = self.backbone.with_weights(self._planner.weights)
        self._decoder = Decoder(self._planner, self.bank, self._specs)
        return report

    # planning

    def plan(self, request: str | Messages, **options: Unpack[PlanOptions]) -> Plan:
        """Plans the tool calls a request needs: ``plan_batch([request], **options)[0]``.

        Args:
            request: A string, or chat messages (system, user, assistant turns with
                ``tool_calls``, ``tool`` results) rendered with the backbone's template.
            **options: `PlanOptions`, each as below (`DecodeSettings`, then `REQUEST_OPTIONS`).

        Options:
            {options}

        Returns:
            A Plan: ``calls`` (validated), ``invalid_calls`` (with reasons), ``text``.
        """
        return self.plan_batch([request], **options)[0]

    plan.__doc__ = (plan.__doc__ or "").replace(" " * 12 + "{options}", options_help(REQUEST_OPTIONS, indent=12))

    def plan_batch(
        self, requests: Sequence[str | Messages], *, batch_size: int = 8, **options: Unpack[PlanOptions]
    ) -> list[Plan]:
        """Plans many requests, ``batch_size`` at a time: the same plans as `plan` one by one.

        Every option of `plan` applies to each request; ``resume`` resumes each request that
        ends in an agent run in progress, and plans the others afresh.

        Raises:
            PromptTooLongError: A prompt is over ``max_prompt_tokens`` (nothing is decoded).
            UnknownToolError: ``tools`` or ``tool_choice`` names a tool the bank lacks.
            TypeError: An option `PlanOptions` does not name.
        """
        settings, resume, max_prompt_tokens = self._settings(options)
        with self.lock:  # the tokenizer and the bank, as well as the model
            self._decoder.check(settings)
            prompts = [self._prompt(r, resume, max_prompt_tokens) for r in requests]
            sources = [source_text(r) for r in requests]
            copy_sources = [copy_source_text(r) for r in requests]
            last_turns = [self._last_turn(r, settings) for r in requests]
            plans: list[Plan] = []
            for start in range(0, len(prompts), batch_size):
                window = slice(start, start + batch_size)
                ids, after = [p[0] for p in prompts[window]], [p[1] for p in prompts[window]]
                plans.extend(
                    self._decoder.decode(
                        ids, settings, sources[window], after, last_turns[window], copy_sources[window]
                    )
                )
        return plans

    def submit(
        self, request: str | Messages, *, time_limit: float | None = None, **options: Unpack[PlanOptions]
    ) -> Future[Plan]:
        """Queues a request to `scheduler`, which decodes it together with the other requests
        in flight (joining their batch at the next step); the plan is the one `plan` makes.

        Args:
            request: As in `plan`.
            time_limit: Seconds within which the plan must be made, counted from now: a
                request still queued then fails with `OverloadedError`, one decoding ends
                with ``finish_reason="time_limit"`` and the calls made so far.
            **options: The options of `plan` (`PlanOptions`).

        Returns:
            A future of the Plan; cancel it to stop its decoding at the next step.

        Raises:
            OverloadedError: The scheduler's queue is full.
            PromptTooLongError, UnknownToolError, TypeError: As `plan_batch`, before anything is queued.
        """
        settings, resume, max_prompt_tokens = self._settings(options)
        with self.lock:  # the tokenizer and the bank
            self._decoder.check(settings)
            ids, after = self._prompt(request, resume, max_prompt_tokens)
            last_turn = self._last_turn(request, settings)
            scheduler = self.scheduler
        return scheduler.submit(
            ids,
            settings,
            source=source_text(request),
            copy_source=copy_source_text(request),
            resumes_after=after,
            time_limit=time_limit,
            last_turn=last_turn,
        )

    def _settings(self, options: PlanOptions) -> tuple[DecodeSettings, bool, int | None]:
        """The decoder's settings for these options, whether to resume, and the prompt limit."""
        unknown = set(options) - set(PlanOptions.__annotations__)
        if unknown:
            raise TypeError(
                f"unknown planning option(s) {', '.join(sorted(unknown))}; "
                f"known: {', '.join(PlanOptions.__annotations__)}"
            )
        decode = {k: v for k, v in options.items() if k not in ("resume", "max_prompt_tokens")}
        tools = options.get("tools")
        names = list(tools) if tools is not None else list(self.bank.names)
        decode["tool_choice"] = tool_choice_policy(options.get("tool_choice", "auto"), names)
        settings = DecodeSettings(**decode)
        return (
            settings,
            options.get("resume", False) and settings.tool_choice != "none",
            options.get("max_prompt_tokens"),
        )

    def _prompt(
        self, request: str | Messages, resume: bool, max_prompt_tokens: int | None
    ) -> tuple[list[int], ToolCall | None]:
        """A request's prompt ids, and the call they resume its plan after (or None)."""
        tokenizer, schemas = self.backbone.tokenizer, self.schemas
        if resume:
            ids, after = resumed_prompt_ids(tokenizer, request, self.memory_token_id, schemas, self.reads_results)
        else:
            ids, after = prompt_ids(tokenizer, request, self.memory_token_id, schemas), None
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            raise PromptTooLongError(f"the prompt is {len(ids)} tokens, over the limit of {max_prompt_tokens}")
        return ids, after

    def _last_turn(self, request: str | Messages, settings: DecodeSettings) -> list[int] | None:
        """The prompt ids ``route_by_last_turn`` routes a conversation's first call from, if on."""
        if not settings.route_by_last_turn:
            return None
        return last_turn_ids(self.backbone.tokenizer, request, self.memory_token_id, self.schemas)

    def __repr__(self) -> str:
        return f"AgentMem(backbone={self.backbone.name!r}, tools={self.bank.names})"
