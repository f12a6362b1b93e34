"""Evaluation datasets: NESTFUL subsets, user JSONL files, and a tool-covering split.

Every loader returns a :class:`Dataset` in the library's public example format::

    {"query": str, "calls": [{"name": str, "arguments": dict}, ...]}

and its tools as OpenAI-style inner function dicts
``{"name", "description", "parameters": <JSON Schema>}``.

NESTFUL subsets are read by `agentmem.adaptation.nestful` (the adaptation corpus reads them too); its
module docstring holds the conversion rules and which examples are dropped.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import jsonschema

from agentmem.adaptation.nestful import (
    NESTFUL_SUBSETS,
    REFERENCE_PATTERN,
    REFERENCE_SCHEMA,
    Dataset,
    load_nestful,
    rename_tools,
    sanitize_tool_name,
    spec_to_json_schema,
)
from agentmem.tools.parsing import find_reference

__all__ = [
    "NESTFUL_SUBSETS",
    "REFERENCE_PATTERN",
    "REFERENCE_SCHEMA",
    "Dataset",
    "cap_per_tool",
    "load_jsonl",
    "load_nestful",
    "resolvable_prefixes",
    "sanitize_tool_name",
    "spec_to_json_schema",
    "split",
]


def load_jsonl(path: str | Path, tools_path: str | Path, *, name: str | None = None) -> Dataset:
    """Load user data: a JSONL file of requests and a JSON file of tools.

    Requests file: one JSON object per line (blank lines are skipped)::

        {"query": "Book a table for two", "calls": [{"name": "find_restaurant",
         "arguments": {"city": "Paris"}}, {"name": "book", "arguments":
         {"restaurant_id": "$var1.id$", "party_size": 2}}]}

    ``query`` is a non-empty string; ``calls`` is a list (possibly empty) of
    objects with a string ``name`` naming a tool of the tools file and an object
    ``arguments``. An argument may refer to the result of the N-th earlier call
    as ``"$varN$"`` or ``"$varN.field$"``; other keys are ignored.

    Tools file: a JSON list of OpenAI function definitions, either the wrapped
    form ``{"type": "function", "function": {...}}`` or the inner form
    ``{"name", "description", "parameters"}``. ``parameters`` must be a valid
    Draft 2020-12 JSON Schema (an empty object schema when missing).
    Tool names that `ToolSpec` would refuse are renamed by
    :func:`sanitize_tool_name`, in the tools and in the calls.

    Args:
        path: The requests file.
        tools_path: The tools file.
        name: Dataset name; defaults to the requests file's stem.

    Returns:
        The dataset.

    Raises:
        ValueError: On a malformed tool or request line; messages name the
            tool or the 1-based line number.
    """
    path = Path(path)
    tools = _load_tools(Path(tools_path))
    examples = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            examples.append(_parse_request_line(line, tools, f"{path}:{lineno}"))
    original_names = rename_tools(tools, str(tools_path))
    new_names = {old: new for new, old in original_names.items()}
    for example in examples:
        for call in example["calls"]:
            call["name"] = new_names.get(call["name"], call["name"])
    return Dataset(name=name or path.stem, tools=tools, examples=examples, original_names=original_names)


def _load_tools(tools_path: Path) -> dict[str, dict]:
    with open(tools_path, encoding="utf-8") as f:
        try:
            raw = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{tools_path}: not valid JSON ({e})") from e
    if not isinstance(raw, list):
        raise ValueError(f"{tools_path}: expected a JSON list of function definitions")
    tools: dict[str, dict] = {}
    for i, item in enumerate(raw):
        where = f"{tools_path}: tool #{i}"
        if isinstance(item, dict) and item.get("type") == "function" and "function" in item:
            item = item["function"]
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ValueError(f"{where}: expected an object with a non-empty string 'name'")
        tool_name = item["name"]
        if tool_name in tools:
            raise ValueError(f"{where}: duplicate tool name {tool_name!r}")
        parameters = item.get("parameters", {"type": "object", "properties": {}})
        try:
            jsonschema.Draft202012Validator.check_schema(parameters)
        except jsonschema.SchemaError as e:
            raise ValueError(f"{where} ({tool_name!r}): invalid parameters schema: {e.message}") from e
        tools[tool_name] = {
            "name": tool_name,
            "description": item.get("description") or "",
            "parameters": parameters,
        }
    return tools


def _parse_request_line(line: str, tools: dict[str, dict], where: str) -> dict:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON ({e})") from e
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object")
    query = record.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"{where}: 'query' must be a non-empty string")
    calls = record.get("calls")
    if not isinstance(calls, list):
        raise ValueError(f"{where}: 'calls' must be a list")
    parsed = []
    for i, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ValueError(f"{where}: call #{i} must be an object with a string 'name'")
        if call["name"] not in tools:
            raise ValueError(f"{where}: call #{i} names unknown tool {call['name']!r}")
        arguments = call.get("arguments", {})
        if not isinstance(arguments, dict):
            raise ValueError(f"{where}: call #{i} 'arguments' must be an object")
        parsed.append({"name": call["name"], "arguments": arguments})
    return {"query": query.strip(), "calls": parsed}


def split(
    dataset: Dataset,
    test_fraction: float = 0.2,
    seed: int = 0,
    min_calls: int | None = None,
    max_calls: int | None = None,
) -> tuple[list[dict], list[dict]]:
    """Split requests into train and test so that every test tool is trained.

    Requests with fewer than ``min_calls`` or more than ``max_calls`` calls
    (both inclusive bounds, ``None`` for none) are left out. A seeded shuffle
    picks ``round(test_fraction * n)`` test requests; any test request using a
    tool that no train request uses is then moved to train, so the test part
    can come out smaller than asked. Both parts keep the dataset's order and
    hold the dataset's own example dicts.

    Args:
        dataset: The dataset to split.
        test_fraction: Share of the kept requests to hold out, in ``[0, 1)``.
        seed: Seed of the shuffle; the same seed gives the same split.
        min_calls: Fewest calls a request may have to be kept.
        max_calls: Most calls a request may have to be kept.

    Returns:
        ``(train, test)`` lists of examples.

    Raises:
        ValueError: If ``test_fraction`` is outside ``[0, 1)``.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    kept = [
        ex
        for ex in dataset.examples
        if (min_calls is None or len(ex["calls"]) >= min_calls) and (max_calls is None or len(ex["calls"]) <= max_calls)
    ]
    order = list(range(len(kept)))
    random.Random(seed).shuffle(order)
    n_test = round(test_fraction * len(kept))
    test_ids = set(order[:n_test])

    trained_tools = {c["name"] for i, ex in enumerate(kept) if i not in test_ids for c in ex["calls"]}
    # Train tools only grow, so one pass in shuffled order settles every test request.
    for i in order[:n_test]:
        tools = {c["name"] for c in kept[i]["calls"]}
        if not tools <= trained_tools:
            test_ids.discard(i)
            trained_tools |= tools
    train = [ex for i, ex in enumerate(kept) if i not in test_ids]
    test = [ex for i, ex in enumerate(kept) if i in test_ids]
    return train, test


