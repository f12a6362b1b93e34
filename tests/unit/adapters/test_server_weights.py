"""The server planning on other backbone weights (``agentmem serve --weights``, `BankRegistry`'s
``weights``) on the tiny Llama: every bank, loaded at start or at run time or added live, plans
on the one copy of its backbone at those weights, as `AgentMem.load(..., weights=...)` does, and
``/v1/models`` says which weights each bank plans with."""

from __future__ import annotations

import shutil

import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient

from agentmem import AgentMem, cli
from agentmem.adapters import bench_server
from agentmem.adapters.server import BankRegistry, create_app
from agentmem.adapters.server.responses import to_completion
from agentmem.backbone import WEIGHTS, Backbone, parse_weights

# (request body beyond model and messages, the same request as `AgentMem.plan` options)
REQUESTS = [
    ("use celsius please", {"tool_choice": "required"}, {"tool_choice": "any"}),
    ("turn the lights off", {}, {}),
    ("lights out and celsius", {"tool_choice": "required", "max_calls": 2}, {"tool_choice": "any", "max_calls": 2}),
    ("hello there", {"tool_choice": "none", "max_tokens": 6}, {"tool_choice": "none", "max_text_tokens": 6}),
]


def _answer(body: dict) -> tuple:
    """What a completion says: its calls (name, arguments as text), text, finish reasons, usage."""
    choice = body["choices"][0]
    message = choice["message"]
    calls = [(c["function"]["name"], c["function"]["arguments"]) for c in message.get("tool_calls") or []]
    usage = body["usage"]
    return calls, message["content"], choice["finish_reason"], usage["prompt_tokens"], usage["completion_tokens"]


def _as_answer(memory: AgentMem, query: str, options: dict) -> tuple:
    """`_answer` of what the server answers for `AgentMem.plan`'s plan of the same request."""
    plan = memory.plan([{"role": "user", "content": query}], resume=True, **options)
    return _answer(to_completion(plan, model="home", schemas=memory.schemas))


def test_a_bfloat16_server_plans_as_a_bank_loaded_at_bfloat16(saved_home):
    backbone, root = saved_home
    registry = BankRegistry(backbone, weights="bfloat16")
    assert registry.add_paths([root]) == ["home"]
    served = registry.get("home")
    loaded = AgentMem.load(root / "home", backbone=backbone, weights="bfloat16")
    float32 = AgentMem.load(root / "home", backbone=backbone)
    # the same bfloat16 copy of the backbone under both; the float32 bank plans on the backbone itself
    assert served.weights == loaded.weights == "bfloat16" and float32.weights == "float32"
    assert served._decoder.backbone is loaded._decoder.backbone is backbone.with_weights("bfloat16")
    assert served._decoder.backbone is not backbone and float32._decoder.backbone is backbone
    web = TestClient(create_app(registry))
    answers = []
    for query, body, options in REQUESTS:
        response = web.post(
            "/v1/chat/completions", json={"model": "home", "messages": [{"role": "user", "content": query}], **body}
        )
        assert response.status_code == 200, response.text
        answers.append(_answer(response.json()))
        assert answers[-1] == _as_answer(loaded, query, options), query
    assert answers[0][0] and answers[2][0] and answers[3][0] == [] and answers[3][4] >= 1
    models = web.get("/v1/models").json()["data"]
    assert [(m["id"], m["weights"]) for m in models] == [("home", "bfloat16")]
    assert web.get("/v1/models/home").json()["weights"] == "bfloat16"
    # a registry without weights serves folders at float32
    plain = BankRegistry(backbone)
    plain.add_paths([root])
    assert plain.models("home")[0]["weights"] == "float32" and plain.get("home")._decoder.backbone is backbone


def test_banks_on_one_backbone_share_one_planning_copy(saved_home, tmp_path):
    backbone, root = saved_home
    shutil.copytree(root / "home", tmp_path / "banks" / "home")
    shutil.copytree(root / "home", tmp_path / "banks" / "office")
    registry = BankRegistry(backbone, weights="bfloat16")
    assert registry.add_paths([tmp_path / "banks"]) == ["home", "office"]
    copy = registry.get("home")._decoder.backbone
    assert copy.weights == "bfloat16" and copy is registry.get("office")._decoder.backbone
    assert copy is backbone.with_weights("bfloat16") and registry.backbones() == 1
    # a bank loaded at run time, and a live AgentMem added (switched to the registry's weights)
    web = TestClient(create_app(registry, admin=True))
    added = web.post("/v1/banks", json={"name": "extra", "folder": "office"})
    assert added.status_code == 200 and added.json()["weights"] == "bfloat16"
    live = AgentMem(backbone)
    assert live.weights == "float32"
    assert registry.add("live", live) is live and live.weights == "bfloat16"
    planners = {id(registry.get(name)._decoder.backbone) for name in registry.names()}
    assert registry.names() == ["extra", "home", "live", "office"] and planners == {id(copy)}
    assert {m["id"]: m["weights"] for m in web.get("/v1/models").json()["data"]} == dict.fromkeys(
        registry.names(), "bfloat16"
    )
    assert web.get("/health").json()["backbones"] == 1
    # a registry without weights leaves a live AgentMem's own
    own = BankRegistry(backbone)
    assert own.add("live", live).weights == "bfloat16"


