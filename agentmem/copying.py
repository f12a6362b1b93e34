"""Copy-aware argument decoding: string values that continue a span of the request.

Most string arguments of a tool call are copied from the request: a city, a name, a time,
a free-text span such as "pack an umbrella". A small model often drifts while copying (a
capital letter dropped, a word paraphrased, a value invented). While the decoder is inside a
JSON string value, `CopyIndex.candidates` names the tokens that would keep the value a
substring of the request's text, and the decoder adds a bonus to their scores before the
grammar mask: a nudge towards copying, not a constraint (the model may still write a value
the request does not contain, e.g. a date it must normalise).

`value_string` reads the argument text written so far and says whether a string value is
open, and what it holds. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence

#: Longest continuation looked at, in characters: longer than any single token's text.
_LOOKAHEAD = 32


def value_string(text: str) -> str | None:
    """The content so far of the JSON string *value* open at the end of ``text``.

    Args:
        text: Argument JSON as generated so far (e.g. ``'{"city":"Lis'``).

    Returns:
        The raw (still escaped) content of the open value string (``"Lis"``), or None
        when the text does not end inside a value string (outside strings, or in a key).
    """
    stack: list[str] = []  # "{" or "["
    expecting_key = False
    in_string = False
    is_key = False
    start = 0
    escaped = False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string, is_key, start = True, bool(stack) and stack[-1] == "{" and expecting_key, i + 1
        elif ch == "{":
            stack.append("{")
            expecting_key = True
        elif ch == "[":
            stack.append("[")
            expecting_key = False
        elif ch in "}]":
            if stack:
                stack.pop()
            expecting_key = False
        elif ch == ",":
            expecting_key = bool(stack) and stack[-1] == "{"
        elif ch == ":":
            expecting_key = False
    if in_string and not is_key:
        return text[start:]
    return None


class CopyIndex:
    """Finds the tokens that continue a copy of a span of some source text.

    Args:
        token_texts: Each token id's decoded text (index = token id).
    """

    def __init__(self, token_texts: Sequence[str]) -> None:
        self._ids: dict[str, list[int]] = {}
        for token_id, piece in enumerate(token_texts):
            if piece and len(piece) <= _LOOKAHEAD and '"' not in piece and "\\" not in piece:
                self._ids.setdefault(piece, []).append(token_id)
        self._longest = max((len(p) for p in self._ids), default=0)

    def candidates(self, source: str, prefix: str) -> set[int]:
        """Token ids that extend ``prefix`` into a longer substring of ``source``.

        Args:
            source: The text values may be copied from (the request).
            prefix: The value written so far. Empty: a value may start at any word of
                the source, with a token that ends at a word's end.

        Returns:
            Ids of tokens whose text makes ``prefix + text`` a substring of ``source``.
        """
        if prefix:
            starts, at = [], source.find(prefix)
            while at >= 0:
                starts.append(at + len(prefix))
                at = source.find(prefix, at + 1)
        else:
            starts = [i for i, ch in enumerate(source) if ch.isalnum() and (i == 0 or not source[i - 1].isalnum())]
        found: set[int] = set()
        for start in starts:
            rest = source[start : start + self._longest + 1]
            for end in range(1, min(len(rest), self._longest) + 1):
                # A value's first token must cover whole words: favouring a bare "H" of
                # "Hello!" sent a model with nothing to copy down "Hangul-Dhala-Dhala...".
                if prefix or end == len(rest) or not rest[end].isalnum():
                    found.update(self._ids.get(rest[:end], ()))
        return found


__all__ = ["CopyIndex", "value_string"]
