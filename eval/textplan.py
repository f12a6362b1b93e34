"""Plans as plain text, for the baselines that name tools in words (ICL, RAG, LoRA).

SmolLM2's chat template has no tool-calling section, so the baselines share one compact
format, documented here and used both to prompt (ICL, RAG) and to train (LoRA).

Tool list (:func:`compact_tool`), one line per tool::

    Search_Hotels(dest_id: number, arrival_date: string, adults?: number, sort_by?: "price"|"distance"): Search Hotels.

* parameters in schema order; ``?`` marks an optional one;
* a type is the JSON Schema ``type`` (``array[string]`` when the items are typed), an enum
  its values (at most 8, then ``|...``), ``any`` when untyped; the reference alternative
  that `agentmem.eval.datasets` adds to non-string values (``anyOf [..., $varN...]``) is
  left out: a plan never holds a value no executor resolves, so no method is taught
  references (the instruction asks for literal values from the request instead);
* the description is the tool description's first sentence, cut to 100 characters.
  Parameter descriptions are left out: ComplexFuncBench's 40 schemas as JSON are about
  10,000 tokens, more than SmolLM2's 8,192-token context; this form is about 1,550.

System prompt (:func:`system_prompt`): :data:`INSTRUCTION` with the tool lines in it.
Demonstrations are earlier user/assistant turns of the chat.

Plan text (:func:`render_plan`), one call per line, arguments as compact JSON in schema
order (`canonical_json`, as in memory-token training)::

    Search_Car_Location {"query":"San Diego Marriott La Jolla"}
    Search_Car_Rentals {"pick_up_date":"2024-12-05","pick_up_time":"09:00",...}

Parsing (:func:`parse_plan`, never raises): a line that starts with a name-like word
followed by ``{`` (optionally ``name({...})``, optionally after a list bullet) is an
attempted call: valid when the tool is known and its arguments parse and validate
(`parse_call`), invalid otherwise, with the reason; arguments holding a result reference
(``"$var1.dest_id$"``) are invalid, for every method alike (`parse_call` says so). Other lines are free text. Parsing
stops at a call identical to the one before it, the same repeat guard as the TokMem
decoder. An output with text but no attempted call is a parse failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentmem.tools.calls import InvalidToolCall, ToolCall
from agentmem.tools.parsing import canonical_json, parse_call
from agentmem.tools.spec import ToolSpec

__all__ = [
    "INSTRUCTION",
    "ParsedPlan",
    "compact_tool",
    "parse_plan",
    "render_plan",
    "should_stop",
    "system_prompt",
]

INSTRUCTION = (
    "You plan tool calls. The tools, one per line as name(parameter: type, ...): description, "
    "where ? marks an optional parameter:\n{tools}\n"
    "Answer with the calls the request needs, in order, one per line: the tool name, a space, "
    "then its arguments as one JSON object of literal values taken from the request. "
    "Write nothing else."
)
_MAX_ENUM = 8
_MAX_DESCRIPTION = 100
_CALL_LINE = re.compile(r"^\s*(?:[-*•]\s*|\d+[.)]\s*)?([A-Za-z_][A-Za-z0-9_.-]*)\s*(\(?)\s*(\{.*)$")


def _type_text(schema: Any) -> str:
    if not isinstance(schema, dict):
        return "any"
    if "anyOf" in schema:
        branches = [
            b for b in schema["anyOf"] if not (isinstance(b, dict) and "pattern" in b and "$var" in b["pattern"])
        ]
        return "|".join(_type_text(b) for b in branches) or "string"
    if isinstance(schema.get("enum"), list):
        values = [json.dumps(v, ensure_ascii=False) for v in schema["enum"][:_MAX_ENUM]]
        return "|".join(values) + ("|..." if len(schema["enum"]) > _MAX_ENUM else "")
    kind = schema.get("type", "any")
    if isinstance(kind, list):
        kind = "|".join(map(str, kind))
    if kind == "array" and isinstance(schema.get("items"), dict) and "type" in schema["items"]:
        return f"array[{_type_text(schema['items'])}]"
    return str(kind)


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    sentence = match.group(1) if match else text
    return sentence if len(sentence) <= _MAX_DESCRIPTION else sentence[: _MAX_DESCRIPTION - 3] + "..."


def compact_tool(tool: Mapping[str, Any]) -> str:
    """One line describing a tool (format in the module docstring).

    Args:
        tool: ``{"name", "description", "parameters"}``.
    """
    parameters = tool.get("parameters") or {}
    required = set(parameters.get("required", []))
    fields = [
        f"{name}{'' if name in required else '?'}: {_type_text(schema)}"
        for name, schema in (parameters.get("properties") or {}).items()
    ]
    line = f"{tool['name']}({', '.join(fields)})"
    description = _first_sentence(tool.get("description") or "")
    return f"{line}: {description}" if description else line


def system_prompt(tools: Sequence[Mapping[str, Any]]) -> str:
    """The instruction with one compact line per tool."""
    return INSTRUCTION.format(tools="\n".join(compact_tool(t) for t in tools))


def render_plan(calls: Sequence[Mapping[str, Any]], schemas: Mapping[str, dict] | None = None) -> str:
    """A plan as text, one ``name {json}`` line per call (keys in schema order)."""
    return "\n".join(f"{c['name']} {canonical_json(c['arguments'], (schemas or {}).get(c['name']))}" for c in calls)


@dataclass
class ParsedPlan:
    """What a text output holds.

    Attributes:
        calls: Valid calls ``{"name", "arguments"}`` in order, or None when the output
            had text but no attempted call (a parse failure).
        invalid: Attempted calls that did not parse or validate, with reasons.
    """

    calls: list[dict[str, Any]] | None
    invalid: list[dict[str, str]] = field(default_factory=list)


def _attempt(line: str, specs: Mapping[str, ToolSpec]) -> ToolCall | InvalidToolCall | None:
    match = _CALL_LINE.match(line)
    if match is None:
        return None
    name, paren, rest = match.groups()
    rest = rest.rstrip()
    if paren and rest.endswith(")"):
        rest = rest[:-1]
    spec = specs.get(name)
    if spec is None:
        return InvalidToolCall(name=name, raw=rest, reason=f"unknown tool {name!r}")
    return parse_call(spec, rest)


def parse_plan(text: str, specs: Mapping[str, ToolSpec]) -> ParsedPlan:
    """Reads the calls of a text output (rules in the module docstring). Never raises.

    Args:
        text: The generated text.
        specs: The tools the model may call, by name.
    """
    calls: list[dict[str, Any]] = []
    invalid: list[dict[str, str]] = []
    previous: tuple[str, str] | None = None
    for line in text.splitlines():
        step = _attempt(line, specs)
        if step is None:
            continue
        if isinstance(step, InvalidToolCall):
            key = (step.name, step.raw)
            if key == previous:
                break
            invalid.append({"name": step.name, "raw": step.raw, "reason": step.reason})
        else:
            key = (step.name, canonical_json(step.arguments))
            if key == previous:
                break
            calls.append({"name": step.name, "arguments": step.arguments})
        previous = key
    if not calls and not invalid and text.strip():
        return ParsedPlan(calls=None)
    return ParsedPlan(calls=calls, invalid=invalid)


def should_stop(text: str, max_calls: int) -> bool:
    """Whether generation may stop: ``max_calls`` complete lines, or a line repeating the
    one before it (parsing would stop there anyway)."""
    lines = [line.strip() for line in text.split("\n")[:-1] if line.strip()]
    return len(lines) >= max_calls or (len(lines) >= 2 and lines[-1] == lines[-2])
