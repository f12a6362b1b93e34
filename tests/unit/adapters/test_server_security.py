"""The server's defaults and its answers to hostile input, one test per finding of issue 16:
admin endpoints off unless asked for, an API key on every route but /health, banks loaded at
run time only by folder name from the served folders and only onto backbones already held,
hidden (crashed-save) folders never served, tool_choice shapes and lone surrogates as 400s."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import openai
import pytest
import uvicorn
from fastapi.testclient import TestClient

from agentmem import AgentMem, cli
from agentmem.adapters import server
from agentmem.adapters.server import API_KEY_ENV, BankRegistry, create_app
from tests.conftest import LIGHT, tiny_backbone

KEY = "sk-test-0123456789"
OK = {"model": "home", "messages": [{"role": "user", "content": "use celsius"}], "max_tokens": 2}


@pytest.fixture
def root(saved_home, tmp_path) -> Path:
    """A folder of banks of this test's own (tests add banks to it)."""
    copy = tmp_path / "served"
    shutil.copytree(saved_home[1], copy)
    return copy


@pytest.fixture
def registry(saved_home, root) -> BankRegistry:
    registry = BankRegistry(saved_home[0])
    assert registry.add_paths([root]) == ["home"]
    return registry


def _error(response, status: int, code: str | None = None, param: str | None = None) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert code is None or error["code"] == code, error
    assert param is None or error["param"] == param, error
    return error["message"]


def test_admin_endpoints_are_off_by_default_and_logged_when_on(registry, caplog):
    web = TestClient(create_app(registry))
    assert web.post("/v1/banks", json={"name": "home"}).status_code in (404, 405)
    assert web.delete("/v1/banks/home").status_code in (404, 405)
    assert registry.names() == ["home"]
    with caplog.at_level(logging.WARNING, logger=server.__name__):
        admin = TestClient(create_app(registry, admin=True))
    assert any("admin endpoints are on" in r.message and "no API key" in r.message for r in caplog.records)
    assert admin.post("/v1/banks", json={"name": "again", "folder": "home"}).status_code == 200
    assert admin.delete("/v1/banks/again").json()["deleted"] is True


def test_api_key_is_required_everywhere_but_health(registry):
    web = TestClient(create_app(registry, admin=True, api_key=KEY))
    requests = [
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/home", None),
        ("POST", "/v1/chat/completions", OK),
        ("POST", "/v1/banks", {"name": "x", "folder": "home"}),
        ("DELETE", "/v1/banks/home", None),
        ("GET", "/docs", None),
        ("GET", "/openapi.json", None),
        ("GET", "/v1/nothing-here", None),
    ]
    wrong = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": KEY},
        {"Authorization": f"Bearer {KEY}x"},
        {"Authorization": f"Bearer {KEY[:-1]}"},
        {"X-Api-Key": KEY},
    ]
    for method, path, body in requests:
        for headers in wrong:
            response = web.request(method, path, json=body, headers=headers)
            _error(response, 401, code="invalid_api_key")
            assert response.headers["www-authenticate"] == "Bearer"
    assert registry.names() == ["home"]  # the DELETE above did nothing
    assert web.get("/health").json()["status"] == "ok"
    good = {"Authorization": f"Bearer {KEY}"}
    assert web.get("/v1/models", headers=good).json()["data"][0]["id"] == "home"
    assert (
        web.get("/v1/models", headers={"Authorization": f"bearer {KEY}"}).status_code == 200
    )  # the scheme is case-free
    # the OpenAI client sends the key as a bearer token
    client = openai.OpenAI(base_url="http://testserver/v1", api_key=KEY, http_client=web, max_retries=0)
    assert client.chat.completions.create(**OK).choices[0].message is not None
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url="http://testserver/v1", api_key="nope", http_client=web, max_retries=0).models.list()