def test_bad_weights_are_a_clear_error(saved_home, capsys):
    _, root = saved_home
    assert cli.SERVE_WEIGHTS == WEIGHTS
    with pytest.raises(SystemExit) as exited:
        cli.main(["serve", str(root), "--weights", "bf16"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--weights: invalid choice: 'bf16'" in err and "'float32', 'int8', 'bfloat16'" in err
    with pytest.raises(ValueError, match="unknown backbone weights 'INT8'; allowed: float32, int8, bfloat16"):
        BankRegistry(weights="INT8")
    for text, wrong in [("bf16", "unknown value(s) bf16"), ("float32,float32", "given twice: float32"), (",", "none")]:
        with pytest.raises(ValueError, match=r"allowed, comma-separated: float32, int8, bfloat16") as caught:
            parse_weights(text)
        assert wrong in str(caught.value)
    assert parse_weights(" float32, bfloat16 ") == ["float32", "bfloat16"]
    with pytest.raises(SystemExit) as exited:
        bench_server.main(["--weights", "float32,fp8"])
    assert exited.value.code == 2 and "unknown value(s) fp8" in capsys.readouterr().err


def test_cli_serve_plans_every_bank_on_the_weights_asked(saved_home, tiny, monkeypatch, capsys):
    _, root = saved_home
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # serve sets it; restored after the test
    monkeypatch.setattr("agentmem.adaptation.resolve.load_backbone", lambda name, device=None: tiny)
    ran: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: ran.update(app=app, **kwargs))
    assert cli.main(["serve", str(root), "--weights", "bfloat16"]) == 0
    assert "1 banks (home) on 1 backbone(s), bfloat16 weights" in capsys.readouterr().out
    web = TestClient(ran["app"])
    assert web.get("/v1/models").json()["data"][0]["weights"] == "bfloat16"
    request = {"model": "home", "messages": [{"role": "user", "content": "use celsius"}], "tool_choice": "required"}
    loaded = AgentMem.load(root / "home", backbone=tiny, weights="bfloat16")
    assert _answer(web.post("/v1/chat/completions", json=request).json()) == _as_answer(
        loaded, "use celsius", {"tool_choice": "any"}
    )
    assert cli.main(["serve", str(root)]) == 0  # float32 by default
    assert "float32 weights" in capsys.readouterr().out
    assert TestClient(ran["app"]).get("/v1/models/home").json()["weights"] == "float32"


def test_cli_serve_int8_off_the_cpu_is_an_error_not_a_traceback(saved_home, tiny, monkeypatch, capsys):
    _, root = saved_home
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    # a fresh backbone (no int8 copy made yet) that says it is on a GPU
    monkeypatch.setattr("agentmem.adaptation.resolve.load_backbone", lambda name, device=None: tiny)
    monkeypatch.setattr(Backbone, "device", property(lambda self: torch.device("cuda")))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: pytest.fail("served"))
    assert cli.main(["serve", str(root), "--weights", "int8"]) == 2
    assert "agentmem serve: error: int8 weights plan on the CPU only" in capsys.readouterr().err


def test_bench_serves_each_weights_and_compares_them(saved_home, tmp_path, monkeypatch, capsys):
    backbone, root = saved_home
    memory = AgentMem.load(root / "home", backbone=backbone)
    monkeypatch.setattr(bench_server, "demo_bank", lambda backbone, examples_per_tool: memory)
    args = ["--requests", "4", "--clients", "1,2", "--max-tokens", "8", "--long-tokens", "24"]
    assert bench_server.main([*args, "--weights", "float32,bfloat16", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| weights | clients | requests | errors | differ |" in out
    rows = [line for line in out.splitlines() if line.startswith(("| float32 |", "| bfloat16 |"))]
    assert len(rows) == 8  # 2 weights x 2 levels, printed as measured, then in the table
    assert all(line.split("|")[4].strip() == "0" and line.split("|")[5].strip() == "0" for line in rows)
    assert "Requests/s with bfloat16 weights / with float32: " in out and "x at 2 clients; " in out
    assert "of 4 answers unlike float32's" in out
    assert "Head-of-line (float32 weights)" in out and "Head-of-line (bfloat16 weights)" in out
    assert memory.weights == "bfloat16"  # served last
