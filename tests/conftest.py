"""Fixtures of both trees: the real tokenizer, a tiny Llama built in code, two short tools.

The real backbone's fixtures live in tests/backbone/conftest.py, out of the unit tests' reach.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from agentmem.backbone import DEFAULT_BACKBONE, Backbone, resolve

# The repository's root, wherever a test file sits below tests/.
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tokenizer():
    """The embedded backbone's real tokenizer (from its safetensors cache)."""
    return AutoTokenizer.from_pretrained(resolve(DEFAULT_BACKBONE))


def tool_schema(name: str, properties: dict, description: str = "") -> dict:
    """A tool whose every property is required."""
    return {
        "name": name,
        "description": description,
        "parameters": {"type": "object", "properties": properties, "required": list(properties)},
    }


# Two tools with short arguments (an enum, a boolean): quick to decode on the tiny model.
UNIT = tool_schema(
    "set_unit", {"unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "Set the temperature unit."
)
LIGHT = tool_schema("toggle_light", {"on": {"type": "boolean"}}, "Switch the light on or off.")


def plan_signature(plan) -> tuple:
    """What a plan says, without its call ids and timings: its steps (kind, tool, arguments,
    raw text) and its text; two plans made alike have equal signatures."""
    steps = [(type(s).__name__, s.name, getattr(s, "arguments", None), getattr(s, "raw", None)) for s in plan.steps]
    return steps, plan.text


def tiny_backbone(tokenizer, seed: int = 0, name: str = "tiny-llama") -> Backbone:
    """A 2-layer Llama with random weights over the real tokenizer's vocabulary."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
    )
    return Backbone.from_model(LlamaForCausalLM(config), tokenizer, name=name)


@pytest.fixture
def tiny(tokenizer) -> Backbone:
    """A fresh tiny backbone per test (tests may not share mutable banks)."""
    return tiny_backbone(tokenizer)
