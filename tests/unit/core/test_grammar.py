"""Constrained argument decoding: whatever the logits, the output parses and validates."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch
import xgrammar as xgr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentmem.adaptation.nestful import REFERENCE_SCHEMA
from agentmem.grammar import ArgumentGrammar, without_reference_branches
from agentmem.tools import canonical_json

EXTRA = 3  # memory-token columns appended past the vocabulary

_primitive = st.one_of(
    st.just({"type": "string", "maxLength": 6}),
    st.just({"type": "integer", "minimum": 0, "maximum": 999}),
    st.just({"type": "number"}),
    st.just({"type": "boolean"}),
    st.lists(st.sampled_from(["red", "green", "blue", "x y"]), min_size=1, max_size=3, unique=True).map(
        lambda values: {"type": "string", "enum": values}
    ),
    st.just({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "maxItems": 3}),
)


def _object(children):
    return st.dictionaries(
        st.sampled_from(["a", "city", "n", "flag", "tags", "when"]), children, min_size=1, max_size=3
    ).flatmap(
        lambda props: st.lists(st.sampled_from(sorted(props)), unique=True).map(
            lambda required: {
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": False,
            }
        )
    )


SCHEMAS = _object(st.one_of(_primitive, _object(_primitive)))


@pytest.fixture(scope="module")
def grammar(tokenizer):
    return ArgumentGrammar(tokenizer, len(tokenizer))


def _decode(grammar, schema, next_logits, budget=300):
    matcher = grammar.compile(schema).matcher()
    tokens = []
    for _ in range(budget):
        logits = matcher.mask_logits(next_logits(tokens))
        assert torch.isinf(logits[-EXTRA:]).all(), "memory tokens must stay masked inside arguments"
        token = int(torch.multinomial(torch.softmax(logits, -1), 1))
        assert matcher.accept(token)
        tokens.append(token)
        if matcher.is_finished():
            return grammar.tokenizer.decode(tokens)
    raise AssertionError(f"no closed object within {budget} tokens: {grammar.tokenizer.decode(tokens)!r}")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=SCHEMAS, seed=st.integers(0, 2**16))
def test_sampled_output_always_validates(grammar, schema, seed):
    generator = torch.Generator().manual_seed(seed)
    width = grammar.vocab_size + EXTRA

    def random_logits(_tokens):
        return torch.randn(width, generator=generator) * 3

    torch.manual_seed(seed)
    # parsed as parse_call does: the grammar's strings may hold raw control characters
    jsonschema.validate(json.loads(_decode(grammar, schema, random_logits), strict=False), schema)


def test_greedy_output_of_a_real_model_validates(grammar, tiny):
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 12},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 7},
        },
        "required": ["city", "unit", "days"],
        "additionalProperties": False,
    }
    prompt = tiny.tokenizer("Weather in Paris for 3 days")["input_ids"]

    def model_logits(tokens):
        with torch.no_grad():
            logits = tiny.model(input_ids=torch.tensor([prompt + tokens])).logits[0, -1]
        return torch.cat([logits, torch.zeros(EXTRA)]) * 50  # sharp: near-greedy

    torch.manual_seed(0)
    text = _decode(grammar, schema, model_logits)
    value = json.loads(text)
    jsonschema.validate(value, schema)
    assert text == canonical_json(value)  # compact, in the schema's property order: the training text form
    assert list(value) == ["city", "unit", "days"]


def test_a_few_allowed_tokens_are_listed_and_masked_as_the_bitmask_masks(grammar):
    # where the grammar allows a few tokens (a key, punctuation, an enum value), the decoder
    # computes only their scores; the mask then keeps theirs rather than masking the rest
    schema = {
        "type": "object",
        "properties": {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}, "city": {"type": "string"}},
        "required": ["unit", "city"],
        "additionalProperties": False,
    }
    compiled = grammar.compile(schema)
    matcher = compiled.matcher()
    tokens = grammar.tokenizer.encode('{"unit":"celsius","city":"Oslo"}', add_special_tokens=False)
    bitmask = xgr.allocate_token_bitmask(1, grammar.vocab_size)
    special = list(grammar.tokenizer.all_special_ids)
    few = 0
    for i, token in enumerate(tokens):
        ahead = matcher.allowed_ahead(tokens[i:])  # the draft's states, the matcher left as it was
        allowed = matcher.allowed()
        assert (ahead[0] is None) == (allowed is None)
        logits = torch.randn(grammar.vocab_size + EXTRA)
        masked = matcher.mask_logits(logits)
        matcher._matcher.fill_next_token_bitmask(bitmask)  # the mask from xgrammar itself
        expected = logits.clone()
        expected[grammar.vocab_size :] = float("-inf")
        expected[special] = float("-inf")
        xgr.apply_token_bitmask_inplace(expected[: grammar.vocab_size].unsqueeze(0), bitmask)
        assert torch.equal(masked, expected)
        if allowed is not None:
            few += 1
            assert torch.equal(ahead[0], allowed)
            assert allowed.tolist() == torch.isfinite(masked).nonzero().squeeze(1).tolist()
        assert matcher.accept(token)
        if i + 1 < len(tokens):
            next_allowed = matcher.allowed()
            assert (ahead[1] is None) == (next_allowed is None)
            assert next_allowed is None or torch.equal(ahead[1], next_allowed)
    assert matcher.is_finished() and few >= len(tokens) // 2  # keys, punctuation and the enum value
    assert matcher.allowed_ahead([]) == [matcher.allowed()]
    assert grammar.unconstrained().matcher().allowed() is None


def test_unsupported_schema_falls_back_and_is_cached(grammar):
    weird = {"type": "object", "properties": {"x": {"type": "string", "pattern": "(?<=a)b"}}}
    compiled = grammar.compile(weird)
    if compiled.constrained:  # this xgrammar handles it: the cache must still hold
        assert grammar.compile(weird) is compiled
        return
    assert compiled.fallback_reason
    matcher = compiled.matcher()
    logits = matcher.mask_logits(torch.zeros(grammar.vocab_size + EXTRA))
    special = list(grammar.tokenizer.all_special_ids)
    assert torch.isinf(logits[-EXTRA:]).all() and torch.isinf(logits[special]).all()
    assert torch.isinf(logits[: grammar.vocab_size]).sum() == len(set(special))  # all else free
    for piece in ['{"x":', '"b}', '"', "}"]:
        assert not matcher.is_finished()
        matcher.accept(0, piece)
    assert matcher.is_finished()


def test_special_tokens_never_enter_an_argument_value(grammar):
    # xgrammar admits "<|im_start|>" inside a string as its literal text; written back into a
    # conversation it would open a chat turn of its own (seen in a BFCL plan's message)
    special = sorted(set(grammar.tokenizer.all_special_ids))
    assert special
    schema = {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]}
    for compiled in (grammar.compile(schema), grammar.unconstrained()):
        matcher = compiled.matcher()
        for token in grammar.tokenizer.encode('{"message":"hi', add_special_tokens=False):
            assert matcher.accept(token, grammar.tokenizer.decode([token]))
        logits = matcher.mask_logits(torch.zeros(grammar.vocab_size + EXTRA))
        assert torch.isinf(logits[special]).all()
        letter = grammar.tokenizer.encode(" there", add_special_tokens=False)[0]
        assert not torch.isinf(logits[letter])  # the string goes on


def test_unconstrained_matcher_tracks_strings_and_nesting(grammar):
    matcher = grammar.unconstrained().matcher()
    for piece in ['{"a": "}', '{", "b": {"c": [1', "]}", "}"]:
        assert not matcher.is_finished()
        matcher.accept(0, piece)
    assert matcher.is_finished()


def _with_reference(schema):
    return {"description": "kept", "anyOf": [schema, dict(REFERENCE_SCHEMA)]}


def test_reference_branches_are_left_out_at_any_depth():
    schema = {
        "type": "object",
        "properties": {
            "lat": _with_reference({"type": "number"}),
            "unit": {"anyOf": [{"type": "string", "enum": ["c", "f"]}, {"type": "integer"}, dict(REFERENCE_SCHEMA)]},
            "stops": {"type": "array", "items": _with_reference({"type": "integer"})},
            "city": {"type": "string"},
        },
    }
    assert without_reference_branches(schema) == {
        "type": "object",
        "properties": {
            "lat": {"description": "kept", "type": "number"},
            "unit": {"anyOf": [{"type": "string", "enum": ["c", "f"]}, {"type": "integer"}]},
            "stops": {"type": "array", "items": {"description": "kept", "type": "integer"}},
            "city": {"type": "string"},
        },
    }
    plain = {"type": "object", "properties": {"q": {"type": "string", "pattern": "^a+$"}}}
    assert without_reference_branches(plain) == plain


def test_a_number_that_admits_a_reference_is_decoded_as_a_number(grammar):
    # A model that opens a string here could only go on with "$var...", which the decoder
    # passes over: with the reference branch in the grammar it was left with no token.
    schema = {
        "type": "object",
        "properties": {"lat": _with_reference({"type": "number"})},
        "required": ["lat"],
        "additionalProperties": False,
    }
    after = _scores_after(grammar, schema, '{"lat":')
    assert not _allowed(grammar, after, '"') and _allowed(grammar, after, "4")


def test_a_string_pattern_holds_the_value_to_its_form(grammar):
    # BFCL's "in the format YYYY-MM-DD" becomes this pattern (agentmem.eval.bfcl): a plan
    # must write 2026-11-12, not the request's "November 12th 2026"
    schema = {
        "type": "object",
        "properties": {"date": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}},
        "required": ["date"],
        "additionalProperties": False,
    }
    after = _scores_after(grammar, schema, '{"date":"')
    assert not _allowed(grammar, after, "N") and _allowed(grammar, after, "2")


def _scores_after(grammar, schema, written: str) -> torch.Tensor:
    """Zero scores masked by ``schema``'s grammar once ``written`` is accepted token by token."""
    compiled = grammar.compile(schema)
    assert compiled.constrained
    matcher = compiled.matcher()
    for token in grammar.tokenizer.encode(written, add_special_tokens=False):
        assert matcher.accept(token)
    return matcher.mask_logits(torch.zeros(grammar.vocab_size + EXTRA))


def _allowed(grammar, scores: torch.Tensor, text: str) -> bool:
    """Whether the first token of ``text`` is left unmasked in ``scores``."""
    return not torch.isinf(scores[grammar.tokenizer.encode(text, add_special_tokens=False)[0]])
