"""Call-level levers: policies that look at a finished call (or a plan's end) and return a verdict.

A policy never drives the state machine itself: it returns what should happen (`Keep` the
call, `TryTool` another tool at the same routing decision, `Replay` a call decoded there
before, `EndPlan`) and the machine (`Decoder`) applies it. Each policy's thresholds are its
fields, its state on a row is its own dataclass (`RerouteState`, `CompleteState`), and
`Policies.assemble` picks the ones a request's settings turn on, minding what one needs of
another. `FallBackToText` is the one lever that acts at a routing decision rather than on a
finished call: whether a plan starts with words or a call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from agentmem.copying import found_in, repeated_optional, stated_arguments, unfounded, unfounded_optional
from agentmem.decoding.settings import DecodeSettings
from agentmem.decoding.state import Row, Step, Tried
from agentmem.tools.calls import ToolCall
from agentmem.tools.parsing import canonical_json
from agentmem.tools.spec import ToolSpec

# Verdicts


@dataclass(frozen=True)
class Keep:
    """Keep ``call`` (with ``notes`` for the plan) and go on."""

    call: Step
    notes: list[str]


@dataclass(frozen=True)
class TryTool:
    """Take the call back to its routing decision and decode ``tool``'s call there."""

    tool: str


@dataclass(frozen=True)
class Replay(TryTool):
    """Take the call back to its routing decision and write ``tool``'s call ``tokens`` again
    (a call decoded there before, the best of those tried)."""

    tokens: list[int]


@dataclass(frozen=True)
class EndPlan:
    """End the plan as it stands (``note``, if any, for the plan)."""

    note: str | None = None


Verdict = Keep | TryTool | Replay | EndPlan


def repeats(row: Row, call: Step) -> bool:
    """Whether ``call`` is the plan's last call again (same tool, same arguments), the
    last call of the agent run it resumes included."""
    previous = row.previous_call
    return (
        isinstance(call, ToolCall)
        and isinstance(previous, ToolCall)
        and (call.name, call.arguments) == (previous.name, previous.arguments)
    )


@dataclass(frozen=True)
class RepeatGuard:
    """A small model can loop on one call; the same call twice in a row is never a plan, nor
    is an agent run that makes the call it just made and got the result of."""

    def judge(self, row: Row, call: Step) -> EndPlan | None:
        if not repeats(row, call):
            return None
        return EndPlan(f"stopped at a repeat of the previous call {call.name}{canonical_json(call.arguments)}")  # type: ignore[union-attr]


@dataclass(frozen=True)
class RunawayGuard:
    """An argument that keeps repeating itself (a runaway string) is stopped early: the
    last tokens are one unit of 1 to ``unit`` tokens repeated over at least ``span`` tokens
    (and 3 units). Shorter runs are legitimate ("...", "1000000", "ha ha ha")."""

    span: int = 16
    unit: int = 8

    def repeated(self, tokens: Sequence[int]) -> tuple[int, ...] | None:
        """The repeated unit when ``tokens`` end in a runaway repetition, else None."""
        for unit in range(1, self.unit + 1):
            span = max(self.span, 3 * unit)
            span += -span % unit  # whole units
            if len(tokens) < span:
                continue
            tail = tokens[-span:]
            if all(tail[i] == tail[i % unit] for i in range(span)):
                return tuple(tail[:unit])
        return None


@dataclass(frozen=True)
class DropUnfounded:
    """``drop_unfounded``: optional arguments whose values are not in the request
    (`copying.unfounded_optional`), or repeat another argument, are left out."""

    def judge(self, spec: ToolSpec, call: Step, request: str) -> Keep:
        if not isinstance(call, ToolCall):
            return Keep(call, [])
        arguments, notes = dict(call.arguments), []
        for key in unfounded_optional(spec.parameters, arguments, request):
            value = arguments.pop(key)
            notes.append(f"{call.name}: left out optional {key}={canonical_json(value)}, not in the request")
        for key in repeated_optional(spec.parameters, arguments):
            value = arguments.pop(key)
            notes.append(f"{call.name}: left out optional {key}={canonical_json(value)}, a repeat of another argument")
        return Keep(ToolCall(call.name, arguments, call.id), notes)


