"""Property-based fuzzing of the server and the bank loader (issue 16).

Generated request bodies, 2,000 a run: 1,000 chat requests of every valid shape, half of them
with one item at any depth deleted, replaced by anything, nested, or given a lone surrogate;
and 1,000 bodies (raw bytes, arbitrary JSON, broken chat requests, bank requests) on every
route, half of them sent chunked, to an app with the admin endpoints on. Generated bank
folders, 200 a run (a valid bank.json with a field replaced by anything or a huge number,
deleted, or nested deep; the file cut short or 100,000 levels deep; rows with NaN, infinities,
another shape or dtype, or cut short) go to `load_bank` and to ``POST /v1/banks``. Whatever
comes in: no 5xx, every error in OpenAI's shape, ``/health`` answers, and the banks served are
the ones served before. The app runs in process (TestClient) on the tiny Llama, with small
token limits so that a request that reaches the model stays fast.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import torch
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from agentmem import AgentMem
from agentmem.adapters.server import BankRegistry, ServerLimits, create_app
from agentmem.bank_io import ROWS_KEY, load_bank
from agentmem.errors import BankError

FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))

# Text that tokenizers and JSON find hard: controls, the special tokens' spelling, long runs,
# names close to the served ones; lone surrogates come in through the junk below.
TEXT = st.one_of(
    st.text(max_size=20),
    st.text(st.characters(codec=None, categories=["Cc", "Zs", "So", "Mn"]), max_size=6),
    st.sampled_from(
        [
            "",
            "\x00",
            "<|endoftext|>",
            "<|im_start|>",
            "use celsius",
            "lights on",
            "set_unit",
            "home",
            "x" * 300,
            "\u202e",
            "{",
            "\\u0000",
        ]
    ),
)
NAMES = st.one_of(
    st.sampled_from(
        [
            "home",
            "set_unit",
            "toggle_light",
            "nowhere",
            "",
            "..",
            ".home-tmp-1",
            "home/..",
            "/etc",
            "%2e%2e",
            "HOME",
            "home\x00",
            "\ud800",
        ]
    ),
    TEXT,
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
    st.sampled_from(["\ud800", "a\udfffb", "\udbff\udfff\ud800"]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=6,
)

# Chat requests of every valid shape, each field varied within what OpenAI's API allows (and
# small: a request that reaches the model stays a few tokens and calls long).
ARGUMENTS = st.one_of(
    st.fixed_dictionaries({"unit": st.sampled_from(["celsius", "fahrenheit", "kelvin"])}),
    st.fixed_dictionaries({"on": st.booleans()}),
    st.just("{}"),
    st.just('{"unit": "celsius"}'),
    st.builds(json.dumps, st.dictionaries(TEXT, SCALARS, max_size=2)),
)
CALL = st.fixed_dictionaries(
    {
        "id": TEXT,
        "type": st.just("function"),
        "function": st.fixed_dictionaries(
            {"name": st.sampled_from(["set_unit", "toggle_light", "elsewhere"]), "arguments": ARGUMENTS}
        ),
    }
)
CONTENT = st.one_of(TEXT, st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), max_size=2))
MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "developer", "user", "user", "tool", "function"]), "content": CONTENT}
    ),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": st.one_of(st.none(), CONTENT)},
        optional={"tool_calls": st.lists(CALL, max_size=2)},
    ),
)
TOOLS = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {"name": st.sampled_from(["set_unit", "toggle_light"])},
                optional={"parameters": st.just({"type": "object"})},
            ),
        }
    ),
    max_size=2,
    unique_by=lambda t: t["function"]["name"],
)
TOOL_CHOICE = st.one_of(
    st.sampled_from(["auto", "none", "required"]),
    st.fixed_dictionaries(
        {
            "type": st.just("function"),
            "function": st.fixed_dictionaries({"name": st.sampled_from(["set_unit", "toggle_light"])}),
        }
    ),
)
SMALL = st.integers(1, 2)
CHAT = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["home"] * 7 + ["nowhere"]),
        "messages": st.lists(MESSAGE, min_size=1, max_size=3),
        "max_calls": SMALL,
        "max_tokens": SMALL,
    },
    optional={
        "tools": TOOLS,
        "tool_choice": TOOL_CHOICE,
        "parallel_tool_calls": st.booleans(),
        "max_completion_tokens": SMALL,
        "stop": st.one_of(TEXT, st.lists(TEXT, max_size=2)),
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "n": st.just(1),
        "logprobs": st.sampled_from([False, False, False, True]),
        "continue_plans": st.booleans(),
        "temperature": st.floats(0, 2),
        "user": TEXT,
    },
)


def _paths(value: Any, at: tuple = ()) -> list[tuple]:
    """Every JSON path inside ``value`` (the root excluded)."""
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    return [p for key, child in children for p in [(*at, key), *_paths(child, (*at, key))]]


def _mutate(value: Any, path: tuple, op: str, new: Any, depth: int = 1) -> Any:
    """A copy of ``value`` with the item at ``path`` deleted, replaced by ``new``, or nested
    under ``depth`` lists."""
    value = json.loads(json.dumps(value))
    *parent_path, key = path
    parent = value
    for step in parent_path:
        parent = parent[step]
    if op == "delete":
        del parent[key]
    elif op == "replace":
        parent[key] = new
    else:
        for _ in range(depth):
            parent[key] = [parent[key]]
    return value


@st.composite
def broken(draw: Any, valid: st.SearchStrategy) -> Any:
    """A valid value with one item (at any depth) deleted, replaced by anything (a string for
    an object, say), nested, or with a lone surrogate put into one of its strings."""
    value = draw(valid)
    paths = _paths(value)
    if not paths:
        return draw(JSON)
    op = draw(st.sampled_from(["delete", "replace", "replace", "replace", "nest", "surrogate"]))
    if op == "surrogate":
        strings = [p for p in paths if isinstance(_at(value, p), str)]
        if strings:
            path = draw(st.sampled_from(strings))
            text = _at(value, path)
            cut = draw(st.integers(0, len(text)))
            return _mutate(
                value, path, "replace", text[:cut] + draw(st.sampled_from(["\ud800", "\udfff", "\udbff"])) + text[cut:]
            )
        op = "replace"
    return _mutate(value, draw(st.sampled_from(paths)), op, draw(JSON), draw(st.integers(1, 40)))


def _at(value: Any, path: tuple) -> Any:
    for step in path:
        value = value[step]
    return value


ROUTES = st.sampled_from(
    [
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/banks"),
        ("DELETE", "/v1/banks/{}"),
        ("GET", "/v1/models/{}"),
        ("GET", "/v1/models"),
        ("PUT", "/v1/banks"),
        ("POST", "/v1/completions"),
        ("GET", "/{}"),
    ]
)


@pytest.fixture(scope="module")
def fuzzed(saved_home, tmp_path_factory) -> Iterator[tuple[TestClient, BankRegistry, Path, AgentMem]]:
    """The app over a copy of the saved banks, admin endpoints on, small limits."""
    root = tmp_path_factory.mktemp("fuzzed")
    shutil.copytree(saved_home[1] / "home", root / "home")
    registry = BankRegistry(saved_home[0])
    registry.add_paths([root])
    limits = ServerLimits(max_prompt_tokens=96, max_text_tokens=2, max_body_bytes=64 << 10)
    with TestClient(create_app(registry, limits, admin=True)) as web:  # one event loop for every request: faster
        yield web, registry, root, registry.get("home")


def _served(registry: BankRegistry) -> list[tuple[str, list[str], int]]:
    return [(m["id"], m["tools"], id(registry.get(m["id"]))) for m in registry.models()]


def _check(web: TestClient, registry: BankRegistry, before: list, response: Any) -> None:
    """No 5xx; errors in OpenAI's shape; /health answers; the same banks are served."""
    assert response.status_code < 500, response.text
    event(f"status {response.status_code}")
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and isinstance(error["message"], str)
    assert web.get("/health").status_code == 200
    added = [n for n in registry.names() if n not in {b[0] for b in before}]
    for name in added:
        registry.remove(name)  # a bank a generated POST added (under another name) is dropped again
    assert _served(registry) == before


