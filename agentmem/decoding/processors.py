"""Token-level levers: score processors, each a named object ``(row, scores) -> scores``.

In the manner of the logits processors of outlines and vLLM, every change to a step's scores
is one small object, applied in a listed order (`Decoder.argument_processors`): the grammar's
mask, then unique enum items, the copy bias, the optional bias and the reference guard; routing and text steps
have their own masks. A processor reads the row and may keep its own state on it
(`CopyState`); it never changes the row's mode. It returns new scores (or the ones it was
given, untouched); the step's token is their argmax.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import torch

from agentmem.copying import CopyIndex, depth, first_tokens, value_number, value_string
from agentmem.decoding.state import Row
from agentmem.jsonscan import array_strings, scan

_NEG = float("-inf")


@dataclass(frozen=True)
class RouteMask:
    """At a routing step: the allowed memory tokens, and end-of-plan unless a call is
    required; at a plan's start with ``tool_choice="auto"``, ordinary text too (an answer
    instead of a plan, never after one). A named tool is forced at the plan's start."""

    vocab: int
    eos: int

    def memory_ids(self, row: Row, forced: bool) -> list[int]:
        assert row.view is not None
        rows = [row.view.index(row.settings.tool_choice)] if forced else row.allowed
        return [self.vocab + r for r in rows]

    def kept(self, row: Row, forced: bool = False) -> list[int] | None:
        """The tokens whose scores the mask keeps, or None where text may answer and it keeps
        the whole vocabulary besides the memory tokens and end-of-plan: all a routing step
        reads (`agentmem.decoding.batch.Scores`), and what `__call__` keeps."""
        choice, first = row.settings.tool_choice, row.first
        memory_ids = self.memory_ids(row, forced)
        if forced or (first and choice == "any"):
            return memory_ids
        if first and choice == "auto":
            return None
        return [*memory_ids, self.eos]

    def __call__(self, row: Row, scores: torch.Tensor, forced: bool = False) -> torch.Tensor:
        candidates = torch.full_like(scores, _NEG)
        kept = self.kept(row, forced)
        if kept is None:  # text may answer: the whole vocabulary, the memory tokens, end-of-plan
            candidates[: self.vocab] = scores[: self.vocab]
            kept = [*self.memory_ids(row, forced), self.eos]
        candidates[kept] = scores[kept]
        return candidates


