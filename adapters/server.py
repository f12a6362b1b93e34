"""An OpenAI-compatible HTTP server over memory banks: ``agentmem serve``.

Input flow: ``POST /v1/chat/completions`` -> `ChatRequest` (a malformed body is a 400 in
OpenAI's error shape) -> the bank ``model`` names (`BankRegistry`) -> `_plan_options` (``tools``
must be learned in that bank; ``tool_choice`` by `agentmem.chat.plan_options`) -> the chat
boundary's `read_turn` and `prompt_messages` (earlier ``tool_calls`` are written back as
memory token + arguments) -> `AgentMem.submit` (at most ``max_prompt_tokens``): the bank's
scheduler (`agentmem.scheduler`) decodes it in one batch with the other requests in flight,
which it joins at the next step, while the handler waits without holding a thread and stops
the request when the client disconnects. Output flow: Plan -> `agentmem.chat.plan_to_dict` -> `_completion`
(a ``chat.completion``), or with ``stream`` -> `_chunks` (role and text, one chunk per call,
a last chunk with ``finish_reason``, an optional usage chunk) as server-sent events.

Where it differs from OpenAI's API, by design:

* ``model`` names a bank; banks on the same weights share one backbone, loaded once.
  With ``admin=True`` (off by default), ``POST /v1/banks`` loads or reloads a bank at run time
  (a bank folder, by name, inside the folders the server was started with, on a backbone the
  server already holds) and ``DELETE /v1/banks/{name}`` drops it.
* With ``api_key``, every route but ``/health`` needs ``Authorization: Bearer <key>``.
  Bodies are limited in bytes however they are sent (``Content-Length`` or chunked).
* Each tool in ``tools`` must be learned in the bank, by name; its arguments are decoded under
  the schema the bank learned. Without ``tools``, any tool of the bank may be called.
* Extensions: ``choices[0].message.invalid_tool_calls`` (calls whose arguments failed
  validation: ``{"id", "type", "function": {"name", "arguments"}, "error"}``; when streaming,
  in the last chunk's ``delta``) and ``agentmem`` (notes, timings); in requests, ``max_calls``
  and ``continue_plans``.
* Decoding is greedy (``temperature``, ``top_p``, ``seed`` are ignored); ``n`` > 1 and
  ``logprobs`` are refused. ``max_tokens`` bounds a text answer; arguments have their own bound.
* Streaming is not token by token: the plan is made, then its chunks are sent.
* Load: ``ServerLimits`` bounds each bank's batch (``max_batch``) and queue (``max_queue``); a
  request finding the queue full, or still queued when its ``time_limit`` passes, gets a 503
  with ``Retry-After``. One decoding when its time limit passes ends with the calls made so
  far, ``finish_reason`` ``"length"`` and ``agentmem.plan_finish_reason`` ``"time_limit"``.
* An agent run in progress (the conversation ends in results of calls made since the last user
  message) resumes its plan: the model emits its next call or ends the plan.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Json, field_validator

from agentmem.extras import missing_extra

try:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
except ImportError as exc:  # a core install: say which extra to install, not only the module
    raise missing_extra("server", exc) from exc

from agentmem.backbone import Backbone
from agentmem.bank_io import META_FILE, load_bank
from agentmem.chat import Turn, cut_at_stop, plan_options, plan_to_dict, prompt_messages, read_turn
from agentmem.core import AgentMem
from agentmem.errors import (
    AgentMemError,
    BankError,
    ChatInputError,
    OverloadedError,
    PromptTooLongError,
    ToolChoiceError,
)
from agentmem.tools.calls import Plan

__all__ = ["API_KEY_ENV", "BankRegistry", "ChatRequest", "ServerLimits", "create_app"]

API_KEY_ENV = "AGENTMEM_API_KEY"
# A bank folder's name as POST /v1/banks may give it: one path component, never hidden (a
# leading dot is a save in progress or a crashed one, see agentmem.atomic) nor a way up.
_FOLDER_NAME = r"^[A-Za-z0-9_][\w.\-]{0,127}$"

_log = logging.getLogger(__name__)


class APIError(Exception):
    """An error returned to the client as ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        kind: str = "invalid_request_error",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        return JSONResponse({"error": body}, status_code=self.status, headers=self.headers)


