"""Plan-level metrics comparing predicted tool calls with gold calls (pure Python).

A call is ``{"name": str, "arguments": dict}``; a plan is a list of calls.

Normalisation (:func:`normalize_arguments`): arguments are compared as
``json.dumps(value, sort_keys=True)`` after, recursively, sorting object keys
and turning every integral float into an int (``1.0`` -> ``1``) so that
``1 == 1.0``. Booleans stay booleans (``True`` never equals ``1``), tuples
count as lists, and strings are compared exactly (no stripping or case
folding). Reference strings such as ``"$var1.id$"`` are plain strings here.

Per example:

* tool F1 (:func:`tool_f1`): F1 between the SETS of tool names called.
* argument F1 (:func:`argument_f1`): F1 between the SETS of
  ``(name, normalised arguments)`` pairs.
* exact match (:func:`exact_match`): the same calls in the same order.

Set F1 is ``2|G∩P| / (|G| + |P|)``: 1.0 when both sets are empty and 0.0
when only one is. Sets ignore order and repeated calls; exact match does not.

Over a run (:func:`score`), where ``preds[i]`` is ``None`` when the model's
output for example ``i`` could not be parsed into calls at all (scored as an
empty plan) and ``invalid_counts[i]`` is how many further calls the model
attempted for example ``i`` that failed to parse or validate against their
tool's schema (they are not in ``preds[i]``, which holds only valid calls):

* ``tool_f1``, ``argument_f1``, ``exact_match``: means over examples.
* ``schema_valid_rate``: valid calls / attempted calls, pooled over all
  examples (``sum len(preds[i]) / sum (len(preds[i]) + invalid_counts[i])``);
  1.0 when no call was attempted.
* ``parse_failure_rate``: share of examples whose ``preds[i]`` is ``None``.

The ceiling of a test set (:func:`ceiling`): what can be read from the requests at all.
A plan never holds a value the product cannot resolve, so a gold value that is a result
reference, or that the request does not state, cannot be written by any method that
copies from the request. Per gold argument value (each top-level argument of each gold
call), :func:`reachable`:

* a value holding a result reference (`find_reference`) is unreachable;
* a string is reachable when it appears in the request, case-insensitively (substring);
* a number is reachable when its text appears in the request (``2.0`` as ``2``,
  ``1.5`` as ``1.5``; ``"1,500"`` does not show ``1500``);
* a boolean, ``null``, and a value of its parameter's ``enum`` count as reachable: they
  are chosen, not copied, so the request need not spell them;
* a list or object is reachable when every item or field is (an empty one is).

Dates written differently in the request (``"October 12"`` for ``"2024-10-12"``) count
as unreachable: the ceiling is that of verbatim reading, and a method that rewrites
values may pass it on a few. The oracle writes, for each request, every gold call whose
tool is in the inventory and whose values are all reachable, exactly, and nothing else;
its mean argument F1 (:func:`argument_f1`) and exact match are the ceiling. A looser
ceiling counts only references as unreachable (the oracle writes every gold call of an
inventory tool holding no reference).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from agentmem.tools.parsing import find_reference

__all__ = [
    "Ceiling",
    "Scores",
    "argument_f1",
    "ceiling",
    "exact_match",
    "normalize_arguments",
    "reachable",
    "score",
    "set_f1",
    "tool_f1",
]


@dataclass(frozen=True)
class Scores:
    """Aggregate metrics of a run (definitions in the module docstring).

    Attributes:
        n_examples: Examples scored.
        tool_f1: Mean tool-selection F1.
        argument_f1: Mean argument F1.
        exact_match: Share of examples whose plan matches the gold exactly.
        schema_valid_rate: Valid calls over attempted calls, pooled.
        parse_failure_rate: Share of examples whose output could not be parsed.
        n_valid_calls: Valid predicted calls, summed over examples.
        n_invalid_calls: Attempted calls that failed to parse or validate.
        n_parse_failures: Examples whose output could not be parsed.
    """

    n_examples: int
    tool_f1: float
    argument_f1: float
    exact_match: float
    schema_valid_rate: float
    parse_failure_rate: float
    n_valid_calls: int
    n_invalid_calls: int
    n_parse_failures: int

    def as_dict(self) -> dict[str, float | int]:
        """The scores as a plain dict, e.g. for JSON reports."""
        return asdict(self)


def _normalize_value(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _normalize_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalize_value(v) for v in value]
    return value


def normalize_arguments(arguments: Any) -> str:
    """Canonical text of a call's arguments: equal texts mean equal arguments.

    Args:
        arguments: A JSON-like value, normally the call's argument dict.

    Returns:
        ``json.dumps`` of the normalised value with sorted keys.
    """
    return json.dumps(_normalize_value(arguments), sort_keys=True, ensure_ascii=False)


def _call_key(call: dict) -> tuple[str, str]:
    return call["name"], normalize_arguments(call.get("arguments", {}))


def set_f1(gold: set, pred: set) -> float:
    """F1 between two sets: 1.0 if both are empty, 0.0 if only one is.

    Args:
        gold: The reference items.
        pred: The predicted items.

    Returns:
        ``2|gold ∩ pred| / (|gold| + |pred|)``.
    """
    if not gold and not pred:
        return 1.0
    return 2 * len(gold & pred) / (len(gold) + len(pred))


def tool_f1(gold: Sequence[dict], pred: Sequence[dict]) -> float:
    """F1 over the sets of tool names called.

    Args:
        gold: Gold calls.
        pred: Predicted calls.

    Returns:
        The F1 in ``[0, 1]``.
    """
    return set_f1({c["name"] for c in gold}, {c["name"] for c in pred})


def argument_f1(gold: Sequence[dict], pred: Sequence[dict]) -> float:
    """F1 over the sets of ``(tool name, normalised arguments)`` pairs.

    Args:
        gold: Gold calls.
        pred: Predicted calls.

    Returns:
        The F1 in ``[0, 1]``.
    """
    return set_f1({_call_key(c) for c in gold}, {_call_key(c) for c in pred})


def exact_match(gold: Sequence[dict], pred: Sequence[dict]) -> bool:
    """Whether the plans hold the same calls in the same order (arguments normalised).

    Args:
        gold: Gold calls.
        pred: Predicted calls.

    Returns:
        True on an exact match.
    """
    return [_call_key(c) for c in gold] == [_call_key(c) for c in pred]


def score(
    golds: Sequence[Sequence[dict]],
    preds: Sequence[Sequence[dict] | None],
    invalid_counts: Sequence[int] | None = None,
) -> Scores:
    """Score a run of predictions against gold plans.

    Args:
        golds: Gold plan of each example.
        preds: Valid predicted calls of each example, or ``None`` where the
            output could not be parsed.
        invalid_counts: Per example, attempted calls that failed to parse or
            validate and are not in ``preds``; all zero when omitted.

    Returns:
        The aggregate :class:`Scores`; rates and means are 0.0 for an empty run
        except ``schema_valid_rate`` (1.0, no call attempted).

    Raises:
        ValueError: If the sequences differ in length or a count is negative.
    """
    if len(golds) != len(preds):
        raise ValueError(f"{len(golds)} gold plans but {len(preds)} predictions")
    if invalid_counts is None:
        invalid_counts = [0] * len(golds)
    if len(invalid_counts) != len(golds):
        raise ValueError(f"{len(golds)} gold plans but {len(invalid_counts)} invalid counts")
    if any(n < 0 for n in invalid_counts):
        raise ValueError("invalid_counts must be non-negative")

    n = len(golds)
    tool_sum = arg_sum = exact_sum = 0.0
    n_valid = n_failures = 0
    for gold, pred in zip(golds, preds):
        if pred is None:
            n_failures += 1
            pred = []
        n_valid += len(pred)
        tool_sum += tool_f1(gold, pred)
        arg_sum += argument_f1(gold, pred)
        exact_sum += exact_match(gold, pred)
    n_invalid = sum(invalid_counts)
    attempted = n_valid + n_invalid
    return Scores(
        n_examples=n,
        tool_f1=tool_sum / n if n else 0.0,
        argument_f1=arg_sum / n if n else 0.0,
        exact_match=exact_sum / n if n else 0.0,
        schema_valid_rate=n_valid / attempted if attempted else 1.0,
        parse_failure_rate=n_failures / n if n else 0.0,
        n_valid_calls=n_valid,
        n_invalid_calls=n_invalid,
        n_parse_failures=n_failures,
    )


def _enum(schema: Any) -> list[Any]:
    """The enum values a schema allows, across ``anyOf`` branches."""
    if not isinstance(schema, dict):
        return []
    values = list(schema["enum"]) if isinstance(schema.get("enum"), list) else []
    for branch in schema.get("anyOf") or []:
        values += _enum(branch)
    return values


def _branches(schema: Any, key: str) -> Any:
    """``schema[key]``, or the first ``anyOf`` branch's (the reference branch has none)."""
    if not isinstance(schema, dict):
        return None
    if key in schema:
        return schema[key]
    return next((b[key] for b in schema.get("anyOf") or [] if isinstance(b, dict) and key in b), None)


