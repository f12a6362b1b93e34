"""agentmem: a procedural memory of tools for a frozen language model.

Each tool is compiled into one trainable memory token; the model emits the token when a
request needs the tool, then writes its arguments. Heavy modules (torch, transformers) are
imported on first use, so ``import agentmem`` and ``import agentmem.tools`` stay light: the
names below resolve lazily (PEP 562), and nothing here imports an extra's package.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentmem.errors import (
    AgentMemError,
    BackboneError,
    BackboneMismatchError,
    BankError,
    BankFormatWarning,
    ChatInputError,
    DuplicateToolError,
    InvalidExampleError,
    MissingExtraError,
    OverloadedError,
    PromptTooLongError,
    SchemaError,
    ToolChoiceError,
    UnknownToolError,
    UnsupportedInputError,
)

if TYPE_CHECKING:
    from agentmem.adaptation.adapt import AdaptConfig, AdaptReport
    from agentmem.core import AgentMem, PlanOptions
    from agentmem.tools.calls import InvalidToolCall, Plan, ToolCall
    from agentmem.tools.examples import SkippedExample
    from agentmem.tools.spec import ToolSpec
    from agentmem.training import LearnReport, TrainConfig

__version__ = "0.1.0"

# Public name -> the module that defines it, imported on first access.
_LAZY = {
    "AgentMem": "agentmem.core",
    "AdaptConfig": "agentmem.adaptation.adapt",
    "AdaptReport": "agentmem.adaptation.adapt",
    "InvalidToolCall": "agentmem.tools.calls",
    "LearnReport": "agentmem.training",
    "Plan": "agentmem.tools.calls",
    "PlanOptions": "agentmem.core",
    "SkippedExample": "agentmem.tools.examples",
    "ToolCall": "agentmem.tools.calls",
    "ToolSpec": "agentmem.tools.spec",
    "TrainConfig": "agentmem.training",
}

__all__ = [
    "AdaptConfig",
    "AdaptReport",
    "AgentMem",
    "InvalidToolCall",
    "LearnReport",
    "Plan",
    "PlanOptions",
    "SkippedExample",
    "ToolCall",
    "ToolSpec",
    "TrainConfig",
    # errors and warnings (agentmem.errors)
    "AgentMemError",
    "BackboneError",
    "BackboneMismatchError",
    "BankError",
    "BankFormatWarning",
    "ChatInputError",
    "DuplicateToolError",
    "InvalidExampleError",
    "MissingExtraError",
    "OverloadedError",
    "PromptTooLongError",
    "SchemaError",
    "ToolChoiceError",
    "UnknownToolError",
    "UnsupportedInputError",
]

# The repository maps four top-level folders into one package (pyproject's package-dir):
# agentmem/ -> agentmem, tools/ -> agentmem.tools, adapters/ -> agentmem.adapters, eval/ ->
# agentmem.eval. An install nests them; a source checkout does not. Python run from the
# repository root imports this folder (the current directory comes first on sys.path), even
# when a non-editable install sits in site-packages, and would then find no agentmem.tools.
# So, imported from a checkout, the subpackages are also looked up in the folder above.
_SOURCE_ROOT = Path(__file__).resolve().parent.parent
if (
    not (Path(__file__).resolve().parent / "tools").is_dir()
    and all((_SOURCE_ROOT / folder / "__init__.py").is_file() for folder in ("tools", "adapters", "eval"))
    and (_SOURCE_ROOT / "pyproject.toml").is_file()
):
    __path__.append(str(_SOURCE_ROOT))


def __getattr__(name: str) -> Any:
    # Lazy: most of these pull in torch and transformers.
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # resolved once
        return value
    raise AttributeError(f"module 'agentmem' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