# banks


class BankRegistry:
    """Banks by name, on backbones loaded once and shared.

    A bank loaded from disk goes onto the loaded backbone with its fingerprint, else onto its
    base backbone (loaded once per name; a bank that carries an adapter gets the adapted
    copy, which banks with the same adapter then share).

    Args:
        backbone: A backbone already loaded (e.g. a test model) that banks may run on.
        device: Where to load backbones named by banks.

    Attributes:
        roots: The folders given to `add_paths`: the only place `find` looks for banks.
    """

    def __init__(self, backbone: Backbone | None = None, *, device: str | None = None) -> None:
        self.device = device
        self._banks: dict[str, tuple[AgentMem, int]] = {}  # name -> (bank, when it was added)
        self._backbones: dict[str, Backbone] = {}  # by fingerprint, and plain ones by name too
        self.roots: list[Path] = []
        if backbone is not None:
            self._remember(backbone)

    def _remember(self, backbone: Backbone) -> None:
        for key in [backbone.fingerprint] + ([f"name:{backbone.name}"] if backbone.adapter is None else []):
            self._backbones.setdefault(key, backbone)

    def add(self, name: str, source: str | Path | AgentMem, *, new_backbones: bool = True) -> AgentMem:
        """Adds (or replaces) the bank ``name``: a saved bank folder, or an `AgentMem`.

        Args:
            name: The bank's name (requests' ``model``).
            source: A bank folder or an `AgentMem`.
            new_backbones: Whether a bank whose backbone the registry does not hold may load
                it (and fetch it, for a Hugging Face id). At run time it may not: a bank is
                data, and must not make the server load or download a model.

        Raises:
            BankError: The folder is not a bank.
            BackboneMismatchError: The bank does not fit the backbone it names.
            APIError: 400 ``backbone_not_served``, with ``new_backbones=False``.
        """
        with AgentMem.lock:  # loading is a model call too; and the registry changes as one step
            memory = source if isinstance(source, AgentMem) else None
            if memory is None:
                saved = load_bank(source)
                if not new_backbones and saved.fingerprint not in self._backbones:
                    raise APIError(
                        400,
                        f"bank {name!r} was learned on backbone {saved.backbone_name!r} ({saved.fingerprint}), "
                        "which this server does not run; a bank loaded at run time must run on a backbone "
                        "the server already holds (start the server with it to load its backbone)",
                        code="backbone_not_served",
                    )
                backbone = self._backbones.get(saved.fingerprint) or self._backbones.get(f"name:{saved.backbone_name}")
                memory = AgentMem.from_saved(saved, backbone, device=self.device, path=source)
            self._remember(memory.backbone)
            self._banks[name] = (memory, int(time.time()))
            return memory

    def add_paths(self, paths: Sequence[str | Path]) -> list[str]:
        """Adds each bank folder (named after it) or each bank inside a folder of banks."""
        added: list[str] = []
        for path in map(Path, paths):
            # Dot folders are saves in progress or left by a crash (agentmem.atomic), never banks.
            folders = (
                [path]
                if (path / META_FILE).is_file()
                else sorted(p for p in path.glob("*") if not p.name.startswith(".") and (p / META_FILE).is_file())
            )
            if not folders:
                raise BankError(f"no memory bank at {path}: expected a bank folder or a folder of banks")
            for folder in folders:
                if folder.name in added:
                    raise BankError(f"two banks are named {folder.name!r}; bank names come from folder names")
                self.add(folder.name, folder)
                added.append(folder.name)
            self.roots.append(path)
        return added

    def find(self, folder: str) -> Path | None:
        """The bank folder named ``folder`` among `roots` (a root itself, or a folder in one).

        Only a plain folder name is looked up, and only where it resolves inside its root (no
        symbolic link out of it), so no request can reach elsewhere in the file system.
        """
        if not re.fullmatch(_FOLDER_NAME, folder):
            return None
        for root in self.roots:
            if (root / META_FILE).is_file():
                if root.name == folder:
                    return root
                continue
            candidate = root / folder
            if (candidate / META_FILE).is_file() and candidate.resolve().parent == root.resolve():
                return candidate
        return None

    def remove(self, name: str) -> None:
        """Removes a bank (its backbone stays loaded for the others)."""
        with AgentMem.lock:
            self.get(name)
            del self._banks[name]

    def get(self, name: str) -> AgentMem:
        """The bank ``name``; a 404 `APIError` naming the banks served if there is none."""
        return self._entry(name)[0]

    def _entry(self, name: str) -> tuple[AgentMem, int]:
        entry = self._banks.get(name)
        if entry is None:
            raise APIError(
                404,
                f"the model {name!r} does not exist: this server serves the banks "
                f"{', '.join(self.names()) or '(none)'}",
                param="model",
                code="model_not_found",
            )
        return entry

    def names(self) -> list[str]:
        return sorted(self._banks.copy())

    def models(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every bank (or the one named) as an OpenAI model object, plus its tools and backbone."""
        entries = sorted(self._banks.copy().items()) if name is None else [(name, self._entry(name))]
        return [
            {
                "id": n,
                "object": "model",
                "created": created,
                "owned_by": "agentmem",
                "tools": list(memory.bank.names),
                "backbone": memory.backbone.name,
                "fingerprint": memory.backbone.fingerprint,
            }
            for n, (memory, created) in entries
        ]

    def backbones(self) -> int:
        """How many distinct backbones the banks run on."""
        return len({id(memory.backbone) for memory, _ in self._banks.copy().values()})


# requests


class Function(BaseModel):
    """A function in ``tools`` (the bank holds its schema) or in earlier ``tool_calls``."""

    name: str
    arguments: Json[dict[str, Any]] | dict[str, Any] = {}


class FunctionTool(BaseModel):
    """An entry of ``tools`` or of a message's ``tool_calls``; other fields are ignored."""

    type: Literal["function"] = "function"
    function: Function


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    tool_calls: list[FunctionTool] | None = None


class ChatRequest(BaseModel):
    """The body of ``POST /v1/chat/completions``; other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[Message] = Field(min_length=1)
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | dict[str, Any] | None = (
        None  # see agentmem.chat.tool_choice_policy
    )
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    n: int = 1
    logprobs: bool | None = None
    max_calls: int = Field(default=8, ge=1, le=64)
    continue_plans: bool = True


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on one request, and on each bank's load."""

    max_prompt_tokens: int = 4096
    max_body_bytes: int = 1 << 20
    max_text_tokens: int = 1024  # most max_tokens a request may ask (default: the decoder's 256)
    time_limit: float = 120.0  # seconds a request may take, queue included
    max_batch: int = 16  # requests of one bank decoding together (agentmem.scheduler)
    max_queue: int = 64  # requests of one bank waiting to join its batch; more get a 503

    def __post_init__(self) -> None:
        if self.time_limit <= 0 or self.max_batch < 1 or self.max_queue < 0:
            raise ValueError(
                f"time_limit must be > 0, max_batch >= 1 and max_queue >= 0; got {self.time_limit}, "
                f"{self.max_batch} and {self.max_queue}"
            )


def _plan_options(memory: AgentMem, request: ChatRequest, limits: ServerLimits) -> dict[str, Any]:
    """The keyword arguments of `AgentMem.plan` for a request; 400s name what is wrong."""
    if request.n != 1:
        raise APIError(400, f"n={request.n}: agentmem decodes one greedy plan per request; use n=1", param="n")
    if request.logprobs:
        raise APIError(400, "logprobs are not available from agentmem", param="logprobs")
    held = memory.bank.names
    names = [t.function.name for t in request.tools] if request.tools is not None else list(held)
    for i, name in enumerate(names):
        if name not in memory.bank:
            raise APIError(
                400,
                f"tool {name!r} is not learned in bank {request.model!r} (it holds: {', '.join(held) or 'no tools'}); "
                "learn it into the bank first (AgentMem.learn_tool or `agentmem learn`)",
                param=f"tools[{i}].function.name",
                code="unknown_tool",
            )
    max_tokens = request.max_completion_tokens or request.max_tokens
    options = plan_options(
        names,
        tool_choice=request.tool_choice,
        openai=True,
        max_calls=request.max_calls,
        parallel_tool_calls=request.parallel_tool_calls,
        max_tokens=max_tokens,
        max_prompt_tokens=limits.max_prompt_tokens,
        resume=request.continue_plans,
    )
    if max_tokens is not None and max_tokens > limits.max_text_tokens:
        raise APIError(
            400, f"max_tokens={max_tokens} is over this server's limit of {limits.max_text_tokens}", param="max_tokens"
        )
    return options


def _check_text(value: Any, param: str) -> None:
    """Refuses text that has no UTF-8 form: JSON lets a body hold a lone surrogate
    (``"\\ud800"``), which no tokenizer takes and no answer could echo."""
    stack = [(param, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise APIError(
                    400,
                    f"{where or 'body'} holds text that is not valid Unicode (a lone surrogate such as "
                    "\\ud800); send UTF-8 text",
                    param=where or None,
                    code="invalid_text",
                ) from None
        elif isinstance(item, dict):
            for key, child in item.items():
                stack += [
                    (f"{where}.{key}".lstrip(".") if str(key).isidentifier() else f"{where}[{key!r}]", child),
                    (where, key),
                ]
        elif isinstance(item, (list, tuple)):
            stack += [(f"{where}[{i}]", child) for i, child in enumerate(item)]


def _turns(messages: Sequence[Message]) -> list[Turn]:
    return [
        read_turn(m.role, m.content, [c.model_dump() for c in m.tool_calls or ()], where=f"messages[{i}]")
        for i, m in enumerate(messages)
    ]


def _submit(memory: AgentMem, request: ChatRequest, limits: ServerLimits) -> Future[Plan]:
    """Queues a request to its bank's scheduler (tokenising it takes the model's lock: run
    it off the event loop); 400s and 503s say what is wrong."""
    options = _plan_options(memory, request, limits)
    # Set on every request rather than when a bank is added: banks may be added at run time.
    scheduler = memory.scheduler
    scheduler.max_batch, scheduler.max_queue = limits.max_batch, limits.max_queue
    try:
        return memory.submit(
            prompt_messages(_turns(request.messages), memory.bank), time_limit=limits.time_limit, **options
        )
    except PromptTooLongError as exc:
        raise APIError(
            400, f"{exc} (this server's max_prompt_tokens)", param="messages", code="context_length_exceeded"
        ) from exc


#: How often a waiting handler asks whether its client is still there.
_DISCONNECT_POLL = 0.05


async def _plan(future: Future[Plan], http: Request) -> Plan | None:
    """The plan, once made; None when the client disconnected first (its decoding stopped)."""
    waiting = asyncio.wrap_future(future)
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=_DISCONNECT_POLL)
            if done:
                return waiting.result()
            if await http.is_disconnected():
                future.cancel()
                return None
    finally:  # the handler itself cancelled (the server stopping): nobody waits for the plan
        if not future.done():
            future.cancel()


# responses


def _completion(
    plan: Plan,
    *,
    model: str,
    fingerprint: str = "",
    stop: str | list[str] | None = None,
    schemas: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``chat.completion`` object for a plan (with the ``invalid_tool_calls`` extension)."""
    data = plan_to_dict(plan, schemas)
    text, cut = cut_at_stop(data["text"], stop)
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if text or not plan.calls else None,
        "refusal": None,
    }
    if data["tool_calls"]:
        message["tool_calls"] = data["tool_calls"]
    if data["invalid_tool_calls"]:
        message["invalid_tool_calls"] = data["invalid_tool_calls"]
    limited = plan.finish_reason in ("length", "time_limit") and not cut
    finish = "tool_calls" if plan.calls else "length" if limited else "stop"
    prompt, generated = data["usage"].get("prompt_tokens", 0), data["usage"].get("generated_tokens", 0)
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated},
        "agentmem": {"notes": data["notes"], "timings": data["timings"], "plan_finish_reason": data["finish_reason"]},
    }


def _chunks(completion: dict[str, Any], include_usage: bool = False) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects that add up to ``completion``."""
    head = {k: completion[k] for k in ("id", "created", "model", "system_fingerprint")} | {
        "object": "chat.completion.chunk"
    }
    choice, message = completion["choices"][0], completion["choices"][0]["message"]

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}

    out = [chunk({"role": "assistant", "content": message["content"], "refusal": None})]
    for index, call in enumerate(message.get("tool_calls", [])):
        out.append(chunk({"tool_calls": [{"index": index, **call}]}))
    last = {"invalid_tool_calls": message["invalid_tool_calls"]} if "invalid_tool_calls" in message else {}
    out.append(chunk(last, choice["finish_reason"], agentmem=completion["agentmem"]))
    if include_usage:
        out.append({**head, "choices": [], "usage": completion["usage"]})
    return out


def _events(chunks: list[dict[str, Any]]) -> Iterator[str]:
    yield from (f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n" for chunk in chunks)
    yield "data: [DONE]\n\n"


# the app


class BankRequest(BaseModel):
    """The body of ``POST /v1/banks``: load (or reload) a bank as ``name``.

    The bank is named, never given by path: ``folder`` (default: ``name``) is the name of a
    bank folder inside the folders the server was started with (`BankRegistry.roots`).
    """

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=_FOLDER_NAME)
    folder: str | None = Field(default=None, pattern=_FOLDER_NAME)
    path: None = None  # refused below with a message that says what to send instead

    @field_validator("path", mode="before")
    @classmethod
    def _no_path(cls, value: Any) -> None:
        raise ValueError(
            "banks are loaded by folder name, not by path: send 'folder', the name of a bank folder "
            "inside the folders this server was started with"
        )


def _param(loc: Sequence[Any]) -> str | None:
    parts = [p for p in loc if p != "body" and (isinstance(p, int) or str(p).isidentifier())]
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return text or None


def _as_api_error(exc: Exception) -> APIError:
    """Any exception as the error the client gets: 4xx for the request's faults, else 500."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, RequestValidationError):  # pydantic's errors, as a 400 rather than FastAPI's 422
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        if first.get("type") == "json_invalid" and len(first.get("loc", ())) <= 2:  # the body itself, not a field
            return APIError(400, f"the body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}")
        param = _param(first.get("loc", ()))
        return APIError(400, f"{param or 'body'}: {first.get('msg')}", param=param)
    if isinstance(exc, HTTPException):
        return APIError(exc.status_code, str(exc.detail))
    if isinstance(exc, OverloadedError):  # the server's load, not the request's fault: retry
        return APIError(
            503,
            str(exc),
            code="overloaded",
            kind="server_error",
            headers={"Retry-After": str(exc.retry_after)},
        )
    if isinstance(exc, (ChatInputError, ToolChoiceError)):  # the chat boundary says where in the request
        return APIError(400, str(exc), param=exc.param, code=exc.code)
    if isinstance(exc, AgentMemError):  # e.g. a bank folder that is not a bank
        return APIError(400, str(exc), code=re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower())
    return APIError(500, f"{type(exc).__name__}: {exc}", kind="server_error")


class _Gate:
    """ASGI middleware: the API key, then the body's size, before the app sees a request;
    and any exception the app lets through, as an error body (a 500) rather than a dropped
    connection.

    The body is counted as it arrives and held (it is at most ``limit`` bytes), so a body
    sent chunked, without ``Content-Length``, is bounded like any other. A plain ASGI
    middleware, not Starlette's ``BaseHTTPMiddleware``: behind that one, a handler's
    ``request.is_disconnected()`` never sees the client go (its receive is wrapped in a task
    group whose exit swallows the message), and a disconnected client must stop its decoding.
    """

    def __init__(self, app: Any, limit: int, api_key: str | None) -> None:
        self.app, self.limit = app, limit
        self.key = api_key.encode("utf-8") if api_key is not None else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        if (
            self.key is not None
            and scope.get("path") != "/health"
            and not self._authorized(headers.get(b"authorization", b""))
        ):
            error = APIError(
                401,
                "a valid API key is required: send the header 'Authorization: Bearer <key>' with the key "
                "this server was started with",
                code="invalid_api_key",
            )
            response = error.response()
            response.headers["WWW-Authenticate"] = "Bearer"
            return await response(scope, receive, send)
        size = headers.get(b"content-length", b"")
        if size.isdigit() and int(size) > self.limit:
            return await self._too_large(int(size))(scope, receive, send)
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left before its body was whole
                return None
            chunks.append(message.get("body", b""))
            total += len(chunks[-1])
            if total > self.limit:
                return await self._too_large(None)(scope, receive, send)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if replayed:  # after the body, the app waits here for a disconnect (streaming responses)
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        started = False

        async def sending(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            return await self.app(scope, replay, sending)
        except Exception as exc:  # answered here, so that the connection stays open
            _log.exception("%s %s failed", scope.get("method"), scope.get("path"))
            if started:  # too late for an error body
                raise
            return await _as_api_error(exc).response()(scope, replay, send)

    def _authorized(self, header: bytes) -> bool:
        scheme, _, token = header.partition(b" ")
        # compare_digest: the time taken does not tell how much of a guessed key was right
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key or b"")

    def _too_large(self, size: int | None) -> JSONResponse:
        told = f"of {size} bytes " if size is not None else ""
        return APIError(
            413, f"request body {told}is over this server's limit of {self.limit} bytes", code="request_too_large"
        ).response()


def create_app(
    registry: BankRegistry, limits: ServerLimits = ServerLimits(), *, admin: bool = False, api_key: str | None = None
) -> FastAPI:
    """The FastAPI app serving ``registry``.

    Args:
        registry: The banks; requests name them as ``model``.
        limits: Bounds on requests (prompt tokens, body bytes, ``max_tokens``).
        admin: Serve ``POST /v1/banks`` and ``DELETE /v1/banks/{name}``, which load banks
            from the folders in ``registry.roots`` (by folder name, onto backbones the
            registry holds) and drop them. Off by default: whoever reaches them changes
            what the server answers.
        api_key: If given, every route but ``/health`` needs ``Authorization: Bearer <key>``
            (401 otherwise).
    """
    app = FastAPI(title="agentmem", description="OpenAI-compatible tool calling over memory banks")
    if admin:
        _log.warning(
            "admin endpoints are on: POST /v1/banks and DELETE /v1/banks/{name} load and drop banks%s",
            "" if api_key is not None else " for anyone who reaches this server (no API key)",
        )

    app.add_middleware(_Gate, limit=limits.max_body_bytes, api_key=api_key)  # added last: runs first

    for kind in (APIError, RequestValidationError, HTTPException, AgentMemError):
        app.add_exception_handler(kind, lambda _, exc: _as_api_error(exc).response())

    # async: these answer from the event loop, not queued behind model calls
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "banks": len(registry.names()), "backbones": registry.backbones()}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": registry.models()}

    @app.get("/v1/models/{name}")
    async def model(name: str) -> dict[str, Any]:
        return registry.models(name)[0]

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: ChatRequest, http: Request) -> dict[str, Any] | Response:
        _check_text(request.model_dump(), "")
        memory = registry.get(request.model)
        plan = await _plan(await run_in_threadpool(_submit, memory, request, limits), http)
        if plan is None:  # nobody reads this answer: 499, as nginx logs a client gone
            return Response(status_code=499)
        completion = _completion(
            plan,
            model=request.model,
            fingerprint=memory.backbone.fingerprint,
            stop=request.stop,
            schemas=memory.schemas,
        )
        if not request.stream:
            return completion
        include_usage = bool((request.stream_options or {}).get("include_usage"))
        return StreamingResponse(_events(_chunks(completion, include_usage)), media_type="text/event-stream")

    if admin:

        @app.post("/v1/banks")
        def add_bank(body: BankRequest) -> dict[str, Any]:
            name = body.folder or body.name
            folder = registry.find(name)
            if folder is None:  # the same answer for every reason: it says nothing of the file system
                raise APIError(
                    404,
                    f"no bank folder named {name!r} in the folders this server serves banks from",
                    param="folder" if body.folder else "name",
                    code="bank_not_found",
                )
            try:
                registry.add(body.name, folder, new_backbones=False)
            except AgentMemError as exc:  # named by its folder alone: where the roots lie is the server's business
                raise APIError(
                    400, str(exc).replace(str(folder.parent) + os.sep, ""), code=_as_api_error(exc).code
                ) from exc
            return registry.models(body.name)[0]

        @app.delete("/v1/banks/{name}")
        def remove_bank(name: str) -> dict[str, Any]:
            registry.remove(name)
            return {"id": name, "object": "model", "deleted": True}

    return app
