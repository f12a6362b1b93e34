"""The OpenAI-compatible server on the tiny Llama, through the official ``openai`` client.

The server runs in a background thread on a loopback socket. The tiny model has random
weights, so these tests compare the server with `AgentMem.plan` on the same bank and check
what the server guarantees whatever the model prefers: routing restricted to a bank's tools,
streaming that adds up to the non-streamed answer, OpenAI error bodies, concurrent requests
decoded in one batch with the answers they get alone; `test_server_load.py` covers the limits
under load (queue, time limit, disconnects).
Tools with enum or boolean arguments keep constrained decoding short.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from agentmem import AgentMem, cli
from agentmem.adapters.server import BankRegistry, ServerLimits, create_app
from agentmem.adapters.server.responses import to_chunks, to_completion
from agentmem.decoding import Batch
from agentmem.tools.calls import InvalidToolCall, Plan, ToolCall
from tests.conftest import LIGHT, UNIT, tiny_backbone, tool_schema

FAST = {"epochs": 2, "progress": False}


SEAT = tool_schema("book_seat", {"seat": {"type": "string", "enum": ["aisle", "window"]}}, "Book a seat.")
MEAL = tool_schema("order_meal", {"meal": {"type": "string", "enum": ["vegan", "fish", "chicken"]}}, "Order a meal.")
HOME, TRAVEL = ("set_unit", "toggle_light"), ("book_seat", "order_meal")
QUERIES = ["use celsius please", "turn the lights off", "an aisle seat", "vegan meal for me", "hello there"]


def _examples(*pairs: tuple[str, dict]) -> list[dict]:
    return [{"query": q, "arguments": a} for q, a in pairs] * 2  # 4 pairs -> 8 examples


def _openai_tool(spec: dict) -> dict:
    return {"type": "function", "function": spec}


@contextmanager
def _serving(app: Any) -> Iterator[str]:
    """Runs ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    else:
        raise RuntimeError("the server did not start within 10 s")
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def banks(tokenizer) -> dict[str, AgentMem]:
    """Two banks with different tools on one tiny backbone."""
    backbone = tiny_backbone(tokenizer)
    home, travel = AgentMem(backbone), AgentMem(backbone)
    home.learn_tools(
        [
            (
                UNIT,
                _examples(
                    ("use celsius", {"unit": "celsius"}),
                    ("switch to fahrenheit", {"unit": "fahrenheit"}),
                    ("temperatures in celsius", {"unit": "celsius"}),
                    ("fahrenheit please", {"unit": "fahrenheit"}),
                ),
            ),
            (
                LIGHT,
                _examples(
                    ("lights on", {"on": True}),
                    ("turn the lights off", {"on": False}),
                    ("switch the lamp on", {"on": True}),
                    ("lights out", {"on": False}),
                ),
            ),
        ],
        **FAST,
    )
    travel.learn_tools(
        [
            (
                SEAT,
                _examples(
                    ("an aisle seat", {"seat": "aisle"}),
                    ("window seat please", {"seat": "window"}),
                    ("seat me by the window", {"seat": "window"}),
                    ("aisle, please", {"seat": "aisle"}),
                ),
            ),
            (
                MEAL,
                _examples(
                    ("vegan meal for me", {"meal": "vegan"}),
                    ("I'd like fish", {"meal": "fish"}),
                    ("chicken for dinner", {"meal": "chicken"}),
                    ("a vegan dinner", {"meal": "vegan"}),
                ),
            ),
        ],
        **FAST,
    )
    return {"home": home, "travel": travel}


@pytest.fixture(scope="module")
def served(banks) -> Iterator[tuple[str, BankRegistry]]:
    registry = BankRegistry(banks["home"].backbone)
    for name, memory in banks.items():
        registry.add(name, memory)
    with _serving(create_app(registry, ServerLimits(max_prompt_tokens=200))) as url:
        yield url, registry


@pytest.fixture
def client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served[0] + "/v1", api_key="x", max_retries=0, timeout=60)


def _calls(message: Any) -> list[tuple[str, dict]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]


