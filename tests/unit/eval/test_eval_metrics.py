"""Metrics on hand-made plans with known values."""

from __future__ import annotations

import pytest

from agentmem.eval.metrics import (
    Scores,
    argument_f1,
    ceiling,
    exact_match,
    normalize_arguments,
    reachable,
    score,
    set_f1,
    tool_f1,
)


def call(name: str, **arguments: object) -> dict:
    return {"name": name, "arguments": arguments}


GOLD = [call("search", city="Paris", n=2), call("book", id="$var1.id$")]


def test_perfect_prediction_scores_one() -> None:
    assert tool_f1(GOLD, GOLD) == 1.0
    assert argument_f1(GOLD, GOLD) == 1.0
    assert exact_match(GOLD, GOLD)


def test_partial_overlap_known_values() -> None:
    pred = [call("search", city="Paris", n=3), call("weather", city="Paris")]
    # Names: gold {search, book}, pred {search, weather}: 1 shared -> 2*1/(2+2).
    assert tool_f1(GOLD, pred) == pytest.approx(0.5)
    assert argument_f1(GOLD, pred) == 0.0
    pred = [call("search", city="Paris", n=2)]
    assert tool_f1(GOLD, pred) == pytest.approx(2 / 3)
    assert argument_f1(GOLD, pred) == pytest.approx(2 / 3)
    pred = GOLD + [call("weather", city="Paris")]
    assert tool_f1(GOLD, pred) == pytest.approx(0.8)
    assert argument_f1(GOLD, pred) == pytest.approx(0.8)
    assert not exact_match(GOLD, pred)


def test_empty_cases() -> None:
    assert set_f1(set(), set()) == 1.0
    assert tool_f1([], []) == 1.0
    assert argument_f1([], []) == 1.0
    assert exact_match([], [])
    assert tool_f1(GOLD, []) == 0.0
    assert argument_f1([], GOLD) == 0.0
    assert not exact_match(GOLD, [])


def test_order_matters_only_for_exact_match() -> None:
    reversed_plan = list(reversed(GOLD))
    assert tool_f1(GOLD, reversed_plan) == 1.0
    assert argument_f1(GOLD, reversed_plan) == 1.0
    assert not exact_match(GOLD, reversed_plan)


def test_repeated_calls_count_once_in_sets_but_not_in_exact_match() -> None:
    doubled = GOLD + [GOLD[0]]
    assert argument_f1(GOLD, doubled) == 1.0
    assert not exact_match(GOLD, doubled)


def test_normalisation_numbers_keys_and_nesting() -> None:
    assert normalize_arguments({"a": 1}) == normalize_arguments({"a": 1.0})
    assert normalize_arguments({"a": [1.0, {"y": 2.0, "x": 1}]}) == normalize_arguments({"a": [1, {"x": 1, "y": 2}]})
    assert normalize_arguments({"b": 1, "a": 2}) == normalize_arguments({"a": 2, "b": 1})
    assert normalize_arguments({"a": 1.5}) != normalize_arguments({"a": 1})
    assert normalize_arguments({"a": True}) != normalize_arguments({"a": 1})
    assert normalize_arguments({"a": "x "}) != normalize_arguments({"a": "x"})
    assert normalize_arguments({"a": (1, 2)}) == normalize_arguments({"a": [1, 2]})
    assert exact_match([call("f", x=1)], [call("f", x=1.0)])
    assert argument_f1([call("f", x=1)], [call("f", x=1.0)]) == 1.0


def test_score_aggregates_means_and_rates() -> None:
    golds = [GOLD, GOLD, [call("f", x=1)], [call("g")]]
    preds = [GOLD, [GOLD[0]], None, [call("g")]]
    scores = score(golds, preds, invalid_counts=[0, 2, 0, 1])
    assert isinstance(scores, Scores)
    assert scores.n_examples == 4
    assert scores.tool_f1 == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
    assert scores.argument_f1 == pytest.approx((1 + 2 / 3 + 0 + 1) / 4)
    assert scores.exact_match == pytest.approx(0.5)
    # 4 valid calls, 3 invalid ones.
    assert scores.schema_valid_rate == pytest.approx(4 / 7)
    assert scores.parse_failure_rate == pytest.approx(0.25)
    assert (scores.n_valid_calls, scores.n_invalid_calls, scores.n_parse_failures) == (4, 3, 1)
    assert scores.as_dict()["exact_match"] == scores.exact_match


