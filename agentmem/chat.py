"""The chat boundary: what every front end (HTTP server, LangChain, CLI, evaluation) converts
to and from, written once.

Input flow: a front end's messages -> `Turn` (role, text, earlier `Call` s) via `read_turn`,
which takes OpenAI's and LangChain's shapes of messages and calls -> `prompt_messages` (the
chat-message dicts `agentmem.encoding.prompt_ids` renders: an earlier call to a learned tool
stays structured and is written back as memory token + arguments, a call to any other tool
is written into the text as JSON). ``tool_choice`` in OpenAI's or LangChain's forms ->
`tool_choice_policy` (the decoder's "auto", "any", "none" or a tool name); the other
per-request options -> `plan_options` (keyword arguments of `AgentMem.plan`).

Output flow: Plan -> `plan_to_dict` (OpenAI's ``tool_calls`` shape: ``id``, ``type``,
``function.name``, ``function.arguments`` as JSON text in schema key order; invalid calls
with their ``error``; text, finish reason, usage, timings, notes) -> the front end's shape;
`plan_from_dict` reads such a dict back. `cut_at_stop` cuts a text answer at the first stop
string.

This module imports no model code: it is pure conversion, testable without a backbone.
"""

from __future__ import annotations

import json
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentmem.errors import ChatInputError, ToolChoiceError
from agentmem.tools.calls import InvalidToolCall, Plan, ToolCall
from agentmem.tools.parsing import canonical_json

__all__ = [
    "POLICIES",
    "Call",
    "Turn",
    "call_messages",
    "content_text",
    "cut_at_stop",
    "plan_from_dict",
    "plan_options",
    "plan_to_dict",
    "prompt_messages",
    "read_call",
    "read_turn",
    "tool_choice_policy",
]

#: The decoder's routing policies; any other ``tool_choice`` it takes is a tool name.
POLICIES = ("auto", "any", "none")

# Every role a front end may send, as the role the chat template renders.
_ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "ai": "assistant",
    "tool": "tool",
    "function": "tool",
}
# Content parts that carry no text for the backbone: refused even where other non-text parts
# (tool-call and reasoning blocks, whose content travels elsewhere) are passed over.
_MEDIA_PARTS = frozenset({"image", "image_url", "audio", "input_audio", "file", "video"})
# LangChain's policy words as the decoder's ("required" is OpenAI's word for "any").
_LANGCHAIN_POLICIES = {"auto": "auto", "any": "any", "required": "any", "none": "none"}
_OPENAI_POLICIES = {"auto": "auto", "required": "any", "none": "none"}


@dataclass(frozen=True)
class Call:
    """An earlier tool call in a conversation."""

    name: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True)
