"""The FastAPI app: routes that translate between the protocol and `AgentMem.submit`."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from agentmem.adapters.server.banks import BankRegistry
from agentmem.adapters.server.errors import APIError, as_api_error
from agentmem.adapters.server.gate import Gate
from agentmem.adapters.server.options import ServerLimits, chat_turns, check_decoding, check_text, request_options
from agentmem.adapters.server.protocol import BankRequest, ChatRequest
from agentmem.adapters.server.responses import sse_events, to_chunks, to_completion
from agentmem.chat import prompt_messages
from agentmem.core import AgentMem
from agentmem.errors import AgentMemError, PromptTooLongError
from agentmem.tools.calls import Plan

__all__ = ["API_KEY_ENV", "create_app"]

API_KEY_ENV = "AGENTMEM_API_KEY"

_log = logging.getLogger(__name__)


def _submit(memory: AgentMem, request: ChatRequest, limits: ServerLimits, decoding: Mapping[str, Any]) -> Future[Plan]:
    """Queues a request to its bank's scheduler (tokenising it takes the model's lock: run
    it off the event loop); 400s and 503s say what is wrong."""
    options = request_options(memory, request, limits, decoding)
    # Set on every request rather than when a bank is added: banks may be added at run time.
    scheduler = memory.scheduler
    scheduler.max_batch, scheduler.max_queue = limits.max_batch, limits.max_queue
    try:
        return memory.submit(
            prompt_messages(chat_turns(request.messages), memory.bank), time_limit=limits.time_limit, **options
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


def create_app(
    registry: BankRegistry,
    limits: ServerLimits = ServerLimits(),
    *,
    decoding: Mapping[str, Any] | None = None,
    admin: bool = False,
    api_key: str | None = None,
) -> FastAPI:
    """The FastAPI app serving ``registry``.

    Args:
        registry: The banks; requests name them as ``model``.
        limits: Bounds on requests (prompt tokens, body bytes, ``max_tokens``).
        decoding: `AgentMem.plan` options applied to every request, of those a request
            does not choose itself (`SERVER_OPTIONS`: the levers, drafts, the schema
            constraint); None: the library's defaults. Checked here (ValueError).
        admin: Serve ``POST /v1/banks`` and ``DELETE /v1/banks/{name}``, which load banks
            from the folders in ``registry.roots`` (by folder name, onto backbones the
            registry holds) and drop them. Off by default: whoever reaches them changes
            what the server answers.
        api_key: If given, every route but ``/health`` needs ``Authorization: Bearer <key>``
            (401 otherwise).
    """
    decoding = check_decoding(decoding or {})
    app = FastAPI(title="agentmem", description="OpenAI-compatible tool calling over memory banks")
    if admin:
        _log.warning(
            "admin endpoints are on: POST /v1/banks and DELETE /v1/banks/{name} load and drop banks%s",
            "" if api_key is not None else " for anyone who reaches this server (no API key)",
        )

    app.add_middleware(Gate, limit=limits.max_body_bytes, api_key=api_key)  # added last: runs first

    for kind in (APIError, RequestValidationError, HTTPException, AgentMemError):
        app.add_exception_handler(kind, lambda _, exc: as_api_error(exc).response())

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
        check_text(request.model_dump(), "")
        memory = registry.get(request.model)
        plan = await _plan(await run_in_threadpool(_submit, memory, request, limits, decoding), http)
        if plan is None:  # nobody reads this answer: 499, as nginx logs a client gone
            return Response(status_code=499)
        completion = to_completion(
            plan,
            model=request.model,
            fingerprint=memory.backbone.fingerprint,
            stop=request.stop,
            schemas=memory.schemas,
        )
        if not request.stream:
            return completion
        include_usage = bool((request.stream_options or {}).get("include_usage"))
        return StreamingResponse(sse_events(to_chunks(completion, include_usage)), media_type="text/event-stream")

    if admin:
        _admin_routes(app, registry)
    return app


def _admin_routes(app: FastAPI, registry: BankRegistry) -> None:
    """``POST /v1/banks`` and ``DELETE /v1/banks/{name}`` (`create_app`'s ``admin``)."""

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
            raise APIError(400, str(exc).replace(str(folder.parent) + os.sep, ""), code=as_api_error(exc).code) from exc
        return registry.models(body.name)[0]

    @app.delete("/v1/banks/{name}")
    def remove_bank(name: str) -> dict[str, Any]:
        registry.remove(name)
        return {"id": name, "object": "model", "deleted": True}