def _plan_calls(plan: Plan) -> list[tuple[str, dict]]:
    return [(c.name, c.arguments) for c in plan.calls]


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def test_tool_calls_equal_agentmem_plan(client, banks):
    tools = [_openai_tool(UNIT), _openai_tool(LIGHT)]
    for query in QUERIES[:3]:
        response = client.chat.completions.create(
            model="home", messages=_user(query), tools=tools, tool_choice="required"
        )
        plan = banks["home"].plan(query, tool_choice="any", tools=list(HOME))
        message, choice = response.choices[0].message, response.choices[0]
        assert _calls(message) and _calls(message) == _plan_calls(plan)
        assert choice.finish_reason == "tool_calls" and message.content is None
        assert all(c.id.startswith("call_") and c.type == "function" for c in message.tool_calls)
        assert response.object == "chat.completion" and response.model == "home"
        assert response.usage.prompt_tokens == plan.usage["prompt_tokens"]
        assert response.usage.completion_tokens == plan.usage["generated_tokens"]
        assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    named = {"type": "function", "function": {"name": "toggle_light"}}
    response = client.chat.completions.create(
        model="home", messages=_user("use celsius"), tools=tools, tool_choice=named
    )
    plan = banks["home"].plan("use celsius", tool_choice="toggle_light", tools=list(HOME))
    assert _calls(response.choices[0].message)[0][0] == "toggle_light"
    assert _calls(response.choices[0].message) == _plan_calls(plan)


def test_stream_adds_up_to_the_same_calls(client):
    tools = [_openai_tool(SEAT), _openai_tool(MEAL)]
    request = {
        "model": "travel",
        "messages": _user("vegan meal and an aisle seat"),
        "tools": tools,
        "tool_choice": "required",
    }
    whole = client.chat.completions.create(**request)
    chunks = list(client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    assert all(isinstance(c, ChatCompletionChunk) and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason == "tool_calls"
    # the client's own accumulator
    with client.chat.completions.stream(**request) as stream:
        final = stream.get_final_completion()
    assert _calls(final.choices[0].message) == _calls(whole.choices[0].message) != []
    assert final.choices[0].finish_reason == "tool_calls"
    # and by hand: fragments grouped by index
    by_index: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = by_index.setdefault(call.index, {"name": "", "arguments": ""})
            entry["name"] += call.function.name or ""
            entry["arguments"] += call.function.arguments or ""
    assert [(e["name"], json.loads(e["arguments"])) for _, e in sorted(by_index.items())] == _calls(
        whole.choices[0].message
    )


def test_text_answer_respects_max_tokens(client):
    response = client.chat.completions.create(
        model="home", messages=_user("hello there"), tool_choice="none", max_tokens=3
    )
    choice = response.choices[0]
    assert choice.message.tool_calls is None and isinstance(choice.message.content, str)
    assert 1 <= response.usage.completion_tokens <= 3
    assert choice.finish_reason in ("length", "stop")
    streamed = list(
        client.chat.completions.create(
            model="home", messages=_user("hello there"), tool_choice="none", max_tokens=3, stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == choice.message.content


def test_models_and_health(client, served):
    models = client.models.list()
    assert [m.id for m in models.data] == ["home", "travel"]
    assert {m.id: m.model_extra["tools"] for m in models.data} == {"home": list(HOME), "travel": list(TRAVEL)}
    assert client.models.retrieve("travel").id == "travel"
    health = httpx.get(served[0] + "/health").json()
    assert health == {"status": "ok", "banks": 2, "backbones": 1}


def test_banks_are_isolated(client):
    for query in QUERIES:
        for bank, held in (("home", HOME), ("travel", TRAVEL)):
            response = client.chat.completions.create(model=bank, messages=_user(query), tool_choice="required")
            names = [name for name, _ in _calls(response.choices[0].message)]
            assert names and set(names) <= set(held), (bank, query, names)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="travel", messages=_user("use celsius"), tools=[_openai_tool(UNIT)])
    error = caught.value.body
    assert "set_unit" in error["message"] and "book_seat" in error["message"]
    assert error["param"] == "tools[0].function.name" and error["code"] == "unknown_tool"


def _assert_error(response: httpx.Response, status: int, param: str | None = None, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error" and body["error"]["message"]
    if param is not None:
        assert body["error"]["param"] == param
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(client, served):
    url = served[0] + "/v1/chat/completions"
    ok = {"model": "home", "messages": _user("use celsius")}
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="nowhere", messages=_user("x"))
    assert caught.value.body["code"] == "model_not_found" and "home" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="home", messages=_user("x"), tool_choice="sometimes")
    cases = [
        ({**ok, "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", None),
        ({**ok, "messages": []}, "messages", None),
        ({"messages": ok["messages"]}, "model", None),
        ({**ok, "tool_choice": {"type": "function", "function": {"name": "book_seat"}}}, "tool_choice", None),
        ({**ok, "tools": [], "tool_choice": "required"}, "tool_choice", None),
        (
            {**ok, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages[0].content[0]",
            "unsupported_content",
        ),
        ({**ok, "messages": [{"role": "user", "content": "celsius " * 400}]}, "messages", "context_length_exceeded"),
        (
            {
                **ok,
                "messages": [
                    *ok["messages"],
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {"id": "c", "type": "function", "function": {"name": "set_unit", "arguments": "{broken"}}
                        ],
                    },
                ],
            },
            "messages[1].tool_calls[0].function.arguments",
            None,
        ),
        ({**ok, "n": 2}, "n", None),
        ({**ok, "max_tokens": 0}, "max_tokens", None),
        ({**ok, "max_tokens": 10**6}, "max_tokens", None),
    ]
    for body, param, code in cases:
        _assert_error(httpx.post(url, json=body, timeout=60), 400, param, code)
    assert (
        "not valid JSON"
        in _assert_error(httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}), 400)[
            "message"
        ]
    )
    _assert_error(
        httpx.post(url, content=b"x" * (2 << 20), headers={"content-type": "application/json"}),
        413,
        code="request_too_large",
    )
    # the same body sent chunked (no Content-Length) is counted as it arrives
    big = json.dumps({**ok, "messages": _user("celsius " * 400_000)}).encode()
    chunked = httpx.post(
        url,
        content=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]),
        headers={"content-type": "application/json"},
    )
    assert "content-length" not in chunked.request.headers and chunked.request.headers["transfer-encoding"] == "chunked"
    _assert_error(chunked, 413, code="request_too_large")
    small = json.dumps({**ok, "max_tokens": 2, "tool_choice": "none"}).encode()
    assert (
        httpx.post(
            url, content=iter([small[:10], small[10:]]), headers={"content-type": "application/json"}
        ).status_code
        == 200
    )
    _assert_error(httpx.get(served[0] + "/v1/nothing-here"), 404)
    assert httpx.get(served[0] + "/health").json()["status"] == "ok"
    assert client.chat.completions.create(**ok).choices[0].message is not None


