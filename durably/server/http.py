"""HTTP plumbing shared by the API and the dashboard: JSON responses, the one error body
(``{"error": {"code", "message"}}``) and the status of each durably error, and the ASGI
layers every response passes through (``X-Durably-Env`` and ``nosniff`` headers, the body
size limit)."""

from __future__ import annotations

import logging
from typing import Any, Mapping

import orjson
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import admin
from ..core.jsonutil import MiB
from ..errors import DurablyError, InvalidInput, LeaseLost, NotFound, PayloadTooLarge, StoreUnavailable, UnknownFunction
from . import auth

log = logging.getLogger("durably.server")

MAX_BODY_BYTES = 5 * MiB
RETRY_AFTER = "5"  # seconds, on every 503: the store (or Redis) is unreachable


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


class BodyTooLarge(Exception):
    pass


_STATUS: list[tuple[type[BaseException], int]] = [
    (auth.Unauthorized, 401), (auth.Forbidden, 403), (auth.EnvMismatch, 409), (admin.Conflict, 409), (LeaseLost, 409),
    (PayloadTooLarge, 413), (InvalidInput, 400), (NotFound, 404), (UnknownFunction, 404), (StoreUnavailable, 503),
]


def error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> JSON:
    return JSON({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def status_of(exc: DurablyError) -> int:
    """The HTTP status of a durably error (the dashboard's pages use the same)."""
    return next((s for cls, s in _STATUS if isinstance(exc, cls)), 500)


def error_response(exc: BaseException) -> JSON:
    if isinstance(exc, BodyTooLarge):
        return error(413, "payload_too_large", f"request body is over the limit of {MAX_BODY_BYTES:,} bytes")
    if isinstance(exc, DurablyError):
        status = status_of(exc)
        if status == 500:
            log.error("%s: %s", type(exc).__name__, exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if status == 503:
            headers = {"Retry-After": RETRY_AFTER}
        return error(status, exc.code, exc.message, headers)
    log.exception("unexpected error in the HTTP API")
    return error(500, "internal_error", "internal error (logged by the server)")


# --- ASGI middleware -------------------------------------------------------------------------


class DurablyStarlette(Starlette):
    """Starlette with ``EnvHeader`` as its outermost layer, outside even the handler of
    unexpected errors: every response has the headers, a 500 included."""

    def __init__(self, *args: Any, env: str, **kwargs: Any):
        self._durably_env = env
        super().__init__(*args, **kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        return EnvHeader(super().build_middleware_stack(), env=self._durably_env)


class EnvHeader:
    """Adds ``X-Durably-Env`` and ``X-Content-Type-Options: nosniff`` to every response (API,
    dashboard, static files, errors and 404s alike)."""

    def __init__(self, app: ASGIApp, env: str):
        self.app = app
        self.headers = [(auth.ENV_HEADER.lower().encode(), env.encode()), (b"x-content-type-options", b"nosniff")]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def with_env(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {bytes(k).lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *(h for h in self.headers if h[0] not in names)]
            await send(message)

        await self.app(scope, receive, with_env)


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes (413), by Content-Length or as they stream in."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return await error(400, "invalid_input", "Content-Length is not a number")(scope, receive, send)
                if length > self.limit:
                    return await error_response(BodyTooLarge())(scope, receive, send)
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited, send)
