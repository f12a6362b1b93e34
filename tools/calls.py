"""What a plan is made of: valid calls, invalid calls with their reason, and the plan itself.

Torch-free data types shared by the decoder, the adapters and the evaluation.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


def new_call_id() -> str:
    """A fresh call id in the OpenAI style (``call_`` + 24 hex digits)."""
    return "call_" + uuid.uuid4().hex[:24]


@dataclass
class ToolCall:
    """A call whose arguments parsed and validated against the tool's schema."""

    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=new_call_id)


@dataclass
class InvalidToolCall:
    """A call the model attempted whose arguments did not parse or validate.

    Attributes:
        name: The tool the model routed to.
        raw: The argument text exactly as generated.
        reason: Why it was rejected, in words a person can act on.
    """

    name: str
    raw: str
    reason: str
    id: str = field(default_factory=new_call_id)


@dataclass
class Plan:
    """The outcome of planning one request: calls in order, rejected calls, and any free text.

    Attributes:
        calls: Valid calls in the order the model emitted them.
        invalid_calls: Calls whose arguments failed to parse or validate, with reasons.
        text: Free text the model wrote instead of (or after) calls.
        steps: Every attempted call in emission order (valid and invalid interleaved).
        finish_reason: Why planning stopped: ``"stop"`` (the model ended the plan),
            ``"max_calls"`` (the call limit was reached), ``"length"`` (a token limit was hit)
            or ``"repetition"`` (an argument kept repeating itself and was cut short).
        usage: Token counts: ``prompt_tokens``, ``generated_tokens``, and ``decode_passes``
            (the forward passes that decoded them: fewer than the tokens where drafts were
            kept, `agentmem.decoding.drafts`).
        timings: Seconds spent: ``prefill``, ``decode``, ``total``.
        notes: Things worth knowing about how the plan was made (e.g. a schema decoded
            without grammar constraints, and why).
    """

    steps: list[ToolCall | InvalidToolCall] = field(default_factory=list)
    text: str = ""
    finish_reason: str = "stop"
    usage: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def calls(self) -> list[ToolCall]:
        return [s for s in self.steps if isinstance(s, ToolCall)]

    @property
    def invalid_calls(self) -> list[InvalidToolCall]:
        return [s for s in self.steps if isinstance(s, InvalidToolCall)]

    def __str__(self) -> str:
        lines = []
        for step in self.steps:
            if isinstance(step, ToolCall):
                args = ", ".join(f"{k}={v!r}" for k, v in step.arguments.items())
                lines.append(f"{step.name}({args})")
            else:
                lines.append(f"{step.name}: INVALID ({step.reason}) raw={step.raw!r}")
        if self.text:
            lines.append(f"text: {self.text}")
        return "\n".join(lines) if lines else "(empty plan)"
