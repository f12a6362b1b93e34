"""The request bodies: pydantic models of ``POST /v1/chat/completions`` and ``POST /v1/banks``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Json, field_validator

__all__ = ["FOLDER_NAME", "BankRequest", "ChatRequest", "Function", "FunctionTool", "Message"]

# A bank folder's name as POST /v1/banks may give it: one path component, never hidden (a
# leading dot is a save in progress or a crashed one, see agentmem.atomic) nor a way up.
FOLDER_NAME = r"^[A-Za-z0-9_][\w.\-]{0,127}$"


class Function(BaseModel):
    """A function in ``tools`` (the bank holds its schema) or in earlier ``tool_calls``."""

    name: str
    arguments: Json[dict[str, Any]] | dict[str, Any] = {}


class FunctionTool(BaseModel):
    """An entry of ``tools`` or of a message's ``tool_calls``; other fields are ignored."""

    type: Literal["function"] = "function"
    function: Function


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[FunctionTool] | None = None


class ChatRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[Message] = Field(min_length=1)
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = (
        None  # see agentmem.chat.tool_choice_policy
    )
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = 1
    logprobs: bool | None = None
    max_calls: int = Field(default=8, ge=1, le=64)
    continue_plans: bool = True


class BankRequest(BaseModel):
    """The body of ``POST /v1/banks``: load (or reload) a bank as ``name``.

    The bank is named, never given by path: ``folder`` (default: ``name``) is the name of a
    bank folder inside the folders the server was started with (`BankRegistry.roots`).
    """

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=FOLDER_NAME)
    folder: str | None = Field(default=None, pattern=FOLDER_NAME)
    path: None = None  # refused below with a message that says what to send instead

    @field_validator("path", mode="before")
    @classmethod
    def _no_path(cls, value: Any) -> None:
        raise ValueError(
            "banks are loaded by folder name, not by path: send 'folder', the name of a bank folder "
            "inside the folders this server was started with"
        )
