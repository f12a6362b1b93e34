"""Errors as the client gets them: OpenAI's ``{"error": {...}}`` body, and every exception mapped to one."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from agentmem.errors import AgentMemError, ChatInputError, OverloadedError, ToolChoiceError

__all__ = ["APIError", "as_api_error"]


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


def _param(loc: Sequence[Any]) -> str | None:
    parts = [p for p in loc if p != "body" and (isinstance(p, int) or str(p).isidentifier())]
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts).lstrip(".")
    return text or None


def as_api_error(exc: Exception) -> APIError:
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