def cap_per_tool(examples: list[dict], per_tool: int, seed: int = 0) -> list[dict]:
    """A smaller training set in which every tool keeps a few requests.

    Requests are visited in a seeded shuffle and one is kept while some tool it
    calls is called by fewer than ``per_tool`` kept requests, so each tool ends
    with at least ``min(per_tool, its requests)`` of them (more where its
    requests were kept for other tools) and no tool is lost.

    Args:
        examples: Requests, e.g. the train part of :func:`split`.
        per_tool: Requests wanted per tool (at least 1).
        seed: Seed of the shuffle.

    Returns:
        The kept requests, in their original order.

    Raises:
        ValueError: If ``per_tool`` is below 1.
    """
    if per_tool < 1:
        raise ValueError(f"per_tool must be >= 1, got {per_tool}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    uses: dict[str, int] = {}
    kept: set[int] = set()
    for i in order:
        names = {c["name"] for c in examples[i]["calls"]}
        if any(uses.get(n, 0) < per_tool for n in names):
            kept.add(i)
            for n in names:
                uses[n] = uses.get(n, 0) + 1
    return [ex for i, ex in enumerate(examples) if i in kept]


def resolvable_prefixes(examples: list[dict]) -> tuple[list[dict], int, int]:
    """Each request's plan cut before its first call holding a result reference (``"$var1.dest_id$"``).

    A plan never holds a value the product cannot resolve, and no executor resolves a
    reference, so no method may be taught one. A call that needs an earlier call's result
    is where the product's own plan stops: an agent runs the calls so far and resumes the
    plan with their results (``resume``). So each request keeps the calls before its first
    reference; a request whose first call holds one is left out. (Leaving out every
    request with a reference anywhere would also lose the tools that only ever come
    first, such as a location search before the search that needs its id.)

    Args:
        examples: Requests ``{"query", "calls"}``.

    Returns:
        ``(kept, cut, skipped)``: the kept requests in their order (new dicts where cut),
        how many of them were cut, and how many were left out.
    """
    kept: list[dict] = []
    cut = 0
    for ex in examples:
        calls = ex["calls"]
        first = next((i for i, c in enumerate(calls) if find_reference(c["arguments"]) is not None), len(calls))
        if first == len(calls):
            kept.append(ex)
        elif first > 0:
            kept.append({**ex, "calls": calls[:first]})
            cut += 1
    return kept, cut, len(examples) - len(kept)
