"""BFCL v4 multi-turn, development domains: the loader, its held-out rule, schemas, execution."""

from __future__ import annotations

import inspect

import jsonschema
import pytest

from agentmem.adaptation import corpus
from agentmem.eval import bfcl
from agentmem.tools import to_tool_spec


@pytest.fixture(scope="module")
def data() -> bfcl.BFCLData:
    return bfcl.load_bfcl()


def test_the_loader_never_returns_a_held_out_conversation(data):
    assert len(data.conversations) == 59
    for conversation in data.conversations:
        assert conversation.classes and set(conversation.classes) <= set(bfcl.DEVELOPMENT_CLASSES)
    assert set(data.tool_class.values()) == set(bfcl.DEVELOPMENT_CLASSES)
    # the rule itself, on records made here: one held-out class is enough to drop a conversation
    assert bfcl.is_development({"involved_classes": ["TravelAPI", "MathAPI"]})
    assert not bfcl.is_development({"involved_classes": ["TravelAPI", "TicketAPI"]})
    assert not bfcl.is_development({"involved_classes": []})
    assert not bfcl.is_development({})


def test_wheel_types_become_json_schema():
    schema = bfcl.to_json_schema(
        {
            "type": "dict",
            "properties": {
                "x": {"type": "float"},
                "pair": {"type": "tuple", "items": {"type": "float"}},
                "anything": {"type": "any", "description": "whatever"},
                "since": {"type": "string", "default": "None"},
            },
            "required": ["x"],
        }
    )
    assert schema == {
        "type": "object",
        "properties": {
            "x": {"type": "number"},
            "pair": {"type": "array", "items": {"type": "number"}},
            "anything": {"description": "whatever"},
            "since": {"type": "string"},
        },
        "required": ["x"],
    }


def test_values_listed_only_in_a_description_become_an_enum():
    schema = bfcl.to_json_schema(
        {
            "type": "dict",
            "properties": {
                "mode": {"type": "string", "description": 'The mode. [Enum]: ["on", "off"]'},
                "doors": {"type": "array", "items": {"type": "string"}, "description": 'Doors. [Enum]: ["a", "b"]'},
                "currency": {"type": "string", "description": "The currency. [Enum]: USD, EUR"},
                "broken": {"type": "string", "description": "Oops. [Enum]: [unquoted"},
                "free": {"type": "string", "description": "Any text."},
                "cabin": {"type": "string", "description": "The class. Options are: economy, business, first."},
                "grant": {"type": "string", "description": "The grant. Here are the options: read_write, read, write"},
                "prose": {"type": "string", "description": "Options are: whatever you like, within reason."},
            },
        }
    )["properties"]
    assert schema["cabin"]["enum"] == ["economy", "business", "first"]
    assert schema["grant"]["enum"] == ["read_write", "read", "write"]
    assert "enum" not in schema["prose"]
    assert schema["mode"]["enum"] == ["on", "off"]
    assert schema["doors"]["items"] == {"type": "string", "enum": ["a", "b"]} and "enum" not in schema["doors"]
    assert schema["currency"]["enum"] == ["USD", "EUR"]
    assert "enum" not in schema["broken"] and "enum" not in schema["free"]


def test_the_development_tools_hold_the_enums_their_descriptions_state(data):
    parameters = data.tools["lockDoors"]["parameters"]["properties"]
    assert parameters["door"]["items"]["enum"] == ["driver", "passenger", "rear_left", "rear_right"]
    assert data.tools["startEngine"]["parameters"]["properties"]["ignitionMode"]["enum"] == ["START", "STOP"]
    described = [
        p
        for tool in data.tools.values()
        for p in tool["parameters"].get("properties", {}).values()
        if "[Enum]" in p.get("description", "")
    ]
    assert len(described) == 10
    assert all("enum" in p or "enum" in p.get("items", {}) for p in described)
    assert data.tools["get_flight_cost"]["parameters"]["properties"]["travel_class"]["enum"] == [
        "economy",
        "business",
        "first",
    ]
    assert data.tools["authenticate_travel"]["parameters"]["properties"]["grant_type"]["enum"] == [
        "read_write",
        "read",
        "write",
    ]


