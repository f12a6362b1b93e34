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
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = [
    "Scores",
    "argument_f1",
    "exact_match",
    "normalize_arguments",
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
