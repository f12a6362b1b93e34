"""Token sequences: chat-formatted prompts, and training targets of memory tokens + arguments.

The prompt format is chosen here and only here (`prompt_format`): the tokenizer's own chat
template when it has one; otherwise (a base model, such as Gemma 3 270M) one agentmem
supplies: Gemma's turn format when the tokenizer holds its turn tokens, else a plain one.
`chat_text` renders it for every prompt agentmem builds, and `end_of_turn_id` names the
token that closes the assistant's turn, which is what ends a plan.

A training sequence is ``chat(query) [MEM_a] {"arg":...} [MEM_b] {...} <eos>``: the prompt
is the prefix (no loss), the rest is the target (loss on every token). Arguments are written
with `canonical_json`, the single definition of their text form, so training and
constrained decoding agree token for token.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from agentmem.chat import content_text, read_call
from agentmem.tools.calls import ToolCall
from agentmem.tools.examples import Example, request_calls
from agentmem.tools.parsing import canonical_json

Messages = Sequence[dict[str, Any]]

# Gemma's turn format, as its instruction-tuned models' template writes it, for a Gemma
# tokenizer without a template (the pretrained model). Two differences, both deliberate:
# a system message is a turn of its own (Gemma's template folds it into the first user
# turn), so that a system prompt stays a token prefix of every prompt that starts with it
# (prefix caching); and any role is accepted (tool results are turns of role "tool").
GEMMA_TURNS = (
    "{{- bos_token if bos_token else '' -}}"
    "{%- for message in messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{- '<start_of_turn>' + role + '\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}{{- part['text'] -}}{%- endfor -%}{%- endif -%}"
    "{{- '<end_of_turn>\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}"
)
# For any other tokenizer without a template: each turn closed by the eos token, so that an
# earlier assistant turn ends exactly as the model ends a plan.
PLAIN_TURNS = (
    "{{- bos_token if bos_token else '' -}}"
    "{%- for message in messages -%}"
    "{{- message['role'] + ':\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}{{- part['text'] -}}{%- endfor -%}{%- endif -%}"
    "{{- eos_token + '\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'assistant:\n' -}}{%- endif -%}"
)
_GEMMA_TOKENS = ("<start_of_turn>", "<end_of_turn>")


@dataclass(frozen=True)
class PromptFormat:
    """How prompts are written for a backbone.

    Attributes:
        name: ``"tokenizer"`` (its own chat template), ``"gemma-turns"`` or ``"plain-turns"``.
        template: The Jinja chat template agentmem supplies; None for the tokenizer's own.
        end_of_turn: The token string that closes the assistant's turn; None: the eos token.
    """

    name: str
    template: str | None = None
    end_of_turn: str | None = None


def prompt_format(tokenizer: PreTrainedTokenizerBase) -> PromptFormat:
    """The prompt format of a tokenizer: the one place where it is chosen.

    Its own chat template when it has one (SmolLM2-Instruct and other chat models). A base
    model has none: Gemma's tokenizer then still holds ``<start_of_turn>`` and
    ``<end_of_turn>`` as single special tokens, so its instruction-tuned siblings' turn
    format (`GEMMA_TURNS`) is the one its vocabulary was made for; any other gets
    `PLAIN_TURNS`.
    """
    if getattr(tokenizer, "chat_template", None):
        return PromptFormat("tokenizer")
    if all(_single_token(tokenizer, t) for t in _GEMMA_TOKENS):
        return PromptFormat("gemma-turns", GEMMA_TURNS, "<end_of_turn>")
    return PromptFormat("plain-turns", PLAIN_TURNS)


def _single_token(tokenizer: PreTrainedTokenizerBase, token: str) -> bool:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id:
        return False
    return tokenizer(token, add_special_tokens=False)["input_ids"] == [token_id]


def chat_text(tokenizer: PreTrainedTokenizerBase, messages: Messages, add_generation_prompt: bool = True) -> str:
    """Chat messages as prompt text in the backbone's `prompt_format` (special tokens
    written out, to be tokenized with ``add_special_tokens=False``)."""
    template = prompt_format(tokenizer).template
    return tokenizer.apply_chat_template(
        list(messages), chat_template=template, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def end_of_turn_id(tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The id of the token that closes the assistant's turn in the backbone's prompt format
    (what ends a plan in training and decoding); None when the tokenizer has no eos."""
    token = prompt_format(tokenizer).end_of_turn
    if token is None:
        return None if tokenizer.eos_token_id is None else int(tokenizer.eos_token_id)
    return int(tokenizer.convert_tokens_to_ids(token))


def as_messages(request: str | Messages) -> list[dict[str, Any]]:
    """A plain request becomes one user message; messages pass through (copied)."""
    if isinstance(request, str):
        return [{"role": "user", "content": request}]
    return [dict(m) for m in request]