def test_concurrent_requests_equal_sequential_ones(client, monkeypatch):
    requests = [
        {"model": bank, "messages": _user(query), "tool_choice": choice}
        for bank in ("home", "travel")
        for query, choice in zip(QUERIES[:4], ("required", "auto", "required", "auto"))
    ]
    assert len(requests) == 8

    def ask(request: dict) -> tuple:
        message = client.chat.completions.create(**request).choices[0]
        return _calls(message.message), message.message.content, message.finish_reason

    widest = [0]
    step = Batch.step

    def watched(batch: Batch) -> list:
        widest[0] = max(widest[0], len(batch.rows))
        time.sleep(0.002)  # widen the window in which requests arrive while others decode
        return step(batch)

    sequential = [ask(r) for r in requests]
    monkeypatch.setattr(Batch, "step", watched)
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(ask, requests * 2))
    assert concurrent == sequential * 2
    assert widest[0] > 1  # requests of a bank decoded in one batch, not one after another
    assert any(calls for calls, _, _ in sequential)


def test_agent_history_is_rendered_and_resumed(client, banks):
    memory, query = banks["home"], "use celsius please"
    first = client.chat.completions.create(model="home", messages=_user(query), tool_choice="required")
    call = first.choices[0].message.tool_calls[0]
    history = [
        *_user(query),
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "done"},
    ]
    resumed = client.chat.completions.create(model="home", messages=history)
    rendered = client.chat.completions.create(model="home", messages=history, extra_body={"continue_plans": False})
    user_tokens = memory.plan(query).usage["prompt_tokens"]
    argument_tokens = len(memory.backbone.tokenizer(call.function.arguments, add_special_tokens=False)["input_ids"])
    # resumed: the user turn, then the call as the model writes it (memory token + arguments)
    assert resumed.usage.prompt_tokens == user_tokens + 1 + argument_tokens
    assert rendered.usage.prompt_tokens > resumed.usage.prompt_tokens  # the tool result rendered as a message
    assert resumed.choices[0].message.content in (None, "")  # a resumed plan calls or ends; it never answers in words
    # a call to a tool the bank lacks is written as text, not refused
    foreign = [
        *_user(query),
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "elsewhere", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    assert client.chat.completions.create(model="home", messages=foreign).usage.prompt_tokens > user_tokens


def test_banks_from_disk_share_one_backbone_and_reload(banks, tmp_path):
    for name, memory in banks.items():
        memory.save(tmp_path / "banks" / name)
    backbone = banks["home"].backbone
    registry = BankRegistry(backbone)
    assert registry.add_paths([tmp_path / "banks"]) == ["home", "travel"]
    assert registry.get("home").backbone is registry.get("travel").backbone is backbone
    query = "an aisle seat"
    assert _plan_calls(registry.get("travel").plan(query, tool_choice="any")) == _plan_calls(
        banks["travel"].plan(query, tool_choice="any")
    )
    with _serving(create_app(registry, admin=True)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60)
        added = httpx.post(url + "/v1/banks", json={"name": "extra", "folder": "home"})
        assert added.status_code == 200 and added.json()["tools"] == list(HOME)
        assert [m.id for m in client.models.list().data] == ["extra", "home", "travel"]
        # reloading a name swaps its tools; the old ones are no longer routable there
        httpx.post(url + "/v1/banks", json={"name": "extra", "folder": "travel"}).raise_for_status()
        response = client.chat.completions.create(model="extra", messages=_user("use celsius"), tool_choice="required")
        assert {n for n, _ in _calls(response.choices[0].message)} <= set(TRAVEL)
        assert registry.get("extra").backbone is backbone
        _assert_error(
            httpx.post(url + "/v1/banks", json={"name": "bad", "folder": "nowhere"}), 404, code="bank_not_found"
        )
        _assert_error(httpx.post(url + "/v1/banks", json={"name": "../x"}), 400, param="name")
        assert httpx.delete(url + "/v1/banks/extra").json()["deleted"] is True
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="extra", messages=_user("x"))
    with _serving(create_app(registry)) as url:  # admin endpoints are off unless asked for
        assert httpx.post(url + "/v1/banks", json={"name": "home"}).status_code in (404, 405)
        assert httpx.delete(url + "/v1/banks/home").status_code in (404, 405)
        assert registry.names() == ["home", "travel"]


