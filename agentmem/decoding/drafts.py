"""Drafts: tokens a row will likely write next, fed with its next token and verified after.

Every argument token costs a forward pass when decoded one by one, yet many are known
before the model is asked: the key names, ``":"`` and closing braces the tool's grammar
forces, and the rest of a value copied from the request. A `Drafter` proposes such tokens
after each argument token; the batch feeds them in the same forward pass as that token
(`agentmem.decoding.batch`), and the next step goes through the hidden states in order,
choosing each token exactly as a step-by-step decoder would, from the same scores with
every lever (`Decoder.step`). A drafted token is kept while it equals the token chosen; the
first one that differs, and every one after it, is taken back out of the cache
(`PackedCache.take_back`). So drafts change how many forward passes a plan takes, never
the plan (prompt-lookup decoding, with the grammar's jump-forward as a second source).

Sources, each an option of `DecodeSettings`:

* ``jump_forward``: the tokens the grammar forces from here (xgrammar's
  ``find_jump_forward_tokens``), and a replayed call's tokens (`Reroute`), which are
  known outright;
* ``copy_drafts``: inside a string or number value whose text so far ends a span of the
  request, the request's next tokens after that span.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from agentmem.copying import value_number, value_string
from agentmem.decoding.state import Row

#: Most tokens drafted at once: every drafted token is computed whether kept or not, and on
#: a CPU a pass over several tokens costs more than a pass over one (chosen by hand-timed
#: runs on the demo pack, where 5 needed as few passes as 8 or 12).
DRAFT_LIMIT = 5
# The fewest characters of a value that must be found in the request before it is followed:
# one or two match almost anywhere, and a draft that is not kept costs a pass's compute (with
# 1, copy drafts made BFCL's plan_batch 1.18x slower).
_MIN_SPAN = 3
# Characters of the request looked at past a copied span (enough for DRAFT_LIMIT tokens).
_CONTINUATION = 64


class Drafter:
    """Proposes the tokens a row in ``arguments`` mode will likely write next.

    Args:
        encode: The tokenizer's encoding of a text without special tokens.
        limit: Most tokens of a draft.
    """

    def __init__(self, encode: Callable[[str], Sequence[int]], limit: int = DRAFT_LIMIT) -> None:
        self.encode = encode
        self.limit = limit

    def __call__(self, row: Row) -> list[int]:
        """The draft after the row's last chosen token (empty where nothing is likely)."""
        if row.mode != "arguments" or row.matcher is None:
            return []
        settings = row.settings
        if settings.jump_forward:
            if row.reroute.replay:  # a call written again: its tokens are known
                return row.reroute.replay[: self.limit]
            forced = row.matcher.jump_forward()
            if forced:
                return forced[: self.limit]
        if settings.copy_drafts and row.source:
            return self.copy(row.text, row.request)
        return []

    def copy(self, written: str, source: str) -> list[int]:
        """The tokens of ``source`` that follow the longest end of the open value in
        ``written`` (argument JSON so far) found there."""
        value = value_string(written)
        if value is None:
            value = value_number(written)
        if value is None or len(value) < _MIN_SPAN:  # outside a value, or too little of it yet
            return []
        for size in range(min(len(value), _CONTINUATION), _MIN_SPAN - 1, -1):
            at = source.find(value[-size:])
            if at >= 0:
                start = at + size
                rest = source[start : start + _CONTINUATION]
                if not rest:
                    return []
                tokens = list(self.encode(rest))
                # a continuation cut short may end in a piece of a longer token
                if start + _CONTINUATION < len(source):
                    tokens = tokens[:-1]
                return tokens[: self.limit]
        return []


__all__ = ["DRAFT_LIMIT", "Drafter"]