def source_text(request: str | Messages) -> str:
    """The text a plan's argument values may be founded in (copied from): the request, or
    everything a conversation holds, one piece per line: system prompts (a user's id or
    token stated by the application), every user turn (a name given three turns ago),
    assistant text, the arguments of earlier calls and tool results (an order id an earlier
    call returned). An agent's values come from all of these, not only the last message."""
    if isinstance(request, str):
        return request
    parts = []
    for message in request:
        parts.append(content_text(message.get("content"), strict=False))
        for call in message.get("tool_calls") or ():
            parts.append(canonical_json(_name_and_arguments(call)[1]))
    return "\n".join(p for p in parts if p)


def copy_source_text(request: str | Messages) -> str:
    """The text ``copy_bias`` favours copying from: a bare request itself, or a conversation's
    last user message, what is asked now. Values may still be founded anywhere in the
    conversation (`source_text`); copying is only not pushed there. A bonus to every span of
    a whole conversation pulled earlier turns' ids and results' numbers into this turn's calls
    (BFCL dev, argument F1 -3.4 points; BENCHMARKS.md, "copy_bias from the last user message")."""
    if isinstance(request, str):
        return request
    users = [m for m in request if m.get("role") == "user"]
    return content_text(users[-1].get("content"), strict=False) if users else source_text(request)


# Private-use characters mark where an earlier assistant tool call goes in the rendered
# chat text; no tokenizer merges across them and no user text contains them.
_CALL_MARK = re.compile("\ue000(\\d+)\ue001")


def prompt_ids(
    tokenizer: PreTrainedTokenizerBase,
    request: str | Messages,
    memory_token: Callable[[str], int] | None = None,
    schemas: Mapping[str, dict[str, Any]] | None = None,
) -> list[int]:
    """Token ids of the chat-formatted request, ending where the assistant's turn begins.

    Earlier assistant turns with ``tool_calls`` (OpenAI ``{"function": {"name",
    "arguments"}}`` or LangChain ``{"name", "args"}`` form) are rendered exactly as the
    model generates them: memory token, then arguments. Tool results are plain messages
    of role ``tool``.

    Args:
        tokenizer: The backbone's tokenizer (its `prompt_format` writes the prompt).
        request: A string or chat messages.
        memory_token: Maps a tool name to its memory-token id; needed only when the
            messages hold earlier tool calls (raises UnknownToolError for a tool the bank
            does not hold).
        schemas: Argument schemas by tool name, to write earlier calls' arguments in
            schema order.
    """
    messages = as_messages(request)
    calls: list[tuple[str, dict[str, Any]]] = []
    for message in messages:
        if message.get("role") == "assistant" and message.get("tool_calls"):
            marks = []
            for call in message["tool_calls"]:
                calls.append(_name_and_arguments(call))
                marks.append(f"\ue000{len(calls) - 1}\ue001")
            message["content"] = (message.get("content") or "") + "".join(marks)
            del message["tool_calls"]
        elif message.get("content") is None:
            message["content"] = ""
    text = chat_text(tokenizer, messages)
    pieces = _CALL_MARK.split(text)  # text, call index, text, call index, ..., text
    ids: list[int] = []
    for i, piece in enumerate(pieces):
        if i % 2 == 0:
            if piece:
                ids.extend(tokenizer(piece, add_special_tokens=False)["input_ids"])
            continue
        if memory_token is None:
            raise ValueError("messages hold earlier tool calls: pass memory_token to render them")
        name, arguments = calls[int(piece)]
        ids.append(memory_token(name))
        ids.extend(argument_ids(tokenizer, arguments, (schemas or {}).get(name)))
    return ids


def resumed_prompt_ids(
    tokenizer: PreTrainedTokenizerBase,
    request: str | Messages,
    memory_token: Callable[[str], int],
    schemas: Mapping[str, dict[str, Any]],
    read_results: bool = False,
) -> tuple[list[int], ToolCall | None]:
    """Prompt ids that resume an agent run in progress, and the call they resume after (None
    where they do not resume).

    When the messages end in the results of calls made since the last user message (every
    later message an assistant turn of calls only, or a tool result, the last a tool
    result), the plan resumes after those calls. With ``read_results`` (a bank that learned
    from traces that go on after their results, `Example.resumes`) the prompt is the whole
    conversation, results included, followed by those calls written again at the start of
    the assistant's turn: the model reads the results and makes the next call or ends the
    plan after the last call's arguments, as every plan ends. Without (a bank learned from
    requests only, which was never trained to read a result), the prompt is the conversation
    up to that user message followed by those calls, exactly as the model writes a
    multi-call plan: it then emits the next call of its plan or ends it. Otherwise the prompt
    is `prompt_ids` of the messages, and None.
    """
    messages = as_messages(request)
    calls = [_name_and_arguments(c) for c in request_calls(messages)]
    if not calls:
        return prompt_ids(tokenizer, messages, memory_token, schemas), None
    if read_results:
        # the whole conversation, then the turn's calls written again at the start of the
        # assistant's turn: the model decides after a call's arguments, where every plan
        # ends, and not at a turn's first token, where the frozen model all but never ends
        ids = prompt_ids(tokenizer, messages, memory_token, schemas)
    else:
        last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
        ids = prompt_ids(tokenizer, messages[: last_user + 1], memory_token, schemas)
    for name, arguments in calls:
        ids.append(memory_token(name))
        ids.extend(argument_ids(tokenizer, arguments, schemas.get(name)))
    name, arguments = calls[-1]
    return ids, ToolCall(name=name, arguments=arguments)