def test_banks_load_at_run_time_by_folder_name_from_the_served_folders_only(registry, root, saved_home, tmp_path):
    web = TestClient(create_app(registry, admin=True))
    outside = tmp_path / "outside"
    shutil.copytree(root / "home", outside / "elsewhere")
    (root / "linked").symlink_to(outside / "elsewhere", target_is_directory=True)  # a link out of the root
    (outside / "secret").mkdir()
    messages = []
    for body in [{"name": "x", "path": str(outside / "elsewhere")}, {"name": "x", "path": "/etc"}]:
        messages.append(_error(web.post("/v1/banks", json=body), 400, param="path"))
    not_found = set()
    for folder in [
        "etc",
        "root",
        ".ssh",
        "..",
        ".",
        "secret",
        "elsewhere",
        "linked",
        "nowhere",
        "../outside/elsewhere",
        "/etc",
        str(outside / "elsewhere"),
        "home/..",
        "home/",
        "~",
        "%2e%2e",
    ]:
        response = web.post("/v1/banks", json={"name": "x", "folder": folder})
        assert response.status_code in (400, 404), (folder, response.text)
        messages.append(_error(response, response.status_code, param="folder"))
        if response.status_code == 404:
            not_found.add(messages[-1].replace(repr(folder), "F"))
    assert len(not_found) == 1  # one answer whatever the reason: missing, not a bank, or a link out
    for message in messages:  # nothing about what exists where
        assert str(tmp_path) not in message and "bank.json" not in message and "missing" not in message, message
    assert registry.names() == ["home"]
    # a folder added to a served folder after start is found by its name
    shutil.copytree(root / "home", root / "later")
    assert web.post("/v1/banks", json={"name": "later"}).json()["tools"] == ["set_unit", "toggle_light"]
    assert registry.get("later").backbone is saved_home[0]


def test_a_bank_on_a_backbone_the_server_lacks_is_refused_without_loading_it(registry, root, tokenizer):
    web = TestClient(create_app(registry, admin=True))
    other = AgentMem(tiny_backbone(tokenizer, seed=1, name="other-llama"))
    other.learn_tools([(LIGHT, [{"query": "lights on", "arguments": {"on": True}}] * 2)], epochs=1, progress=False)
    other.save(root / "other")
    message = _error(web.post("/v1/banks", json={"name": "other"}), 400, code="backbone_not_served")
    assert "'other-llama'" in message and "does not run" in message
    # a hub id inside bank.json is never fetched: refused on its fingerprint before any load
    shutil.copytree(root / "home", root / "hub")
    meta = json.loads((root / "hub" / "bank.json").read_text())
    meta["backbone"].update(name="someone/some-model", fingerprint="0" * 16)
    (root / "hub" / "bank.json").write_text(json.dumps(meta))
    _error(web.post("/v1/banks", json={"name": "hub"}), 400, code="backbone_not_served")
    assert registry.names() == ["home"] and registry.backbones() == 1


def test_a_broken_bank_is_a_400_naming_its_folder_only_and_the_old_bank_keeps_serving(registry, root):
    web = TestClient(create_app(registry, admin=True))
    before = web.get("/v1/models").json()
    shutil.copytree(root / "home", root / "broken")
    meta = json.loads((root / "broken" / "bank.json").read_text())
    meta["tools"][0]["training"] = "ab"
    (root / "broken" / "bank.json").write_text(json.dumps(meta))
    message = _error(web.post("/v1/banks", json={"name": "home", "folder": "broken"}), 400, code="bank_error")
    assert (
        message.startswith("broken/bank.json is corrupted: tools[0].training must be an object")
        and str(root) not in message
    )
    assert web.get("/v1/models").json() == before
    assert web.post("/v1/chat/completions", json=OK).status_code == 200


def test_hidden_folders_left_by_crashed_saves_are_not_banks(saved_home, root, monkeypatch, capsys):
    shutil.copytree(root / "home", root / ".home-tmp-abc123")  # a whole bank, mid-rename
    (root / ".travel-tmp-x1").mkdir()
    (root / ".travel-tmp-x1" / "bank.json").write_text('{"format_version": 2, "tools": [')  # half written
    (root / ".travel-tmp-x1" / "bank.safetensors").write_bytes(b"")
    registry = BankRegistry(saved_home[0])
    assert registry.add_paths([root]) == ["home"]
    web = TestClient(create_app(registry, admin=True))
    _error(web.post("/v1/banks", json={"name": "x", "folder": ".home-tmp-abc123"}), 400, param="folder")
    monkeypatch.setattr("agentmem.adaptation.resolve.load_backbone", lambda name, device=None: saved_home[0])
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: None)
    assert cli.main(["serve", str(root)]) == 0
    assert "1 banks (home)" in capsys.readouterr().out


