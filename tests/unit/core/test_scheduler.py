"""Continuous batching on a tiny Llama: the same plans as `plan`, rows joining a running batch,
a bounded queue, time limits and cancellation."""

from __future__ import annotations

import time
from concurrent.futures import CancelledError

import pytest

from agentmem import AgentMem
from agentmem.errors import OverloadedError, UnknownToolError
from tests.conftest import LIGHT, UNIT, plan_signature

REQUESTS = ["use celsius please", "turn the lights off", "fahrenheit, thanks", "lights on", "hello there"]
# Options that change each row's choices, not the forward pass: they share one batch.
OPTIONS = [
    {"tool_choice": "any", "max_calls": 2},
    {"tool_choice": "auto"},
    {"tool_choice": "set_unit", "max_calls": 1},
    {"tool_choice": "none", "max_text_tokens": 12},
    {"tools": ["toggle_light"], "tool_choice": "any", "copy_bias": 0.0},
]
LONG = {"tool_choice": "none", "max_text_tokens": 400}  # random weights never say eos: 400 tokens


@pytest.fixture
def mem(tiny) -> AgentMem:
    mem = AgentMem(tiny)
    mem.learn_tools(
        [
            (UNIT, [{"query": q, "arguments": {"unit": u}} for q, u in [("use celsius", "celsius")] * 4]),
            (LIGHT, [{"query": q, "arguments": {"on": o}} for q, o in [("lights on", True)] * 4]),
        ],
        epochs=1,
        progress=False,
    )
    return mem


def _signature(plan) -> tuple:
    return (*plan_signature(plan), plan.finish_reason, plan.usage)


def _wait(condition, seconds: float = 30.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.005)


def test_concurrent_requests_plan_as_plan_does_one_by_one(mem):
    sequential = [_signature(mem.plan(r, **o)) for r in REQUESTS for o in OPTIONS]
    futures = [mem.submit(r, **o) for r in REQUESTS for o in OPTIONS]  # 25 rows, max_batch 16: some wait
    assert [_signature(f.result(60)) for f in futures] == sequential
    assert mem.scheduler.steps < sum(s[3]["generated_tokens"] for s in sequential)  # rows shared steps


def test_a_request_joins_a_batch_already_decoding_and_leaves_it_first(mem):
    alone = [_signature(mem.plan(r, **o)) for r, o in zip(REQUESTS, OPTIONS)]
    longer = {**LONG, "max_text_tokens": 1500}  # outlasts the others, whose text may run 256 tokens
    long_alone = _signature(mem.plan(REQUESTS[0], **longer))
    long = mem.submit(REQUESTS[0], **longer)
    _wait(lambda: mem.scheduler.steps >= 20)
    short = [mem.submit(r, **o) for r, o in zip(REQUESTS, OPTIONS)]
    assert [_signature(f.result(60)) for f in short] == alone
    assert not long.done()  # the short ones did not wait for it
    assert _signature(long.result(60)) == long_alone
    assert long.result().usage["generated_tokens"] == 1500


def test_a_full_queue_refuses_with_a_retry_estimate(mem):
    mem.scheduler.max_batch, mem.scheduler.max_queue = 1, 1
    running = mem.submit(REQUESTS[0], **LONG)
    _wait(lambda: mem.scheduler.running == 1)
    # The worker admits and steps under the model lock: held here, the running request cannot
    # finish (400 tiny-model tokens take well under a second on an idle machine) and free the
    # queue while it is being filled.
    with mem.lock:
        assert mem.scheduler.running == 1
        waiting = mem.submit(REQUESTS[1])
        with pytest.raises(OverloadedError) as refused:
            mem.submit(REQUESTS[2])
    assert refused.value.retry_after >= 1 and "retry later" in str(refused.value)
    assert running.result(60).usage["generated_tokens"] == 400 and waiting.result(60).steps is not None


def test_a_time_limit_stops_decoding_with_its_reason(mem):
    plan = mem.submit(REQUESTS[0], time_limit=0.3, tool_choice="none", max_text_tokens=100_000).result(60)
    assert plan.finish_reason == "time_limit" and "time limit of 0.3 s" in plan.notes[-1]
    assert 0 < plan.usage["generated_tokens"] < 100_000 and plan.timings["total"] < 5
    # still queued when the limit passes: refused as overload, never decoded
    mem.scheduler.max_batch = 1
    first = mem.submit(REQUESTS[0], **LONG)
    late = mem.submit(REQUESTS[1], time_limit=0.05)
    with pytest.raises(OverloadedError, match="waited its whole time limit"):
        late.result(60)
    assert first.result(60).usage["generated_tokens"] == 400


def test_a_cancelled_request_stops_costing_decode_steps(mem):
    future = mem.submit(REQUESTS[0], tool_choice="none", max_text_tokens=100_000)
    scheduler = mem.scheduler
    _wait(lambda: scheduler.tokens >= 10)
    assert future.cancel()
    _wait(lambda: scheduler.running == 0, 5)
    tokens = scheduler.tokens
    time.sleep(0.3)
    assert scheduler.tokens == tokens  # nothing decodes for it any more
    with pytest.raises(CancelledError):
        future.result()
    assert mem.submit(REQUESTS[1], tool_choice="any").result(60).steps  # the scheduler carries on


def test_bad_options_fail_before_queueing_and_a_changed_bank_waits_for_the_batch(mem):
    with pytest.raises(UnknownToolError):
        mem.submit(REQUESTS[0], tool_choice="nope")
    long = mem.submit(REQUESTS[0], **LONG)
    _wait(lambda: mem.scheduler.steps >= 5)
    mem.forget("toggle_light")  # the running row keeps the bank it began with
    after = mem.submit(REQUESTS[1], tool_choice="any")
    assert long.result(60).usage["generated_tokens"] == 400
    assert {s.name for s in after.result(60).steps} <= {"set_unit"}
