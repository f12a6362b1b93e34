"""BFCL v4 multi-turn, development domains only: conversations, tools, and their executable APIs.

The data are the files of the wheel ``bfcl-eval==2026.3.23`` (installed ``--no-deps`` by
``make setup``; found with `importlib.metadata.files`, the package's own ``__init__`` is
never imported). Only the four development domains are read: travel_booking,
vehicle_control, message_api and math_api (`DEVELOPMENT_CLASSES`). Every other class is the
project's held-out acceptance set: a conversation whose ``involved_classes`` name one is
dropped as soon as its JSON line is read, before anything else touches it, its ground truth
is never parsed, and the other domains' function docs and API sources are never opened.

What comes out (`load_bfcl`):

* tools: the development domains' functions as OpenAI-style inner function dicts. The
  wheel's parameter schemas are JSON-Schema-like; `to_json_schema` maps their types
  (``dict`` -> ``object``, ``float`` -> ``number``, ``tuple`` -> ``array``, ``any`` -> no
  type constraint), drops a ``default`` of ``"None"`` (the wheel writes Python's None
  as that string, which a JSON reader would take for a real value), and turns the allowed
  values the wheel states only in a description (``"... [Enum]: ["on", "off"]"``,
  ``"... [Enum]: USD, EUR"`` or ``"... Options are: economy, business, first."``) into a
  JSON Schema ``enum`` (on an array's ``items``), so the
  grammar holds a value to them as BFCL's APIs do; likewise a string's format that a
  description states (``"in the format YYYY-MM-DD"``, ``"in the format MM/YYYY"``, ``"The
  3 letter code of the departing airport"``) becomes a JSON Schema ``pattern``
  (`DESCRIBED_FORMATS`), so a plan writes ``2026-11-12`` and an airport code where the
  API expects them, not the request's ``"November 12th 2026"`` or ``"Los Angeles"``;
* conversations (`Conversation`): each turn's messages and its gold calls, parsed from
  the wheel's Python call strings with `ast` (positional arguments in the order of the
  Python function's parameters, which the docs do not always follow; tuples as lists, as
  JSON holds them);
* `Session`: the domains' own Python classes, loaded from their ``.py`` files by path,
  initialised from a conversation's ``initial_config`` (``_load_scenario``), on which calls
  are executed as BFCL executes them (results as strings, an exception as
  ``"Error during execution: ..."``); its `Session.state` is what BFCL's state checker
  compares (every public attribute of every instance).

`split_conversations` splits by conversation (never by turn, so no test conversation's
earlier turns are trained on): 59 development conversations of ``multi_turn_base`` ->
35 train, 12 dev (for fitting decoding thresholds), 12 test.
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib.metadata
import importlib.util
import inspect
import json
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEVELOPMENT_CLASSES",
    "BFCLData",
    "Conversation",
    "Session",
    "irrelevance_requests",
    "load_bfcl",
    "parse_call",
    "split_conversations",
    "to_json_schema",
]

DISTRIBUTION = "bfcl-eval"
#: The development domains: API class -> its file stem in the wheel. Nothing else is read.
DEVELOPMENT_CLASSES: dict[str, str] = {
    "TravelAPI": "travel_booking",
    "VehicleControlAPI": "vehicle_control",
    "MessageAPI": "message_api",
    "MathAPI": "math_api",
}
_PACKAGE = "bfcl_eval"
_QUESTIONS = "data/BFCL_v4_multi_turn_base.json"
_ANSWERS = "data/possible_answer/BFCL_v4_multi_turn_base.json"
_DOCS = "data/multi_turn_func_doc/{domain}.json"
_SOURCES = "eval_checker/multi_turn_eval/func_source_code"
# travel_booking and vehicle_control import constants (long-context padding, no domain's
# API) from this module of the wheel by its package path.
_LONG_CONTEXT = "long_context"
_TYPES = {"dict": "object", "float": "number", "tuple": "array"}
_ENUM = re.compile(r"\[Enum\]:\s*(.+?)\s*$", re.DOTALL)
#: The same list written as prose (``"Options are: economy, business, first."``, ``"Here
#: are the options: read_write, read, write"``): comma-separated words to the end.
_OPTIONS = re.compile(r"(?:Options are|Here are the options):\s*([\w-]+(?:\s*,\s*[\w-]+)+)\s*\.?\s*$")
#: A string format stated in a parameter's description -> the JSON Schema ``pattern`` it
#: means (every phrase of this kind in the development domains' docs; the gold values of
#: every development conversation match them).
DESCRIBED_FORMATS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"in the format '?YYYY-MM-DD'?", re.IGNORECASE), r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
    (re.compile(r"in the format '?MM/YYYY'?", re.IGNORECASE), r"^[0-9]{2}/[0-9]{4}$"),
    (re.compile(r"\b3 letter code\b", re.IGNORECASE), r"^[A-Z]{3}$"),
)


@dataclass
class Conversation:
    """One development conversation.

    Attributes:
        id: The wheel's id (``multi_turn_base_N``).
        classes: Its API classes (``involved_classes``), all development ones.
        initial_config: Each class's state at the start, by class name.
        turns: Each turn's messages (the user's).
        gold: Each turn's gold calls ``{"name", "arguments"}`` in order.
    """

    id: str
    classes: list[str]
    initial_config: dict[str, Any]
    turns: list[list[dict[str, Any]]]
    gold: list[list[dict[str, Any]]]


@dataclass
class BFCLData:
    """The development tools and conversations."""

    tools: dict[str, dict[str, Any]]
    """Tool name -> ``{"name", "description", "parameters"}`` (JSON Schema)."""
    tool_class: dict[str, str]
    """Tool name -> the API class it belongs to."""
    conversations: list[Conversation]

    def tools_of(self, conversation: Conversation) -> list[str]:
        """The tools BFCL gives a conversation: its involved classes' functions."""
        return [name for name, cls in self.tool_class.items() if cls in conversation.classes]