def test_invalid_calls_are_reported_not_dropped():
    plan = Plan(
        steps=[
            ToolCall("set_unit", {"unit": "celsius"}, id="call_a"),
            InvalidToolCall("toggle_light", raw='{"on": "maybe"}', reason="'maybe' is not of type 'boolean'"),
        ],
        usage={"prompt_tokens": 7, "generated_tokens": 12},
    )
    completion = to_completion(plan, model="home")
    parsed = ChatCompletion.model_validate(completion)
    message = parsed.choices[0].message
    assert _calls(message) == [("set_unit", {"unit": "celsius"})] and parsed.choices[0].finish_reason == "tool_calls"
    assert message.model_extra["invalid_tool_calls"] == [
        {
            "id": plan.invalid_calls[0].id,
            "type": "function",
            "function": {"name": "toggle_light", "arguments": '{"on": "maybe"}'},
            "error": "'maybe' is not of type 'boolean'",
        }
    ]
    chunks = [ChatCompletionChunk.model_validate(c) for c in to_chunks(completion, include_usage=True)]
    assert chunks[-2].choices[0].delta.model_extra["invalid_tool_calls"] == message.model_extra["invalid_tool_calls"]
    assert chunks[-1].usage.total_tokens == 19
    only_invalid = to_completion(Plan(steps=[plan.steps[1]], finish_reason="length"), model="home")
    assert (
        only_invalid["choices"][0]["finish_reason"] == "length"
        and "tool_calls" not in only_invalid["choices"][0]["message"]
    )
    assert to_completion(Plan(text="Hi. STOP here", finish_reason="length"), model="m", stop=["STOP"])["choices"][
        0
    ] == {
        "index": 0,
        "message": {"role": "assistant", "content": "Hi. ", "refusal": None},
        "logprobs": None,
        "finish_reason": "stop",
    }


