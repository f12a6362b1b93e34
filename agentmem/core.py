"""AgentMem: the object users hold. Learn tools, plan requests, save and load banks."""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import Any, TypedDict

from typing_extensions import Unpack

from agentmem import distributed
from agentmem.adaptation import AdaptConfig, AdaptReport, adapt_backbone, read_corpus
from agentmem.adapter import resolve_backbone
from agentmem.backbone import DEFAULT_BACKBONE, Backbone
from agentmem.bank_io import SavedBank, load_bank, save_bank
from agentmem.chat import tool_choice_policy
from agentmem.compose import compose_examples
from agentmem.decoding import MODEL_LOCK, Decoder, DecodeSettings
from agentmem.encoding import Messages, encode_example, prompt_ids, resumed_prompt_ids, source_text
from agentmem.errors import BackboneError, BackboneMismatchError, DuplicateToolError, PromptTooLongError
from agentmem.locking import FairLock
from agentmem.memory import MemoryBank, mean_embedding
from agentmem.scheduler import Scheduler
from agentmem.tools.calls import Plan
from agentmem.tools.examples import Example, OnInvalid, SkippedExample, normalize_examples
from agentmem.tools.spec import ToolSpec, to_tool_spec
from agentmem.training import LearnReport, TrainConfig, train_rows

__all__ = ["AdaptReport", "AgentMem", "LearnReport", "PlanOptions"]


class PlanOptions(TypedDict, total=False):
    """Options of `AgentMem.plan`, `plan_batch` and `submit` (each defaults as `DecodeSettings`)."""

    tool_choice: Any
    """``"auto"`` (calls or a text answer), ``"any"``/``"required"`` (at least one call),
    ``"none"`` (text only), or a tool name (that tool first); LangChain's other forms too
    (`agentmem.chat.tool_choice_policy`)."""
    tools: Sequence[str] | None
    """Restrict routing to these learned tools (default: all)."""
    max_calls: int
    """Stop after this many calls."""
    max_text_tokens: int
    """Most tokens of a text answer."""
    max_prompt_tokens: int | None
    """Refuse a longer prompt (`PromptTooLongError`) before decoding."""
    resume: bool
    """When the messages end in the results of calls made since the last user message (an
    agent run in progress), continue that plan: the model emits its next call or ends the
    plan (see `resumed_prompt_ids`). Ignored with ``tool_choice="none"``."""
    constrained: bool
    """Decode arguments under each tool's JSON Schema."""
    copy_bias: float
    """Bonus to the scores of tokens that continue a span (or a number) of the request
    inside a value (copy-aware decoding); 0 turns it off."""
    drop_unfounded: bool
    """Leave out an optional string or number argument whose value is not in the request,
    or repeats another argument's (the tool's default then applies; the plan's ``notes``
    say what was left out)."""
    optional_bias: float
    """Bonus to writing one more argument while an optional property is unwritten (0: off);
    with ``drop_unfounded``, what the request does not hold, or what repeats another
    argument, is left out again."""
    reroute_unfounded: bool
    """When a call holds a value the request does not (or breaks its schema), decode the
    next likeliest tools at that routing decision too and keep the best-founded call (the
    plan's ``notes`` say when the tool changed)."""
    complete_plan: bool
    """Before the plan ends, decode the likeliest next tool's call too, and keep it when all
    its values are in the request and one is used by no earlier call (the plan's ``notes``
    say when a call was added)."""
    fall_back_to_text: bool
    """With ``tool_choice="auto"`` and rerouting: when every tool tried for the plan's first
    call invents a value or breaks its schema, or its arguments run away, answer in words
    instead (the plan's ``notes`` say so)."""


#: Requests kept per tool (in memory and in saved banks) for rehearsal in later rounds.
KEPT_EXAMPLES = 16


