"""A request as the chat boundary takes it: the server's limits, `AgentMem.plan`'s options
for a request, its text checked, its messages as turns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentmem.adapters.server.errors import APIError
from agentmem.adapters.server.protocol import ChatRequest, Message
from agentmem.chat import Turn, plan_options, read_turn
from agentmem.core import AgentMem
from agentmem.decoding.settings import SERVER_OPTIONS, DecodeSettings

__all__ = ["ServerLimits", "chat_turns", "check_decoding", "check_text", "request_options"]


def check_decoding(decoding: Mapping[str, Any]) -> dict[str, Any]:
    """The operator's decoding options, checked before the server starts (ValueError names
    an option that is not theirs to set, or a bad value)."""
    wrong = sorted(set(decoding) - set(SERVER_OPTIONS))
    if wrong:
        raise ValueError(
            f"decoding options {wrong} are chosen per request, not by the server; "
            f"the server sets: {', '.join(SERVER_OPTIONS)}"
        )
    defaults = DecodeSettings()
    for name, value in decoding.items():
        default = getattr(defaults, name)
        kind = (int, float) if isinstance(default, float) else type(default)
        if not isinstance(value, kind) or (isinstance(value, bool) and not isinstance(default, bool)):
            raise ValueError(f"decoding option {name} must be a {type(default).__name__}, got {value!r}")
    return dict(decoding)


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on one request, and on each bank's load."""

    max_prompt_tokens: int = 4096
    max_body_bytes: int = 1 << 20
    max_text_tokens: int = 1024  # most max_tokens a request may ask (default: the decoder's 256)
    time_limit: float = 120.0  # seconds a request may take, queue included
    max_batch: int = 16  # requests of one bank decoding together (agentmem.scheduler)
    max_queue: int = 64  # requests of one bank waiting to join its batch; more get a 503

    def __post_init__(self) -> None:
        if self.time_limit <= 0 or self.max_batch < 1 or self.max_queue < 0:
            raise ValueError(
                f"time_limit must be > 0, max_batch >= 1 and max_queue >= 0; got {self.time_limit}, "
                f"{self.max_batch} and {self.max_queue}"
            )


def request_options(
    memory: AgentMem, request: ChatRequest, limits: ServerLimits, decoding: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The keyword arguments of `AgentMem.plan` for a request, with the operator's
    ``decoding`` options (`check_decoding`); 400s name what is wrong."""
    if request.n != 1:
        raise APIError(400, f"n={request.n}: agentmem decodes one greedy plan per request; use n=1", param="n")
    if request.logprobs:
        raise APIError(400, "logprobs are not available from agentmem", param="logprobs")
    held = memory.bank.names
    names = [t.function.name for t in request.tools] if request.tools is not None else list(held)
    for i, name in enumerate(names):
        if name not in memory.bank:
            raise APIError(
                400,
                f"tool {name!r} is not learned in bank {request.model!r} (it holds: {', '.join(held) or 'no tools'}); "
                "learn it into the bank first (AgentMem.learn_tool or `agentmem learn`)",
                param=f"tools[{i}].function.name",
                code="unknown_tool",
            )
    max_tokens = request.max_completion_tokens or request.max_tokens
    options = plan_options(
        names,
        tool_choice=request.tool_choice,
        openai=True,
        max_calls=request.max_calls,
        parallel_tool_calls=request.parallel_tool_calls,
        max_tokens=max_tokens,
        max_prompt_tokens=limits.max_prompt_tokens,
        resume=request.continue_plans,
        **(decoding or {}),
    )
    if max_tokens is not None and max_tokens > limits.max_text_tokens:
        raise APIError(
            400, f"max_tokens={max_tokens} is over this server's limit of {limits.max_text_tokens}", param="max_tokens"
        )
    return options


def check_text(value: Any, param: str) -> None:
    """Refuses text that has no UTF-8 form: JSON lets a body hold a lone surrogate
    (``"\\ud800"``), which no tokenizer takes and no answer could echo."""
    stack = [(param, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise APIError(
                    400,
                    f"{where or 'body'} holds text that is not valid Unicode (a lone surrogate such as "
                    "\\ud800); send UTF-8 text",
                    param=where or None,
                    code="invalid_text",
                ) from None
        elif isinstance(item, dict):
            for key, child in item.items():
                stack += [
                    (f"{where}.{key}".lstrip(".") if str(key).isidentifier() else f"{where}[{key!r}]", child),
                    (where, key),
                ]
        elif isinstance(item, (list, tuple)):
            stack += [(f"{where}[{i}]", child) for i, child in enumerate(item)]


def chat_turns(messages: Sequence[Message]) -> list[Turn]:
    return [
        read_turn(m.role, m.content, [c.model_dump() for c in m.tool_calls or ()], where=f"messages[{i}]")
        for i, m in enumerate(messages)
    ]