def test_score_edge_cases_and_errors() -> None:
    empty = score([], [])
    assert (empty.n_examples, empty.tool_f1, empty.schema_valid_rate) == (0, 0.0, 1.0)
    assert score([GOLD], [GOLD]).schema_valid_rate == 1.0
    with pytest.raises(ValueError):
        score([GOLD], [])
    with pytest.raises(ValueError):
        score([GOLD], [GOLD], invalid_counts=[0, 0])
    with pytest.raises(ValueError):
        score([GOLD], [GOLD], invalid_counts=[-1])


HOTELS = {
    "name": "Search_Hotels",
    "parameters": {
        "type": "object",
        "properties": {
            "dest_id": {"anyOf": [{"type": "number"}, {"type": "string", "pattern": "^\\$var[0-9]+(\\.[^$]*)?\\$$"}]},
            "sort_by": {"anyOf": [{"enum": ["price", "distance"]}, {"type": "string"}]},
            "adults": {"type": "integer"},
            "free": {"type": "boolean"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
    },
}
DEST = {
    "name": "Search_Hotel_Destination",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
}


def test_reachable_values_by_kind() -> None:
    query = "Hotels in TOKYO for 2 adults, tagged spa, sorted cheapest first, id 1.5"
    props = HOTELS["parameters"]["properties"]
    assert reachable("Tokyo", query)  # case-insensitive substring
    assert not reachable("Osaka", query)  # absent from the request
    assert not reachable("$var1.dest_id$", query, props["dest_id"])  # a reference, whatever the text
    assert not reachable(["spa", "$var2$"], query, props["tags"])  # one item is a reference
    assert reachable(["spa"], query, props["tags"]) and not reachable(["spa", "gym"], query, props["tags"])
    assert reachable(2, query) and reachable(2.0, query) and reachable(1.5, query)
    assert not reachable(3, query)
    assert reachable("price", query, props["sort_by"])  # an enum value is chosen, not read
    assert not reachable("price", query)  # ...without the schema it must be read
    assert reachable(False, query) and reachable(None, query)
    assert reachable({"city": "tokyo", "n": 2}, query) and not reachable({"city": "Kyoto"}, query)


def test_ceiling_on_hand_made_examples() -> None:
    tools = {"Search_Hotels": HOTELS, "Search_Hotel_Destination": DEST}
    queries = [
        "Find hotels near Tokyo Tower for 2 adults.",
        "Find a destination for Lisbon and hotels there sorted by price.",
    ]
    golds = [
        # a reference: the second call is out of reach, the first is read from the request
        [
            call("Search_Hotel_Destination", query="Tokyo Tower"),
            call("Search_Hotels", dest_id="$var1.dest_id$", adults=2),
        ],
        # values absent from the request: "Porto", and the id -2167973 (its enum value
        # "price" alone would be reachable): neither call is in reach
        [call("Search_Hotel_Destination", query="Porto"), call("Search_Hotels", dest_id=-2167973, sort_by="price")],
    ]
    top = ceiling(queries, golds, tools)
    assert top.n_examples == 2 and top.n_values == 6
    # values: "Tokyo Tower" yes, reference no, 2 yes; "Porto" no, -2167973 no, "price" yes (enum)
    assert top.reachable_share == pytest.approx(3 / 6)
    assert top.reference_free_share == pytest.approx(5 / 6)
    # the oracle writes one of two gold calls in the first request, none in the second
    assert top.argument_f1 == pytest.approx((2 * 1 / 3 + 0.0) / 2)
    assert top.exact_match == 0.0
    # counting only references: the first request as before, the second whole
    assert top.argument_f1_reference_free == pytest.approx((2 / 3 + 1.0) / 2)
    assert top.argument_f1_by_calls == {"2": pytest.approx(1 / 3)}

    # a gold call of a tool outside the inventory is out of the oracle's reach
    alone = ceiling(queries[:1], golds[:1], {"Search_Hotels": HOTELS})
    assert alone.argument_f1 == 0.0 and alone.reachable_share == pytest.approx(2 / 3)
    # every call reachable: the oracle is exact
    whole = ceiling(["hotels near Tokyo Tower"], [[call("Search_Hotel_Destination", query="tokyo tower")]])
    assert whole.argument_f1 == 1.0 and whole.exact_match == 1.0 and whole.reachable_share == 1.0
    with pytest.raises(ValueError, match="1 requests but 2 gold plans"):
        ceiling(queries[:1], golds)
