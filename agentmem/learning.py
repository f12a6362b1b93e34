"""Learning tools into a bank: `AgentMem.learn_tool`, `learn_tools` and `forget`.

Each tool becomes one memory row, trained on its examples (and on composed requests chaining
several tools, and on a few kept requests of the tools learned before, replayed for
routing); the backbone and the rows learned before stay bit-identical. `AgentMem` takes
these methods from `LearningMixin`; planning, adaptation and loading stay in `agentmem.core`
and `agentmem.persistence`.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from agentmem.backbone import Backbone
from agentmem.compose import compose_examples
from agentmem.encoding import encode_example
from agentmem.errors import DuplicateToolError
from agentmem.locking import FairLock, locked
from agentmem.memory import MemoryBank, mean_embedding
from agentmem.tools.examples import Example, OnInvalid, SkippedExample, normalize_examples
from agentmem.tools.spec import ToolSpec, to_tool_spec
from agentmem.training import LearnReport, TrainConfig, train_rows

__all__ = ["KEPT_EXAMPLES", "LearningMixin"]

#: Requests kept per tool (in memory and in saved banks) for rehearsal in later rounds.
KEPT_EXAMPLES = 16


class LearningMixin:
    """`AgentMem`'s methods that learn and forget tools (the state is `AgentMem`'s)."""

    lock: FairLock
    backbone: Backbone
    bank: MemoryBank
    _specs: dict[str, ToolSpec]
    _training: dict[str, dict[str, Any]]
    _kept: dict[str, list[Example]]  # per tool, a sample of its examples, for rehearsal

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
                (``epochs``, ``lr``, ``batch_size``, ``seed``, ``renormalize``, ``bf16``,
                ``progress``).

        Raises:
            SchemaError: The schema is not a valid tool definition.
            InvalidExampleError: An example is malformed or breaks its schema (unless
                ``invalid="skip"``).
            DuplicateToolError: A tool of that name is already learned.
        """
        return self.learn_tools([(schema, examples)], **train)

    @locked
    def learn_tools(
        self,
        tools: Sequence[tuple[Any, Iterable[dict[str, Any]]]],
        *,
        compose: int = 0,
        route_from_last_turn: bool = True,
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
            route_from_last_turn: Also train each conversation example on its last user
                message alone, scoring the routing decisions only (memory tokens and the
                end of the plan, not the arguments, whose values may come from the
                conversation): the rows then route by the request itself, with or without
                the conversation in front, rather than by the tools it called before. On
                BFCL's dev conversations (5 epochs) it lifted tool F1 / argument F1 with
                the conversation from 0.424 / 0.157 to 0.465 / 0.214 and cut tool turns
                answered in words from 8.7% to 2.2% (BENCHMARKS.md); plain requests are
                not affected. About 10% more training time there.
            keep: Requests of each new tool kept for rehearsal in later rounds (saved with
                the bank); 0 stores none.
            invalid: ``"raise"`` (default): an example that is malformed or breaks its
                schema stops the call with `InvalidExampleError`; ``"skip"``: it is left
                out, and the report's ``skipped`` lists each with its index and reason.
            **train: Fields of `TrainConfig` (``rehearse=0`` turns rehearsal off;
                ``bf16=True``: the backbone's forward and backward under bfloat16 autocast,
                the rows and their optimizer float32, ``None``: where the hardware has
                bfloat16 natively; off by default; ``averaged_runs=k``: learn the rows k
                times, each over its own order of the examples, and keep their average,
                for k times the learning time; 1 by default).
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
        # routing-only examples last: the last turns alone, then the rehearsed requests
        # (not of a trace that resumes after results: its target is what follows the results)
        last_turns = (
            [replace(ex, messages=()) for ex in examples if ex.messages and not ex.resumes]
            if route_from_last_turn
            else []
        )
        rehearsed = self._rehearsal(config)
        routing = last_turns + rehearsed
        examples.extend(routing)

        indices = self.bank.add(names, mean_embedding(self.backbone))
        self._specs.update({s.name: s for s in specs})
        try:
            encoded = [
                encode_example(
                    self.backbone.tokenizer, ex, self.memory_token_id, self.backbone.eos_token_id, self.schemas
                )
                for ex in examples
            ]
            # rehearsed requests teach routing only (their arguments are the frozen rows'
            # business), and so do last turns alone (their values may be in the conversation)
            first = len(encoded) - len(routing)
            encoded[first:] = [replace(e, routing_only=True) for e in encoded[first:]]
            report = train_rows(self.backbone, self.bank, indices, encoded, config)
            report.skipped = skipped
        except BaseException:
            for name in names:  # leave the bank as it was
                self.bank.remove(name)
                del self._specs[name]
            raise
        record = _record(config, compose, len(examples) - len(routing), len(last_turns), len(rehearsed), report, names)
        # a bank that learned to read its calls' results is shown them when a plan resumes
        record["reads_results"] = any(ex.resumes for ex in examples)
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

    @locked
    def forget(self, name: str) -> None:
        """Removes a learned tool (its row and spec)."""
        self.bank.remove(name)
        del self._specs[name]
        self._training.pop(name, None)
        self._kept.pop(name, None)


def _record(
    config: TrainConfig,
    compose: int,
    examples: int,
    last_turns: int,
    rehearsed: int,
    report: LearnReport,
    names: list[str],
) -> dict[str, Any]:
    """The training record saved with each of ``names``."""
    return {
        "examples": examples,
        "epochs": config.epochs,
        "lr": config.lr,
        "lr_schedule": config.lr_schedule,
        "batch_size": config.batch_size,
        "seed": config.seed,
        "averaged_runs": config.averaged_runs,
        "bf16": report.bf16,
        "composed": compose,
        "routed_from_last_turn": last_turns,
        "rehearsed": rehearsed,
        "steps": report.steps,
        "seconds": round(report.seconds, 3),
        "first_loss": round(report.first_loss, 5),
        "last_loss": round(report.last_loss, 5),
        "learned_with": names,
    }
