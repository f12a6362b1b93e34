"""LangChain chat model over an AgentMem: `ChatAgentMem`.

Input flow: LangChain messages -> `_convert_messages` (turns of the chat boundary,
`agentmem.chat`, then the role/content dicts that `agentmem.encoding.prompt_ids` renders
with the backbone's chat template; an AIMessage's tool calls stay structured, so they are
written back as memory token + arguments) -> `AgentMem.plan` (an agent run in progress
continues its plan, see below), whose routing mask is the bound tools and `tool_choice`
(every LangChain form normalised by `agentmem.chat.tool_choice_policy`).

Output flow: Plan -> `agentmem.chat.plan_to_dict` -> `_plan_chunks` (a text chunk, one
chunk per valid call carrying `tool_call_chunks`, a last chunk with `usage_metadata` and
`response_metadata`) -> `_stream` yields them; `_generate` adds them up into one AIMessage.

Where it differs from a hosted chat model, by design:

* A tool is routed by its memory token, so every bound tool must be learned in the bank
  (`AgentMem.learn_tool`, `agentmem learn`), or learned on the spot from ``examples=``
  passed to `ChatAgentMem.bind_tools` / `ChatAgentMem.with_structured_output`. Arguments
  are decoded and validated under the schema the bank learned.
* Streaming is not token by token: the decoder plans the whole request, then the chunks
  leave. A call that failed validation is not streamed as a tool call chunk (LangChain
  re-parses chunk JSON and would make a well-formed but schema-breaking call valid); it is
  in the last chunk's ``response_metadata["invalid_tool_calls"]``, and in
  ``AIMessage.invalid_tool_calls`` from ``invoke``.
* Agent runs: when the conversation ends in the results of calls made since the last user
  message, the plan resumes: the model emits its next call or ends the plan, which is the
  agent's stop. A bank learned from requests alone was never trained to read a result: its
  prompt is the conversation up to that message followed by those calls, exactly as the
  model writes a multi-call plan. A bank learned from traces that go on after their results
  (`AgentMem.reads_results`) is shown the results, then those calls again, and goes on
  from there. (``continue_plans=False`` renders the results with the chat template as a new
  turn instead.) ``max_calls=1`` (or ``parallel_tool_calls=False``) gives an agent one call
  per turn.
* Decoding is greedy (``temperature`` 0 or unset); ``stop`` cuts the text answer at the first
  stop sequence, after decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agentmem.extras import missing_extra

try:
    from langchain_core.callbacks import CallbackManagerForLLMRun
    from langchain_core.language_models import LanguageModelInput
    from langchain_core.language_models.chat_models import BaseChatModel, LangSmithParams, generate_from_stream
    from langchain_core.messages import (
        AIMessage,
        AIMessageChunk,
        BaseMessage,
        ChatMessage,
        FunctionMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
    )
    from langchain_core.messages.ai import UsageMetadata
    from langchain_core.messages.tool import invalid_tool_call, tool_call_chunk
    from langchain_core.outputs import ChatGenerationChunk, ChatResult
    from langchain_core.runnables import Runnable
    from langchain_core.tools import BaseTool
    from langchain_core.utils.function_calling import convert_to_openai_tool
except ImportError as exc:  # a core install: say which extra to install, not only the module
    raise missing_extra("langchain", exc) from exc

from agentmem.backbone import DEFAULT_BACKBONE
from agentmem.bank_io import META_FILE
from agentmem.chat import cut_at_stop, plan_options, plan_to_dict, prompt_messages, read_turn, tool_choice_policy
from agentmem.core import AgentMem
from agentmem.errors import InvalidExampleError, UnknownToolError, UnsupportedInputError
from agentmem.tools.calls import Plan, ToolCall

__all__ = ["ChatAgentMem"]

_CALL_OPTIONS = frozenset({"tools", "tool_choice", "max_tokens", "max_calls", "model", "stream"})
_ROLES = (
    (SystemMessage, "system"),
    (HumanMessage, "user"),
    (AIMessage, "assistant"),
    (ToolMessage, "tool"),
    (FunctionMessage, "tool"),
)

# input: LangChain -> chat-message dicts -> token ids


def _convert_messages(messages: Sequence[BaseMessage], known: Container[str]) -> list[dict[str, Any]]:
    """LangChain messages as the chat-message dicts `prompt_ids` renders (through the chat
    boundary's `Turn`: `agentmem.chat.prompt_messages` says how earlier calls are written).

    Args:
        messages: System, human, AI (with ``tool_calls``), tool, function or chat messages.
        known: Tools the bank holds.
    """
    turns = []
    for i, message in enumerate(messages):
        role = (
            message.role
            if isinstance(message, ChatMessage)
            else next((r for cls, r in _ROLES if isinstance(message, cls)), None)
        )
        if role is None:
            raise UnsupportedInputError(f"cannot send a {type(message).__name__} to ChatAgentMem")
        calls = message.tool_calls if isinstance(message, AIMessage) else ()
        # strict=False: tool-call and reasoning blocks are passed over (calls travel in tool_calls)
        turns.append(read_turn(role, message.content, calls, where=f"messages[{i}]", strict=False))
    return prompt_messages(turns, known)


def _require_learned(memory: AgentMem, names: Sequence[str]) -> None:
    missing = [name for name in names if name not in memory.bank]
    if missing:
        raise UnknownToolError(
            f"tool {', '.join(map(repr, missing))} is not learned in this memory bank (it holds: "
            f"{', '.join(memory.bank.names) or 'no tools'}). A tool is routed by its memory token, so learn it "
            "first: AgentMem.learn_tool(schema, examples), or `agentmem learn tools.json --bank BANK --out BANK`; "
            "or pass examples={name: [...]} to bind_tools to learn it now"
        )


# output: Plan -> chunks


def _plan_chunks(
    plan: Plan,
    *,
    model: str,
    token_id: Callable[[str], int],
    stop: Sequence[str] | None,
    schemas: Mapping[str, dict[str, Any]] | None = None,
) -> list[AIMessageChunk]:
    """The chunks of one plan: its text, one chunk per valid call, a last chunk with usage
    and metadata (the only chunk that carries them, so that adding chunks counts once)."""
    data = plan_to_dict(plan, schemas)
    text, cut = cut_at_stop(data["text"], stop)
    chunks = [AIMessageChunk(content=text)] if text else []
    for index, call in enumerate(data["tool_calls"]):
        function = call["function"]
        chunk = tool_call_chunk(name=function["name"], args=function["arguments"], id=call["id"], index=index)
        chunks.append(AIMessageChunk(content="", tool_call_chunks=[chunk]))
    metadata: dict[str, Any] = {
        "model_name": model,
        "model_provider": "agentmem",
        "finish_reason": "stop" if cut else data["finish_reason"],
        "memory_tokens": [
            {"name": step.name, "token_id": token_id(step.name), "valid": isinstance(step, ToolCall)}
            for step in plan.steps
        ],
        "timings": data["timings"],
    }
    if data["notes"]:
        metadata["notes"] = data["notes"]
    if data["invalid_tool_calls"]:
        metadata["invalid_tool_calls"] = [
            invalid_tool_call(name=c["function"]["name"], args=c["function"]["arguments"], id=c["id"], error=c["error"])
            for c in data["invalid_tool_calls"]
        ]
    prompt, generated = plan.usage.get("prompt_tokens", 0), plan.usage.get("generated_tokens", 0)
    usage = UsageMetadata(input_tokens=prompt, output_tokens=generated, total_tokens=prompt + generated)
    chunks.append(AIMessageChunk(content="", usage_metadata=usage, response_metadata=metadata, chunk_position="last"))
    return chunks


def _load(model: str) -> AgentMem:
    path = Path(model)
    return AgentMem.load(path) if (path / META_FILE).is_file() else AgentMem(model)


class ChatAgentMem(BaseChatModel):
    """A LangChain chat model whose tools are memory tokens of an `AgentMem`.

    Example:
        >>> chat = ChatAgentMem(model="banks/my-tools")  # a bank saved by AgentMem.save
        >>> msg = chat.bind_tools([get_weather], tool_choice="any").invoke("Weather in Oslo?")
        >>> msg.tool_calls  # [{'name': 'get_weather', 'args': {'city': 'Oslo'}, 'id': 'call_...', ...}]

    See the module docstring for how tools, streaming and agent runs map onto the decoder.
    """

    model: str = DEFAULT_BACKBONE
    """A bank folder saved by `AgentMem.save` (loaded onto the backbone it names), or a backbone
    (alias, Hugging Face id, folder, ``.gguf``) with an empty bank. With ``memory`` given it only
    names the model in traces (default: the memory's backbone name)."""

    memory: AgentMem | None = Field(default=None, exclude=True)
    """The AgentMem to serve, shared rather than copied (tools learned through ``examples=``
    land in it). Loaded from ``model`` on first use when not given."""

    temperature: float | None = None
    """Decoding is greedy: 0 or None."""

    max_tokens: int | None = None
    """Most tokens of a text answer (default: the decoder's). Arguments have their own limit."""

    stop: list[str] | None = None
    """A text answer is cut at the first of these."""

    max_calls: int = 8
    """Most calls per turn; 1 gives an agent one call per turn."""

    constrained: bool = True
    """Decode arguments under each tool's JSON Schema (grammar-constrained)."""

    continue_plans: bool = True
    """Resume the plan after the tool results of an agent run (module docstring); False renders
    the results with the chat template."""

    @model_validator(mode="before")
    @classmethod
    def _name_from_memory(cls, values: Any) -> Any:
        if isinstance(values, dict) and isinstance(values.get("memory"), AgentMem) and not values.get("model"):
            values = {**values, "model": values["memory"].backbone.name}
        return values

    @field_validator("temperature")
    @classmethod
    def _greedy_only(cls, value: float | None) -> float | None:
        if value not in (None, 0):
            raise UnsupportedInputError(f"temperature {value!r}: agentmem decodes greedily; use 0 or leave it unset")
        return value

    @property
    def _llm_type(self) -> str:
        return "agentmem"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "max_tokens": self.max_tokens,
            "max_calls": self.max_calls,
            "constrained": self.constrained,
            "continue_plans": self.continue_plans,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop if stop is not None else self.stop, **kwargs)
        params["ls_provider"] = "agentmem"
        return params

    def _agentmem(self) -> AgentMem:
        if self.memory is None:
            memory = _load(self.model)
            with AgentMem.lock:  # two first uses at once may both load; the first one kept serves both
                if self.memory is None:
                    self.memory = memory
        return self.memory

    # tools

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        parallel_tool_calls: bool | None = None,
        examples: Mapping[str, Sequence[dict[str, Any]]] | None = None,
        train_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Binds tools: each is routed by its memory token in the bank.

        Args:
            tools: Anything LangChain accepts (BaseTool, pydantic class, typed function,
                OpenAI-style dict, TypedDict). Each must be learned in the bank, by name.
            tool_choice: "auto" (default), "any"/"required" (at least one call), "none",
                a tool name (that tool first), True, False, or an OpenAI/Anthropic-style dict.
            parallel_tool_calls: False allows one call per turn.
            examples: ``{tool name: [{"query", "arguments"}, ...]}``: each named tool the bank
                does not hold yet is learned now from these (one new memory row; the backbone
                and other rows stay unchanged). Tools already learned are not relearned.
            train_options: `TrainConfig` fields for that learning (``epochs``, ``lr``, ...).
            **kwargs: Bound as invocation options (``max_tokens``, ``max_calls``).

        Raises:
            UnknownToolError: A tool is not learned (the message says how to learn it), or
                ``tool_choice`` names no bound tool.
            InvalidExampleError: ``examples`` name a tool that is not bound, or break its schema.
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        names = [f["function"]["name"] for f in formatted]
        if examples:
            self._learn_missing(formatted, examples, train_options or {})
        _require_learned(self._agentmem(), names)
        if parallel_tool_calls is False:
            kwargs["max_calls"] = 1
        return super().bind(tools=formatted, tool_choice=tool_choice_policy(tool_choice, names), **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: Literal["function_calling", "json_schema", "json_mode"] = "function_calling",
        strict: bool | None = None,
        examples: Sequence[dict[str, Any]] | None = None,
        train_options: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Outputs objects of ``schema``: the schema is a tool, forced, and parsed.

        Args:
            schema: A pydantic class (parsed into it), TypedDict, JSON Schema or OpenAI tool
                dict (parsed into a dict). It must be learned in the bank under its name,
                or learned now from ``examples``.
            include_raw: Return ``{"raw", "parsed", "parsing_error"}``.
            method: Every method takes the same path (a learned tool whose arguments are
                decoded under the schema), which is what each asks for.
            strict: Accepted for compatibility: arguments always follow the schema.
            examples: ``[{"query", "arguments"}, ...]`` to learn the schema now if the bank
                does not hold it.
            train_options: `TrainConfig` fields for that learning.
        """
        if method not in ("function_calling", "json_schema", "json_mode"):
            raise UnsupportedInputError(f"method {method!r}: use function_calling, json_schema or json_mode")
        if schema is None:
            raise UnsupportedInputError("with_structured_output needs a schema: agentmem learns it as a tool")
        if examples is not None:
            formatted = convert_to_openai_tool(schema)
            self._learn_missing([formatted], {formatted["function"]["name"]: examples}, train_options or {})
        return super().with_structured_output(schema, include_raw=include_raw, **kwargs)

    def _learn_missing(
        self,
        formatted: list[dict[str, Any]],
        examples: Mapping[str, Sequence[dict[str, Any]]],
        train: Mapping[str, Any],
    ) -> None:
        by_name = {f["function"]["name"]: f for f in formatted}
        strays = sorted(set(examples) - set(by_name))
        if strays:
            raise InvalidExampleError(
                f"examples given for {strays}, which are not among the tools bound ({sorted(by_name)})"
            )
        memory = self._agentmem()
        with memory.lock:  # check, then learn, as one step: no other thread learns the same tool between
            new = [(by_name[name], list(rows)) for name, rows in examples.items() if name not in memory.bank]
            if new:
                memory.learn_tools(new, **train)

    # planning

    def _plan_options(self, memory: AgentMem, options: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments of `AgentMem.plan` for this call's options."""
        unknown = sorted(set(options) - _CALL_OPTIONS)
        if unknown:
            raise UnsupportedInputError(f"ChatAgentMem got unknown options {unknown}; allowed: {sorted(_CALL_OPTIONS)}")
        if options.get("model", self.model) != self.model:
            raise UnsupportedInputError(
                f"model {options['model']!r} asked per call, but this ChatAgentMem serves {self.model!r}; build one for it"
            )
        names = [convert_to_openai_tool(t)["function"]["name"] for t in options.get("tools") or ()]
        _require_learned(memory, names)
        return plan_options(
            names,
            tool_choice=options.get("tool_choice"),
            max_calls=options.get("max_calls", self.max_calls),
            max_tokens=options.get("max_tokens", self.max_tokens),
            constrained=self.constrained,
            resume=self.continue_plans,
        )

    def _iterate(
        self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        """The one source of output: plans the request, then yields its chunks."""
        memory = self._agentmem()
        plan = memory.plan(_convert_messages(messages, memory.bank), **self._plan_options(memory, kwargs))
        stop = stop if stop is not None else self.stop
        for chunk in _plan_chunks(
            plan, model=self.model, token_id=memory.memory_token_id, stop=stop, schemas=memory.schemas
        ):
            yield ChatGenerationChunk(message=chunk)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in self._iterate(messages, stop, **kwargs):
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        result = generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))
        message = result.generations[0].message
        assert isinstance(message, AIMessage)
        message.invalid_tool_calls += message.response_metadata.pop("invalid_tool_calls", [])
        return result
