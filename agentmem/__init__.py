"""agentmem: a procedural memory of tools for a frozen language model.

Each tool is compiled into one trainable memory token; the model emits the token when a
request needs the tool, then writes its arguments. Heavy modules (torch, transformers) are
imported on first use, so ``import agentmem.tools`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentmem.errors import (
    AgentMemError,
    BackboneError,
    BackboneMismatchError,
    BankError,
    BankFormatWarning,
    DuplicateToolError,
    InvalidExampleError,
    SchemaError,
    UnknownToolError,
)

if TYPE_CHECKING:
    from agentmem.core import AgentMem, LearnReport

__version__ = "0.1.0"

__all__ = [
    "AgentMem",
    "LearnReport",
    "AgentMemError",
    "BackboneError",
    "BackboneMismatchError",
    "BankError",
    "BankFormatWarning",
    "DuplicateToolError",
    "InvalidExampleError",
    "SchemaError",
    "UnknownToolError",
]


def __getattr__(name: str) -> Any:
    # Lazy: the facade pulls in torch and transformers.
    if name in ("AgentMem", "LearnReport"):
        from agentmem import core

        return getattr(core, name)
    raise AttributeError(f"module 'agentmem' has no attribute {name!r}")