def test_cli_serve_loads_banks_and_runs_uvicorn(banks, tmp_path, monkeypatch, capsys):
    from fastapi.testclient import TestClient

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # serve sets it; restored after the test
    assert cli.main(["serve", str(tmp_path / "nowhere"), "--port", "0"]) == 2
    assert "no memory bank" in capsys.readouterr().err
    for name, memory in banks.items():
        memory.save(tmp_path / "banks" / name)
    loads: list[str] = []
    monkeypatch.setattr(
        "agentmem.adaptation.resolve.load_backbone",
        lambda name, device=None: loads.append(name) or banks["home"].backbone,
    )
    ran: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: ran.update(app=app, **kwargs))
    assert (
        cli.main(["serve", str(tmp_path / "banks"), "--port", "8123", "--no-admin", "--max-prompt-tokens", "64"]) == 0
    )
    assert loads == ["tiny-llama"]  # one backbone for both banks
    assert ran["host"] == "127.0.0.1" and ran["port"] == 8123
    assert "2 banks (home, travel) on 1 backbone(s)" in capsys.readouterr().out
    web = TestClient(ran["app"])
    assert [m["id"] for m in web.get("/v1/models").json()["data"]] == ["home", "travel"]
    assert web.post("/v1/banks", json={"name": "x", "path": str(tmp_path)}).status_code in (404, 405)
    long = {"model": "home", "messages": _user("celsius " * 80)}
    assert web.post("/v1/chat/completions", json=long).json()["error"]["code"] == "context_length_exceeded"
    # decoding flags apply to every request
    assert cli.main(["serve", str(tmp_path / "banks"), "--max-argument-tokens", "1", "--no-jump-forward"]) == 0
    request = {"model": "home", "messages": _user("use celsius"), "tool_choice": "required"}
    message = TestClient(ran["app"]).post("/v1/chat/completions", json=request).json()["choices"][0]["message"]
    assert not message.get("tool_calls") and message["invalid_tool_calls"]


def test_bench_runs_and_reports(banks, tmp_path, monkeypatch, capsys):
    from agentmem.adapters import bench_server

    monkeypatch.setattr(bench_server, "demo_bank", lambda backbone, examples_per_tool: banks["home"])
    args = ["--requests", "6", "--clients", "1,2", "--long-tokens", "40", "--out", str(tmp_path)]
    assert bench_server.main(args) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 4  # printed as measured, then in the table
    assert all(line.split("|")[3].strip() == "0" and line.split("|")[4].strip() == "0" for line in rows)  # no errors
    assert "| clients | requests | errors | differ | requests/s | p50 ms | p95 ms | wall s |" in out
    assert "Answers identical at every level: yes" in out and "Requests/s at 2 clients / at 1: " in out
    assert "Head-of-line: a short request" in out and "up to 40 tokens" in out
    assert len(list(tmp_path.glob("server-*.md"))) == 1
    # drafts off, then the defaults: the same answers, a ratio per level
    assert bench_server.main([*args[:4], "--long-tokens", "0", "--compare-drafts", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| decoding | clients |" in out and "| no drafts | 2 |" in out and "| defaults | 2 |" in out
    assert "Answers identical at every level: yes" in out
    assert "Requests/s with the default drafts / with none: " in out and "x at 2 clients" in out


def test_a_failure_inside_is_a_500_body_and_not_fatal(client, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("decoder exploded")

    with monkeypatch.context() as patch:
        patch.setattr(Batch, "step", boom)
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="home", messages=_user("use celsius"))
    assert caught.value.body["type"] == "server_error" and "decoder exploded" in caught.value.body["message"]
    assert (
        client.chat.completions.create(model="home", messages=_user("use celsius"), tool_choice="required")
        .choices[0]
        .message.tool_calls
    )


def test_the_operators_decoding_options_apply_to_every_request(banks):
    registry = BankRegistry(banks["home"].backbone)
    registry.add("home", banks["home"])
    tools = [_openai_tool(UNIT), _openai_tool(LIGHT)]
    with _serving(create_app(registry, decoding={"max_argument_tokens": 1})) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=60)
        response = client.chat.completions.create(
            model="home", messages=_user("use celsius"), tools=tools, tool_choice="required"
        )
    plan = banks["home"].plan("use celsius", tool_choice="any", tools=list(HOME), max_argument_tokens=1)
    assert not plan.calls and plan.invalid_calls  # one token holds no call's arguments
    message = response.choices[0].message
    assert not message.tool_calls
    assert [c["function"]["name"] for c in message.model_extra["invalid_tool_calls"]] == [
        c.name for c in plan.invalid_calls
    ]
    with pytest.raises(ValueError, match=r"\['tools'\] are chosen per request"):
        create_app(registry, decoding={"tools": ["set_unit"]})
    with pytest.raises(ValueError, match="jump_forward must be a bool"):
        create_app(registry, decoding={"jump_forward": 1})