def reachable(value: Any, query: str, schema: Any = None) -> bool:
    """Whether a gold argument value can be read from the request (rules in the module
    docstring).

    Args:
        value: The gold value.
        query: The request text.
        schema: The parameter's JSON Schema, for its ``enum``, ``items`` and ``properties``.

    Returns:
        True when the value holds no reference and the request states it (or it is chosen:
        a boolean, ``null`` or an enum value).
    """
    if find_reference(value) is not None:
        return False
    if value is None or isinstance(value, bool) or value in _enum(schema):
        return True
    if isinstance(value, str):
        return value.casefold() in query.casefold()
    if isinstance(value, (int, float)):
        return str(_normalize_value(value)) in query
    if isinstance(value, (list, tuple)):
        items = _branches(schema, "items")
        return all(reachable(v, query, items) for v in value)
    if isinstance(value, dict):
        fields = _branches(schema, "properties") or {}
        return all(reachable(v, query, fields.get(k)) for k, v in value.items())
    return False


@dataclass(frozen=True)
class Ceiling:
    """What a test set lets any method score (definitions in the module docstring).

    Attributes:
        n_examples: Test requests.
        n_values: Gold argument values (top-level arguments of every gold call).
        reference_free_share: Share of those values holding no result reference.
        reachable_share: Share of those values readable from the request.
        argument_f1_reference_free: Mean argument F1 of the oracle that writes every gold
            call of an inventory tool holding no reference.
        argument_f1: Mean argument F1 of the oracle that writes every reachable call.
        exact_match: Share of requests whose every gold call is reachable.
        argument_f1_by_calls: ``argument_f1`` per number of gold calls (keys as text).
    """

    n_examples: int
    n_values: int
    reference_free_share: float
    reachable_share: float
    argument_f1_reference_free: float
    argument_f1: float
    exact_match: float
    argument_f1_by_calls: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        """The ceiling as a plain dict, e.g. for JSON reports."""
        return asdict(self)


