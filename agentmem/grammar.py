"""Schema-constrained decoding of argument objects, with xgrammar.

Why xgrammar: it compiles a JSON Schema against the tokenizer in milliseconds, gives a
token bitmask per step on the CPU, and follows the schema closely (enums, required keys,
nested objects, arrays). Choices:

* compact output (``any_whitespace=False``, separators ``(",", ":")``), the exact form of
  the training text (`canonical_json`), so constraints and training agree token for token;
* ``strict_mode=True``: only declared properties, so the model cannot invent keys;
* ``terminate_without_stop_token=True``: the span ends as soon as the object closes, and
  the decoding loop goes back to routing (next memory token or end of plan);
* memory-token columns (ids >= the backbone's vocabulary) are always masked inside an
  argument span: xgrammar's bitmask does not cover them; so are the tokenizer's special
  tokens (``<|im_start|>``, ``<|endoftext|>``), which xgrammar lets into a string as their
  literal text: no value holds one, and written back into a conversation it would open a
  chat turn of its own;
* no result reference: an ``anyOf`` branch that only matches one (a string whose
  ``pattern`` starts ``^\\$var``, as `agentmem.adaptation.nestful` wraps every non-string parameter)
  is left out of the grammar (`without_reference_branches`). A plan never carries a
  reference (the decoder passes over a token that would start one); with the branch in, a
  model that opens ``"$va`` for a number has no token left that the grammar and that guard
  both allow, and writes garbage until the call runs away.

A schema xgrammar cannot compile falls back to unconstrained decoding that stops when the
top-level object closes; the arguments are validated afterwards either way.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import torch
import xgrammar as xgr
from transformers import PreTrainedTokenizerBase

from agentmem.jsonscan import scan


class ArgumentGrammar:
    """Compiles tool JSON Schemas for one tokenizer and hands out matchers.

    Args:
        tokenizer: The backbone's tokenizer.
        vocab_size: Width of the backbone's logits (may exceed ``len(tokenizer)``).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.tokenizer = tokenizer
        self._compiler: xgr.GrammarCompiler | None = None  # built on first use (~0.3 s)
        self._info: xgr.TokenizerInfo | None = None
        self._cache: dict[str, CompiledArguments] = {}
        self._special = tuple(sorted(set(tokenizer.all_special_ids)))

    def token_bytes(self) -> list[bytes]:
        """Each token id's raw bytes (a multi-byte character may span several tokens)."""
        return [bytes(b) for b in self._tokenizer_info().decoded_vocab]

    def compile(self, schema: dict[str, Any]) -> CompiledArguments:
        """Compiles (or fetches from cache) the grammar of one argument schema. Never raises."""
        # Property order matters: the grammar enforces the schema's order, as training text does.
        key = json.dumps(without_reference_branches(schema))
        if key not in self._cache:
            try:
                grammar = self._get_compiler().compile_json_schema(
                    key, any_whitespace=False, separators=(",", ":"), strict_mode=True
                )
                self._cache[key] = CompiledArguments(self.vocab_size, grammar, special=self._special)
            except Exception as exc:  # xgrammar raises several types for unsupported features
                reason = f"{type(exc).__name__}: {exc}"[:200]
                self._cache[key] = CompiledArguments(self.vocab_size, None, reason, self._special)
        return self._cache[key]

    def unconstrained(self) -> CompiledArguments:
        """Arguments decoded freely (memory and special tokens still masked) until the object closes."""
        return CompiledArguments(self.vocab_size, None, special=self._special)

    def _tokenizer_info(self) -> xgr.TokenizerInfo:
        if self._info is None:
            self._info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=self.vocab_size)
        return self._info

    def _get_compiler(self) -> xgr.GrammarCompiler:
        if self._compiler is None:
            self._compiler = xgr.GrammarCompiler(self._tokenizer_info())
        return self._compiler