class Turn:
    """One message: a template role, its text, and (assistant turns) the calls it made."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    calls: tuple[Call, ...] = ()


def read_call(call: Mapping[str, Any], where: str = "tool_calls") -> Call:
    """An earlier call in OpenAI's shape (``{"id", "function": {"name", "arguments"}}``,
    arguments as JSON text or an object) or LangChain's (``{"name", "args", "id"}``).

    Raises:
        ChatInputError: No name, or arguments that are not a JSON object.
    """
    function = call.get("function")
    function = function if isinstance(function, Mapping) else {}
    name = function.get("name") or call.get("name")
    arguments = function.get("arguments", call.get("args", call.get("arguments", {})))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ChatInputError(
                f"tool call to {name!r} has arguments that are not JSON: {exc}", param=f"{where}.function.arguments"
            ) from exc
    if not isinstance(name, str) or not isinstance(arguments, dict):
        raise ChatInputError(
            f"cannot read tool call {dict(call)!r}: expected a name and an arguments object", param=where
        )
    return Call(name, arguments, call.get("id"))


def content_text(content: str | Sequence[Any] | None, where: str = "content", *, strict: bool = True) -> str:
    """The text of a message's content: a string, or parts (strings, ``{"type": "text",
    "text"}``) joined.

    Args:
        content: The content.
        where: Where it stands in the request, for errors.
        strict: Refuse every part that is not text (OpenAI's API); else only media parts
            are refused and other blocks (tool calls, reasoning) are passed over (LangChain's
            content blocks, whose calls travel in ``tool_calls``).

    Raises:
        ChatInputError: A part the backbone cannot read (it reads text only).
    """
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for i, part in enumerate(content):
        if isinstance(part, str):
            parts.append(part)
            continue
        kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
        if kind == "text" and isinstance(part.get("text"), str):
            parts.append(part["text"])
        elif strict or kind in _MEDIA_PARTS or kind == "text":
            raise ChatInputError(
                f"content part of type {kind!r}: agentmem reads text parts only",
                param=f"{where}[{i}]",
                code="unsupported_content",
            )
    return "".join(parts)


def read_turn(
    role: str,
    content: Any = None,
    calls: Sequence[Mapping[str, Any]] = (),
    *,
    where: str = "messages[0]",
    strict: bool = True,
) -> Turn:
    """One message from a front end's role name, content and calls (see `read_call`).

    Raises:
        ChatInputError: An unknown role, unreadable content, or calls on a turn that is not
            the assistant's.
    """
    if role not in _ROLES:
        raise ChatInputError(f"message role {role!r} is not one of {', '.join(_ROLES)}", param=f"{where}.role")
    if calls and _ROLES[role] != "assistant":
        raise ChatInputError(f"a {role} message cannot hold tool_calls", param=f"{where}.tool_calls")
    text = content_text(content, f"{where}.content", strict=strict)
    read = tuple(read_call(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(calls))
    return Turn(_ROLES[role], text, read)  # type: ignore[arg-type]


def prompt_messages(turns: Sequence[Turn], known: Container[str]) -> list[dict[str, Any]]:
    """Turns as the chat-message dicts `agentmem.encoding.prompt_ids` renders.

    Args:
        turns: The conversation.
        known: Tools the bank holds. An earlier call to any other tool has no memory token
            to be written with, so it is written into the assistant's text as JSON.
    """
    out = []
    for turn in turns:
        entry: dict[str, Any] = {"role": turn.role, "content": turn.content}
        entry["content"] += "".join(
            json.dumps({"name": c.name, "arguments": c.arguments}) for c in turn.calls if c.name not in known
        )
        if any(c.name in known for c in turn.calls):
            entry["tool_calls"] = [{"name": c.name, "args": c.arguments} for c in turn.calls if c.name in known]
        out.append(entry)
    return out


def tool_choice_policy(choice: Any, names: Sequence[str], *, openai: bool = False) -> str:
    """A ``tool_choice`` as the decoder's policy: "auto", "any", "none" or a tool name.

    Args:
        choice: With ``openai``, OpenAI's forms only: None, "auto", "none", "required", or
            ``{"type": "function", "function": {"name": N}}``. Else LangChain's forms too:
            "any"; a tool name; True (the single tool, else "any"); False ("none"); a dict
            naming a tool (``{"type": "tool", "name"}``) or a policy (``{"type": "any"}``).
            None is "auto", or "none" where no tool is allowed.
        names: The tools the request allows.
        openai: Read OpenAI's forms only, with OpenAI's error wording.

    Raises:
        ToolChoiceError: Any other value, or a name that is not among ``names``; the message
            lists what is allowed.
    """
    if choice is None:
        return "auto" if names else "none"
    if openai:
        return _openai_policy(choice, names)
    if isinstance(choice, dict):
        choice = (choice.get("function") or {}).get("name") or choice.get("name") or choice.get("type")
    if choice is True:
        return names[0] if len(names) == 1 else "any"
    if choice is False:
        return "none"
    if isinstance(choice, str) and choice in names:
        return choice
    if isinstance(choice, str) and choice in _LANGCHAIN_POLICIES:
        return _LANGCHAIN_POLICIES[choice]
    raise ToolChoiceError(
        f"tool_choice {choice!r} is neither one of auto, any, required, none, True, False "
        f"nor a bound tool ({', '.join(names) or 'none bound'})"
    )


def _openai_policy(choice: Any, names: Sequence[str]) -> str:
    if isinstance(choice, dict):
        function = choice.get("function") if choice.get("type") == "function" else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or name not in names:
            raise ToolChoiceError(
                f"tool_choice {choice!r} must be {{'type': 'function', 'function': {{'name': N}}}} with N "
                f"one of the request's tools ({', '.join(names) or 'none'})"
            )
        return name
    if not isinstance(choice, str) or choice not in _OPENAI_POLICIES:
        raise ToolChoiceError(
            f"tool_choice {choice!r} must be one of {', '.join(_OPENAI_POLICIES)} or "
            "{'type': 'function', 'function': {'name': N}}"
        )
    if choice == "required" and not names:
        raise ToolChoiceError("tool_choice 'required' with no tools")
    return _OPENAI_POLICIES[choice]


def plan_options(
    names: Sequence[str],
    *,
    tool_choice: Any = None,
    openai: bool = False,
    max_calls: int = 8,
    parallel_tool_calls: bool | None = None,
    max_tokens: int | None = None,
    **fixed: Any,
) -> dict[str, Any]:
    """The keyword arguments of `AgentMem.plan` for a chat request.

    Args:
        names: The tools the request allows (each learned in the bank: the caller checks,
            in its own words).
        tool_choice: See `tool_choice_policy`.
        openai: Read ``tool_choice`` in OpenAI's forms only.
        max_calls: Most calls per turn.
        parallel_tool_calls: False allows one call per turn.
        max_tokens: Most tokens of a text answer (None: the decoder's default).
        **fixed: Other `AgentMem.plan` options, passed as they are (``resume``, ...).
    """
    return {
        "tool_choice": tool_choice_policy(tool_choice, names, openai=openai),
        "tools": list(names),
        "max_calls": 1 if parallel_tool_calls is False else max_calls,
        **({"max_text_tokens": max_tokens} if max_tokens is not None else {}),
        **fixed,
    }


def call_messages(
    calls: Sequence[Mapping[str, Any]], results: Sequence[str], ids: Sequence[str]
) -> list[dict[str, Any]]:
    """An assistant turn that made ``calls`` (``{"name", "arguments"}``, with ids ``ids``),
    then a tool message with each call's result, in OpenAI's shape: what an agent's history
    holds once its calls have run."""
    tool_calls = [
        {"id": i, "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
        for i, c in zip(ids, calls, strict=True)
    ]
    return [
        {"role": "assistant", "content": "", "tool_calls": tool_calls},
        *({"role": "tool", "tool_call_id": t["id"], "content": r} for t, r in zip(tool_calls, results, strict=True)),
    ]


def cut_at_stop(text: str, stop: str | Sequence[str] | None) -> tuple[str, bool]:
    """``text`` up to the first of the stop strings, and whether it was cut."""
    stops = [stop] if isinstance(stop, str) else stop or ()
    ends = [text.find(s) for s in stops if s and s in text]
    return (text[: min(ends)], True) if ends else (text, False)


def plan_to_dict(plan: Plan, schemas: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A plan as plain data: ``tool_calls`` in OpenAI's shape, ``invalid_tool_calls`` (the same
    with the raw argument text and an ``error``), ``text``, ``finish_reason``, ``usage``,
    ``timings``, ``notes``.

    Args:
        plan: The plan.
        schemas: Argument schemas by tool name: arguments are written in their key order
            (else in the order the decoder wrote them, which is that order too).
    """
    schemas = schemas or {}
    return {
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": canonical_json(c.arguments, schemas.get(c.name))},
            }
            for c in plan.calls
        ],
        "invalid_tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.raw}, "error": c.reason}
            for c in plan.invalid_calls
        ],
        "text": plan.text,
        "finish_reason": plan.finish_reason,
        "usage": dict(plan.usage),
        "timings": dict(plan.timings),
        "notes": list(plan.notes),
    }


def plan_from_dict(data: Mapping[str, Any]) -> Plan:
    """The plan `plan_to_dict` wrote (valid calls first, then invalid ones: the dict does not
    keep how they interleaved)."""
    steps: list[ToolCall | InvalidToolCall] = []
    for i, raw in enumerate(data.get("tool_calls") or ()):
        call = read_call(raw, f"tool_calls[{i}]")
        steps.append(ToolCall(call.name, call.arguments, **({"id": call.id} if call.id else {})))
    for raw in data.get("invalid_tool_calls") or ():
        function, ids = raw["function"], {"id": raw["id"]} if raw.get("id") else {}
        steps.append(InvalidToolCall(function["name"], function["arguments"], raw["error"], **ids))
    return Plan(
        steps=steps,
        text=data.get("text", ""),
        finish_reason=data.get("finish_reason", "stop"),
        usage=dict(data.get("usage") or {}),
        timings=dict(data.get("timings") or {}),
        notes=list(data.get("notes") or ()),
    )