def _locked(method: Callable[..., Any]) -> Callable[..., Any]:
    """Runs a method under `AgentMem.lock`: the bank must not change under a decode."""

    @functools.wraps(method)
    def locked(self: AgentMem, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return locked


class AgentMem:
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
        self, backbone: str | Backbone = DEFAULT_BACKBONE, *, device: str | None = None, adapted: bool | None = None
    ) -> None:
        self.backbone = resolve_backbone(backbone, adapted, device=device)
        self.bank = MemoryBank(self.backbone.hidden_size)
        self._specs: dict[str, ToolSpec] = {}
        self._training: dict[str, dict[str, Any]] = {}
        self._kept: dict[str, list[Example]] = {}  # per tool, a sample of its examples, for rehearsal
        self._decoder = Decoder(self.backbone, self.bank, self._specs)
        self._scheduler: Scheduler | None = None

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

    # learning

    def learn_tool(self, schema: Any, examples: Iterable[dict[str, Any]], **train: Any) -> LearnReport:
        """Compiles one tool into a memory token trained on ``examples``.

        Only the new token's row is trained; the backbone and the rows of tools learned
        before stay bit-identical.

        Args:
            schema: An OpenAI-style function dict, a pydantic model class, a typed
                callable with a docstring, or a LangChain tool.
            examples: ``{"query", "arguments"}`` (one call) or ``{"query", "calls":
                [{"name", "arguments"}, ...]}`` (several calls, possibly of tools learned
                before). Each is validated against the schemas first.
            **train: ``invalid="skip"`` (see `learn_tools`) and fields of `TrainConfig`
                (``epochs``, ``lr``, ``batch_size``, ``seed``, ``renormalize``, ``progress``).

        Raises:
            SchemaError: The schema is not a valid tool definition.
            InvalidExampleError: An example is malformed or breaks its schema (unless
                ``invalid="skip"``).
            DuplicateToolError: A tool of that name is already learned.
        """
        return self.learn_tools([(schema, examples)], **train)

    @_locked
    def learn_tools(
        self,
        tools: Sequence[tuple[Any, Iterable[dict[str, Any]]]],
        *,
        compose: int = 0,
        keep: int = KEPT_EXAMPLES,
        invalid: OnInvalid = "raise",
        **train: Any,
    ) -> LearnReport:
        """Compiles several tools at once, training their rows jointly.

        Rows learned before stay bit-identical; the new ones are kept at the mean norm of
        the old ones (``renormalize``), and trained on a few kept requests of the old tools
        too (``rehearse``), so that they do not take over the old tools' requests at routing.

        Args:
            tools: ``(schema, examples)`` pairs; examples may call any of these tools or
                tools learned before.
            compose: Also train on this many requests chaining 2-4 of these tools, each
                made of their single-call examples joined by ``"Then,"``, ``"Also,"``...
                (the TokMem recipe: multi-call planning from single-call examples). Needs
                single-call examples of at least two of the tools.
            keep: Requests of each new tool kept for rehearsal in later rounds (saved with
                the bank); 0 stores none.
            invalid: ``"raise"`` (default): an example that is malformed or breaks its
                schema stops the call with `InvalidExampleError`; ``"skip"``: it is left
                out, and the report's ``skipped`` lists each with its index and reason.
            **train: Fields of `TrainConfig` (``rehearse=0`` turns rehearsal off).
        """
        config = TrainConfig(**train)
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        specs = [to_tool_spec(schema) for schema, _ in tools]
        names = [s.name for s in specs]
        for name in names:
            if name in self._specs or names.count(name) > 1:
                raise DuplicateToolError(
                    f"tool {name!r} is already learned (or given twice); forget it first to relearn it"
                )
        known = {**self._specs, **{s.name: s for s in specs}}
        examples: list[Example] = []
        by_tool: dict[str, list[Example]] = {}
        skipped: list[SkippedExample] = []
        for spec, (_, raw) in zip(specs, tools):
            by_tool[spec.name] = normalize_examples(spec, list(raw), known, invalid=invalid, skipped=skipped)
            examples.extend(by_tool[spec.name])
        examples.extend(compose_examples(by_tool, compose, seed=config.seed))
        rehearsed = self._rehearsal(config)
        examples.extend(rehearsed)

        indices = self.bank.add(names, mean_embedding(self.backbone))
        self._specs.update({s.name: s for s in specs})
        try:
            encoded = [
                encode_example(
                    self.backbone.tokenizer, ex, self.memory_token_id, self.backbone.eos_token_id, self.schemas
                )
                for ex in examples
            ]
            # rehearsed requests teach routing only: their arguments are the frozen rows' business
            first = len(encoded) - len(rehearsed)
            encoded[first:] = [replace(e, routing_only=True) for e in encoded[first:]]
            report = train_rows(self.backbone, self.bank, indices, encoded, config)
            report.skipped = skipped
        except BaseException:
            for name in names:  # leave the bank as it was
                self.bank.remove(name)
                del self._specs[name]
            raise
        record = {
            "examples": len(examples) - len(rehearsed),
            "epochs": config.epochs,
            "lr": config.lr,
            "batch_size": config.batch_size,
            "seed": config.seed,
            "composed": compose,
            "rehearsed": len(rehearsed),
            "steps": report.steps,
            "seconds": round(report.seconds, 3),
            "first_loss": round(report.first_loss, 5),
            "last_loss": round(report.last_loss, 5),
            "learned_with": names,
        }
        self._training.update({name: dict(record) for name in names})
        rng = random.Random(f"keep:{config.seed}")
        self._kept.update({name: rng.sample(by_tool[name], min(keep, len(by_tool[name]))) for name in names})
        return report

    def _rehearsal(self, config: TrainConfig) -> list[Example]:
        """``config.rehearse`` kept requests of every tool learned before (those whose calls,
        and a conversation's earlier calls, all use tools still in the bank)."""
        rng = random.Random(f"rehearse:{config.seed}:{len(self.bank)}")
        chosen: list[Example] = []
        for name in self.bank.names:
            pool = [ex for ex in self._kept.get(name, ()) if ex.tool_names <= self._specs.keys()]
            chosen.extend(rng.sample(pool, min(config.rehearse, len(pool))))
        return chosen

    @property
    def schemas(self) -> dict[str, dict[str, Any]]:
        """Each learned tool's argument schema, by name (key order is the order arguments are written in)."""
        return {name: spec.parameters for name, spec in self._specs.items()}

    @_locked
    def forget(self, name: str) -> None:
        """Removes a learned tool (its row and spec)."""
        self.bank.remove(name)
        del self._specs[name]
        self._training.pop(name, None)
        self._kept.pop(name, None)

    # adaptation

    @_locked
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
                ``agentmem.corpus.adaptation_corpus()``, or a ``(tools, examples)``
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
        self._decoder = Decoder(self.backbone, self.bank, self._specs)
        return report

    # planning

    def plan(self, request: str | Messages, **options: Unpack[PlanOptions]) -> Plan:
        """Plans the tool calls a request needs: ``plan_batch([request], **options)[0]``.

        Args:
            request: A string, or chat messages (system, user, assistant turns with
                ``tool_calls``, ``tool`` results) rendered with the backbone's template.
            **options: See `PlanOptions` (tool_choice, tools, max_calls, max_text_tokens,
                max_prompt_tokens, resume, constrained, copy_bias, drop_unfounded,
                reroute_unfounded).

        Returns:
            A Plan: ``calls`` (validated), ``invalid_calls`` (with reasons), ``text``.
        """
        return self.plan_batch([request], **options)[0]

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
            plans: list[Plan] = []
            for start in range(0, len(prompts), batch_size):
                window = prompts[start : start + batch_size]
                ids, continued = [p[0] for p in window], [p[1] for p in window]
                plans.extend(self._decoder.decode(ids, settings, sources[start : start + batch_size], continued))
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
            ids, continued = self._prompt(request, resume, max_prompt_tokens)
            scheduler = self.scheduler
        return scheduler.submit(ids, settings, source=source_text(request), continued=continued, time_limit=time_limit)

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

    def _prompt(self, request: str | Messages, resume: bool, max_prompt_tokens: int | None) -> tuple[list[int], bool]:
        """A request's prompt ids, and whether they resume its plan."""
        tokenizer, schemas = self.backbone.tokenizer, self.schemas
        if resume:
            ids, continued = resumed_prompt_ids(tokenizer, request, self.memory_token_id, schemas)
        else:
            ids, continued = prompt_ids(tokenizer, request, self.memory_token_id, schemas), False
        if max_prompt_tokens is not None and len(ids) > max_prompt_tokens:
            raise PromptTooLongError(f"the prompt is {len(ids)} tokens, over the limit of {max_prompt_tokens}")
        return ids, continued

    # persistence

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Saves the bank (rows, specs, training records, backbone fingerprint, and the
        adapter of an adapted backbone) atomically. Under a multi-process launcher only the
        main process writes (every process holds the same bank)."""
        if not distributed.is_main_process():
            return Path(path)
        return save_bank(
            path,
            SavedBank(
                backbone_name=self.backbone.name,
                fingerprint=self.backbone.fingerprint,
                specs=self.tools,
                training=self._training,
                kept=self._kept,
                rows=self.bank.rows,
                adapter=self.backbone.adapter,
            ),
        )

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], backbone: str | Backbone | None = None, *, device: str | None = None
    ) -> AgentMem:
        """Loads a saved bank onto its backbone.

        A bank learned on an adapted backbone carries its adapter, which is merged into
        the base backbone again (so the bank keeps working whatever adapter ships later).

        Args:
            path: The bank folder.
            backbone: The backbone to load onto (default: the one the bank names): its
                base, for a bank that carries an adapter.
            device: As in the constructor.

        Raises:
            BankError: The folder is missing, corrupted, or of an unknown format version.
            BackboneMismatchError: The bank was learned on other backbone weights.
        """
        return cls.from_saved(load_bank(path), backbone, device=device, path=path)

    @classmethod
    def from_saved(
        cls,
        saved: SavedBank,
        backbone: str | Backbone | None = None,
        *,
        device: str | None = None,
        path: str | os.PathLike[str] | None = None,
    ) -> AgentMem:
        """A bank already read from disk (`load_bank`), on its backbone; as `load`.

        Args:
            saved: The bank.
            backbone: As in `load`.
            device: As in the constructor.
            path: Where the bank was read from, for messages.

        Raises:
            BackboneMismatchError: The bank was learned on other backbone weights.
        """
        source = backbone if backbone is not None else saved.backbone_name
        # a bank without adapter runs on the plain backbone it names, or on the one given as is
        adapter = saved.adapter if saved.adapter is not None else (None if isinstance(source, Backbone) else False)
        mem = cls(resolve_backbone(source, adapter, device=device))
        where = f"the bank at {path}" if path is not None else "the bank"
        if mem.backbone.fingerprint != saved.fingerprint:
            raise BackboneMismatchError(
                f"{where} was learned on backbone {saved.backbone_name!r} ({saved.fingerprint}), "
                f"not on {mem.backbone.name!r} ({mem.backbone.fingerprint}); load it onto the backbone it was learned on"
            )
        if saved.rows.shape[1] != mem.backbone.hidden_size:
            raise BackboneMismatchError(
                f"{where} has rows of width {saved.rows.shape[1]}, the backbone's hidden size is {mem.backbone.hidden_size}"
            )
        mem.bank.add([s.name for s in saved.specs], mean_embedding(mem.backbone))
        mem.bank.rows = saved.rows.to(mem.bank.rows)
        mem._specs.update({s.name: s for s in saved.specs})
        mem._training.update(saved.training)
        mem._kept.update(saved.kept)
        return mem

    def __repr__(self) -> str:
        return f"AgentMem(backbone={self.backbone.name!r}, tools={self.bank.names})"