def test_a_format_stated_in_a_description_becomes_a_pattern(data):
    schema = bfcl.to_json_schema(
        {
            "type": "dict",
            "properties": {
                "date": {"type": "string", "description": "The date of the travel in the format 'YYYY-MM-DD'"},
                "expiry": {"type": "string", "description": "The expiration date in the format MM/YYYY"},
                "airport": {"type": "string", "description": "The 3 letter code of the arriving airport"},
                "count": {"type": "integer", "description": "How many, in the format YYYY-MM-DD"},
                "free": {"type": "string", "description": "Any text."},
            },
        }
    )["properties"]
    check = jsonschema.Draft202012Validator
    assert check(schema["date"]).is_valid("2026-11-12") and not check(schema["date"]).is_valid("November 12th 2026")
    assert check(schema["expiry"]).is_valid("03/2027") and not check(schema["expiry"]).is_valid("2027-03")
    assert check(schema["airport"]).is_valid("LAX") and not check(schema["airport"]).is_valid("Los Angeles")
    assert "pattern" not in schema["count"] and "pattern" not in schema["free"]
    flight = data.tools["get_flight_cost"]["parameters"]["properties"]
    assert flight["travel_from"]["pattern"] == flight["travel_to"]["pattern"] == r"^[A-Z]{3}$"
    assert sum("pattern" in p for t in data.tools.values() for p in t["parameters"]["properties"].values()) == 6


def test_every_tool_schema_is_valid_and_names_the_functions_parameters(data):
    assert len(data.tools) == 67
    for name, tool in data.tools.items():
        jsonschema.Draft202012Validator.check_schema(tool["parameters"])
        method = getattr(bfcl._api_class(data.tool_class[name]), name)
        signature = {p for p in inspect.signature(method).parameters if p != "self"}
        assert set(tool["parameters"].get("properties", {})) == signature


def test_gold_calls_parse_positionally_and_fit_their_schemas(data):
    tools = {"f": ["a", "b"]}
    assert bfcl.parse_call("f(1, b=(2, 3))", tools) == {"name": "f", "arguments": {"a": 1, "b": [2, 3]}}
    assert bfcl.parse_call("f(1, 2)", {"f": ["b", "a"]})["arguments"] == {"b": 1, "a": 2}
    with pytest.raises(ValueError, match="unknown tool 'g'"):
        bfcl.parse_call("g(1)", tools)
    with pytest.raises(ValueError, match="not a literal"):
        bfcl.parse_call("f(a=open('x'))", tools)
    specs = {name: to_tool_spec(tool) for name, tool in data.tools.items()}
    calls = [c for conv in data.conversations for turn in conv.gold for c in turn]
    assert len(calls) == 366
    assert [c for c in calls if specs[c["name"]].validate_arguments(c["arguments"]) is not None] == []


def test_split_is_by_conversation_and_deterministic(data):
    train, dev, test = bfcl.split_conversations(data.conversations)
    assert (len(train), len(dev), len(test)) == (35, 12, 12)
    ids = [c.id for part in (train, dev, test) for c in part]
    assert sorted(ids) == sorted(c.id for c in data.conversations)
    assert [c.id for c in bfcl.split_conversations(data.conversations)[2]] == [c.id for c in test]
    assert [c.id for c in bfcl.split_conversations(data.conversations, seed=1)[2]] != [c.id for c in test]


def test_gold_calls_execute_on_the_domains_own_classes_and_change_their_state(data):
    conversation = next(c for c in data.conversations if "VehicleControlAPI" in c.classes)
    session = bfcl.Session(conversation, data.tool_class)
    start = session.state()
    results = [session.execute(c["name"], c["arguments"]) for turn in conversation.gold for c in turn]
    assert all(isinstance(r, str) for r in results)
    assert session.state() != start
    again = bfcl.Session(conversation, data.tool_class)
    for turn in conversation.gold:
        for call in turn:
            again.execute(call["name"], call["arguments"])
    assert again.state() == session.state()
    assert session.execute("lockDoors", {"nonsense": 1}).startswith("Error during execution")
    assert session.execute("no_such_tool", {}).startswith("Error during execution")


def test_irrelevance_requests_are_user_messages(data):
    requests = bfcl.irrelevance_requests(limit=5)
    assert len(requests) == 10
    assert all(messages[-1]["role"] == "user" and messages[-1]["content"] for messages in requests)


def test_the_dev_sample_of_irrelevance_requests_is_disjoint_from_the_report_sample(data):
    report, dev = bfcl.irrelevance_requests(limit=5), bfcl.irrelevance_requests(limit=5, part="dev")
    assert len(dev) == 10
    assert not {str(m) for m in report} & {str(m) for m in dev}


def test_agent_shaped_adaptation_requests_use_no_bfcl_tool(data):
    # the adaptation may teach copying from a conversation only on tools BFCL's dev domains do not have
    examples = corpus.agent_examples(100)
    names = {c["name"] for e in examples for c in e["calls"]}
    names |= {c["function"]["name"] for e in examples for m in e["messages"] for c in m.get("tool_calls") or ()}
    assert names and not names & set(data.tools)
    assert not set(corpus.synthetic_tools(76, 0, "adapt")) & set(data.tools)