def _wheel_file(relative: str) -> Path:
    """A file of the installed wheel, by its path under ``bfcl_eval/``."""
    try:
        files = importlib.metadata.files(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"{DISTRIBUTION} is not installed: `pip install --no-deps {DISTRIBUTION}==2026.3.23` (make setup does)"
        ) from exc
    wanted = f"{_PACKAGE}/{relative}"
    for file in files:
        if str(file).replace("\\", "/") == wanted:
            return Path(str(file.locate()))
    raise FileNotFoundError(f"{DISTRIBUTION} holds no {wanted}")


def _json_lines(relative: str) -> Iterator[dict[str, Any]]:
    with open(_wheel_file(relative), encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def is_development(record: dict[str, Any]) -> bool:
    """Whether a conversation involves development classes only (the held-out rule)."""
    classes = record.get("involved_classes")
    return isinstance(classes, list) and bool(classes) and all(c in DEVELOPMENT_CLASSES for c in classes)


def to_json_schema(schema: Any) -> Any:
    """The wheel's parameter schema as JSON Schema (type mapping in the module docstring)."""
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type" and value == "any":
            continue  # no type constraint
        if key == "type":
            out[key] = _TYPES.get(value, value)
        elif key == "default" and value == "None":
            continue
        elif key == "properties":
            out[key] = {name: to_json_schema(s) for name, s in value.items()}
        elif key in ("items", "anyOf", "oneOf"):
            out[key] = to_json_schema(value)
        else:
            out[key] = value
    values = _described_enum(out)
    if values is not None:
        target = out.setdefault("items", {"type": "string"}) if out.get("type") == "array" else out
        target.setdefault("enum", values)
    pattern = _described_pattern(out)
    if pattern is not None:
        out.setdefault("pattern", pattern)
    return out


def _described_pattern(schema: dict[str, Any]) -> str | None:
    """The ``pattern`` of a string whose description states its format (`DESCRIBED_FORMATS`)."""
    if schema.get("type") != "string" or "enum" in schema:
        return None
    description = schema.get("description") or ""
    return next((pattern for phrase, pattern in DESCRIBED_FORMATS if phrase.search(description)), None)


def _described_enum(schema: dict[str, Any]) -> list[Any] | None:
    """The values a description's ``[Enum]: ...`` lists (a JSON list or comma-separated
    words), or that it gives as its options (`_OPTIONS`)."""
    description = schema.get("description") or ""
    match = _ENUM.search(description)
    if match is None:
        options = _OPTIONS.search(description)
        return [v.strip() for v in options.group(1).split(",")] if options else None
    text = match.group(1)
    if text.startswith("["):
        try:
            values = json.loads(text)
        except json.JSONDecodeError:
            return None  # not the wheel's form: leave the schema open rather than guess
        return values if isinstance(values, list) and values else None
    return [v.strip() for v in text.split(",") if v.strip()] or None


def _tools() -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    tools: dict[str, dict[str, Any]] = {}
    tool_class: dict[str, str] = {}
    for cls, domain in DEVELOPMENT_CLASSES.items():
        for doc in _json_lines(_DOCS.format(domain=domain)):
            if doc["name"] in tools:
                raise ValueError(f"{domain}: tool {doc['name']!r} is defined by two domains")
            parameters = to_json_schema(doc.get("parameters") or {"type": "object", "properties": {}})
            tools[doc["name"]] = {
                "name": doc["name"],
                "description": doc.get("description", ""),
                "parameters": parameters,
            }
            tool_class[doc["name"]] = cls
    return tools, tool_class


def _literal(node: ast.expr) -> Any:
    return _lists(ast.literal_eval(node))


def _lists(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


def parse_call(text: str, parameters: dict[str, list[str]]) -> dict[str, Any]:
    """One of the wheel's Python call strings (``cd(folder='documents')``) as a call.

    Args:
        text: The call.
        parameters: Each tool's parameter names in the order of its Python signature
            (which positional arguments fill; the docs list some in another order).

    Raises:
        ValueError: Not a call of a known tool with literal arguments.
    """
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"not a Python call: {text!r}") from exc
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"not a call of a named function: {text!r}")
    name = node.func.id
    if name not in parameters:
        raise ValueError(f"{text!r} calls unknown tool {name!r}")
    order = parameters[name]
    if len(node.args) > len(order):
        raise ValueError(f"{text!r}: {len(node.args)} positional arguments, {name} has {len(order)} parameters")
    try:
        arguments = {order[i]: _literal(a) for i, a in enumerate(node.args)}
        arguments.update({k.arg: _literal(k.value) for k in node.keywords if k.arg is not None})
    except ValueError as exc:
        raise ValueError(f"{text!r}: an argument is not a literal ({exc})") from exc
    return {"name": name, "arguments": arguments}