@dataclass(frozen=True)
class StripLeadingSpace:
    """``strip_leading_space``: the whitespace a string value starts with (at any depth) is
    dropped from the call, unless the call without it breaks the schema. A word's token
    copied from the request carries the space before it (``" Crescent"``)."""

    def judge(self, spec: ToolSpec, call: Step) -> Keep:
        if not isinstance(call, ToolCall):
            return Keep(call, [])
        arguments = _lstripped(call.arguments)
        if arguments == call.arguments or spec.validate_arguments(arguments) is not None:
            return Keep(call, [])
        changed = [k for k in arguments if arguments[k] != call.arguments[k]]
        return Keep(
            ToolCall(call.name, arguments, call.id), [f"{call.name}: leading space dropped from {', '.join(changed)}"]
        )


def _lstripped(value: Any) -> Any:
    """``value`` with every string in it stripped of the whitespace it starts with."""
    if isinstance(value, str):
        return value.lstrip()
    if isinstance(value, list):
        return [_lstripped(v) for v in value]
    if isinstance(value, dict):
        return {k: _lstripped(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class FallBackToText:
    """``fall_back_to_text``: at a plan's first routing decision (``tool_choice="auto"``),
    words or a call is decided by the routing evidence as a whole: the text route's
    probability (every token but the memory tokens, end of turn included) against the
    tools' (every memory token's, together). Words when the text holds at least ``share``
    of it, else the likeliest tool. Plain decoding lets the likeliest single token decide,
    which splits the text's probability over thousands of tokens. What a call's arguments
    hold never turns it into words: a value the request does not state may come from the
    conversation, the session or the tool's results, so such a call stays a call.
    Assembled only with ``tool_choice="auto"`` (`Policies.assemble`). The share was fitted on
    BFCL's dev conversations, turn alone and with the conversation (0.3 to 0.9 tried:
    BENCHMARKS.md)."""

    share: float = 0.7

    def route(self, candidates: torch.Tensor, memory_ids: Sequence[int], token: int, word: Callable[[], int]) -> int:
        """The token that starts the plan, given the routing ``candidates`` (scores),
        ``token`` (their argmax) and ``word`` (the likeliest text token that does not end
        the answer at once)."""
        if not memory_ids:
            return token
        probabilities = torch.softmax(candidates, dim=-1)
        tools = float(probabilities[list(memory_ids)].sum())
        if 1.0 - tools >= self.share:
            return word() if token in memory_ids else token
        return max(memory_ids, key=lambda i: float(candidates[i]))


@dataclass(frozen=True)
class CompletePlan:
    """``complete_plan``: when the model ends a plan, the likeliest next tool's call (if the
    model gave it at least ``min_probability``) is decoded first, and kept if it reads a new
    part of the request: a small model often ends a two-part request after its first part."""

    min_probability: float = 0.05

    def at_end(self, row: Row, candidates: torch.Tensor, memory_ids: Sequence[int]) -> int | None:
        """The memory token to try before ending the plan, or None."""
        if not (row.source and memory_ids):
            return None
        probabilities = torch.softmax(candidates, dim=-1)
        best = max(memory_ids, key=lambda i: float(probabilities[i]))
        return best if float(probabilities[best]) >= self.min_probability else None

    def kept(self, row: Row, spec: ToolSpec, call: Step) -> bool:
        """Whether a call tried before the end of the plan is kept: it is valid, holds no
        value the request does not, and copies a value of the request that no earlier call
        holds (a new part of the request, not a second reading of a part already planned)."""
        if not isinstance(call, ToolCall) or unfounded(spec.parameters, call.arguments, row.request):
            return False
        used = {canonical_json(v).lower() for step in row.plan.calls for v in step.arguments.values()}
        return any(
            found_in(value, row.request) and canonical_json(value).lower() not in used
            for value in stated_arguments(spec.parameters, call.arguments).values()
        )

    def judge(self, row: Row, spec: ToolSpec, call: Step, notes: list[str]) -> Keep | EndPlan:
        if not self.kept(row, spec, call):
            return EndPlan()
        added = f"added {call.name} before the end of the plan: it uses a part of the request no earlier call does"
        return Keep(call, [*notes, added])


@dataclass(frozen=True)
class Reroute:
    """``reroute_unfounded``: keep a finished call, or go back to its routing decision to try another tool.

    A call holding a value the request does not (a time "20:00" for "Drop a line to
    priya@..."), breaking its schema or repeating the previous call is often the sign of a
    wrong tool: the model had to invent what the tool needs. Then the next likeliest tools at
    that decision (at most ``alternatives``, each at least ``min_probability``) are decoded
    there too, until one call has no flaw. A founded call whose tool was uncertain (under
    ``uncertain``) is compared with its rivals' (tools at ``contender`` or more: "Rate check:
    19.9 SGD in BRL?": get_weather 0.57 with city "BRL", convert_currency 0.30). The best call
    wins (`Tried.rank`). The row's cache takes back the call's tokens (`Batch.step`,
    `PackedCache.take_back`) and, when the winner is not the call just decoded, writes the
    winner's tokens again (`Replay`).
    """

    alternatives: int = 3
    min_probability: float = 0.02
    uncertain: float = 0.7
    contender: float = 0.2

    def at_route(
        self, row: Row, probabilities: torch.Tensor, memory_ids: Sequence[int], token: int, vocab: int
    ) -> None:
        """Notes the tools to try at this routing decision after ``token``'s call, should it be flawed."""
        assert row.view is not None
        others = [i for i in memory_ids if i != token and float(probabilities[i]) >= self.min_probability]
        others.sort(key=lambda i: -float(probabilities[i]))
        row.reroute.alternatives = [
            (row.view.names[i - vocab], float(probabilities[i])) for i in others[: self.alternatives]
        ]

    def judge(self, row: Row, spec: ToolSpec, call: Step, notes: list[str]) -> Verdict:
        """The verdict on ``row``'s call just finished."""
        assert row.tool is not None
        state = row.reroute
        if isinstance(call, ToolCall):
            flaws = [
                f"{key}={canonical_json(call.arguments[key])} is not in the request"
                for key in unfounded(spec.parameters, call.arguments, row.request)
            ]
        else:
            flaws = [call.reason]
        if repeats(row, call):
            flaws.append("it repeats the previous call")
        replayed = bool(state.tried) and state.tried[-1].tokens == row.pending and state.tried[-1].tool == row.tool
        if not replayed:
            state.tried.append(
                Tried(row.tool, state.probability, list(row.pending), call, notes, flaws, state.likelihood)
            )
        tried = state.tried
        if len(tried) == 1 and not flaws:
            # founded: other tools only where the model hesitated, and only its close rivals
            close = state.probability < self.uncertain
            state.alternatives = [a for a in state.alternatives if close and a[1] >= self.contender]
        # after a flawed first call, until one has no flaw; after a founded one, every rival
        if state.alternatives and not replayed and (flaws or not tried[0].flaws):
            tool, state.probability = state.alternatives.pop(0)
            return TryTool(tool)
        best = min(tried, key=lambda t: t.rank)
        if best is not tried[-1]:
            state.alternatives = []
            state.probability = best.probability
            tried.append(best)  # so that the replayed call is known when it finishes
            return Replay(best.tool, list(best.tokens))
        if best is not tried[0]:
            first = tried[0]
            why = f"{first.tool}'s call: {'; '.join(first.flaws)}" if first.flaws else f"{best.tool}'s call is likelier"
            notes = [*best.notes, f"routed to {best.tool} rather than {first.tool}: {why}"]
        state.tried, state.alternatives = [], []
        return Keep(best.step, best.notes if best is tried[0] else notes)


@dataclass(frozen=True)
class Policies:
    """The call-level levers one request's settings turn on (None: off), and the guards
    that are always on. `assemble` minds their dependencies."""

    runaway: RunawayGuard
    repeat: RepeatGuard
    strip_leading_space: StripLeadingSpace | None = None
    drop_unfounded: DropUnfounded | None = None
    reroute: Reroute | None = None
    complete_plan: CompletePlan | None = None
    fall_back_to_text: FallBackToText | None = None

    @classmethod
    def assemble(cls, settings: DecodeSettings, levers: Policies) -> Policies:
        """The policies of ``levers`` (every one present, with its thresholds) that
        ``settings`` turn on. ``fall_back_to_text`` needs ``tool_choice="auto"`` (only then
        may text answer): otherwise it is off, whatever its setting, as documented on
        `DecodeSettings`."""
        words = settings.fall_back_to_text and settings.tool_choice == "auto"
        return cls(
            runaway=levers.runaway,
            repeat=levers.repeat,
            strip_leading_space=levers.strip_leading_space if settings.strip_leading_space else None,
            drop_unfounded=levers.drop_unfounded if settings.drop_unfounded else None,
            reroute=levers.reroute if settings.reroute_unfounded else None,
            complete_plan=levers.complete_plan if settings.complete_plan else None,
            fall_back_to_text=levers.fall_back_to_text if words else None,
        )
