"""Drafts (jump-forward and copy drafts) change how many forward passes a plan takes, never the plan."""

from __future__ import annotations

import pytest

from agentmem import AgentMem
from agentmem.decoding import preset_options
from agentmem.decoding.drafts import Drafter
from agentmem.grammar import ArgumentGrammar
from agentmem.tools import demo

REQUESTS = [
    "What's the weather in Oslo?",
    "Convert 20 EUR to USD please",
    "Remind me to call mom at 18:30",
    "Email ann@example.com about lunch",
]
NO_DRAFTS = {"jump_forward": False, "copy_drafts": False}
DRAFTS = {"jump_forward": True, "copy_drafts": True}


@pytest.fixture(scope="module")
def mem(tokenizer) -> AgentMem:
    from tests.conftest import tiny_backbone

    mem = AgentMem(tiny_backbone(tokenizer))
    names = ["get_weather", "convert_currency", "create_reminder"]
    mem.learn_tools([(demo.TOOLS[n], demo.training_examples(n, n=8)) for n in names], epochs=2, progress=False)
    return mem


def _decoded(plan) -> tuple:
    """Everything a plan decoded, token counts included (no ids, no timings)."""
    steps = [(type(s).__name__, s.name, getattr(s, "arguments", None), getattr(s, "raw", None)) for s in plan.steps]
    return steps, plan.text, plan.finish_reason, plan.usage["generated_tokens"], plan.notes


@pytest.mark.parametrize("preset", ["defaults", "levers_on"])
def test_drafts_give_the_plans_of_step_by_step_decoding_in_fewer_passes(mem, preset):
    options = {**preset_options(preset), "tool_choice": "any", "max_calls": 2}
    plain = [mem.plan(r, **options, **NO_DRAFTS) for r in REQUESTS]
    drafted = [mem.plan(r, **options, **DRAFTS) for r in REQUESTS]
    batched = mem.plan_batch(REQUESTS, **options, **DRAFTS, batch_size=4)
    assert [_decoded(p) for p in drafted] == [_decoded(p) for p in plain]
    assert [_decoded(p) for p in batched] == [_decoded(p) for p in plain]
    # without drafts a pass feeds one token: every chosen token but the plan's last
    assert all(p.usage["decode_passes"] == p.usage["generated_tokens"] - 1 for p in plain)
    assert sum(p.usage["decode_passes"] for p in drafted) < sum(p.usage["decode_passes"] for p in plain)


def test_each_draft_source_alone_keeps_the_plans(mem):
    plain = [_decoded(p) for p in mem.plan_batch(REQUESTS, tool_choice="any", **NO_DRAFTS)]
    for source in NO_DRAFTS:
        alone = {**NO_DRAFTS, source: True}
        assert [_decoded(p) for p in mem.plan_batch(REQUESTS, tool_choice="any", **alone)] == plain


class _WrongTail(Drafter):
    """Drafts as the library does, then tokens the model is unlikely to choose after them."""

    def __call__(self, row) -> list[int]:
        return [*super().__call__(row), 11, 12, 13][: self.limit]


def test_drafted_tokens_not_chosen_leave_the_cache(mem, monkeypatch):
    # the drafts' right heads are kept and their wrong tails taken back, even across a
    # rerouted call (levers_on), so the plans stay those of step-by-step decoding
    options = {**preset_options("levers_on"), "tool_choice": "any", "max_calls": 2}
    plain = [_decoded(p) for p in mem.plan_batch(REQUESTS, **options, **NO_DRAFTS)]
    decoder = mem._decoder
    monkeypatch.setattr(decoder, "drafter", _WrongTail(decoder.drafter.encode, limit=6))
    assert [_decoded(p) for p in mem.plan_batch(REQUESTS, **options, **DRAFTS)] == plain
    assert [_decoded(mem.plan(r, **options, **DRAFTS)) for r in REQUESTS] == plain


def test_the_grammar_forced_tokens_are_drafted(tokenizer):
    grammar = ArgumentGrammar(tokenizer, len(tokenizer))
    matcher = grammar.compile(demo.TOOLS["create_reminder"]["parameters"]).matcher()
    assert tokenizer.decode(matcher.jump_forward()) == '{"text":"'  # the first required key
    for token in tokenizer.encode('{"text":"', add_special_tokens=False):
        matcher.accept(token)
    assert matcher.jump_forward() == []  # the value is the model's choice


def test_a_copied_value_drafts_the_request_that_follows_it(tokenizer):
    drafter = Drafter(lambda text: tokenizer.encode(text, add_special_tokens=False), limit=3)
    request = "Remind me to pack an umbrella at 07:30 tomorrow"
    assert tokenizer.decode(drafter.copy('{"text":"pack an', request)) == " umbrella at "
    assert tokenizer.decode(drafter.copy('{"text":"x","time":"07:', request)) == "30 tomorrow"
    assert drafter.copy('{"text":"', request) == []  # no span chosen yet
    assert drafter.copy('{"text":"pa', request) == []  # two characters match too much to follow
    assert drafter.copy('{"te', request) == []  # in a key
    assert drafter.copy('{"text":"qqq', request) == []  # nothing of the request