def _signature_order(tool_class: dict[str, str]) -> dict[str, list[str]]:
    return {
        name: [p for p in inspect.signature(getattr(_api_class(cls), name)).parameters if p != "self"]
        for name, cls in tool_class.items()
    }


def load_bfcl() -> BFCLData:
    """The development domains' tools and ``multi_turn_base`` conversations (module docstring).

    Raises:
        FileNotFoundError: The wheel is not installed.
    """
    tools, tool_class = _tools()
    records = {}
    for record in _json_lines(_QUESTIONS):
        if not is_development(record):
            continue  # held out: dropped before anything else reads it
        records[record["id"]] = record
    answers = {}
    for answer in _json_lines(_ANSWERS):
        if answer.get("id") in records:  # other ids are held-out conversations: never parsed
            answers[answer["id"]] = answer["ground_truth"]
    order = _signature_order(tool_class)
    conversations = []
    for cid, record in records.items():
        gold = [[parse_call(c, order) for c in turn] for turn in answers[cid]]
        if len(gold) != len(record["question"]):
            raise ValueError(f"{cid}: {len(record['question'])} turns but {len(gold)} gold turns")
        conversations.append(
            Conversation(
                id=cid,
                classes=list(record["involved_classes"]),
                initial_config=record.get("initial_config") or {},
                turns=[list(turn) for turn in record["question"]],
                gold=gold,
            )
        )
    return BFCLData(tools=tools, tool_class=tool_class, conversations=conversations)