@dataclass(frozen=True)
class TextMask:
    """In a text answer: memory tokens are masked (until the end of the answer)."""

    vocab: int

    def __call__(self, row: Row, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        scores[self.vocab :] = _NEG
        return scores

    def likeliest_word(self, scores: torch.Tensor, stops: Collection[int]) -> int:
        """The likeliest text token that does not end the answer at once."""
        words = scores[: self.vocab].clone()
        words[[t for t in stops if t < self.vocab]] = _NEG
        return int(words.argmax())


class GrammarMask:
    """In arguments: the tokens the tool's JSON Schema (or, unconstrained, JSON) forbids are
    masked, and so are memory tokens (`agentmem.grammar`)."""

    def __call__(self, row: Row, scores: torch.Tensor) -> torch.Tensor:
        assert row.matcher is not None
        return row.matcher.mask_logits(scores)


@dataclass(frozen=True)
class UniqueEnumItems:
    """``unique_enum_items``: in an array of enum strings that is a top-level argument
    (``"door": ["driver", ...]``), a value already written is not written again; once every
    value is in, the array can only close. A small model that has not learned such a list
    repeats one value until the runaway guard ends the plan. The grammar (xgrammar) has no
    ``uniqueItems``, so the likeliest tokens are checked one by one, as the reference guard
    does, and those that would repeat a value are passed over."""

    decode: Callable[[list[int]], str]
    retries: int = 32

    def __call__(self, row: Row, scores: torch.Tensor) -> torch.Tensor:
        if not row.settings.unique_enum_items:
            return scores
        arrays = self.enum_arrays(row)
        if not arrays:  # most tools: no such argument, and no scan of the text each step
            return scores
        position = scan(row.text)
        values = arrays.get(position.array_key) if position.array_key is not None else None
        if not values:
            return scores
        masked = scores
        for _ in range(self.retries):
            token = int(masked.argmax())
            if masked[token] == _NEG:
                return scores  # nothing left that keeps the values unique: the model's choice stands
            text = row.text + self.decode([token])
            items, open_item = array_strings(text, position.array_start)
            unused = [v for v in values if v not in items]
            if len(set(items)) == len(items) and (open_item is None or any(v.startswith(open_item) for v in unused)):
                # every value in: a comma after the last one would open an item no value can fill
                if unused or "," not in text[text.rfind('"') + 1 :].split("]")[0]:
                    return masked
            if masked is scores:
                masked = scores.clone()
            masked[token] = _NEG
        return scores

    def enum_arrays(self, row: Row) -> dict[str, list[str]]:
        """The tool's top-level array arguments whose items are enum strings: name -> values."""
        if row.tool is None:
            return {}
        arrays = {}
        for name, schema in row.spec.parameters.get("properties", {}).items():
            items = schema.get("items") if isinstance(schema, dict) else None
            values = items.get("enum") if isinstance(items, dict) else None
            if values and all(isinstance(v, str) for v in values):
                arrays[name] = list(values)
        return arrays


@dataclass(frozen=True)
class CopyBias:
    """``copy_bias``: a bonus to tokens that continue a span (or a number) of the request
    (a conversation's last user message: ``Row.copy_source``) inside a value
    (`agentmem.copying`), unless the model closes the value or ends the number there:
    copying must not drag a value on."""

    index: Callable[[], CopyIndex]  # built on first use
    texts: Callable[[], Sequence[str]]  # each token's bytes through latin-1
    encode: Callable[[str], Sequence[int]]

    def __call__(self, row: Row, scores: torch.Tensor) -> torch.Tensor:
        bias = row.settings.copy_bias
        if not (bias and row.copied):
            return scores
        index, texts = self.index(), self.texts()
        written = "".join(texts[t] for t in row.pending if t < len(texts))
        prefix = value_string(written)
        best = int(scores.argmax())
        best_text = texts[best] if best < len(texts) else ""
        if prefix is None:
            number = value_number(written)
            if number is None or (number and not best_text[:1].isdigit() and best_text[:1] != "."):
                return scores  # not in a number, or the model ends the number here
            found = index.number_candidates(row.copied, number)
        elif best_text.startswith('"'):
            return scores  # the model closes the value here
        else:
            found = index.candidates(row.copied, prefix)
        if prefix == "":  # a string value opens: a word's own first token starts a copy too
            if row.copy.first_tokens is None:
                row.copy.first_tokens = first_tokens(row.copied_text, self.encode)
            found |= row.copy.first_tokens
        return _bonus(scores, found, bias)


@dataclass(frozen=True)
class OptionalBias:
    """``optional_bias``: a bonus to writing one more argument (a comma at the arguments'
    top level) while an optional property is unwritten; the model leaves out optional
    arguments the request gives ("Alert me on Tuesday at ..." without its date)."""

    continue_ids: Callable[[], Sequence[int]]  # a comma, after a value's closing quote

    def __call__(self, row: Row, scores: torch.Tensor) -> torch.Tensor:
        if not (row.settings.optional_bias and self.optional_unwritten(row)):
            return scores
        return _bonus(scores, self.continue_ids(), row.settings.optional_bias)

    def optional_unwritten(self, row: Row) -> bool:
        """At the arguments' top level, with an optional property not written yet."""
        parameters = row.spec.parameters
        required = set(parameters.get("required", ()))
        optional = [k for k in parameters.get("properties", {}) if k not in required]
        return any(f'"{k}":' not in row.text for k in optional) and depth(row.text) == 1


@dataclass(frozen=True)
class ReferenceGuard:
    """A token that would start a result reference (``$var1.field$``, the syntax of
    NESTFUL's data, which no executor resolves) is passed over for the next best one, up to
    ``retries`` tokens; the last one tried stands even if it starts one."""

    decode: Callable[[list[int]], str]
    pattern: re.Pattern[str] = re.compile(r"\$var")  # in the argument text's tail and the token
    retries: int = 8

    def __call__(self, row: Row, scores: torch.Tensor) -> torch.Tensor:
        masked = scores
        for _ in range(self.retries - 1):
            token = int(masked.argmax())
            if not self.pattern.search(row.text[-8:] + self.decode([token])):
                break
            if masked is scores:
                masked = scores.clone()
            masked[token] = _NEG
        return masked


def _bonus(scores: torch.Tensor, tokens: Collection[int], bias: float) -> torch.Tensor:
    """``scores`` with ``bias`` added to those of ``tokens`` that are not masked."""
    ids = [i for i in tokens if scores[i] > _NEG]
    if not ids:
        return scores
    scores = scores.clone()
    scores[ids] += bias
    return scores
