"""Copy-aware decoding's pure parts: where a string value is open, which tokens continue a copy."""

from __future__ import annotations

from agentmem.copying import CopyIndex, value_string


def test_value_string_reads_the_open_value_only():
    assert value_string('{"city":"Lis') == "Lis"
    assert value_string('{"city":"') == ""
    assert value_string('{"ci') is None  # a key
    assert value_string('{"city":"Lisbon",') is None
    assert value_string('{"city":"Lisbon","unit":"fa') == "fa"
    assert value_string('{"tags":["a","b') == "b"  # strings in arrays are values
    assert value_string('{"text":"say \\"hi') == 'say \\"hi'  # escaped quotes stay inside
    assert value_string('{"n":1') is None
    assert value_string('{"o":{"k') is None


def test_candidates_continue_a_span_of_the_source():
    texts = ["pack", " an", " umbrella", " um", "brella", "Lisbon", "Lis", "bon", " coat", '"']
    index = CopyIndex(texts)
    source = "remind me to pack an umbrella in Lisbon"
    by_text = lambda ids: {texts[i] for i in ids}  # noqa: E731
    assert by_text(index.candidates(source, "pack an")) == {" umbrella", " um"}
    assert by_text(index.candidates(source, "Lis")) == {"bon"}
    assert by_text(index.candidates(source, "")) >= {"pack", "Lisbon"}  # a value starts at a word
    assert not by_text(index.candidates(source, "")) & {"bon", "Lis", " um"}  # ... with whole words only
    assert index.candidates(source, "Paris") == set()


def test_candidates_work_on_bytes_so_multibyte_names_copy_too():
    name = "こんにちは株式会社"
    raw = name.encode().decode("latin-1")  # the decoder's byte view: one character per byte
    pieces = [raw[:4], raw[4:9], "Hello"]  # byte-level tokens split characters
    index = CopyIndex(pieces)
    source = ("Create customer " + name + " (Hello Corp)").encode().decode("latin-1")
    assert index.candidates(source, raw[:4]) == {1}
    assert value_string('{"customer_name":"' + raw[:4]) == raw[:4]
