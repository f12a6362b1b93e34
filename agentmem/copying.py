"""Copy-aware argument decoding: string values that continue a span of the request.

Most string arguments of a tool call are copied from the request: a city, a name, a time,
a free-text span such as "pack an umbrella". A small model often drifts while copying (a
capital letter dropped, a word paraphrased, a value invented). While the decoder is inside a
JSON string value, `CopyIndex.candidates` names the tokens that would keep the value a
substring of the request's text, and the decoder adds a bonus to their scores before the
grammar mask: a nudge towards copying, not a constraint (the model may still write a value
the request does not contain, e.g. a date it must normalise).

`value_string` reads the argument text written so far (`agentmem.jsonscan`) and says whether
a string value is open, and what it holds. Torch-free.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agentmem.jsonscan import scan

#: Longest continuation looked at, in characters: longer than any single token's text.
_LOOKAHEAD = 32


def depth(text: str) -> int:
    """How many JSON objects and arrays are open at the end of ``text`` (1: the arguments)."""
    return scan(text).depth


def value_string(text: str) -> str | None:
    """The content so far of the JSON string *value* open at the end of ``text``.

    Args:
        text: Argument JSON as generated so far (e.g. ``'{"city":"Lis'``).

    Returns:
        The raw (still escaped) content of the open value string (``"Lis"``), or None
        when the text does not end inside a value string (outside strings, or in a key).
    """
    position = scan(text)
    return text[position.start :] if position.in_string and not position.is_key else None


_NUMBER_TAIL = re.compile(r"-?[0-9.]*$")
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")  # a number as a request writes it: 64, 7.25, -3


def value_number(text: str) -> str | None:
    """The digits so far of a JSON number value at the end of ``text``.

    Args:
        text: Argument JSON as generated so far (e.g. ``'{"amount":6'``).

    Returns:
        The number written so far (``"6"``; ``""`` where a value is about to start, as
        after ``"amount":``), or None inside a string or where no value can start.
    """
    tail = _NUMBER_TAIL.search(text)
    head = text[: tail.start()] if tail else text
    position = scan(head)
    return tail.group() if tail and not position.in_string and position.expecting_value else None


def first_tokens(source: str, encode: Callable[[str], Sequence[int]]) -> frozenset[int]:
    """The first token of each word of ``source``, as the tokenizer writes that word.

    `CopyIndex.candidates` starts a value only with tokens that end at a word's end, which
    misses every word the tokenizer splits: "SEK" is written "SE" + "K", so nothing favoured
    its start and a model copying a currency code wrote "SKK". The tokenizer's own first
    token of a word is the way into that word a model was trained on, and it is a bonus only
    for copying the word, unlike a bare first letter ("H" of "Hello" led to "Hangul...").

    Args:
        source: The request's text (characters, not the decoder's byte view).
        encode: The tokenizer's encoding of a text, without special tokens.

    Returns:
        The ids of the first token of every word, a word running from a letter or digit
        that follows a non-alphanumeric character up to the next whitespace.
    """
    found: set[int] = set()
    for chunk in source.split():
        for i, ch in enumerate(chunk):
            if ch.isalnum() and (i == 0 or not chunk[i - 1].isalnum()):
                ids = encode(chunk[i:])
                if ids:
                    found.add(ids[0])
    return frozenset(found)


# A match that starts right after, or ends right before, one of these is a piece of a longer
# token of the request (an e-mail address's domain, "n@mailbox.org" of "priya.n@mailbox.org").
_JOINERS = "@._-/\\"


def _whole(value: str, source: str) -> bool:
    """Whether ``value`` occurs in ``source`` (ignoring case) as a whole: not glued to the
    letters, digits or address characters around it (a sentence's full stop may follow)."""
    needle, hay = value.lower(), source.lower()
    at = hay.find(needle)
    while at >= 0:
        end = at + len(needle)
        before = hay[at - 1] if at else " "
        after = hay[end] if end < len(hay) else " "
        glued_after = after.isalnum() or (
            after in _JOINERS and (after != "." or (end + 1 < len(hay) and hay[end + 1].isalnum()))
        )
        if not (before.isalnum() or before in _JOINERS) and not glued_after:
            return True
        at = hay.find(needle, at + 1)
    return False


def found_in(value: Any, source: str) -> bool | None:
    """Whether an argument value can be read from the request.

    Args:
        value: A JSON value of a parsed call.
        source: The request's text.

    Returns:
        True when a string occurs in ``source`` as a whole (ignoring case; not a piece of
        a longer word or address: "example.edu" is not read from "noor@example.edu") or a
        number is written there (``2500``, ``2500.0`` or ``7.25``); for a list, when every
        item is; False when not; None for values that need no copying to be right
        (booleans, null, objects, empty lists).
    """
    if isinstance(value, bool) or value is None or isinstance(value, dict):
        return None
    if isinstance(value, str):
        return bool(value.strip()) and _whole(value.strip(), source)
    if isinstance(value, (int, float)):
        forms = {str(value), f"{value:g}"} | ({str(int(value))} if float(value).is_integer() else set())
        return any(re.search(rf"(?<![\d.]){re.escape(form)}(?![\d])", source) for form in forms)
    if isinstance(value, list):
        found = [found_in(item, source) for item in value]
        return None if not found or all(f is None for f in found) else all(f is not False for f in found)
    return None


def stated_arguments(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments whose values the request must state to be read from it: all but those
    whose value the schema names (``enum``, ``const``), which may be implied ("fahrenheit"
    by "°F")."""
    properties = schema.get("properties", {})
    return {k: v for k, v in arguments.items() if not {"enum", "const"} & set(properties.get(k, {}))}


def unfounded(schema: Mapping[str, Any], arguments: Mapping[str, Any], source: str) -> list[str]:
    """The arguments whose values must be read from the request but are not in it.

    Values a schema names (``enum``, ``const``) need not be written in the request
    ("fahrenheit" may be implied by "°F"), so they never count; nor do booleans, objects
    or null. (`unfounded_optional` counts them: an optional unit the request never implies
    is better left to the tool's default.)

    Args:
        schema: The tool's parameters (a JSON Schema object).
        arguments: The parsed call's arguments.
        source: The request's text.

    Returns:
        Names of arguments, in call order, whose values ``found_in`` says are not in ``source``.
    """
    return [k for k, v in stated_arguments(schema, arguments).items() if found_in(v, source) is False]


def unfounded_optional(schema: Mapping[str, Any], arguments: Mapping[str, Any], source: str) -> list[str]:
    """The optional arguments whose values the request does not hold (see `found_in`).

    A small model often fills an optional parameter the request never mentions (a date of
    "2022", a unit of "celsius" for "how warm is Hanoi"); leaving it out lets the tool's
    default apply, which is what the request asked for. Required arguments are never
    listed: the call needs them whatever the request says.

    Args:
        schema: The tool's parameters (a JSON Schema object with ``required``).
        arguments: The parsed call's arguments.
        source: The request's text.

    Returns:
        Names of optional arguments, in call order, whose values ``found_in`` says are not in
        ``source``.
    """
    required = set(schema.get("required", ()))
    return [k for k, v in arguments.items() if k not in required and found_in(v, source) is False]


def repeated_optional(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> list[str]:
    """The optional string arguments that repeat another argument's value (or a piece of it).

    A span of the request fills one argument: a model nudged to write an optional argument
    it has no value for reaches for one the call already holds (a ``date`` of "10:40" beside
    ``time`` "10:40", "check the oven" beside ``text`` "check the oven").

    Args:
        schema: The tool's parameters (a JSON Schema object with ``required``).
        arguments: The parsed call's arguments.

    Returns:
        Names of optional arguments, in call order, whose string value equals, contains or is
        contained in another argument's string value (ignoring case).
    """
    required = set(schema.get("required", ()))
    texts = {k: v.strip().lower() for k, v in arguments.items() if isinstance(v, str) and v.strip()}
    return [
        k
        for k, v in texts.items()
        if k not in required and any(o != k and (v in w or w in v) for o, w in texts.items())
    ]


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

    def number_candidates(self, source: str, prefix: str) -> set[int]:
        """Token ids that extend ``prefix`` (a JSON number so far) towards a number written
        in ``source``: "6", then "4", of "64" (a model left alone wrote 10 for "64 NOK").

        Args:
            source: The request's text.
            prefix: The number written so far (``""`` before its first character).

        Returns:
            Ids of tokens whose text makes ``prefix + text`` the start of a number of ``source``.
        """
        found: set[int] = set()
        for number in _NUMBER.findall(source):
            if number.startswith(prefix) and len(number) > len(prefix):
                rest = number[len(prefix) :]
                for end in range(1, min(len(rest), self._longest) + 1):
                    found.update(self._ids.get(rest[:end], ()))
        return found


__all__ = [
    "CopyIndex",
    "depth",
    "first_tokens",
    "found_in",
    "repeated_optional",
    "stated_arguments",
    "unfounded",
    "unfounded_optional",
    "value_number",
    "value_string",
]