def last_turn_ids(
    tokenizer: PreTrainedTokenizerBase,
    request: str | Messages,
    memory_token: Callable[[str], int],
    schemas: Mapping[str, dict[str, Any]],
) -> list[int] | None:
    """Prompt ids of a conversation's last user message alone, as `learn_tools`'
    ``route_from_last_turn`` trains routing from it; None unless the request is messages
    that end in a user message with something before it (a bare request is its own last turn)."""
    if isinstance(request, str):
        return None
    messages = as_messages(request)
    if len(messages) < 2 or messages[-1].get("role") != "user":
        return None
    return prompt_ids(tokenizer, messages[-1:], memory_token, schemas)


def _name_and_arguments(call: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    read = read_call(call)  # OpenAI's and LangChain's shapes, one reader (agentmem.chat)
    return read.name, read.arguments


def argument_ids(
    tokenizer: PreTrainedTokenizerBase, arguments: dict[str, Any], schema: dict[str, Any] | None = None
) -> list[int]:
    """Token ids of one call's arguments as written after its memory token (keys in the
    schema's property order, the order constrained decoding enforces)."""
    return tokenizer(canonical_json(arguments, schema), add_special_tokens=False)["input_ids"]


@dataclass(frozen=True)
class EncodedExample:
    """A training example as ids: ``prefix`` (prompt, no loss) and ``target`` (scored)."""

    prefix: tuple[int, ...]
    target: tuple[int, ...]
    routing_only: bool = False
    """Score only the routing decisions (memory tokens and the final end of plan), not the
    argument tokens between them: for requests of tools whose rows are frozen, rehearsed so
    that new rows learn where not to fire (`agentmem.training.train_rows`)."""

    @property
    def length(self) -> int:
        return len(self.prefix) + len(self.target)


def encode_example(
    tokenizer: PreTrainedTokenizerBase,
    example: Example,
    memory_token: Callable[[str], int],
    eos_token_id: int,
    schemas: Mapping[str, dict[str, Any]] | None = None,
) -> EncodedExample:
    """Encodes ``chat(query) [MEM_a] args_a [MEM_b] args_b ... <eos>``, or ``chat(query)
    answer <eos>`` for a request that needs no tool. A conversation example's prompt is its
    messages (`prompt_ids`: earlier calls written as their memory tokens and arguments), so
    the rows learn to route and copy with that context in front, as an agent plans; one that
    ends in its calls' results (`Example.resumes`) is the prompt an agent resumes from
    (`resumed_prompt_ids` with ``read_results``: the turn's calls so far written again after
    their results), and its target may be ``<eos>`` alone.

    Args:
        tokenizer: The backbone's tokenizer.
        example: A validated example.
        memory_token: Maps a tool name to its memory-token id.
        eos_token_id: Ends the plan.
        schemas: Argument schemas by tool name (for key order).
    """
    target: list[int] = list(tokenizer(example.answer, add_special_tokens=False)["input_ids"]) if example.answer else []
    for call in example.calls:
        target.append(memory_token(call.name))
        target.extend(argument_ids(tokenizer, call.arguments, (schemas or {}).get(call.name)))
    target.append(eos_token_id)
    if example.resumes:
        prompt, _ = resumed_prompt_ids(tokenizer, list(example.messages), memory_token, schemas or {}, True)
    else:
        prompt = prompt_ids(tokenizer, list(example.messages) or example.query, memory_token, schemas)
    return EncodedExample(prefix=tuple(prompt), target=tuple(target))


def common_prefix(prompts: Sequence[Sequence[int]]) -> list[int]:
    """The longest common start of every prompt, leaving each at least one token of its own
    (whose hidden state predicts the first target token)."""
    shortest = min(len(p) for p in prompts)
    length = 0
    while length < shortest - 1 and all(p[length] == prompts[0][length] for p in prompts):
        length += 1
    return list(prompts[0][:length])


def template_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids every prompt of one user message starts with: what the chat template writes
    before the message (a default system prompt, the user turn's header). Prompts with a
    system message of their own may not start with it."""
    return common_prefix([prompt_ids(tokenizer, "a"), prompt_ids(tokenizer, "b")])