@settings(FUZZ, max_examples=1000)
@given(body=st.one_of(CHAT, broken(CHAT)), raw=st.booleans())
def test_generated_chat_requests_never_fail_the_server(fuzzed, body, raw):
    web, registry, _, _ = fuzzed
    before = _served(registry)
    # raw: sent as written (lone surrogates and all); else as httpx writes it (ASCII escapes)
    text = json.dumps(body, ensure_ascii=not raw)
    content = text.encode("utf-8", errors="surrogatepass") if raw else text.encode()
    response = web.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    _check(web, registry, before, response)


@settings(FUZZ, max_examples=1000)
@given(
    route=ROUTES,
    name=NAMES,
    body=st.one_of(
        JSON,
        st.binary(max_size=64),
        broken(CHAT),
        st.fixed_dictionaries({"name": NAMES}, optional={"folder": NAMES, "path": TEXT}),
    ),
    chunked=st.booleans(),
)
def test_generated_bodies_on_every_route_never_fail_the_server(fuzzed, route, name, body, chunked):
    web, registry, _, home = fuzzed
    before = _served(registry)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    method, path = route[0], route[1].format(quote(name, safe="", errors="surrogatepass"))
    sent = iter([content[:7], content[7:]]) if chunked else content  # an iterator goes out chunked
    response = web.request(method, path, content=sent, headers={"content-type": "application/json"})
    if response.status_code == 200 and route[1].startswith("/v1/banks"):
        registry.add(
            "home", home
        )  # a generated reload or DELETE of "home" did what it should; undone for the next body
    _check(web, registry, before, response)


