"""Caps on what a request may make the gateway hold: its body and its headers. Beyond them: 413 (body) or
431 (headers), with a JSON `detail`, before any route buffers or parses anything.

A declared `Content-Length` over the limit is refused before the body is read; a body without one
(chunked) is counted as it streams in and refused as soon as it passes the limit. Pure ASGI, so it sees
every HTTP request whatever route (or none) answers it; WebSockets get the header cap only.
"""

from collections.abc import Sequence

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# All header names and values together. The HTTP server has its own cap (uvicorn's h11: 16 KiB of request
# head arriving in several reads); this one also holds when the head arrives at once, or behind a proxy.
# Far above any real request: a JWT is a few KiB.
MAX_HEADER_BYTES = 32 * 1024


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit. An HTTPException, so FastAPI's body
    parsing lets it through (it turns other errors into a 400) and its handler answers the 413 in JSON."""

    def __init__(self, limit: int) -> None:
        super().__init__(status.HTTP_413_CONTENT_TOO_LARGE, detail=too_large(limit))


def too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes, the most this gateway accepts"


class RequestLimitMiddleware:
    """`limit` body bytes for every request, or the limit of the first of `prefixes` the path starts with;
    MAX_HEADER_BYTES of headers."""

    def __init__(self, app: ASGIApp, limit: int, prefixes: Sequence[tuple[str, int]] = ()) -> None:
        self._app = app
        self._limit = limit
        self._prefixes = list(prefixes)

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self._prefixes if path.startswith(prefix)), self._limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        if sum(len(name) + len(value) for name, value in scope["headers"]) > MAX_HEADER_BYTES:
            detail = f"the request headers are larger than {MAX_HEADER_BYTES} bytes together"
            await _refuse(status.HTTP_431_REQUEST_HEADER_FIELDS_TOO_LARGE, detail, scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self._app(scope, receive, send)
            return
        limit = self.limit_for(route_path(scope))
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(status.HTTP_413_CONTENT_TOO_LARGE, too_large(limit), scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, counted, watched)
        except BodyTooLarge:
            # Only when it escaped FastAPI's handlers, e.g. from a middleware that read the body.
            if started:
                raise
            await _refuse(status.HTTP_413_CONTENT_TOO_LARGE, too_large(limit), scope, receive, send)


async def _refuse(code: int, detail: str, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        # Before the handshake: the server answers 403 to a socket closed before it was accepted.
        await send({"type": "websocket.close", "code": 1009, "reason": detail[:120]})
        return
    await JSONResponse({"detail": detail}, status_code=code)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None  # the server refuses a malformed Content-Length; counting still applies


def route_path(scope: Scope) -> str:
    """The path the app routes on: behind a proxy prefix (root_path), Starlette's `path` includes it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
