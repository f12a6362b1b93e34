"""Rerouting: a call holding a value the request does not makes the decoder try other tools.

The tiny model's routing is arbitrary, so which calls count as unfounded is set by patching
`agentmem.decoding.policies.unfounded`; what is checked is the decoder's mechanics: the row goes back
to its routing decision (its cache takes the call's tokens back), decodes the next tool
there exactly as if it had been chosen first, and keeps the best-founded call, replaying it
token for token when it was not the last one decoded.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest
import torch

from agentmem import AgentMem, decoding
from agentmem.decoding import policies
from tests.conftest import LIGHT, UNIT, tool_schema

REQUEST = "Switch the lamp to blue and the fan to high."
#: The call levers these tests exercise, on (they are off by default): a plan's own options override them.
LEVERS_ON = {
    "copy_bias": 3.0,
    "drop_unfounded": True,
    "reroute_unfounded": True,
    "optional_bias": 2.0,
    "complete_plan": True,
    "fall_back_to_text": True,
}


@pytest.fixture
def mem(tiny, monkeypatch) -> AgentMem:
    mem = AgentMem(tiny)
    # enum values only: the tiny model's arguments always close (no runaway strings)
    lamp = tool_schema("set_lamp", {"color": {"type": "string", "enum": ["red", "blue"]}})
    fan = tool_schema("set_fan", {"speed": {"type": "string", "enum": ["low", "high"]}})
    pack = [
        (lamp, [{"query": f"Lamp to {c}.", "arguments": {"color": c}} for c in ("red", "blue")]),
        (fan, [{"query": f"Fan to {v}.", "arguments": {"speed": v}} for v in ("low", "high")]),
    ]
    mem.learn_tools(pack, epochs=1, progress=False)
    levers(mem, monkeypatch, reroute=policies.Reroute(min_probability=0.0))  # every tool is an alternative
    monkeypatch.setattr(mem, "plan", functools.partial(mem.plan, **LEVERS_ON))
    monkeypatch.setattr(mem, "plan_batch", functools.partial(mem.plan_batch, **LEVERS_ON))
    return mem


def levers(mem: AgentMem, monkeypatch, **changes) -> None:
    """Sets some of the decoder's call-level levers (their thresholds) for one test."""
    monkeypatch.setattr(mem._decoder, "levers", replace(mem._decoder.levers, **changes))


def calls(steps) -> list[tuple[str, dict]]:
    return [(step.name, step.arguments) for step in steps]  # ids are fresh on every plan


def flag(monkeypatch, tools: set[str]) -> None:
    """Makes every call of ``tools`` hold an unfounded value (its first argument)."""

    def fake(schema, arguments, source):
        name = "set_lamp" if "color" in schema.get("properties", {}) else "set_fan"
        return list(arguments)[:1] if name in tools else []

    monkeypatch.setattr(policies, "unfounded", fake)


def test_an_unfounded_call_is_replaced_by_the_next_tool_decoded_as_if_chosen_first(mem, monkeypatch):
    settings = {"tool_choice": "any", "max_calls": 1}
    first = mem.plan(REQUEST, reroute_unfounded=False, **settings).steps[0]
    other = next(name for name in mem.bank.names if name != first.name)
    direct = mem.plan(REQUEST, tool_choice=other, max_calls=1, reroute_unfounded=False).steps[0]

    flag(monkeypatch, {first.name})
    rerouted = mem.plan(REQUEST, **settings)
    assert calls(rerouted.steps) == calls([direct])
    assert any(f"routed to {other} rather than {first.name}" in note for note in rerouted.notes)


def test_when_every_tool_is_unfounded_the_likeliest_call_is_replayed_unchanged(mem, monkeypatch):
    settings = {"tool_choice": "any", "max_calls": 2}
    plain = mem.plan(REQUEST, reroute_unfounded=False, **settings)
    flag(monkeypatch, set(mem.bank.names))
    replayed = mem.plan(REQUEST, **settings)
    assert calls(replayed.steps) == calls(plain.steps)  # the cache after the replay is the one the first decode left
    assert not any("routed to" in note for note in replayed.notes)


def test_rerouting_in_a_batch_leaves_the_other_rows_alone(mem, monkeypatch):
    requests = [REQUEST, "Fan to low, please.", "Make the lamp red."]
    plain = mem.plan_batch(requests, tool_choice="any", max_calls=1, reroute_unfounded=False)
    flag(monkeypatch, {plain[0].steps[0].name})
    batched = mem.plan_batch(requests, tool_choice="any", max_calls=1)
    alone = [mem.plan(r, tool_choice="any", max_calls=1) for r in requests]
    assert [calls(p.steps) for p in batched] == [calls(p.steps) for p in alone]
    assert calls(batched[0].steps) != calls(plain[0].steps)  # the first row was rerouted


