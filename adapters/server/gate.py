"""The ASGI middleware in front of the app: the API key, the body's size, and the last word on errors."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi.responses import JSONResponse

from agentmem.adapters.server.errors import APIError, as_api_error

__all__ = ["Gate"]

_log = logging.getLogger(__name__)


class Gate:
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
            return await as_api_error(exc).response()(scope, replay, send)

    def _authorized(self, header: bytes) -> bool:
        scheme, _, token = header.partition(b" ")
        # compare_digest: the time taken does not tell how much of a guessed key was right
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key or b"")

    def _too_large(self, size: int | None) -> JSONResponse:
        told = f"of {size} bytes " if size is not None else ""
        return APIError(
            413, f"request body {told}is over this server's limit of {self.limit} bytes", code="request_too_large"
        ).response()