def test_every_tool_choice_shape_is_checked(registry):
    web = TestClient(create_app(registry))
    bad = [
        "sometimes",
        "",
        5,
        True,
        [],
        ["auto"],
        {},
        {"type": "function"},
        {"type": "function", "function": "set_unit"},
        {"type": "function", "function": None},
        {"type": "function", "function": []},
        {"type": "function", "function": {}},
        {"type": "function", "function": {"name": 5}},
        {"type": "function", "function": {"name": ["set_unit"]}},
        {"type": "function", "function": {"name": {"x": 1}}},
        {"function": {"name": "set_unit"}},
        {"type": "tool", "function": {"name": "set_unit"}},
        {"type": "allowed_tools", "allowed_tools": {"mode": "auto"}},
        {"type": "function", "function": {"name": "book_table"}},
    ]
    for choice in bad:
        _error(web.post("/v1/chat/completions", json={**OK, "tool_choice": choice}), 400, param="tool_choice")
    for choice in ["auto", "none", "required", None, {"type": "function", "function": {"name": "toggle_light"}}]:
        assert web.post("/v1/chat/completions", json={**OK, "tool_choice": choice}).status_code == 200, choice


def test_text_with_lone_surrogates_is_a_400_naming_the_field(registry):
    web = TestClient(create_app(registry))
    body = json.dumps(OK)
    cases = {
        body.replace("use celsius", "use \\ud800 celsius"): "messages[0].content",
        body.replace('"use celsius"', '[{"type": "text", "text": "x\\udfff"}]'): "messages[0].content[0].text",
        body.replace('"home"', '"ho\\ud800me"'): "model",
        body.replace(
            "}]",
            '}, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": '
            '{"name": "set_unit", "arguments": {"unit": "\\ud800"}}}]}]',
        ): "messages[1].tool_calls[0].function.arguments.unit",
        body.replace('"max_tokens"', '"user": "\\ud83d", "max_tokens"'): "user",
        body.replace('"max_tokens"', '"metadata": {"\\ud800": 1}, "max_tokens"'): "metadata",
        body.replace('"max_tokens": 2', '"max_tokens": 2, "stop": ["\\udc00"]'): "stop[0]",
    }
    for raw, param in cases.items():
        response = web.post("/v1/chat/completions", content=raw.encode(), headers={"content-type": "application/json"})
        assert "not valid Unicode" in _error(response, 400, code="invalid_text", param=param)
    assert (
        web.post(
            "/v1/chat/completions", json={**OK, "messages": [{"role": "user", "content": "caf\u00e9 \U0001f600"}]}
        ).status_code
        == 200
    )


def test_cli_serve_is_loopback_keyless_and_admin_free_unless_asked(saved_home, root, monkeypatch, capsys, caplog):
    monkeypatch.setattr("agentmem.adaptation.resolve.load_backbone", lambda name, device=None: saved_home[0])
    ran: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: ran.update(app=app, **kwargs))
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # and restored after the test
    assert cli.main(["serve", str(root)]) == 0
    assert ran["host"] == "127.0.0.1"
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # backbones named by banks are never downloaded
    web = TestClient(ran["app"])
    assert web.get("/v1/models").status_code == 200 and web.post("/v1/banks", json={"name": "home"}).status_code in (
        404,
        405,
    )
    monkeypatch.setenv(API_KEY_ENV, KEY)
    with caplog.at_level(logging.WARNING, logger=server.__name__):
        assert cli.main(["serve", str(root), "--admin"]) == 0
    assert any("admin endpoints are on" in r.message for r in caplog.records)
    assert "API key required" in capsys.readouterr().out
    web = TestClient(ran["app"])
    _error(web.get("/v1/models"), 401, code="invalid_api_key")
    good = {"Authorization": f"Bearer {KEY}"}
    assert web.post("/v1/banks", json={"name": "home"}, headers=good).status_code == 200
    assert cli.main(["serve", str(root), "--api-key", "other"]) == 0  # the flag wins over the environment
    assert TestClient(ran["app"]).get("/v1/models", headers={"Authorization": "Bearer other"}).status_code == 200
    monkeypatch.delenv(API_KEY_ENV)
    assert cli.main(["serve", str(root), "--host", "0.0.0.0"]) == 0
    assert "without an API key" in capsys.readouterr().err
    assert cli.main(["serve", str(root), "--api-key", " "]) == 2
    assert cli.main(["serve", str(root), "--no-admin"]) == 0  # the old flag still parses (it is the default)
