"""Generated argument text in, ToolCall or InvalidToolCall out. Never raises.

`canonical_json` is the single definition of how arguments are written in training text;
constrained decoding produces the same compact form.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentmem.tools.calls import InvalidToolCall, ToolCall
from agentmem.tools.spec import ToolSpec


def canonical_json(arguments: dict[str, Any], schema: dict[str, Any] | None = None) -> str:
    """Compact JSON: ``{"city":"Paris","unit":"celsius"}``.

    With a schema, keys follow the order of its ``properties`` (recursively), the order
    constrained decoding enforces; keys the schema does not declare come last.
    """
    if schema is not None:
        arguments = _schema_order(arguments, schema)
    return json.dumps(arguments, ensure_ascii=False, separators=(",", ":"))


#: A reference to an earlier call's result in NESTFUL's syntax (``$var1$``, ``$var2.city$``),
#: whole or inside a longer string. No executor resolves one: a plan never carries it.
RESULT_REFERENCE = re.compile(r"\$var[0-9]+(\.[^$]*)?\$")


def find_reference(value: Any) -> str | None:
    """The first result reference (``$varN...$``) inside ``value``'s strings, or None."""
    if isinstance(value, str):
        match = RESULT_REFERENCE.search(value)
        return match.group(0) if match else None
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = find_reference(item)
            if found is not None:
                return found
    return None


def _schema_order(value: Any, schema: Any) -> Any:
    if isinstance(value, dict) and isinstance(schema, dict) and isinstance(schema.get("properties"), dict):
        props = schema["properties"]
        keys = [k for k in props if k in value] + [k for k in value if k not in props]
        return {k: _schema_order(value[k], props.get(k)) for k in keys}
    if isinstance(value, list) and isinstance(schema, dict) and isinstance(schema.get("items"), dict):
        return [_schema_order(v, schema["items"]) for v in value]
    return value


def parse_call(spec: ToolSpec, text: str) -> ToolCall | InvalidToolCall:
    """Parses and validates the arguments a model wrote for ``spec``.

    Args:
        spec: The tool the model routed to.
        text: The argument text exactly as generated.

    Returns:
        A ToolCall when the text is one JSON object valid for the schema; otherwise an
        InvalidToolCall whose reason says what is wrong.
    """
    try:
        # strict=False: xgrammar's JSON string rule admits raw control characters (a byte
        # token such as "\x00"), so constrained output may hold them; they stay characters
        arguments, end = json.JSONDecoder(strict=False).raw_decode(text.strip())
    except json.JSONDecodeError as exc:
        return InvalidToolCall(
            name=spec.name, raw=text, reason=f"arguments are not valid JSON: {exc.msg} at char {exc.pos}"
        )
    except RecursionError:
        return InvalidToolCall(name=spec.name, raw=text, reason="arguments are nested too deeply to parse")
    rest = text.strip()[end:].strip()
    if rest:
        return InvalidToolCall(name=spec.name, raw=text, reason=f"unexpected text after the arguments: {rest[:40]!r}")
    if not isinstance(arguments, dict):
        return InvalidToolCall(
            name=spec.name, raw=text, reason=f"arguments must be a JSON object, got {type(arguments).__name__}"
        )
    problem = spec.validate_arguments(arguments)
    if problem is not None:
        return InvalidToolCall(name=spec.name, raw=text, reason=f"arguments break the schema {problem}")
    reference = find_reference(arguments)
    if reference is not None:
        return InvalidToolCall(
            name=spec.name,
            raw=text,
            reason=f"arguments hold {reference!r}, a reference to another result that no executor resolves",
        )
    return ToolCall(name=spec.name, arguments=arguments)
