"""Training examples: checked against their tools' schemas before any training starts.

An example is ``{"query", "arguments"}`` (one call of the tool being learned) or
``{"query", "calls": [{"name", "arguments"}, ...]}`` (several calls, each of the tool being
learned or of a tool already known). An agent's trace is ``{"messages", "calls"}`` instead of
a query: chat messages (system prompt, earlier turns, earlier assistant ``tool_calls`` and
``tool`` results), the last one the user's request, then the calls that follow it. A trace
may also stop after the request's own calls and their results, the calls that follow being
those that need the results (a user id that a login returned) or none (``"calls": []``: the
request is done): the bank then learns to read the results of its calls (`Example.resumes`).
Errors name the example's index and the problem.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from agentmem.errors import InvalidExampleError
from agentmem.tools.parsing import find_reference
from agentmem.tools.spec import ToolSpec

#: What to do with an example that is malformed or breaks its schema: stop with an error
#: (the default: a typo in hand-written examples should not train silently), or leave it
#: out and report it (real data is noisy).
OnInvalid = Literal["raise", "skip"]


@dataclass(frozen=True)
class Call:
    """One gold call of an example."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Example:
    """A validated example: a query and the calls it should produce, in order; or, for a
    request that needs no tool (adaptation corpora only), no calls and the answer in words."""

    query: str
    calls: tuple[Call, ...]
    answer: str = ""
    messages: tuple[dict[str, Any], ...] = ()
    """The conversation the calls follow, when the example is one (``query`` is then its
    last user message); empty for a plain request."""

    @property
    def resumes(self) -> bool:
        """The conversation ends in the results of calls made for its last user message: the
        calls (none: the request is done) are what follows once those results are read."""
        return bool(self.messages) and self.messages[-1].get("role") == "tool"

    @property
    def tool_names(self) -> set[str]:
        """Every tool the example writes as a memory token: its calls' and its conversation's
        earlier calls'."""
        earlier = {_call_name(c) for m in self.messages for c in m.get("tool_calls") or ()}
        return {c.name for c in self.calls} | earlier


@dataclass(frozen=True)
class SkippedExample:
    """An example left out under ``invalid="skip"``: whose it was, where, and why."""

    tool: str
    index: int
    reason: str

    def __str__(self) -> str:
        return f"tool {self.tool!r}, example {self.index}: {self.reason}"


def normalize_examples(
    spec: ToolSpec,
    examples: Iterable[Any],
    known: Mapping[str, ToolSpec] | None = None,
    *,
    invalid: OnInvalid = "raise",
    skipped: list[SkippedExample] | None = None,
) -> list[Example]:
    """Validates the examples of one tool and puts them in canonical form.

    Args:
        spec: The tool being learned.
        examples: Raw examples (see module docstring).
        known: Other tools that multi-call examples may call, by name.
        invalid: ``"raise"``: a bad example stops everything; ``"skip"``: it is left out
            and appended to ``skipped``.
        skipped: Receives a `SkippedExample` per example left out.

    Raises:
        InvalidExampleError: Naming the example index and what is wrong (with
            ``invalid="skip"``: only when no valid example is left).
    """
    if invalid not in ("raise", "skip"):
        raise ValueError(f"invalid must be 'raise' or 'skip', got {invalid!r}")
    tools = {**(known or {}), spec.name: spec}
    out: list[Example] = []
    for i, raw in enumerate(examples):
        try:
            out.append(_one(i, raw, spec, tools))
        except InvalidExampleError as exc:
            if invalid == "raise":
                raise
            if skipped is not None:
                where, reason = f"tool {spec.name!r}, example {i}", str(exc)
                if reason.startswith(where):  # the report names the tool and index itself
                    reason = reason[len(where) :].lstrip(",: ")
                skipped.append(SkippedExample(spec.name, i, reason))
    if not out:
        left = f" (all {len(skipped or [])} were skipped as invalid)" if invalid == "skip" else ""
        raise InvalidExampleError(
            f"tool {spec.name!r}: no examples given{left}; pass at least one (about 20 work well)"
        )
    if not any(call.name == spec.name for ex in out for call in ex.calls):
        raise InvalidExampleError(f"tool {spec.name!r}: none of its {len(out)} examples calls it")
    return out


