"""Copy-aware decoding's pure parts: where a string value is open, which tokens continue a copy."""

from __future__ import annotations

import pytest
import torch

from agentmem import AgentMem
from agentmem.copying import (
    CopyIndex,
    first_tokens,
    found_in,
    repeated_optional,
    unfounded,
    unfounded_optional,
    value_number,
    value_string,
)
from agentmem.decoding import DecodeSettings, Row
from agentmem.decoding.policies import StripLeadingSpace
from agentmem.encoding import copy_source_text, source_text
from agentmem.tools import demo
from agentmem.tools.calls import InvalidToolCall, Plan, ToolCall
from agentmem.tools.spec import to_tool_spec
from tests.conftest import tool_schema
from tests.unit.core.test_decoding import _argument_row, _token


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


def test_first_tokens_are_each_words_own_first_token():
    vocab = {"SE": 1, "K": 2, "NO": 3, "Hello": 4, "!": 5, "L": 6, "is": 7, "bon": 8, "07": 9, ":": 10, "30": 11}

    def encode(text: str) -> list[int]:  # greedy longest match, as a stand-in tokenizer; skips unknowns
        ids, i = [], 0
        while i < len(text):
            piece = max((p for p in vocab if text.startswith(p, i)), key=len, default=text[i])
            ids += [vocab[piece]] if piece in vocab else []
            i += len(piece)
        return ids

    # "SEK" is written "SE" + "K": its start is "SE", which ends at no word's end.
    assert first_tokens("Turn 64 NO into SEK.", encode) == {1, 3}
    assert first_tokens("Hello! (Lisbon) at 07:30", encode) == {4, 6, 9, 11}  # "30" follows ":"
    assert first_tokens("", encode) == frozenset()


def test_a_split_word_gets_the_bonus_from_its_first_token(tiny):
    """On the real tokenizer "SEK" is "SE" + "K": the value must be able to start with "SE"."""
    mem = AgentMem(tiny)
    mem.learn_tools(
        [(demo.TOOLS["convert_currency"], demo.training_examples("convert_currency", n=4))], epochs=1, progress=False
    )
    tokenizer, decoder = tiny.tokenizer, mem._decoder
    se, sk = tokenizer.encode("SE")[0], tokenizer.encode("SK")[0]
    assert tokenizer.decode(tokenizer.encode("SEK")[:1]) == "SE"  # the premise: a split word
    text = '{"amount":64,"from_currency":"NZD","to_currency":"'
    state = _argument_row(mem, "convert_currency", text, source="Turn 64 NZD into SEK.")
    scores = torch.zeros(tiny.vocab_size + len(mem.bank))
    scores[se], scores[sk] = 4.0, 5.0
    assert _token(decoder, state, scores, DecodeSettings(copy_bias=0))[0] == sk
    assert _token(decoder, state, scores, DecodeSettings(copy_bias=2.0))[0] == se


def test_in_a_conversation_the_copy_bonus_goes_to_the_last_user_message_alone(tiny):
    """Values may be founded anywhere in a conversation, but copying is only pushed towards
    what is asked now: an earlier turn's currency gets no bonus, the last message's does."""
    mem = AgentMem(tiny)
    mem.learn_tools(
        [(demo.TOOLS["convert_currency"], demo.training_examples("convert_currency", n=4))], epochs=1, progress=False
    )
    tokenizer, decoder = tiny.tokenizer, mem._decoder
    conversation = [
        {"role": "user", "content": "Turn 64 NZD into SEK."},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "Now 30 NZD into JPY, please."},
    ]
    assert copy_source_text(conversation) == "Now 30 NZD into JPY, please."
    assert copy_source_text("Turn 64 NZD into SEK.") == "Turn 64 NZD into SEK."
    se, jp = tokenizer.encode("SEK")[0], tokenizer.encode("JPY")[0]  # each word's first token
    text = '{"amount":30,"from_currency":"NZD","to_currency":"'
    state = _argument_row(mem, "convert_currency", text, source=source_text(conversation))
    scores = torch.zeros(tiny.vocab_size + len(mem.bank))
    scores[se], scores[jp] = 5.0, 4.0
    assert _token(decoder, state, scores, DecodeSettings(copy_bias=0))[0] == se
    assert _token(decoder, state, scores, DecodeSettings(copy_bias=2.0))[0] == se  # both spans favoured
    state.copy_source, state.copy.first_tokens = copy_source_text(conversation), None
    assert _token(decoder, state, scores, DecodeSettings(copy_bias=2.0))[0] == jp


