"""The server under load, on the tiny Llama: a full queue answers 503 with ``Retry-After``, a
request past its time limit ends with its reason, a client that disconnects stops costing
decode steps, and a short request is not stuck behind a long one.

Random weights never end a text answer: ``tool_choice: none`` with a large ``max_tokens``
is a long request, decoded to its bound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from agentmem import AgentMem
from agentmem.adapters.server import BankRegistry, ServerLimits, create_app
from tests.conftest import LIGHT, UNIT, tiny_backbone
from tests.unit.adapters.test_server import _serving

LONG = {"tool_choice": "none", "max_tokens": 1000}


@pytest.fixture(scope="module")
def home(tokenizer) -> AgentMem:
    memory = AgentMem(tiny_backbone(tokenizer))
    memory.learn_tools(
        [
            (UNIT, [{"query": "use celsius", "arguments": {"unit": "celsius"}}] * 4),
            (LIGHT, [{"query": "lights on", "arguments": {"on": True}}] * 4),
        ],
        epochs=1,
        progress=False,
    )
    return memory


def _serve(home: AgentMem, limits: ServerLimits) -> Iterator[str]:
    registry = BankRegistry(home.backbone)
    registry.add("home", home)
    return _serving(create_app(registry, limits))


def _ask(text: str, **extra) -> dict:
    return {"model": "home", "messages": [{"role": "user", "content": text}], **extra}


def _answer(body: dict) -> tuple:
    choice = body["choices"][0]
    calls = [(c["function"]["name"], c["function"]["arguments"]) for c in choice["message"].get("tool_calls") or []]
    return choice["message"]["content"], calls, choice["finish_reason"], body["usage"]


def _wait(condition, seconds: float = 30.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.005)


def _in_thread(url: str, body: dict, out: list) -> threading.Thread:
    thread = threading.Thread(
        target=lambda: out.append(httpx.post(url + "/v1/chat/completions", json=body, timeout=120)), daemon=True
    )
    thread.start()
    return thread


def test_a_full_queue_answers_503_with_retry_after(home):
    scheduler = home.scheduler
    with _serve(home, ServerLimits(max_batch=1, max_queue=1)) as url:
        answers: list[httpx.Response] = []
        first = _in_thread(url, _ask("use celsius", **LONG), answers)
        _wait(lambda: scheduler.running == 1)
        second = _in_thread(url, _ask("lights on", tool_choice="required"), answers)
        _wait(lambda: scheduler.waiting == 1)
        refused = httpx.post(url + "/v1/chat/completions", json=_ask("lights on"), timeout=60)
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "overloaded"
        first.join(120), second.join(120)
    assert [a.status_code for a in answers] == [200, 200]  # the queued one was served in its turn


def test_a_request_past_its_time_limit_ends_with_that_reason(home):
    with _serve(home, ServerLimits(time_limit=0.5)) as url:
        started = time.perf_counter()
        body = httpx.post(url + "/v1/chat/completions", json=_ask("hello", **LONG), timeout=60).json()
        assert time.perf_counter() - started < 10
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["agentmem"]["plan_finish_reason"] == "time_limit"
    assert "time limit of 0.5 s" in body["agentmem"]["notes"][-1]
    assert 0 < body["usage"]["completion_tokens"] < 1000


def test_a_client_that_disconnects_stops_costing_decode_steps(home):
    scheduler = home.scheduler
    with _serve(home, ServerLimits()) as url:
        before = scheduler.tokens
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes the connection
            httpx.post(url + "/v1/chat/completions", json=_ask("hello", **LONG), timeout=0.5)
        _wait(lambda: scheduler.running == 0, 10)
        spent = scheduler.tokens - before
        time.sleep(0.5)
        assert scheduler.tokens - before == spent  # no step decodes for it any more
        assert spent < 1000  # stopped well before its bound
        ok = httpx.post(url + "/v1/chat/completions", json=_ask("use celsius"), timeout=60)
        assert ok.status_code == 200


def test_a_short_request_is_not_stuck_behind_a_long_one(home):
    with _serve(home, ServerLimits()) as url:
        alone = httpx.post(url + "/v1/chat/completions", json=_ask("lights on"), timeout=60).json()
        answers: list[httpx.Response] = []
        long = _in_thread(url, _ask("hello", **LONG), answers)
        _wait(lambda: home.scheduler.running == 1)
        beside = httpx.post(url + "/v1/chat/completions", json=_ask("lights on"), timeout=60).json()
        assert not answers  # answered while the long one still decodes
        long.join(120)
    assert _answer(beside) == _answer(alone)
    assert answers[0].json()["usage"]["completion_tokens"] == 1000
