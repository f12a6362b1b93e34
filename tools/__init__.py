"""Tool definitions, example validation, argument parsing and plans (torch-free).

* `spec`: ToolSpec and `to_tool_spec` (OpenAI dicts, pydantic, callables, LangChain tools);
* `examples`: training examples validated against their schemas;
* `parsing`: generated text to ToolCall / InvalidToolCall, and `canonical_json`;
* `calls`: ToolCall, InvalidToolCall, Plan;
* `demo`: a small pack of everyday tools with implementations and examples.
"""

from agentmem.tools.calls import InvalidToolCall, Plan, ToolCall
from agentmem.tools.examples import Call, Example, SkippedExample, normalize_examples
from agentmem.tools.parsing import canonical_json, find_reference, parse_call
from agentmem.tools.spec import ToolSpec, to_tool_spec

__all__ = [
    "Call",
    "Example",
    "InvalidToolCall",
    "Plan",
    "SkippedExample",
    "ToolCall",
    "ToolSpec",
    "canonical_json",
    "find_reference",
    "normalize_examples",
    "parse_call",
    "to_tool_spec",
]
