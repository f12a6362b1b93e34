from __future__ import annotations

import json

from agentmem import AgentMem, cli
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
