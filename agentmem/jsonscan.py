"""Where a partly written JSON text stands: the one scanner the decoder's readers share.

The grammar asks whether the arguments' object has closed (`agentmem.grammar`, without a
schema); copy-aware decoding asks whether a string or number value is open and what it
holds so far (`agentmem.copying`); the optional bias asks how deep the text is. All read the
same characters the same way: strings (with their escapes) hide brackets and punctuation.
Torch-free.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class JsonPosition:
    """The state at the end of a partly written JSON text.

    Attributes:
        in_string: A string is open.
        is_key: The open string is an object's key.
        start: Where the open (or last) string's content starts.
        expecting_value: Outside strings, a value would come next (after ``:``, ``[``, or
            ``,`` in an array).
        depth: How many objects and arrays are open (1: inside the arguments' object).
        closed: A top-level object or array has opened and closed again (brackets counted
            as written: a stray closing bracket before the first opening one counts too).
        array_key: When the innermost open container is an array that is the value of a
            top-level property (``{"door": ["driver", ...``), that property's name, else None.
        array_start: Where that array's ``[`` is (with ``array_key``), else -1.
    """

    in_string: bool
    is_key: bool
    start: int
    expecting_value: bool
    depth: int
    closed: bool
    array_key: str | None = None
    array_start: int = -1


#: One piece of JSON text: a string (its content, then its closing quote, empty while it is
#: open; escapes hide quotes), a bracket or punctuation, or a run of anything else (numbers,
#: literals). Whitespace between pieces is skipped.
_PIECE = re.compile(r'"((?:[^"\\]|\\.)*)("?)|[{}\[\],:]|[^\s"{}\[\],:]+', re.DOTALL)


def scan(text: str) -> JsonPosition:
    """Reads ``text`` (argument JSON so far) from its start; see `JsonPosition`."""
    stack: list[str] = []  # "{" or "["
    opened_at: list[int] = []  # where each open bracket of the stack is
    key = None  # the last key read at the top level
    balance, opened, closed = 0, False, False  # brackets as written, for `closed`
    expecting_key = expecting_value = False
    in_string = is_key = False
    start = 0
    for piece in _PIECE.finditer(text):
        ch = piece.group()[0]
        expecting_value = False
        if ch == '"':
            is_key, start = bool(stack) and stack[-1] == "{" and expecting_key, piece.start(1)
            if not piece.group(2):
                in_string = True  # open to the end (an escape may be half written)
                break
            if is_key and len(stack) == 1:
                key = piece.group(1)
        elif ch in "{[":
            stack.append(ch)
            opened_at.append(piece.start())
            balance, opened = balance + 1, True
            expecting_key, expecting_value = ch == "{", ch == "["
        elif ch in "}]":
            if stack:
                stack.pop()
                opened_at.pop()
            balance -= 1
            closed = closed or (opened and balance <= 0)
            expecting_key = False
        elif ch == ",":
            expecting_key = bool(stack) and stack[-1] == "{"
            expecting_value = bool(stack) and stack[-1] == "["
        elif ch == ":":
            expecting_key, expecting_value = False, True
    in_array = stack == ["{", "["]
    return JsonPosition(
        in_string,
        is_key,
        start,
        expecting_value,
        len(stack),
        closed,
        key if in_array else None,
        opened_at[-1] if in_array else -1,
    )


def array_strings(text: str, start: int) -> tuple[list[str], str | None]:
    """The string items of the array whose ``[`` is at ``start`` in ``text``, as written
    (escapes kept): those closed, and the open one's content so far (None if none is
    open). Reading stops where the array closes; items that are not strings are skipped."""
    items: list[str] = []
    nested = 0
    for piece in _PIECE.finditer(text, start + 1):
        ch = piece.group()[0]
        if ch == '"':
            if not piece.group(2):
                return items, (text[piece.start(1) :] if nested == 0 else None)
            if nested == 0:
                items.append(piece.group(1))
        elif ch in "{[":
            nested += 1
        elif ch in "}]":
            if nested == 0:
                break
            nested -= 1
    return items, None
