from __future__ import annotations

import json

import pytest

from agentmem import AgentMem, cli
from agentmem.chat import plan_from_dict
from agentmem.tools import demo


def test_info_describes_a_bank(tiny, tmp_path, capsys):
    mem = AgentMem(tiny)
    mem.learn_tool(demo.TOOLS["get_weather"], demo.training_examples("get_weather", n=4), epochs=1, progress=False)
    path = mem.save(tmp_path / "bank")
    assert cli.main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "1 tools on backbone tiny-llama" in out and "get_weather" in out and "4 examples" in out


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert cli.main(["info", str(tmp_path / "nowhere")]) == 2
    assert "no memory bank" in capsys.readouterr().err
    bad = tmp_path / "tools.json"
    bad.write_text(json.dumps({"tool": {}}))
    assert cli.main(["learn", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "must hold a JSON list" in capsys.readouterr().err
    bad.write_text("{broken")
    assert cli.main(["learn", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert "error" in capsys.readouterr().err


def test_plan_json_is_the_chat_boundarys_dict(tiny, tmp_path, capsys):
    folder = tmp_path / "tiny"  # the tiny model as a backbone folder, so that the saved bank can name it
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    mem = AgentMem(str(folder), adapted=False)
    mem.learn_tool(demo.TOOLS["get_weather"], demo.training_examples("get_weather", n=2), epochs=1, progress=False)
    path = mem.save(tmp_path / "bank")
    assert cli.main(["plan", str(path), "weather in Oslo", "--tool-choice", "any", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"tool_calls", "invalid_tool_calls", "text", "finish_reason", "usage", "timings", "notes"}
    for call in printed["tool_calls"]:
        assert call["type"] == "function" and call["function"]["name"] == "get_weather"
        assert isinstance(json.loads(call["function"]["arguments"]), dict)
    for call in printed["invalid_tool_calls"]:
        assert call["function"]["name"] == "get_weather" and call["error"]
    plan = plan_from_dict(printed)
    assert len(plan.steps) == len(printed["tool_calls"]) + len(printed["invalid_tool_calls"]) >= 1

    # the decoding levers reach the library as its own options
    levers = ["--copy-bias", "0", "--optional-bias", "0", "--keep-unfounded", "--no-reroute"]
    assert cli.main(["plan", str(path), "weather in Oslo", "--tool-choice", "any", "--json", *levers]) == 0
    printed = plan_from_dict(json.loads(capsys.readouterr().out))
    expected = AgentMem.load(path).plan(
        "weather in Oslo",
        tool_choice="any",
        copy_bias=0,
        optional_bias=0,
        drop_unfounded=False,
        reroute_unfounded=False,
    )
    assert [(s.name, getattr(s, "arguments", s.raw)) for s in printed.steps] == [
        (s.name, getattr(s, "arguments", s.raw)) for s in expected.steps
    ]


def test_learn_skips_invalid_examples_when_asked_and_defers_to_the_library(tiny, tmp_path, capsys):
    folder = tmp_path / "tiny"
    tiny.model.save_pretrained(folder)
    tiny.tokenizer.save_pretrained(folder)
    examples = demo.training_examples("get_weather", n=4)
    examples[1] = {"query": "weather for booking 17", "arguments": {"city": 17}}
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"tool": demo.TOOLS["get_weather"], "examples": examples}]))
    argv = ["learn", str(tools), "--backbone", str(folder), "--out", str(tmp_path / "bank")]
    assert cli.main(argv) == 2  # strict by default: the bad example is named
    assert "example 1" in capsys.readouterr().err
    assert cli.main([*argv, "--skip-invalid", "--epochs", "1", "--averaged-runs", "2", "--lr-schedule", "linear"]) == 0
    out = capsys.readouterr().out
    assert "skipped 1 invalid examples" in out and "example 1" in out and "from 3 examples" in out
    assert "2 runs averaged" in out
    training = json.loads((tmp_path / "bank" / "bank.json").read_text())["tools"][0]["training"]
    assert training["epochs"] == 1 and training["lr"] == 5e-3  # --lr not given: TrainConfig's
    assert training["averaged_runs"] == 2 and training["lr_schedule"] == "linear"


@pytest.mark.parametrize("command", ["learn", "eval"])
def test_the_cli_offers_the_library_s_learning_rate_schedules(command, capsys):
    # The CLI must not import torch, so it writes the names out; they must not drift from training's.
    from agentmem.training import LR_SCHEDULES

    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    assert "--lr-schedule {" + ",".join(LR_SCHEDULES) + "}" in capsys.readouterr().out
