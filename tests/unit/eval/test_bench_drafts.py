"""The drafts bench: every setting against no drafts, plans compared."""

from __future__ import annotations

from agentmem import AgentMem
from agentmem.eval.bench_drafts import SETTINGS, BodyClock, measure
from agentmem.tools import demo


def test_each_setting_is_measured_against_no_drafts(tiny):
    mem = AgentMem(tiny)
    mem.learn_tools(
        [(demo.TOOLS[n], demo.training_examples(n, n=4)) for n in ("get_weather", "create_reminder")],
        epochs=1,
        progress=False,
    )
    requests = ["What's the weather in Oslo?", "Remind me to call mom at 18:30"]

    def plan(reqs, options):
        return mem.plan_batch(reqs, tool_choice="any", **options)

    clock = BodyClock(mem)
    rows, base = measure(plan, requests, repeats=1, clock=clock)
    assert [row[0] for row in rows] == list(SETTINGS)
    assert rows[0][3] == "1.00"
    assert all(row[2] == rows[0][2] for row in rows)  # the same tokens chosen
    assert all(row[-1] == "none" for row in rows)  # and the same plans
    assert rows[-1][1] < rows[0][1]  # in fewer passes
    assert all(float(row[6]) > 0 and float(row[7]) > 0 for row in rows)  # a pass's ms in the body and outside


def test_transformers_attention_plans_the_same_against_the_same_baseline(tiny):
    mem = AgentMem(tiny)
    mem.learn_tools([(demo.TOOLS["get_weather"], demo.training_examples("get_weather", n=4))], epochs=1, progress=False)
    requests = ["What's the weather in Oslo?", "Weather in Lima in celsius"]

    def plan(reqs, options):
        return mem.plan_batch(reqs, tool_choice="any", **options)

    clock = BodyClock(mem)
    ours, base = measure(plan, requests, repeats=1, clock=clock)
    tiny.model.set_attn_implementation("sdpa")
    theirs, same_base = measure(plan, requests, repeats=1, clock=clock, base=base, prefix="sdpa: ")
    assert same_base == base
    assert [row[0] for row in theirs] == [f"sdpa: {label}" for label in SETTINGS]
    assert all(row[-1] == "none" for row in theirs)  # the plans of our attention's no-drafts row
