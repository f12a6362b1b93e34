"""The decoding loop on a tiny Llama: tool_choice, restrictions, limits, messages, batching."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from agentmem import AgentMem
from agentmem.decoding import DecodeSettings, Row
from agentmem.decoding.batch import Scores
from agentmem.decoding.policies import RunawayGuard
from agentmem.tools import demo
from agentmem.tools.calls import InvalidToolCall, ToolCall
from tests.conftest import plan_signature

REQUESTS = [
    "What's the weather in Oslo?",
    "Convert 20 EUR to USD please",
    "Remind me to call mom at 18:30",
    "Email ann@example.com about lunch",
]


@pytest.fixture
def mem(tiny) -> AgentMem:
    mem = AgentMem(tiny)
    names = ["get_weather", "convert_currency", "create_reminder"]
    mem.learn_tools([(demo.TOOLS[n], demo.training_examples(n, n=8)) for n in names], epochs=2, progress=False)
    return mem


def test_every_step_is_a_valid_or_invalid_call_never_an_exception(mem):
    for plan in mem.plan_batch(REQUESTS, tool_choice="any", max_calls=3):
        assert plan.steps, "tool_choice='any' must produce at least one call"
        for step in plan.steps:
            assert isinstance(step, (ToolCall, InvalidToolCall))
            if isinstance(step, InvalidToolCall):
                assert step.reason
            else:
                spec = {t.name: t for t in mem.tools}[step.name]
                assert spec.validate_arguments(step.arguments) is None
        assert plan.usage["prompt_tokens"] > 0 and plan.usage["generated_tokens"] > 0
        assert plan.finish_reason in ("stop", "max_calls", "length", "repetition")


def test_tool_choice_none_never_calls(mem):
    plan = mem.plan(REQUESTS[0], tool_choice="none")
    assert plan.steps == []


def test_named_tool_choice_comes_first_and_tools_restrict_routing(mem):
    for request in REQUESTS:
        plan = mem.plan(request, tool_choice="create_reminder", max_calls=2)
        assert plan.steps[0].name == "create_reminder"
        only = mem.plan(request, tool_choice="any", tools=["convert_currency"], max_calls=3)
        assert only.steps and {s.name for s in only.steps} == {"convert_currency"}


def test_max_calls_limits_the_plan(mem):
    for plan in mem.plan_batch(REQUESTS, tool_choice="any", max_calls=1):
        assert len(plan.steps) == 1
        assert plan.finish_reason in ("max_calls", "length", "repetition")


def test_batch_equals_one_by_one(mem):
    batch = mem.plan_batch(REQUESTS, tool_choice="any", max_calls=2, batch_size=4)
    single = [mem.plan(r, tool_choice="any", max_calls=2) for r in REQUESTS]
    assert [plan_signature(p) for p in batch] == [plan_signature(p) for p in single]


def test_scores_computed_only_where_a_step_reads_them_keep_the_plans(mem, monkeypatch):
    # the LM head's whole product only at positions whose step reads every score (a string
    # going on, a plan's first routing with text allowed): the plans of every score computed
    options = {"max_calls": 2, "max_text_tokens": 8}
    plans = [plan_signature(p) for p in mem.plan_batch(REQUESTS, **options)]
    anyway = [plan_signature(p) for p in mem.plan_batch(REQUESTS, tool_choice="any", **options)]
    computed = {"whole": 0, "few": 0}
    reads_all = mem._decoder.reads_all

    def counted(row):
        whole = reads_all(row)
        computed["whole"] += sum(whole)
        computed["few"] += len(whole) - sum(whole)
        return [True] * len(whole)

    monkeypatch.setattr(mem._decoder, "reads_all", counted)
    assert [plan_signature(p) for p in mem.plan_batch(REQUESTS, **options)] == plans
    assert [plan_signature(p) for p in mem.plan_batch(REQUESTS, tool_choice="any", **options)] == anyway
    assert computed["few"] and computed["whole"]  # both kinds of step were met


def test_messages_with_earlier_calls_and_results(mem):
    messages = [
        {"role": "user", "content": "What's the weather in Oslo? Then remind me to pack at 07:00."},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 4, "condition": "rain"}'},
    ]
    plan = mem.plan(messages, tool_choice="any", max_calls=1)
    assert len(plan.steps) == 1
    with pytest.raises(Exception, match="send_email"):
        mem.plan([messages[0], {"role": "assistant", "tool_calls": [{"name": "send_email", "args": {}}]}])


def test_unknown_tool_choice_is_a_clear_error(mem):
    with pytest.raises(KeyError, match="nope"):
        mem.plan("hi", tool_choice="nope")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run on a GPU machine)")
def test_on_cuda_constrained_planning_gives_calls_not_exceptions(tiny):
    tiny.model.to("cuda")
    mem = AgentMem(tiny)
    mem.learn_tools(
        [(demo.TOOLS[n], demo.training_examples(n, n=8)) for n in ("get_weather", "create_reminder")],
        epochs=2,
        progress=False,
    )
    # the grammar's token mask is filled on the CPU and must be applied where the logits are
    for plan in mem.plan_batch(REQUESTS, tool_choice="any", max_calls=2):
        assert plan.steps
        for step in plan.steps:
            assert isinstance(step, ToolCall) or step.reason
            if isinstance(step, ToolCall):
                assert {t.name: t for t in mem.tools}[step.name].validate_arguments(step.arguments) is None


def test_runaway_string_stops_early_as_an_invalid_call_with_its_reason(mem):
    plans = mem.plan_batch(REQUESTS, tool_choice="any", max_calls=2)
    runaway = [p for p in plans if p.finish_reason == "repetition"]
    assert runaway, "the tiny model repeats itself inside a string on these requests"
    for plan in runaway:
        step = plan.steps[-1]
        assert isinstance(step, InvalidToolCall) and "runaway string" in step.reason and "kept repeating" in step.reason
        assert plan.usage["generated_tokens"] < 128  # stopped well before the argument bound


def test_runaway_detection_spares_short_repeats():
    assert RunawayGuard().repeated([5] * 16) == (5,)
    assert RunawayGuard().repeated([1, 2] * 8) == (1, 2)
    assert RunawayGuard().repeated(list(range(8)) * 3) == tuple(range(8))
    assert RunawayGuard().repeated([5] * 15) is None  # "1000000000000000" is a number, not a runaway
    assert RunawayGuard().repeated([1, 2, 3] * 4) is None
    assert RunawayGuard().repeated([9, 1, 2] + [1, 2] * 6) is None


def _argument_row(mem, tool: str, text: str, source: str = "") -> Row:
    """A row writing ``tool``'s arguments, ``text`` so far (its tokens too: the copy bias
    reads their bytes), with the request ``source``; schema-free JSON grammar."""
    decoder = mem._decoder
    state = Row(prompt_tokens=1, view=decoder.view(), mode="arguments", tool=tool, source=source, text=text)
    state.pending = mem.backbone.tokenizer.encode(text)
    state.matcher = decoder.grammar.unconstrained().matcher()
    return state


def _token(decoder, state: Row, scores: torch.Tensor, settings: DecodeSettings) -> tuple[int, str]:
    """The argument token the decoder chooses for ``state`` under ``settings`` from ``scores``
    (every column's: the hidden state they would come from is never read)."""
    state.settings = settings
    hidden = torch.zeros(decoder.backbone.hidden_size)
    return decoder._argument_token(state, Scores(decoder.backbone, state.view.rows, hidden, scores))


def test_a_token_starting_a_result_reference_is_passed_over(mem):
    tokenizer = mem.backbone.tokenizer
    decoder = mem._decoder
    state = _argument_row(mem, "create_reminder", '{"text":"$')
    scores = torch.zeros(mem.backbone.vocab_size + len(mem.bank))
    var, other = tokenizer.encode("var")[0], tokenizer.encode("pack")[0]
    scores[var], scores[other] = 10.0, 5.0
    token, piece = _token(decoder, state, scores, DecodeSettings())
    assert token == other and piece == "pack"
    state.text = '{"text":"'  # "var" alone starts no reference
    assert _token(decoder, state, scores, DecodeSettings())[0] == var


def test_copy_bias_favours_continuing_the_request(mem):
    tokenizer = mem.backbone.tokenizer
    decoder = mem._decoder
    state = _argument_row(mem, "create_reminder", '{"text":"pack an', source="remind me to pack an umbrella")
    scores = torch.zeros(mem.backbone.vocab_size + len(mem.bank))
    umbrella, coat = tokenizer.encode(" umbrella")[0], tokenizer.encode(" coat")[0]
    scores[umbrella], scores[coat] = 4.0, 5.0
    assert _token(decoder, state, scores, DecodeSettings(copy_bias=0))[0] == coat
    assert _token(decoder, state, scores, DecodeSettings(copy_bias=2.0))[0] == umbrella
    closing = tokenizer.encode('"')[0]
    scores[closing] = 6.0  # the model ends the value here: the bonus does not drag it on
    assert _token(decoder, state, scores, DecodeSettings(copy_bias=2.0))[0] == closing


DOORS = ["driver", "passenger", "rear_left", "rear_right"]


def _door_locker(tokenizer) -> AgentMem:
    """A tiny model (seed 2) that learned ``lock_doors``, whose ``door`` is an array of enum
    strings; left alone it repeats "passenger" until the runaway guard stops it."""
    from tests.conftest import tiny_backbone

    lock = {
        "name": "lock_doors",
        "description": "Lock doors.",
        "parameters": {
            "type": "object",
            "properties": {"door": {"type": "array", "items": {"type": "string", "enum": DOORS}}},
            "required": ["door"],
        },
    }
    mem = AgentMem(tiny_backbone(tokenizer, seed=2), adapted=False)
    mem.learn_tools([(lock, [{"query": "Lock every door", "arguments": {"door": DOORS}}])], epochs=1, progress=False)
    return mem


def test_a_bonus_does_not_outbid_unique_enum_items(tokenizer):
    """The guards walk down from the argmax after the bonuses: a copy bonus to a door the
    array already holds must not make it the token written."""
    mem = _door_locker(tokenizer)
    state = _argument_row(mem, "lock_doors", '{"door":["passenger","', source="Lock the passenger door")
    scores = torch.zeros(mem.backbone.vocab_size + len(mem.bank))
    passenger, driver = tokenizer.encode("passenger")[0], tokenizer.encode("driver")[0]
    scores[passenger], scores[driver] = 4.0, 5.0
    settings = DecodeSettings(copy_bias=3.0, unique_enum_items=True)
    assert _token(mem._decoder, state, scores, replace(settings, unique_enum_items=False))[0] == passenger
    assert _token(mem._decoder, state, scores, settings)[0] == driver
    # every door in: a comma would open a fifth item that no door can fill; the array closes
    state = _argument_row(mem, "lock_doors", '{"door":["driver","passenger","rear_left","rear_right', source="")
    scores = torch.zeros(mem.backbone.vocab_size + len(mem.bank))
    comma, close = tokenizer.encode('",')[0], tokenizer.encode('"]')[0]
    assert tokenizer.decode([comma]) == '",' and tokenizer.decode([close]) == '"]'
    scores[comma], scores[close] = 5.0, 4.0
    assert _token(mem._decoder, state, scores, settings)[0] == close


def test_unique_enum_items_never_writes_an_enum_value_twice_in_an_array(tokenizer):
    mem = _door_locker(tokenizer)
    options = {"tool_choice": "lock_doors", "max_calls": 1}
    off = mem.plan("Lock the doors", unique_enum_items=False, **options)
    assert isinstance(off.steps[0], InvalidToolCall) and "repeating" in off.steps[0].reason
    on = mem.plan("Lock the doors", **options)  # on by default
    assert plan_signature(on) == plan_signature(mem.plan("Lock the doors", unique_enum_items=True, **options))
    call = on.steps[0]
    assert isinstance(call, ToolCall) and sorted(call.arguments["door"]) == sorted(DOORS)  # each once, then closed
    # the same plan on every path: batched, scheduled, and with copy drafts verified token by token
    assert plan_signature(mem.plan_batch(["Lock the doors"], unique_enum_items=True, **options)[0]) == plan_signature(
        on
    )
    submitted = mem.submit("Lock the doors", unique_enum_items=True, **options).result(timeout=60)
    assert plan_signature(submitted) == plan_signature(on)
    drafted = mem.plan("Lock the doors", unique_enum_items=True, copy_drafts=True, jump_forward=False, **options)
    assert plan_signature(drafted) == plan_signature(on)