def test_found_in_reads_strings_and_numbers_from_the_request():
    request = "Find out how warm Hanoi is; afterwards work out 2500 INR in NOK. Forecast in Celsius, 7.25 too."
    assert found_in("hanoi", request) and found_in("celsius", request)  # case does not matter
    assert found_in("2022", request) is False and found_in("fahrenheit", request) is False
    assert found_in(2500, request) and found_in(2500.0, request) and found_in(7.25, request)
    assert found_in(500, request) is False and found_in(7.2, request) is False  # whole numbers only
    assert found_in(["INR", "NOK"], request) and found_in(["INR", "SEK"], request) is False
    assert found_in(True, request) is None and found_in({"a": 1}, request) is None and found_in("", request) is False


def test_unfounded_optional_lists_only_optional_arguments_the_request_lacks():
    schema = {
        "type": "object",
        "properties": {"text": {"type": "string"}, "time": {"type": "string"}, "date": {"type": "string"}},
        "required": ["text", "time"],
    }
    request = "Make sure I feed the cat at 16:05."
    assert unfounded_optional(schema, {"text": "feed the cat", "time": "16:05", "date": "2022"}, request) == ["date"]
    assert unfounded_optional(schema, {"text": "the dog", "time": "9:00"}, request) == []  # required stay
    assert unfounded_optional(schema, {"text": "x", "time": "16:05", "date": "16:05"}, request) == []


@pytest.fixture
def reminders(tiny) -> AgentMem:
    mem = AgentMem(tiny)
    mem.learn_tools(
        [(demo.TOOLS["create_reminder"], demo.training_examples("create_reminder", n=4))], epochs=1, progress=False
    )
    return mem


def _finish(mem: AgentMem, settings: DecodeSettings, written: str) -> Plan:
    """The plan after the decoder finishes a create_reminder call whose arguments are ``written``."""
    decoder = mem._decoder
    state = Row(
        prompt_tokens=1,
        settings=settings,
        view=decoder.view(),
        mode="arguments",
        tool="create_reminder",
        source="Make sure I feed the cat at 16:05.",
    )
    state.pending = mem.backbone.tokenizer.encode(written)
    decoder._finish_call(state)
    return state.plan


def test_the_decoder_leaves_out_an_unfounded_optional_argument_and_says_so(reminders):
    written = '{"text":"feed the cat","time":"16:05","date":"2022"}'
    kept = _finish(reminders, DecodeSettings(drop_unfounded=False), written)
    assert kept.calls[0].arguments == {"text": "feed the cat", "time": "16:05", "date": "2022"} and not kept.notes
    dropped = _finish(reminders, DecodeSettings(drop_unfounded=True), written)
    assert dropped.calls[0].arguments == {"text": "feed the cat", "time": "16:05"}
    assert dropped.notes == ['create_reminder: left out optional date="2022", not in the request']


def test_the_decoder_drops_the_space_a_copied_value_starts_with_and_says_so(reminders):
    written = '{"text":" feed the cat","time":"16:05","date":" 2022"}'
    kept = _finish(reminders, DecodeSettings(strip_leading_space=False), written)
    assert kept.calls[0].arguments["text"] == " feed the cat" and not kept.notes
    stripped = _finish(reminders, DecodeSettings(strip_leading_space=True), written)
    assert stripped.calls[0].arguments == {"text": "feed the cat", "time": "16:05", "date": "2022"}
    assert stripped.notes == ["create_reminder: leading space dropped from text, date"]
    # with drop_unfounded too, both say what they did, and the founded check reads the stripped values
    both = _finish(reminders, DecodeSettings(strip_leading_space=True, drop_unfounded=True), written)
    assert both.calls[0].arguments == {"text": "feed the cat", "time": "16:05"}
    assert both.notes == stripped.notes + ['create_reminder: left out optional date="2022", not in the request']


def test_a_leading_space_the_schema_needs_stays():
    spec = to_tool_spec(
        tool_schema(
            "pad",
            {"mark": {"type": "string", "enum": [" x", "y"]}, "tags": {"type": "array", "items": {"type": "string"}}},
        )
    )
    strip = StripLeadingSpace()
    kept = strip.judge(spec, ToolCall("pad", {"mark": " x", "tags": [" a"]}))
    assert kept.call.arguments == {"mark": " x", "tags": [" a"]} and not kept.notes  # " x" is the only valid form
    nested = strip.judge(spec, ToolCall("pad", {"mark": "y", "tags": [" a", "b "]}))
    assert nested.call.arguments == {"mark": "y", "tags": ["a", "b "]}  # items too; the trailing space stays
    invalid = InvalidToolCall(name="pad", raw="{", reason="not JSON")
    assert strip.judge(spec, invalid).call is invalid


