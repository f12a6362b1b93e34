"""Errors raised by agentmem.

Every error subclasses `AgentMemError` and, where it fits, the builtin a caller would
naturally catch (`ValueError`, `KeyError`), so `except ValueError` keeps working.
This module imports nothing: every layer (including the torch-free `agentmem.tools`)
may import it.
"""

from __future__ import annotations


class AgentMemError(Exception):
    """Base class of every error agentmem raises on purpose."""


class SchemaError(AgentMemError, ValueError):
    """A tool definition cannot be turned into a valid ToolSpec (bad JSON Schema, bad name...)."""


class InvalidExampleError(AgentMemError, ValueError):
    """A training example is malformed or its arguments break the tool's schema."""


class DuplicateToolError(AgentMemError, ValueError):
    """A tool with this name is already in the memory bank."""


class UnknownToolError(AgentMemError, KeyError):
    """A tool name that the memory bank does not hold."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class UnsupportedInputError(AgentMemError, ValueError):
    """A request the model cannot take: non-text content, an option the decoder lacks."""


class ChatInputError(UnsupportedInputError):
    """A chat message, call or content part the chat boundary cannot read.

    Attributes:
        param: Where it stands in the request (``messages[1].content[0]``), as an HTTP
            error's ``param``.
        code: A short machine-readable kind (``unsupported_content``), or None.
    """

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.code = param, code


class ToolChoiceError(UnknownToolError, ValueError):
    """A ``tool_choice`` that is no policy and names no allowed tool (a `KeyError` like
    `UnknownToolError`, and a `ValueError`, since the value itself is malformed)."""

    param = "tool_choice"
    code: str | None = None


class PromptTooLongError(UnsupportedInputError):
    """A request whose prompt is longer than the caller's (or the backbone's) limit."""


class BackboneError(AgentMemError, ValueError):
    """The backbone cannot be found or loaded."""


class BankError(AgentMemError, ValueError):
    """A saved memory bank is missing, corrupted, or of an unknown format version."""


class BackboneMismatchError(BankError):
    """A saved memory bank was learned on a different backbone than the one given."""


class OverloadedError(AgentMemError, RuntimeError):
    """A request refused for want of room: the scheduler's queue is full, or the request
    waited its whole time limit in it.

    Attributes:
        retry_after: Whole seconds after which a retry may find room (an estimate).
    """

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MissingExtraError(AgentMemError, ImportError):
    """A layer beyond the core (server, LangChain adapter, evaluation) whose extra is not
    installed; the message names the ``pip install`` to run."""


class BankFormatWarning(UserWarning):
    """A bank read from an older format that cannot promise to plan like the bank it was saved from."""