def ceiling(queries: Sequence[str], golds: Sequence[Sequence[dict]], tools: dict[str, dict] | None = None) -> Ceiling:
    """The ceiling of a test set: reachable gold values, and the oracle's scores.

    Args:
        queries: The request of each example.
        golds: The gold plan of each example.
        tools: The inventory, by name (``{"name", "description", "parameters"}``): its
            schemas tell enum values, and a gold call of a tool outside it is out of the
            oracle's reach. None: every tool, no enums.

    Returns:
        The :class:`Ceiling`.

    Raises:
        ValueError: If ``queries`` and ``golds`` differ in length.
    """
    if len(queries) != len(golds):
        raise ValueError(f"{len(queries)} requests but {len(golds)} gold plans")
    n_values = n_reference_free = n_reachable = 0
    oracle: list[list[dict]] = []
    loose: list[list[dict]] = []
    for query, gold in zip(queries, golds):
        oracle.append([])
        loose.append([])
        for call in gold:
            known = tools is None or call["name"] in tools
            properties = ((tools or {}).get(call["name"], {}).get("parameters") or {}).get("properties") or {}
            arguments = call.get("arguments", {})
            values = [reachable(v, query, properties.get(k)) for k, v in arguments.items()]
            free = [find_reference(v) is None for v in arguments.values()]
            n_values += len(values)
            n_reachable += sum(values)
            n_reference_free += sum(free)
            if known and all(values):
                oracle[-1].append(call)
            if known and all(free):
                loose[-1].append(call)
    exact = score(golds, oracle)
    by_calls = {}
    for k in sorted({len(g) for g in golds}):
        chosen = [i for i, g in enumerate(golds) if len(g) == k]
        by_calls[str(k)] = score([golds[i] for i in chosen], [oracle[i] for i in chosen]).argument_f1
    return Ceiling(
        n_examples=len(golds),
        n_values=n_values,
        reference_free_share=n_reference_free / n_values if n_values else 1.0,
        reachable_share=n_reachable / n_values if n_values else 1.0,
        argument_f1_reference_free=score(golds, loose).argument_f1,
        argument_f1=exact.argument_f1,
        exact_match=exact.exact_match,
        argument_f1_by_calls=by_calls,
    )