def split_conversations(
    conversations: list[Conversation], seed: int = 0, fractions: tuple[float, float] = (0.2, 0.2)
) -> tuple[list[Conversation], list[Conversation], list[Conversation]]:
    """Train / dev / test by conversation: a seeded shuffle, ``round(f * n)`` to dev then
    test, the rest to train; each part keeps the data's order."""
    order = list(range(len(conversations)))
    random.Random(f"bfcl-split:{seed}").shuffle(order)
    n_dev, n_test = (round(f * len(conversations)) for f in fractions)
    dev, test = set(order[:n_dev]), set(order[n_dev : n_dev + n_test])
    parts: tuple[list[Conversation], list[Conversation], list[Conversation]] = ([], [], [])
    for i, conversation in enumerate(conversations):
        parts[1 if i in dev else 2 if i in test else 0].append(conversation)
    return parts


def _load_module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def _api_class(cls: str) -> type:
    """A development domain's API class, loaded from its ``.py`` file by path."""
    if cls not in DEVELOPMENT_CLASSES:
        raise ValueError(f"{cls!r} is not a development class; allowed: {', '.join(DEVELOPMENT_CLASSES)}")
    # The module imports the wheel's long_context module by its package path; that module
    # alone is put under its name for the duration, so the package's __init__ never runs.
    dotted = f"{_PACKAGE}.{_SOURCES.replace('/', '.')}.{_LONG_CONTEXT}"
    had = dotted in sys.modules
    if not had:
        sys.modules[dotted] = _load_module(dotted, _wheel_file(f"{_SOURCES}/{_LONG_CONTEXT}.py"))
    try:
        domain = DEVELOPMENT_CLASSES[cls]
        module = _load_module(f"agentmem_bfcl_{domain}", _wheel_file(f"{_SOURCES}/{domain}.py"))
    finally:
        if not had:
            del sys.modules[dotted]
    return getattr(module, cls)


class Session:
    """A conversation's API instances, initialised from its ``initial_config``."""

    def __init__(self, conversation: Conversation, tool_class: dict[str, str]) -> None:
        self.instances: dict[str, Any] = {}
        for cls in conversation.classes:
            instance = _api_class(cls)()
            if hasattr(instance, "_load_scenario"):  # MathAPI has no state
                instance._load_scenario(copy.deepcopy(conversation.initial_config.get(cls, {})))
            self.instances[cls] = instance
        self.tool_class = tool_class

    def execute(self, name: str, arguments: dict[str, Any]) -> str:
        """Runs one call; its result as BFCL writes it (a dict as JSON, else ``str``)."""
        cls = self.tool_class.get(name)
        if cls not in self.instances:
            return f"Error during execution: {name} is not a function of this conversation's APIs"
        try:
            result = getattr(self.instances[cls], name)(**copy.deepcopy(arguments))
        except Exception as exc:  # the API's own errors are results, as in BFCL
            return f"Error during execution: {exc}"
        if isinstance(result, str):
            return result
        try:
            return json.dumps(result) if isinstance(result, dict) else str(result)
        except TypeError:
            return str(result)

    def state(self) -> dict[str, dict[str, Any]]:
        """Every instance's public attributes, by class (what BFCL's state check compares)."""
        return {
            cls: {k: v for k, v in vars(instance).items() if not k.startswith("_")}
            for cls, instance in self.instances.items()
        }


def irrelevance_requests(limit: int | None = None, seed: int = 0, part: str = "report") -> list[list[dict[str, Any]]]:
    """Requests that need none of the development tools: the messages of the wheel's
    ``BFCL_v4_irrelevance`` and ``BFCL_v4_live_irrelevance`` entries (their own functions
    are not used), ``limit`` of each at most: a seeded sample in file order (``part="report"``,
    what the evaluation plans), or another one from the rest (``"dev"``, for fitting)."""
    out = []
    for stem in ("BFCL_v4_irrelevance", "BFCL_v4_live_irrelevance"):
        entries = [record["question"][0] for record in _json_lines(f"data/{stem}.json")]
        if limit is not None and len(entries) > limit:
            chosen = set(random.Random(f"{stem}:{seed}").sample(range(len(entries)), limit))
            if part == "dev":
                rest = [i for i in range(len(entries)) if i not in chosen]
                chosen = set(random.Random(f"{stem}:dev:{seed}").sample(rest, min(limit, len(rest))))
            entries = [e for i, e in enumerate(entries) if i in chosen]
        out.extend(entries)
    return out