def test_value_number_reads_a_number_being_written_only():
    assert value_number('{"amount":') == ""  # a value may start here
    assert value_number('{"amount": 6') == "6"
    assert value_number('{"amount":19.') == "19."
    assert value_number('{"xs":[1,') == ""  # the next item of an array
    assert value_number('{"city":"Lisbon 6') is None  # inside a string
    assert value_number('{"amount":6,') is None  # a key comes next
    assert value_number("{") is None


def test_number_candidates_continue_a_number_of_the_request():
    texts = ["1", "2", "4", "6", "9", ".", "64", "19", "0"]
    index = CopyIndex(texts)
    by_text = lambda ids: {texts[i] for i in ids}  # noqa: E731
    source = "Quick conversion: 64 NOK -> SGD, or 19.9 of them"
    assert by_text(index.number_candidates(source, "")) == {"6", "64", "1", "19"}
    assert by_text(index.number_candidates(source, "6")) == {"4"}
    assert by_text(index.number_candidates(source, "19")) == {"."}
    assert index.number_candidates(source, "64") == set()  # the number is complete
    assert index.number_candidates(source, "2") == set()


def test_found_in_wants_whole_values_not_pieces_of_an_address_or_word():
    source = 'Can you message noor@example.edu? Subject "Flight details". Remind priya.n@mailbox.org.'
    assert found_in("noor@example.edu", source) and found_in("Flight details", source)
    assert found_in("flight DETAILS", source)  # case is not a difference
    assert found_in("priya.n@mailbox.org", source)  # a full stop may end the sentence after it
    assert not found_in("example.edu", source)  # the domain of an address
    assert not found_in("n@mailbox.org", source)
    assert not found_in("noor", source)  # the name before "@"
    assert not found_in("Flight detail", source)  # a piece of a word
    assert not found_in("priya", source)  # followed by ".n": still inside the address


def test_unfounded_counts_values_to_copy_but_not_those_a_schema_names():
    schema = {
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "time": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "urgent": {"type": "boolean"},
        },
        "required": ["text", "time"],
    }
    source = "Drop a line to priya about the party"
    arguments = {"text": "drop a line", "time": "20:00", "unit": "celsius", "urgent": True}
    assert unfounded(schema, arguments, source) == ["time"]  # the enum and the boolean never count
    assert unfounded_optional(schema, arguments, source) == ["unit"]  # optional ones: enums too


def test_repeated_optional_names_optional_values_another_argument_holds():
    schema = {
        "type": "object",
        "properties": {k: {"type": "string"} for k in ("text", "time", "date", "note")},
        "required": ["text", "time"],
    }
    arguments = {"text": "check the oven", "time": "10:40", "date": "Sunday at 10:40", "note": "the oven"}
    assert repeated_optional(schema, arguments) == ["date", "note"]  # pieces either way round
    assert repeated_optional(schema, {"text": "feed the cat", "time": "10:40", "date": "Sunday"}) == []
    assert repeated_optional(schema, {"text": "10:40", "time": "10:40"}) == []  # required ones are kept


def test_optional_bias_writes_the_optional_arguments_a_model_would_leave_out(tiny):
    enum = lambda *values: {"type": "string", "enum": list(values)}  # noqa: E731
    tool = {
        "name": "set_lamp",
        "parameters": {
            "type": "object",
            "properties": {"color": enum("red", "blue"), "mode": enum("steady", "blink"), "room": enum("hall", "den")},
            "required": ["color"],
        },
    }
    mem = AgentMem(tiny)
    mem.learn_tool(tool, [{"query": f"Lamp to {c}.", "arguments": {"color": c}} for c in ("red", "blue")], epochs=1)
    options = {"tool_choice": "set_lamp", "max_calls": 1, "drop_unfounded": False}
    pushed = mem.plan("Lamp to blue.", optional_bias=100.0, **options)
    assert set(pushed.calls[0].arguments) == {"color", "mode", "room"}
    kept = mem.plan("Lamp to blue.", optional_bias=100.0, **{**options, "drop_unfounded": True})
    assert set(kept.calls[0].arguments) == {"color"}  # the request holds neither optional value
    assert sum("not in the request" in note for note in kept.notes) == 2
