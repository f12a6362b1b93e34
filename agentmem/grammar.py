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
from collections.abc import Sequence
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

    def __post_init__(self) -> None:
        # the same ids as a tensor, for `_few` at every step
        self.special_ids = torch.tensor(self.special, dtype=torch.long)

    @property
    def constrained(self) -> bool:
        return self.grammar is not None

    def matcher(self) -> ArgumentMatcher:
        return ArgumentMatcher(self)


#: A state of the grammar that allows at most this many tokens next lists them
#: (`ArgumentMatcher.allowed`): a key, punctuation, an enum value, a digit. The decoder then
#: computes only their scores, not the whole LM head's (`agentmem.decoding.batch.Scores`): on
#: a CPU a thousand columns cost about what one more position costs in a batch's product of
#: all 49,152 (a few tenths of a millisecond), and one position alone costs ~7 ms. On the
#: demo pack a state allows 1 to 820 tokens, or 15,000 and more (a string goes on).
FEW_TOKENS = 1024
#: The bit of each token in a word of xgrammar's bitmask (token ``32 * word + bit``).
_BITS = torch.arange(32, dtype=torch.int32)


@dataclass
class ArgumentMatcher:
    """The state of one argument span: which tokens may come next, and whether it is done."""

    compiled: CompiledArguments
    _matcher: xgr.GrammarMatcher | None = field(init=False, default=None)
    _bitmask: torch.Tensor | None = field(init=False, default=None)
    _filled: bool = field(init=False, default=False)  # whether `_bitmask` and `_allowed` are the state's
    _allowed: torch.Tensor | None = field(init=False, default=None)
    _ahead: torch.Tensor | None = field(init=False, default=None)  # `allowed_ahead`'s own bitmask
    _text: list[str] = field(init=False, default_factory=list)
    _finished: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        if self.compiled.grammar is not None:
            self._matcher = xgr.GrammarMatcher(self.compiled.grammar, terminate_without_stop_token=True)
            self._bitmask = xgr.allocate_token_bitmask(1, self.compiled.vocab_size)

    def _fill(self) -> None:
        """Reads the tokens allowed next from the grammar, once per state (a step asks for
        them up to three times: `allowed_ahead`, `allowed`, `mask_logits`)."""
        assert self._matcher is not None and self._bitmask is not None
        if not self._filled:
            self._matcher.fill_next_token_bitmask(self._bitmask)
            self._allowed = _few(self._bitmask[0], self.compiled)
            self._filled = True

    def mask_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Returns a copy of 1-D ``logits`` with every forbidden token set to -inf."""
        vocab = self.compiled.vocab_size
        if self._matcher is not None:
            self._fill()
        if self._allowed is not None:  # a few tokens: theirs are copied, not the rest masked
            allowed = self._allowed.to(logits.device)
            out = torch.full_like(logits, float("-inf"))
            out[allowed] = logits[allowed]
            return out
        out = logits.clone()
        out[vocab:] = float("-inf")
        out[list(self.compiled.special)] = float("-inf")
        if self._matcher is not None and self._bitmask is not None:
            head = out[:vocab].unsqueeze(0)
            # xgrammar fills the mask on the CPU; applying it needs it where the logits are
            xgr.apply_token_bitmask_inplace(head, self._bitmask.to(head.device, non_blocking=True))
            out[:vocab] = head[0]
        return out

    def allowed(self) -> torch.Tensor | None:
        """The ids of the tokens the grammar allows next (special tokens never) when they
        are few (`FEW_TOKENS` at most), else None (a string goes on: almost any token; or no
        grammar)."""
        if self._matcher is None:
            return None
        self._fill()
        return self._allowed

    def allowed_ahead(self, tokens: Sequence[int]) -> list[torch.Tensor | None]:
        """`allowed` here, then after each of ``tokens`` in turn (a draft: accepted, then
        rolled back, so the matcher is left as it was); no token (an empty tensor) once the
        object is closed, or after a token the grammar rejects. The batch asks it before a
        forward pass's LM head, to know which positions of a draft need the whole vocabulary."""
        if self._matcher is None:
            return [None] * (len(tokens) + 1)
        if self._ahead is None:
            self._ahead = xgr.allocate_token_bitmask(1, self.compiled.vocab_size)
        out, accepted = [self.allowed()], 0
        for token in tokens:
            if not self._matcher.accept_token(token):
                break
            accepted += 1
            if self._matcher.is_terminated():
                break
            self._matcher.fill_next_token_bitmask(self._ahead)
            out.append(_few(self._ahead[0], self.compiled))
        if accepted:
            self._matcher.rollback(accepted)
        none = torch.zeros(0, dtype=torch.long)
        return out + [none] * (len(tokens) + 1 - len(out))

    def accept(self, token_id: int, token_text: str | None = None) -> bool:
        """Advances by one token; returns False when the grammar rejects it."""
        if self._matcher is not None:
            ok = self._matcher.accept_token(token_id)
            self._filled = False
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


def _few(bitmask: torch.Tensor, compiled: CompiledArguments) -> torch.Tensor | None:
    """The ids of the tokens one row of an xgrammar bitmask allows (int32 words, 32 tokens
    each), special tokens and ids past the vocabulary left out, or None when more than
    `FEW_TOKENS` are: the words that hold any are counted first, so that a mask allowing
    most of the vocabulary is turned down unread."""
    words = bitmask.nonzero().squeeze(1)
    if len(words) > FEW_TOKENS:  # each holds one allowed token at least
        return None
    bits = (bitmask[words, None] >> _BITS) & 1  # an arithmetic shift: bit 31 too
    ids = (words[:, None] * 32 + _BITS)[bits.bool()]
    ids = ids[(ids < compiled.vocab_size) & ~torch.isin(ids, compiled.special_ids)]
    return ids if len(ids) <= FEW_TOKENS else None
