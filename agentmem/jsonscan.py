"""Where a partly written JSON text stands: the one scanner the decoder's readers share.

The grammar asks whether the arguments' object has closed (`agentmem.grammar`, without a
schema); copy-aware decoding asks whether a string or number value is open and what it
holds so far (`agentmem.copying`); the optional bias asks how deep the text is. All read the
same characters the same way: strings (with their escapes) hide brackets and punctuation.
Torch-free.
"""

from __future__ import annotations

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
    """

    in_string: bool
    is_key: bool
    start: int
    expecting_value: bool
    depth: int
    closed: bool


def scan(text: str) -> JsonPosition:
    """Reads ``text`` (argument JSON so far) from its start; see `JsonPosition`."""
    stack: list[str] = []  # "{" or "["
    balance, opened, closed = 0, False, False  # brackets as written, for `closed`
    expecting_key = expecting_value = False
    in_string = is_key = escaped = False
    start = 0
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch.isspace():
            continue
        expecting_value = False
        if ch == '"':
            in_string, is_key, start = True, bool(stack) and stack[-1] == "{" and expecting_key, i + 1
        elif ch in "{[":
            stack.append(ch)
            balance, opened = balance + 1, True
            expecting_key, expecting_value = ch == "{", ch == "["
        elif ch in "}]":
            if stack:
                stack.pop()
            balance -= 1
            closed = closed or (opened and balance <= 0)
            expecting_key = False
        elif ch == ",":
            expecting_key = bool(stack) and stack[-1] == "{"
            expecting_value = bool(stack) and stack[-1] == "["
        elif ch == ":":
            expecting_key, expecting_value = False, True
    return JsonPosition(in_string, is_key, start, expecting_value, len(stack), closed)
