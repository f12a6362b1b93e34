"""One source for the planning options: `DecodeSettings` and what is derived from it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import fields

import pytest

from agentmem import cli
from agentmem.core import REQUEST_OPTIONS, AgentMem, PlanOptions
from agentmem.decoding import LEVERS, OPTIONS, PRESETS, DecodeSettings, preset_options
from agentmem.decoding.policies import Policies
from agentmem.eval import bench_decoding
from agentmem.export import GREEDY_OPTIONS
from tests.conftest import ROOT


def test_plan_options_are_the_settings_and_the_request_options():
    names = [f.name for f in fields(DecodeSettings)] + [name for name, _ in REQUEST_OPTIONS]
    assert sorted(PlanOptions.__annotations__) == sorted(names)
    assert "max_argument_tokens" in PlanOptions.__annotations__  # every setting is reachable from plan
    for name in names:  # and the docstring lists each
        assert f"{name}: " in (AgentMem.plan.__doc__ or "")


def test_the_options_keep_their_names_and_defaults():
    assert {f.name: f.default for f in OPTIONS} == {
        "tool_choice": "auto",
        "tools": None,
        "max_calls": 8,
        "max_argument_tokens": 128,
        "max_text_tokens": 256,
        "constrained": True,
        "jump_forward": True,
        "copy_drafts": True,
        "copy_bias": 3.0,
        "drop_unfounded": False,
        "reroute_unfounded": False,
        "optional_bias": 0.0,
        "complete_plan": False,
        "fall_back_to_text": False,
        "route_by_last_turn": True,
        "unique_enum_items": True,
        "strip_leading_space": True,
    }
    assert all(f.metadata["help"] for f in OPTIONS)
    assert PRESETS["defaults"] == DecodeSettings()


def test_greedy_is_every_lever_off_and_no_schema():
    # every lever named, whatever the defaults are (an export's plans must not move with them)
    assert preset_options("greedy").items() <= GREEDY_OPTIONS.items()
    assert set(GREEDY_OPTIONS) == {"constrained", *LEVERS}
    assert not any(GREEDY_OPTIONS.values())
    assert preset_options("defaults") == {}


def test_the_bench_varies_every_lever_under_its_old_flags():
    assert [option for option, _, _ in bench_decoding.LEVERS] == list(LEVERS)
    assert bench_decoding.LEVERS[2] == ("reroute_unfounded", "--reroute", "reroute")
    assert bench_decoding.LEVERS[0] == ("copy_bias", "--copy-bias", "copy_bias")


def test_every_setting_has_a_plan_flag_and_the_old_flags_still_work():
    parser = argparse.ArgumentParser()
    cli._add_plan_options(parser)
    none = vars(parser.parse_args([]))
    assert set(none) == {f.name for f in OPTIONS} and not any(v is not None for v in none.values())
    given = vars(
        parser.parse_args(
            "--max-argument-tokens 40 --tools a,b --keep-unfounded --no-reroute --no-fall-back-to-text "
            "--copy-bias 0 --tool-choice any".split()
        )
    )
    assert given["max_argument_tokens"] == 40 and given["tools"] == ["a", "b"] and given["tool_choice"] == "any"
    assert given["drop_unfounded"] is False and given["reroute_unfounded"] is False
    assert given["fall_back_to_text"] is False and given["copy_bias"] == 0.0
    assert vars(parser.parse_args(["--no-drop-unfounded"]))["drop_unfounded"] is False
    # a lever off by default is switched on by its own name
    on = vars(parser.parse_args(["--reroute-unfounded", "--fall-back-to-text"]))
    assert on["reroute_unfounded"] is True and on["fall_back_to_text"] is True


@pytest.mark.parametrize(
    ("changes", "on"),
    [
        ({"fall_back_to_text": True}, True),
        ({"fall_back_to_text": True, "reroute_unfounded": True}, True),
        ({"fall_back_to_text": True, "tool_choice": "any"}, False),  # text may not answer
        ({}, False),  # off by default
    ],
)
def test_fall_back_to_text_is_assembled_only_with_what_it_needs(changes, on):
    policies = Policies.assemble(DecodeSettings(**changes), _every())
    assert (policies.fall_back_to_text is not None) == on
    assert (policies.reroute is not None) == changes.get("reroute_unfounded", False)


def _every() -> Policies:
    from agentmem.decoding import policies

    return Policies(
        runaway=policies.RunawayGuard(),
        repeat=policies.RepeatGuard(),
        strip_leading_space=policies.StripLeadingSpace(),
        drop_unfounded=policies.DropUnfounded(),
        reroute=policies.Reroute(),
        complete_plan=policies.CompletePlan(),
        fall_back_to_text=policies.FallBackToText(),
    )


@pytest.mark.parametrize(
    "module",
    [
        "agentmem.decoding",
        "agentmem.decoding.settings",
        "agentmem.decoding.processors",
        "agentmem.decoding.policies",
        "agentmem.decoding.state",
        "agentmem.decoding.batch",
        "agentmem.decoding.machine",
        "agentmem.jsonscan",
        "agentmem.copying",
        "agentmem.grammar",
    ],
)
def test_each_decoding_module_imports_alone(module):
    subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, check=True)


def test_the_settings_load_without_torch():
    code = "import sys, agentmem.decoding.settings, agentmem.cli; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
