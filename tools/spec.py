"""ToolSpec: the one canonical form of a tool, whatever it was defined as.

Accepted definitions: an OpenAI-style function dict (``{"type": "function", "function":
{...}}`` or the inner ``{"name", "description", "parameters"}``), a pydantic model class,
a typed Python callable with a Google-style docstring, or a LangChain tool (duck-typed:
``.name``, ``.description``, ``.args_schema``; langchain_core is never imported here).
Every schema is checked against the JSON Schema Draft 2020-12 meta-schema.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from agentmem.errors import SchemaError

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_NAME_RULE = "a letter or '_' then up to 63 letters, digits, '_', '.' or '-'"


@dataclass(frozen=True)
class ToolSpec:
    """A tool: name, description and the JSON Schema of its argument object.

    Construct with `to_tool_spec` (or directly: the fields are validated either way).
    """

    name: str
    description: str
    parameters: dict[str, Any]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise SchemaError(f"tool name {self.name!r} is not valid: expected {_NAME_RULE}")
        if not isinstance(self.description, str):
            raise SchemaError(
                f"tool {self.name!r}: description must be a string, got {type(self.description).__name__}"
            )
        _check_parameters(self.name, self.parameters)

    def __hash__(self) -> int:
        return hash(self.name)

    def to_openai(self) -> dict[str, Any]:
        """``{"type": "function", "function": {"name", "description", "parameters"}}``."""
        return {"type": "function", "function": self.to_dict()}

    def to_dict(self) -> dict[str, Any]:
        """The inner function dict (saved in bank.json)."""
        return {"name": self.name, "description": self.description, "parameters": copy.deepcopy(self.parameters)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolSpec:
        """Inverse of `to_dict`."""
        if not isinstance(data, dict) or "name" not in data:
            raise SchemaError(f"a tool dict needs at least a 'name', got {data!r:.200}")
        return cls(
            name=data["name"],
            description=data.get("description") or "",
            parameters=_normalise(data.get("parameters")),
        )

    def validate_arguments(self, arguments: object) -> str | None:
        """Checks an argument object against the schema.

        Returns:
            None when valid, else one readable message naming the JSON path and the
            violation. Never raises.
        """
        try:
            error = best_match(_validator(self.parameters).iter_errors(arguments))
        except Exception as exc:  # a pathological schema/value pair must not crash decoding
            return f"could not validate: {exc}"
        if error is None:
            return None
        path = "".join(f"[{p!r}]" for p in error.absolute_path) or "(root)"
        return f"at {path}: {error.message}"


def to_tool_spec(obj: Any) -> ToolSpec:
    """Turns any accepted tool definition into a ToolSpec.

    Raises:
        SchemaError: The definition is of an unknown kind or its schema is invalid.
    """
    if isinstance(obj, ToolSpec):
        return obj
    if isinstance(obj, dict):
        inner = obj["function"] if obj.get("type") == "function" and isinstance(obj.get("function"), dict) else obj
        return ToolSpec.from_dict(inner)
    if inspect.isclass(obj) and hasattr(obj, "model_json_schema"):
        return _from_pydantic(obj, obj.__name__, inspect.getdoc(obj) or "")
    if hasattr(obj, "name") and hasattr(obj, "args_schema") and not inspect.isroutine(obj):
        return _from_langchain(obj)
    if callable(obj) and hasattr(obj, "__name__"):
        return _from_callable(obj)
    raise SchemaError(
        f"cannot make a tool from {type(obj).__name__}: pass an OpenAI-style function dict, a pydantic "
        "model class, a typed function with a docstring, or a LangChain tool"
    )


def _from_pydantic(model: type, name: str, description: str) -> ToolSpec:
    schema = model.model_json_schema()
    schema.pop("title", None)
    schema.pop("description", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    return ToolSpec(name=name, description=description, parameters=_normalise(schema))


def _from_langchain(tool: Any) -> ToolSpec:
    args_schema = tool.args_schema
    description = getattr(tool, "description", "") or ""
    if args_schema is None:
        return ToolSpec(name=tool.name, description=description, parameters=_normalise(None))
    if isinstance(args_schema, dict):
        return ToolSpec(name=tool.name, description=description, parameters=_normalise(args_schema))
    return _from_pydantic(args_schema, tool.name, description)


def _from_callable(func: Callable[..., Any]) -> ToolSpec:
    import pydantic

    doc = inspect.getdoc(func) or ""
    summary, arg_docs = _parse_docstring(doc)
    hints = _type_hints(func)
    fields: dict[str, Any] = {}
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name in ("self", "cls"):
            continue
        annotation = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (annotation, pydantic.Field(default, description=arg_docs.get(param.name)))
    try:
        model = pydantic.create_model(f"{func.__name__}_arguments", **fields)
    except (TypeError, pydantic.PydanticUserError) as exc:
        raise SchemaError(f"cannot build a schema from the signature of {func.__name__}: {exc}") from exc
    return _from_pydantic(model, func.__name__, summary)


def _type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(func)
    except Exception:  # unresolvable forward references: fall back to raw annotations
        return dict(getattr(func, "__annotations__", {}))


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """First paragraph, and ``name: text`` entries of a Google-style ``Args:`` section."""
    summary = doc.split("\n\n", 1)[0].strip().replace("\n", " ")
    args: dict[str, str] = {}
    match = re.search(r"^(?:Args|Arguments|Parameters):\s*\n((?:[ \t]+.*\n?)+)", doc, flags=re.MULTILINE)
    if match:
        current = None
        for line in match.group(1).splitlines():
            entry = re.match(r"^\s+(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$", line)
            if entry:
                current = entry.group(1)
                args[current] = entry.group(2).strip()
            elif current and line.strip():
                args[current] += " " + line.strip()
    return summary, args


def _normalise(parameters: Any) -> dict[str, Any]:
    """Fills in ``type: object`` and ``properties`` where a schema leaves them out."""
    if parameters is None:
        return {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise SchemaError(f"parameters must be a JSON Schema object, got {type(parameters).__name__}")
    schema = copy.deepcopy(parameters)
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema


def _check_parameters(name: str, schema: Any) -> None:
    if not isinstance(schema, dict):
        raise SchemaError(f"tool {name!r}: parameters must be a JSON Schema object, got {type(schema).__name__}")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise SchemaError(f"tool {name!r}: invalid JSON Schema at {path}: {exc.message}") from None
    if schema.get("type") != "object":
        raise SchemaError(
            f'tool {name!r}: parameters must describe an object ("type": "object"), got type {schema.get("type")!r}'
        )
    if not isinstance(schema.get("properties", {}), dict):
        raise SchemaError(f"tool {name!r}: 'properties' must be an object")


_VALIDATORS: dict[int, jsonschema.protocols.Validator] = {}


def _validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    # Validators are cached per schema object: building one per call dominated validation time.
    key = id(schema)
    cached = _VALIDATORS.get(key)
    if cached is None or cached.schema is not schema:
        cached = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
        _VALIDATORS[key] = cached
    return cached