def _hidden_once_decoding(mem: AgentMem, settings: decoding.DecodeSettings, tool: str):
    """The row's last hidden state right after ``tool``'s memory token went into the cache."""
    batch = decoding.Batch(mem._decoder)
    ids, _ = mem._prompt(REQUEST, False, None)
    (row,) = batch.add([ids], [settings], [REQUEST], [None])
    for _ in range(64):
        batch.step()
        if row.tool == tool and not row.pending:
            assert row.slot.hidden is not None
            return row.slot.hidden.clone()
    raise AssertionError(f"{tool} was never decoded")


def test_the_cache_takes_the_rejected_call_back(mem, monkeypatch):
    first = mem.plan(REQUEST, tool_choice="any", max_calls=1, reroute_unfounded=False).steps[0].name
    other = next(name for name in mem.bank.names if name != first)
    direct = _hidden_once_decoding(mem, decoding.DecodeSettings(tool_choice=other, reroute_unfounded=False), other)
    flag(monkeypatch, {first})
    rerouted = _hidden_once_decoding(mem, decoding.DecodeSettings(tool_choice="any", **LEVERS_ON), other)
    # the rejected call's cache columns are gone and the position rewound: as if never written
    assert torch.allclose(rerouted, direct, atol=1e-5)


def test_calls_rank_by_flaws_then_likelihood_when_founded_and_tool_probability_when_not():
    from agentmem.tools.calls import InvalidToolCall, ToolCall

    def tried(p: float, likelihood: float, flaws: list[str], invalid: bool = False) -> policies.Tried:
        step = InvalidToolCall(name="t", raw="{", reason="bad") if invalid else ToolCall(name="t", arguments={})
        return policies.Tried("t", p, [], step, [], flaws, likelihood)

    likely_tool = tried(0.6, -4.0, [])  # joint log 0.6 - 4.0 = -4.5
    likely_call = tried(0.3, -1.0, [])  # joint log 0.3 - 1.0 = -2.2
    assert min([likely_tool, likely_call], key=lambda t: t.rank) is likely_call
    flawed = [tried(0.2, -0.1, ["x"]), tried(0.5, -9.0, ["y"])]
    assert min(flawed, key=lambda t: t.rank) is flawed[1]  # among flawed calls, the likelier tool
    assert min([*flawed, likely_tool], key=lambda t: t.rank) is likely_tool  # founded beats flawed
    assert min([tried(0.9, 0.0, ["bad"], invalid=True), flawed[0]], key=lambda t: t.rank) is flawed[0]


def test_an_uncertain_founded_call_is_compared_with_its_rivals(mem, monkeypatch):
    # every routing decision counts as uncertain, every tool as a contender
    levers(mem, monkeypatch, reroute=replace(mem._decoder.levers.reroute, uncertain=1.01, contender=0.0))
    options = {"tool_choice": "any", "max_calls": 1}
    decoded = {n: mem.plan(REQUEST, tool_choice=n, max_calls=1, reroute_unfounded=False) for n in mem.bank.names}
    plan = mem.plan(REQUEST, **options)
    first = mem.plan(REQUEST, reroute_unfounded=False, **options).steps[0].name
    (kept,) = plan.steps
    assert calls([kept]) == calls(decoded[kept.name].steps)  # one of the rivals' own calls, exactly
    switched = [note for note in plan.notes if "call is likelier" in note]
    assert bool(switched) == (kept.name != first)


# complete_plan: before a plan ends, the likeliest next tool's call is tried.

REMINDER = tool_schema(
    "create_reminder",
    {"text": {"type": "string"}, "time": {"type": "string"}, "kind": {"type": "string", "enum": ["once", "daily"]}},
)
WEATHER = tool_schema("get_weather", {"city": {"type": "string"}})


def _row(request: str, *earlier: decoding.ToolCall) -> decoding.Row:
    row = decoding.Row(prompt_tokens=0, source=request.encode("utf-8").decode("latin-1"))
    row.plan.steps.extend(earlier)
    return row


