"""TokMem: one memory token per tool on the frozen backbone (`AgentMem`), with or without
the adaptation phase.

Fit: every inventory tool becomes a memory token, learned jointly with
`AgentMem.learn_tools` from the training requests. `learn_tools` takes each tool's own
examples, so each request is handed to one tool it calls, the one that the fewest training
requests call (ties: the first in the request); a tool left with none that calls it gets a
copy of one request that does (that request then counts twice). Every request trains every
memory token it uses whichever tool it is handed to.

The training requests come without result references (the runner cuts each plan before
its first call holding one, for every method); ``learn_tools`` is still called with ``invalid="skip"``, so
that a request it refuses (a reference, a value breaking its schema) is left out rather
than stopping the run, and the fit details count them (``skipped``).

Predict: `AgentMem.plan_batch` with ``tool_choice="required"`` (every benchmark request
needs at least one call; the prompt baselines are told so in their instruction) and
schema-constrained arguments. The prompt is the request alone in the backbone's chat
template: no tool descriptions.

``tokmem-adapted`` runs the same on the adapted backbone: the adapter folder of
``MethodSettings.adapter`` when given (made by ``agentmem adapt``), else the adaptation
shipped for the backbone (``AgentMem(..., adapted=True)``). When neither exists the
method is unavailable, and says why.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from tqdm.auto import tqdm

from agentmem.adaptation.adapter import Adapter
from agentmem.adaptation.resolve import resolve_backbone
from agentmem.backbone import Backbone
from agentmem.chat import plan_to_dict, read_call
from agentmem.core import AgentMem
from agentmem.errors import BackboneError, BankError
from agentmem.eval.methods import FitRecord, Method, MethodSettings, MethodUnavailableError, Prediction

__all__ = ["TokMemMethod", "assign_to_tools", "plan_prediction"]


def assign_to_tools(train: Sequence[dict]) -> dict[str, list[dict]]:
    """Hands each training request to one tool it calls (rule in the module docstring); a
    trace that ends its turn with no call, after its calls' results, to a tool of the last
    of those calls.

    Returns:
        Tool name -> its requests, for every tool some request calls, in order of first use.
    """
    uses = Counter(name for ex in train for name in {c["name"] for c in ex["calls"]})
    groups: dict[str, list[dict]] = {}
    for ex in train:
        names = list(dict.fromkeys([c["name"] for c in ex["calls"]] or _last_call_names(ex["messages"])))
        for name in names:
            groups.setdefault(name, [])
        groups[min(names, key=lambda n: uses[n])].append(ex)
    for name, group in groups.items():
        if not any(c["name"] == name for ex in group for c in ex["calls"]):
            group.append(next(ex for ex in train if any(c["name"] == name for c in ex["calls"])))
    return groups


def _last_call_names(messages: Sequence[dict]) -> list[str]:
    """The tools of the last assistant turn that made calls."""
    last = next(m for m in reversed(messages) if m.get("tool_calls"))
    return [read_call(c).name for c in last["tool_calls"]]


class TokMemMethod(Method):
    """Memory tokens learned with `AgentMem.learn_tools`, plans from `AgentMem.plan_batch`."""

    def __init__(self, backbone: Backbone, settings: MethodSettings, adapted: bool = False) -> None:
        super().__init__(backbone, settings)
        self.adapted = adapted
        self.name = "tokmem-adapted" if adapted else "tokmem"

    def _memory(self) -> AgentMem:
        if not self.adapted:
            return AgentMem(self.backbone, adapted=False)
        try:
            adapter = Adapter.load(self.settings.adapter) if self.settings.adapter else True  # True: the shipped one
            return AgentMem(resolve_backbone(self.backbone, adapter))
        except (BackboneError, BankError, OSError) as exc:
            raise MethodUnavailableError(f"no adapted backbone: {exc}") from exc

    def fit(self, train: Sequence[dict], tools: dict[str, dict]) -> FitRecord:
        started = time.perf_counter()
        self.memory = self._memory()
        groups = assign_to_tools(train)
        unused = sorted(set(tools) - set(groups))
        if unused:
            raise ValueError(f"tokmem: no training request calls {unused}; every inventory tool needs one")
        settings = self.settings
        report = self.memory.learn_tools(
            [(tools[name], group) for name, group in groups.items()],
            epochs=settings.epochs,
            lr=settings.tokmem_lr,
            batch_size=settings.train_batch_size,
            seed=settings.seed,
            averaged_runs=settings.averaged_runs,
            lr_schedule=settings.lr_schedule,
            progress=settings.progress,
            invalid="skip",
            route_from_last_turn=settings.route_from_last_turn,
        )
        adapter = self.memory.backbone.adapter
        return FitRecord(
            seconds=time.perf_counter() - started,
            trainable_parameters=len(groups) * self.memory.backbone.hidden_size,
            examples=report.examples,
            details={
                "steps": report.steps,
                "first_loss": round(report.first_loss, 4),
                "last_loss": round(report.last_loss, 4),
                "adapter": adapter.id if adapter is not None else None,
                "skipped": len(report.skipped),
            },
        )

    def predict(self, queries: Sequence[str]) -> list[Prediction]:
        size, reroute = self.settings.batch_size, self.settings.reroute_unfounded
        predictions = []
        for start in tqdm(
            range(0, len(queries), size), desc=self.name, disable=not self.settings.progress, leave=False
        ):
            plans = self.memory.plan_batch(
                list(queries[start : start + size]),
                batch_size=size,
                tool_choice="required",
                max_calls=self.settings.max_calls,
                **({} if reroute is None else {"reroute_unfounded": reroute}),
                optional_bias=self.settings.optional_bias,
            )
            predictions.extend(plan_prediction(plan_to_dict(plan)) for plan in plans)
        return predictions


def plan_prediction(plan: dict) -> Prediction:
    """A plan in the chat boundary's form (`plan_to_dict`) as the evaluation's prediction: a
    text answer with no call attempted is no plan (None), unlike a plan of no valid call."""
    answered = not plan["tool_calls"] and not plan["invalid_tool_calls"] and plan["text"]
    calls = [read_call(c) for c in plan["tool_calls"]]
    return Prediction(
        calls=None if answered else [{"name": c.name, "arguments": c.arguments} for c in calls],
        invalid=[
            {"name": c["function"]["name"], "raw": c["function"]["arguments"], "reason": c["error"]}
            for c in plan["invalid_tool_calls"]
        ],
        prompt_tokens=plan["usage"].get("prompt_tokens", 0),
        generated_tokens=plan["usage"].get("generated_tokens", 0),
        text=plan["text"],
    )
