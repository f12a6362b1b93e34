from __future__ import annotations

import subprocess
import sys
from typing import Literal, Optional

import pytest
from pydantic import BaseModel, Field

from agentmem.errors import SchemaError
from agentmem.tools import ToolSpec, to_tool_spec

WEATHER = {
    "name": "get_weather",
    "description": "Current weather.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
        "required": ["city"],
    },
}


def test_openai_outer_and_inner_dicts_give_the_same_spec():
    inner = to_tool_spec(WEATHER)
    outer = to_tool_spec({"type": "function", "function": WEATHER})
    assert inner == outer
    assert inner.to_openai() == {"type": "function", "function": WEATHER}
    assert ToolSpec.from_dict(inner.to_dict()) == inner
    bare = to_tool_spec({"name": "ping"})
    assert bare.parameters == {"type": "object", "properties": {}}


def test_pydantic_model():
    class Booking(BaseModel):
        """Book a table."""

        restaurant: str = Field(description="Where")
        guests: int = 2

    spec = to_tool_spec(Booking)
    assert spec.name == "Booking" and spec.description == "Book a table."
    assert spec.parameters["required"] == ["restaurant"]
    assert spec.parameters["properties"]["guests"]["type"] == "integer"
    assert spec.validate_arguments({"restaurant": "Noma"}) is None
    assert "guests" in spec.validate_arguments({"restaurant": "Noma", "guests": "two"})


def test_typed_callable_with_docstring():
    def convert(amount: float, currency: Literal["EUR", "USD"], note: Optional[str] = None, tags: list[int] = []):
        """Convert money.

        Args:
            amount: How much.
            currency: Target
                currency code.
        """

    spec = to_tool_spec(convert)
    props = spec.parameters["properties"]
    assert spec.name == "convert" and spec.description == "Convert money."
    assert props["amount"]["type"] == "number" and props["amount"]["description"] == "How much."
    assert props["currency"]["enum"] == ["EUR", "USD"]
    assert props["currency"]["description"] == "Target currency code."
    assert props["tags"]["items"]["type"] == "integer"
    assert spec.parameters["required"] == ["amount", "currency"]
    assert spec.validate_arguments({"amount": 3, "currency": "GBP"}) is not None


def test_langchain_tool_is_duck_typed():
    from langchain_core.tools import tool

    @tool
    def search(query: str, limit: int = 5) -> str:
        """Search the web."""
        return query

    spec = to_tool_spec(search)
    assert spec.name == "search" and "Search the web" in spec.description
    assert set(spec.parameters["properties"]) == {"query", "limit"}
    assert spec.validate_arguments({"query": "x"}) is None


@pytest.mark.parametrize(
    "definition, message",
    [
        ({"name": "bad name!", "parameters": {"type": "object"}}, "not valid"),
        ({"name": "t", "parameters": {"type": "objekt"}}, "invalid JSON Schema"),
        ({"name": "t", "parameters": {"type": "string"}}, "must describe an object"),
        ({"name": "t", "parameters": [1, 2]}, "JSON Schema object"),
        (42, "cannot make a tool from int"),
    ],
)
def test_bad_definitions_are_clear_errors(definition, message):
    with pytest.raises(SchemaError, match=message):
        to_tool_spec(definition)


def test_validation_messages_name_the_path():
    spec = to_tool_spec(WEATHER)
    assert spec.validate_arguments({"city": "Oslo", "unit": "c"}) is None
    assert "unit" in spec.validate_arguments({"city": "Oslo", "unit": "kelvin"})
    assert "city" in spec.validate_arguments({})
    assert spec.validate_arguments("not an object") is not None


def test_tools_layer_does_not_import_torch():
    code = "import sys, agentmem.tools, agentmem.tools.demo; print('torch' in sys.modules, 'langchain_core' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"