def test_a_call_tried_before_the_end_is_kept_only_for_a_new_part_of_the_request(mem):
    from agentmem.tools.spec import to_tool_spec

    complete, spec = policies.CompletePlan(), to_tool_spec(REMINDER)
    request = "What's the weather in Lisbon? Also remind me to pack an umbrella at 07:30."
    weather = decoding.ToolCall("get_weather", {"city": "Lisbon"})
    new = decoding.ToolCall("create_reminder", {"text": "pack an umbrella", "time": "07:30"})
    assert complete.kept(_row(request, weather), spec, new)
    # a value the request does not hold: invented, not read
    invented = decoding.ToolCall("create_reminder", {"text": "pack an umbrella", "time": "09:00"})
    assert not complete.kept(_row(request, weather), spec, invented)
    # every value already in an earlier call: a second reading of a part already planned
    again = decoding.ToolCall("create_reminder", {"text": "Lisbon", "time": "07:30", "kind": "once"})
    planned = decoding.ToolCall("create_reminder", {"text": "lisbon", "time": "07:30"})
    assert not complete.kept(_row(request, weather, planned), spec, again)
    # an enum value is never read from the request, so it is never new
    assert not complete.kept(
        _row(request, planned), spec, decoding.ToolCall("create_reminder", {"text": "Lisbon", "kind": "daily"})
    )
    assert not complete.kept(_row(request, weather), spec, decoding.InvalidToolCall("create_reminder", "{", "x"))


def test_complete_plan_adds_the_call_it_keeps_and_leaves_the_plan_alone_otherwise(mem, monkeypatch):
    # The tiny model never ends a plan by itself: make it end after the first call.
    route = decoding.Decoder._route

    def end_after_one(self, row, scores):
        if row.plan.steps:
            scores = scores.clone()
            scores[self.route_mask.eos] = scores.max() + 50
        return route(self, row, scores)

    monkeypatch.setattr(decoding.Decoder, "_route", end_after_one)
    levers(mem, monkeypatch, complete_plan=policies.CompletePlan(min_probability=0.0))  # tried however unlikely
    requests = [REQUEST, "Fan to low, please.", "Make the lamp red."]
    options = {"tool_choice": "any", "max_calls": 2}
    plain = mem.plan_batch(requests, complete_plan=False, **options)
    assert all(len(p.calls) == 1 and p.finish_reason == "stop" for p in plain)

    monkeypatch.setattr(policies.CompletePlan, "kept", lambda self, row, spec, call: False)
    kept_none = mem.plan_batch(requests, **options)
    assert [calls(p.steps) for p in kept_none] == [calls(p.steps) for p in plain]
    assert [p.finish_reason for p in kept_none] == ["stop"] * 3

    monkeypatch.setattr(policies.CompletePlan, "kept", lambda self, row, spec, call: True)
    completed = mem.plan_batch(requests, **options)
    for got, before in zip(completed, plain):
        assert len(got.calls) == 2 and calls(got.steps)[:1] == calls(before.steps)
        assert any("before the end of the plan" in note for note in got.notes)
    # each row decodes as it would alone
    assert [calls(p.steps) for p in completed] == [calls(mem.plan(r, **options).steps) for r in requests]