def _one(i: int, raw: Any, spec: ToolSpec, tools: Mapping[str, ToolSpec]) -> Example:
    where = f"tool {spec.name!r}, example {i}"
    if not isinstance(raw, Mapping):
        raise InvalidExampleError(
            f"{where}: expected a dict with 'query' and 'arguments' or 'calls', got {type(raw).__name__}"
        )
    if ("query" in raw) == ("messages" in raw):
        raise InvalidExampleError(f"{where}: give exactly one of 'query' (a request) or 'messages' (a conversation)")
    messages = _messages(where, raw["messages"], tools) if "messages" in raw else ()
    users = [m for m in messages if m["role"] == "user"]
    query = users[-1]["content"] if messages else raw.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidExampleError(f"{where}: 'query' must be a non-empty string, got {query!r:.80}")
    if ("arguments" in raw) == ("calls" in raw):
        raise InvalidExampleError(f"{where}: give exactly one of 'arguments' (one call) or 'calls' (several)")
    if "arguments" in raw:
        raw_calls: Any = [{"name": spec.name, "arguments": raw["arguments"]}]
    else:
        raw_calls = raw["calls"]
        if not isinstance(raw_calls, list) or not (raw_calls or (messages and messages[-1]["role"] == "tool")):
            raise InvalidExampleError(
                f"{where}: 'calls' must be a non-empty list of {{'name', 'arguments'}} "
                "(empty only after the results of the request's calls: the request is done)"
            )
    calls = []
    for j, call in enumerate(raw_calls):
        if not isinstance(call, Mapping) or not isinstance(call.get("name"), str):
            raise InvalidExampleError(
                f"{where}, call {j}: expected {{'name': str, 'arguments': dict}}, got {call!r:.80}"
            )
        name, arguments = call["name"], call.get("arguments", {})
        if name not in tools:
            allowed = ", ".join(sorted(tools))
            raise InvalidExampleError(f"{where}, call {j}: unknown tool {name!r}; calls may use: {allowed}")
        if not isinstance(arguments, dict):
            raise InvalidExampleError(
                f"{where}, call {j} ({name}): 'arguments' must be a dict, got {type(arguments).__name__}"
            )
        problem = tools[name].validate_arguments(arguments)
        if problem is not None:
            raise InvalidExampleError(f"{where}, call {j} ({name}): arguments break the schema {problem}")
        reference = find_reference(arguments)
        if reference is not None:
            raise InvalidExampleError(
                f"{where}, call {j} ({name}): argument holds the result reference {reference!r}, which no executor "
                "resolves; write the literal value the request gives"
            )
        calls.append(Call(name=name, arguments=dict(arguments)))
    return Example(query=query.strip(), calls=tuple(calls), messages=messages)


_ROLES = ("system", "user", "assistant", "tool")


def _messages(where: str, raw: Any, tools: Mapping[str, ToolSpec]) -> tuple[dict[str, Any], ...]:
    """A conversation example's messages, checked: what `prompt_ids` renders, ending in the
    user's request or in the results of calls made for it (after it, only assistant turns of
    calls and tool results, the last a result: what `resumed_prompt_ids` resumes from); an
    earlier call must name a known tool (it is written as its memory token)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidExampleError(f"{where}: 'messages' must be a non-empty list of chat messages")
    for k, message in enumerate(raw):
        at = f"{where}, message {k}"
        if not isinstance(message, Mapping) or message.get("role") not in _ROLES:
            raise InvalidExampleError(
                f"{at}: expected {{'role': one of {', '.join(_ROLES)}, 'content'}}, got {message!r:.80}"
            )
        content = message.get("content")
        tool_calls = message.get("tool_calls") if message["role"] == "assistant" else None
        if not isinstance(content, str) and not (content is None and tool_calls):
            raise InvalidExampleError(f"{at} ({message['role']}): 'content' must be a string, got {content!r:.80}")
        for j, call in enumerate(tool_calls or ()):
            name = _call_name(call)
            if name not in tools:
                allowed = ", ".join(sorted(tools))
                raise InvalidExampleError(
                    f"{at}, tool call {j}: unknown tool {name!r}; earlier calls may use: {allowed}"
                )
    users = [k for k, m in enumerate(raw) if m["role"] == "user"]
    # a result must follow a call made for the request, not stand first after it
    resumed = bool(request_calls(raw)) and raw[users[-1] + 1]["role"] == "assistant"
    if raw[-1]["role"] != "user" and not resumed:
        raise InvalidExampleError(
            f"{where}: the last message must be the user's request, or the result of a call made for it (after "
            f"the request only assistant tool calls and their tool results); got role {raw[-1]['role']!r}"
        )
    return tuple(dict(m) for m in raw)


def request_calls(messages: Sequence[Mapping[str, Any]]) -> list[Any]:
    """The tool calls made since the last user message when the messages end in their
    results (every later message an assistant turn of calls only, or a tool result, the last
    a tool result): an agent run in progress, which a resumed plan continues
    (`agentmem.encoding.resumed_prompt_ids`) and a training trace may end in
    (`Example.resumes`). Empty otherwise."""
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users or messages[-1].get("role") != "tool":
        return []
    calls: list[Any] = []
    for message in messages[users[-1] + 1 :]:
        if (
            message.get("role") == "assistant"
            and message.get("tool_calls")
            and not (message.get("content") or "").strip()
        ):
            calls.extend(message["tool_calls"])
        elif message.get("role") != "tool":
            return []
    return calls


def _call_name(call: Any) -> Any:
    """The tool name of an earlier call in OpenAI's (``{"function": {"name"}}``) or
    LangChain's (``{"name"}``) shape; None when it has none."""
    if not isinstance(call, Mapping):
        return None
    function = call.get("function")
    return (function if isinstance(function, Mapping) else call).get("name")
