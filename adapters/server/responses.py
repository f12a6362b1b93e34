"""Plans as responses: a ``chat.completion``, its ``chat.completion.chunk`` objects, and those
as server-sent events."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from agentmem.chat import cut_at_stop, plan_to_dict
from agentmem.tools.calls import Plan

__all__ = ["sse_events", "to_chunks", "to_completion"]


def to_completion(
    plan: Plan,
    *,
    model: str,
    fingerprint: str = "",
    stop: str | list[str] | None = None,
    schemas: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` object for a plan (with the ``invalid_tool_calls`` extension)."""
    data = plan_to_dict(plan, schemas)
    text, cut = cut_at_stop(data["text"], stop)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not plan.calls else None,
        "refusal": None,
    }
    if data["tool_calls"]:
        message["tool_calls"] = data["tool_calls"]
    if data["invalid_tool_calls"]:
        message["invalid_tool_calls"] = data["invalid_tool_calls"]
    limited = plan.finish_reason in ("length", "time_limit") and not cut
    finish = "tool_calls" if plan.calls else "length" if limited else "stop"
    prompt, generated = data["usage"].get("prompt_tokens", 0), data["usage"].get("generated_tokens", 0)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated},
        "agentmem": {"notes": data["notes"], "timings": data["timings"], "plan_finish_reason": data["finish_reason"]},
    }


def to_chunks(completion: dict[str, Any], include_usage: bool = False) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects that add up to ``completion``."""
    head = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint")} | {
        "object": "chat.completion.chunk"
    }
    choice, message = completion["choices"][0], completion["choices"][0]["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}

    out = [chunk({"role": "assistant", "content": message["content"], "refusal": None})]
    for index, call in enumerate(message.get("tool_calls", [])):
        out.append(chunk({"tool_calls": [{"index": index, **call}]}))
    last = {"invalid_tool_calls": message["invalid_tool_calls"]} if "invalid_tool_calls" in message else {}
    out.append(chunk(last, choice["finish_reason"], agentmem=completion["agentmem"]))
    if include_usage:
        out.append({**head, "choices": [], "usage": completion["usage"]})
    return out


def sse_events(chunks: list[dict[str, Any]]) -> Iterator[str]:
    yield from (f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n" for chunk in chunks)
    yield "data: [DONE]\n\n"