# bank files


EXTREME = st.one_of(
    JSON, st.sampled_from([math.nan, math.inf, -math.inf, 10**400, -(10**30), 1e308, 2**63, -1, 0, True])
)


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_generated_bank_folders_are_bank_errors_or_banks_never_crashes(fuzzed, data):
    web, registry, root, home = fuzzed
    good = root / "home"
    meta = json.loads((good / "bank.json").read_text())
    rows = load_bank(good).rows
    kind = data.draw(st.sampled_from(["field", "field", "field", "text", "rows"]))
    text, new_rows = json.dumps(meta), rows
    if kind == "field":
        path = data.draw(st.sampled_from(_paths(meta)))
        op = data.draw(st.sampled_from(["delete", "replace", "replace", "nest"]))
        mutated = _mutate(meta, path, op, data.draw(EXTREME), data.draw(st.integers(1, 200)))
        text = json.dumps(mutated)  # NaN and Infinity written as Python's json writes them
    elif kind == "text":
        how = data.draw(st.sampled_from(["truncate", "deep", "huge number", "bytes"]))
        if how == "truncate":
            text = text[: data.draw(st.integers(0, len(text) - 1))]
        elif how == "deep":
            depth = data.draw(st.sampled_from([65, 1000, 100_000]))
            text = text[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
        elif how == "huge number":
            text = text.replace(
                '"row": 0', '"row": ' + data.draw(st.sampled_from(["1" + "0" * 5000, "1e999", "-0", "0.0"])), 1
            )
        else:
            text = data.draw(st.binary(max_size=200)).decode("latin-1")
    else:
        how = data.draw(st.sampled_from(["nan", "inf", "shape", "dtype", "truncate"]))
        new_rows = rows.clone()
        if how in ("nan", "inf"):
            new_rows[data.draw(st.integers(0, rows.shape[0] - 1)), data.draw(st.integers(0, rows.shape[1] - 1))] = (
                math.nan if how == "nan" else -math.inf
            )
        elif how == "shape":
            new_rows = (
                rows[: data.draw(st.integers(0, rows.shape[0] - 1))] if data.draw(st.booleans()) else rows.flatten()
            )
        elif how == "dtype":
            new_rows = rows.to(data.draw(st.sampled_from([torch.int32, torch.bool, torch.float16, torch.bfloat16])))
    folder = root / "mutant"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    (folder / "bank.json").write_text(text, encoding="utf-8", errors="surrogatepass")
    save_file({ROWS_KEY: new_rows.contiguous()}, str(folder / "bank.safetensors"))
    if kind == "rows" and how == "truncate":
        data_bytes = (folder / "bank.safetensors").read_bytes()
        (folder / "bank.safetensors").write_bytes(data_bytes[: data.draw(st.integers(0, len(data_bytes) - 1))])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # format version 1 loads with a BankFormatWarning
        try:
            load_bank(folder)
        except BankError:
            pass  # anything else fails the test
    before = _served(registry)
    choice = data.draw(st.sampled_from(["auto", "required"]))
    for body in ({"name": "mutant"}, {"name": "home", "folder": "mutant"}):
        response = web.post("/v1/banks", json=body)
        try:
            if response.status_code == 200:  # a harmless mutation: the bank must then plan without a 5xx
                ask = {
                    "model": body["name"],
                    "messages": [{"role": "user", "content": "use celsius"}],
                    "max_tokens": 2,
                    "tool_choice": choice,
                    "max_calls": 1,
                }
                assert web.post("/v1/chat/completions", json=ask).status_code < 500
        finally:
            registry.add("home", home)
        _check(web, registry, before, response)