#: The ``pattern`` of a branch that only matches a result reference (``$var1$``, ``$var2.id$``).
_REFERENCE_ONLY = re.compile(r"^\^?\\\$var")


def _reference_only(schema: Any) -> bool:
    return (
        isinstance(schema, dict)
        and schema.get("type") == "string"
        and isinstance(schema.get("pattern"), str)
        and _REFERENCE_ONLY.match(schema["pattern"]) is not None
    )


def without_reference_branches(schema: Any) -> Any:
    """``schema`` without its ``anyOf`` branches that only match a result reference, at any
    depth; an ``anyOf`` left with one branch is merged into its schema (the branch's keys
    win). A schema with no such branch comes back equal.

    Args:
        schema: A JSON Schema (any value: what is not a dict or list is returned as is).
    """
    if isinstance(schema, list):
        return [without_reference_branches(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: without_reference_branches(v) for k, v in schema.items()}
    branches = out.get("anyOf")
    if isinstance(branches, list) and any(_reference_only(b) for b in branches):
        kept = [b for b in branches if not _reference_only(b)]
        if len(kept) == 1 and isinstance(kept[0], dict):
            del out["anyOf"]
            out.update(kept[0])
        elif kept:
            out["anyOf"] = kept
    return out


@dataclass
class CompiledArguments:
    """A compiled argument grammar, or the unconstrained fallback (``grammar is None``)."""

    vocab_size: int
    grammar: xgr.CompiledGrammar | None
    fallback_reason: str | None = None
    special: tuple[int, ...] = ()  # the tokenizer's special tokens: never inside arguments

    @property
    def constrained(self) -> bool:
        return self.grammar is not None

    def matcher(self) -> ArgumentMatcher:
        return ArgumentMatcher(self)


@dataclass
class ArgumentMatcher:
    """The state of one argument span: which tokens may come next, and whether it is done."""

    compiled: CompiledArguments
    _matcher: xgr.GrammarMatcher | None = field(init=False, default=None)
    _bitmask: torch.Tensor | None = field(init=False, default=None)
    _text: list[str] = field(init=False, default_factory=list)
    _finished: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.compiled.grammar is not None:
            self._matcher = xgr.GrammarMatcher(self.compiled.grammar, terminate_without_stop_token=True)
            self._bitmask = xgr.allocate_token_bitmask(1, self.compiled.vocab_size)

    def mask_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Returns a copy of 1-D ``logits`` with every forbidden token set to -inf."""
        vocab = self.compiled.vocab_size
        out = logits.clone()
        out[vocab:] = float("-inf")
        out[list(self.compiled.special)] = float("-inf")
        if self._matcher is not None and self._bitmask is not None:
            self._matcher.fill_next_token_bitmask(self._bitmask)
            head = out[:vocab].unsqueeze(0)
            # xgrammar fills the mask on the CPU; applying it needs it where the logits are
            xgr.apply_token_bitmask_inplace(head, self._bitmask.to(head.device, non_blocking=True))
            out[:vocab] = head[0]
        return out

    def accept(self, token_id: int, token_text: str | None = None) -> bool:
        """Advances by one token; returns False when the grammar rejects it."""
        if self._matcher is not None:
            ok = self._matcher.accept_token(token_id)
            self._finished = self._matcher.is_terminated()
            return ok
        self._text.append(token_text or "")
        self._finished = scan("".join(self._text)).closed
        return True

    def jump_forward(self) -> list[int]:
        """The tokens the grammar forces from here (a key's rest, ``":"``, closing
        braces), tokenised greedily by xgrammar, which may split them otherwise than the
        model would: a draft to verify (`agentmem.decoding.drafts`), never to accept
        blindly. Empty without a grammar, or where the next token is a choice."""
        if self._matcher is None or self._finished:
            return []
        return list(self._matcher.find_jump_forward_tokens())

    def is_finished(self) -> bool:
        """True once the argument object is complete."""
        return self._finished
