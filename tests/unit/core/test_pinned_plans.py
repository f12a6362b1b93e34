"""Plans pinned token for token on a tiny Llama, levers on and off, so that a change to the
decoder that changes a plan is seen (the plans in ``pinned_plans.json`` were recorded before
the decoder became a package of named steps, and again when fall_back_to_text came to decide
from routing probabilities and the defaults were decided on real data, and the defaults' plans
when copy_bias went on by default; `python -m
tests.unit.core.test_pinned_plans` records them again, for a change that means to change plans)."""

from __future__ import annotations

import json
from pathlib import Path

from agentmem import AgentMem
from agentmem.eval.record_plans import plan_record
from agentmem.export import GREEDY_OPTIONS
from agentmem.tools import demo
from tests.conftest import tiny_backbone, tool_schema

PINNED = Path(__file__).with_name("pinned_plans.json")
REQUESTS = [
    "What's the weather in Oslo?",
    "Convert 20 EUR to USD please",
    "Remind me to call mom at 18:30",
    "Email ann@example.com about lunch",
    "What's your name?",
]
#: Every lever on (the defaults until issue 23 decided them on real data).
ON = {"copy_bias": 3.0, "drop_unfounded": True, "reroute_unfounded": True, "optional_bias": 2.0, "complete_plan": True}
#: The settings pinned: the defaults, every lever on, a call required, greedy, and each lever alone off.
SETTINGS: dict[str, dict] = {
    "defaults": {},
    "levers-on": {**ON, "fall_back_to_text": True},
    "any": {**ON, "tool_choice": "any", "max_calls": 3},
    "greedy": dict(GREEDY_OPTIONS),
    "no-reroute": {**ON, "reroute_unfounded": False},
    "no-copy": {**ON, "copy_bias": 0.0, "tool_choice": "any"},
    "no-optional": {**ON, "optional_bias": 0.0, "drop_unfounded": False, "tool_choice": "any"},
}


# Short arguments (enums, a number) whose calls close on the tiny model, so that calls are
# rerouted (a level the request does not hold), completed and repeated.
LAMP = tool_schema("set_lamp", {"color": {"type": "string", "enum": ["red", "blue"]}})
FAN = tool_schema("set_fan", {"speed": {"type": "string", "enum": ["low", "high"]}})
VOLUME = tool_schema("set_volume", {"level": {"type": "integer"}})
SWITCH_REQUESTS = [
    "Switch the lamp to blue and the fan to high.",
    "Volume to 7, please.",
    "Fan to low and volume 12.",
    "Make the lamp red.",
]


# Rows learned as when the plans were pinned (this test pins decoding; `lr_schedule` went
# linear by default on 2026-12-07, which learns other rows).
LEARNING = {"lr_schedule": "constant", "progress": False}


def plans(tiny) -> dict[str, dict[str, list[dict]]]:
    out = {}
    mem = AgentMem(tiny)
    names = ["get_weather", "convert_currency", "create_reminder"]
    mem.learn_tools([(demo.TOOLS[n], demo.training_examples(n, n=8)) for n in names], epochs=2, **LEARNING)
    out["demo"] = {n: [plan_record(p) for p in mem.plan_batch(REQUESTS, **o)] for n, o in SETTINGS.items()}
    mem = AgentMem(tiny)
    pack = [
        (LAMP, [{"query": f"Lamp to {c}.", "arguments": {"color": c}} for c in ("red", "blue")]),
        (FAN, [{"query": f"Fan to {v}.", "arguments": {"speed": v}} for v in ("low", "high")]),
        (VOLUME, [{"query": f"Volume {v}.", "arguments": {"level": v}} for v in (3, 9)]),
    ]
    mem.learn_tools(pack, epochs=1, **LEARNING)
    out["switches"] = {n: [plan_record(p) for p in mem.plan_batch(SWITCH_REQUESTS, **o)] for n, o in SETTINGS.items()}
    return out


def test_plans_are_the_pinned_ones(tiny):
    assert plans(tiny) == json.loads(PINNED.read_text(encoding="utf-8"))


if __name__ == "__main__":
    from transformers import AutoTokenizer

    from agentmem.backbone import DEFAULT_BACKBONE, resolve

    recorded = plans(tiny_backbone(AutoTokenizer.from_pretrained(resolve(DEFAULT_BACKBONE))))
    PINNED.write_text(json.dumps(recorded, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
