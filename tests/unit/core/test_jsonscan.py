"""The partial-JSON scanner that copying and the grammar share."""

from __future__ import annotations

from agentmem.jsonscan import array_strings, scan


def test_an_open_value_string_and_its_start():
    position = scan('{"city":"Lis')
    assert position.in_string and not position.is_key and position.start == 9 and position.depth == 1
    assert scan('{"ci').is_key
    assert not scan('{"city":"a\\"b').closed and scan('{"city":"a\\"b').in_string  # an escaped quote
    assert scan('{"city":"a\\').in_string  # an escape half written
    assert not scan('{"city":"a\\\\"').in_string  # an escaped backslash, then the closing quote


def test_where_a_value_is_expected():
    assert scan('{"amount":').expecting_value and scan('{"xs":[1,').expecting_value
    assert not scan('{"amount":6,').expecting_value and not scan("{").expecting_value


def test_closed_counts_brackets_outside_strings_as_written():
    assert scan('{"a":[1,2]}').closed and not scan('{"a":[1,2]').closed
    assert not scan('{"a":"}"').closed  # a bracket inside a string
    assert scan('{"a":1}trailing').closed  # stays closed
    assert scan("]{}").closed and scan("]{{}").closed  # a stray bracket counts, as the grammar always read it
    assert scan("]{{}").depth == 1  # while the depth ignores it
    assert not scan("").closed and not scan("]]").closed


def test_the_open_array_of_a_top_level_property_and_its_string_items():
    text = '{"unlock":false,"door":["driver","pass'
    position = scan(text)
    assert (position.array_key, text[position.array_start]) == ("door", "[")
    assert array_strings(text, position.array_start) == (["driver"], "pass")
    assert array_strings('{"d":["a\\"b","c', 5) == (['a\\"b'], "c")  # escapes kept, the quote hidden
    assert array_strings('{"d":["a","c\\', 5) == (["a"], "c\\")  # an escape half written: still open
    assert array_strings('{"d":[["x"],"y",', 5) == (["y"], None)  # a nested array's strings are not items
    assert array_strings('{"d":["a","b"],"e":"c"', 5) == (["a", "b"], None)  # reading stops where it closes
    for text in ('{"d":["a"]', '{"d":{"e":[', '["a",', '{"d":"[x'):
        assert scan(text).array_key is None and scan(text).array_start == -1