def test_a_resumed_plan_is_never_completed(mem, monkeypatch):
    # An agent's plan resumed after its calls' results: those calls are in the prompt, not
    # in the plan being decoded, so an added call could repeat one of them for ever.
    route = decoding.Decoder._route

    def always_end(self, row, scores):
        scores = scores.clone()
        scores[self.route_mask.eos] = scores.max() + 50
        return route(self, row, scores)

    monkeypatch.setattr(decoding.Decoder, "_route", always_end)
    levers(mem, monkeypatch, complete_plan=policies.CompletePlan(min_probability=0.0))
    monkeypatch.setattr(policies.CompletePlan, "kept", lambda self, row, spec, call: True)
    messages = [
        {"role": "user", "content": REQUEST},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "name": "set_lamp", "args": {"color": "blue"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    resumed = mem.plan(messages, resume=True)
    assert resumed.calls == [] and resumed.finish_reason == "stop"


@pytest.fixture
def routes_first(monkeypatch):
    """The tiny model's text outranked at routing: its plans start with a call (the text's
    order among itself, so the likeliest text token, is unchanged)."""
    route = decoding.Decoder._route

    def tools_first(self, row, scores):
        scores = scores.clone()
        scores[: self.route_mask.vocab] -= 50
        return route(self, row, scores)

    monkeypatch.setattr(decoding.Decoder, "_route", tools_first)


def test_a_first_call_every_tool_invents_stays_a_call(mem, monkeypatch, routes_first):
    # A value the request does not state may come from the conversation or the session: the
    # call stays a call (the likeliest of those tried), never words (issue 23 item 4).
    plain = mem.plan(REQUEST, reroute_unfounded=False)
    assert plain.calls and not plain.text
    flag(monkeypatch, set(mem.bank.names))
    kept = mem.plan(REQUEST)
    assert calls(kept.steps)[:1] == calls(plain.steps)[:1] and not kept.text
    assert not any("in words" in note for note in kept.notes)


def test_words_or_a_call_follows_the_routing_probabilities(mem, monkeypatch):
    words = mem.plan(REQUEST, tool_choice="none")
    assert words.text  # its first token is not a stop, as the fallback's never is
    levers(mem, monkeypatch, fall_back_to_text=policies.FallBackToText(share=0.0))
    answered = mem.plan(REQUEST)  # any text probability is enough: words
    assert answered.calls == [] and answered.text == words.text
    levers(mem, monkeypatch, fall_back_to_text=policies.FallBackToText(share=1.1))
    assert mem.plan(REQUEST).calls  # text can never hold enough: a call
    assert mem.plan(REQUEST, tool_choice="any").calls  # only "auto" may answer in words


def test_the_text_route_is_weighed_as_a_whole_against_the_tools():
    fallback = policies.FallBackToText(share=0.5)
    # ten text tokens at 0 and one memory token at 1: the memory token is the likeliest
    # single token, but the text holds 10 / (10 + e) = 0.79 of the probability: words
    scores = torch.tensor([0.0] * 10 + [1.0])
    assert fallback.route(scores, [10], token=10, word=lambda: 3) == 3
    # one text token at 2 beats each of three tools at 1.5, but the tools hold 0.65: a call
    scores = torch.tensor([2.0, 1.5, 1.4, 1.5])
    assert fallback.route(scores, [1, 2, 3], token=0, word=lambda: 0) in (1, 3)
    assert fallback.route(scores, [], token=0, word=lambda: 0) == 0  # no tool allowed: as chosen


def test_a_founded_first_call_is_kept_and_a_later_flawed_one_never_turns_into_words(mem, monkeypatch, routes_first):
    plain = mem.plan(REQUEST, reroute_unfounded=False, max_calls=2)
    assert len(plain.calls) == 2
    flag(monkeypatch, {plain.calls[1].name} - {plain.calls[0].name})
    later = mem.plan(REQUEST, max_calls=2)
    assert later.calls and not later.text


def test_a_first_call_that_runs_away_stays_an_invalid_call(mem, monkeypatch, routes_first):
    monkeypatch.setattr(
        policies.RunawayGuard, "repeated", lambda self, tokens: (tokens[-1],) if len(tokens) >= 3 else None
    )
    stopped = mem.plan(REQUEST)
    assert stopped.finish_reason == "repetition" and "runaway string" in stopped.invalid_calls[0].reason
    assert not stopped.text


def test_a_resumed_plan_that_makes_again_the_call_it_resumes_after_ends(tiny):
    """An agent run whose model, shown a call's result, makes that very call again would
    loop (and repeat its effect): the repeat guard ends the plan there, as within a plan."""
    from agentmem.encoding import resumed_prompt_ids
    from agentmem.tools.calls import ToolCall

    mem = AgentMem(tiny, adapted=False)
    both = {
        "query": "Light on, then celsius",
        "calls": [
            {"name": "toggle_light", "arguments": {"on": True}},
            {"name": "set_unit", "arguments": {"unit": "celsius"}},
        ],
    }
    mem.learn_tools(
        [(LIGHT, [both] * 4), (UNIT, [{"query": "Use celsius", "arguments": {"unit": "celsius"}}])], epochs=5
    )
    history = [
        {"role": "user", "content": "Light on, then celsius"},
        {"role": "assistant", "content": "", "tool_calls": [{"name": "toggle_light", "args": {"on": True}}]},
        {"role": "tool", "content": "done"},
    ]
    ids, after = resumed_prompt_ids(tiny.tokenizer, history, mem.memory_token_id, mem.schemas)
    assert (after.name, after.arguments) == ("toggle_light", {"on": True})

    def resumed(previous: ToolCall):
        with decoding.MODEL_LOCK:
            batch = decoding.Batch(mem._decoder)
            (row,) = batch.add([ids], [decoding.DecodeSettings(max_calls=1)], ["Light on, then celsius"], [previous])
            while batch.rows:
                batch.step()
        return row.plan

    other = resumed(after)  # the model's next call, after a call unlike it
    (call,) = other.calls
    assert (call.name, call.arguments) != (after.name, after.arguments)
    again = resumed(ToolCall(name=call.name, arguments=call.arguments))  # the same prompt, that call just made
    assert not again.steps and any("repeat of the previous call" in note for note in again.notes)
