"""The MCP server at `/mcp` (Streamable HTTP), on the gateway itself.

Authenticated like every route: a request without a valid API key or token is answered 401, the same
refusal as elsewhere, before the SDK reads it, so no tool runs. The tools then call this gateway
in-process (`httpx.ASGITransport`) with the request's own Authorization header: each call is
authenticated, authorised and scoped to the caller's tenant by the routes, exactly as over HTTP.

Stateless (a fresh MCP transport per request, answered as JSON): nothing is held between requests, so any
gateway process behind a balancer can answer any of them, and no session outlives its credential. The
SDK's session manager still needs a running task group: `start` runs it in a task of its own, started by
`attach` and stopped by `detach` (the app's lifespan, or a test's fixture).

Host checks: the SDK's protection against DNS rebinding is on when the gateway listens on loopback only
(COUNTERSIGN_API_HOST 127.0.0.1, localhost or ::1: then only those host names are served), off otherwise.
"""

import asyncio
import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, status
from fastapi.responses import JSONResponse
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from countersign.api.auth import principal_for, token_verifier
from countersign.mcp_server.gateway import Gateway
from countersign.mcp_server.server import build_server

PATH = "/mcp"
# What the in-process calls address; the gateway answers whatever host it is called by.
_IN_PROCESS = "http://countersign.in-process"
# The Authorization header of the MCP request being served, for the tools' calls to the gateway.
_caller: contextvars.ContextVar[str | None] = contextvars.ContextVar("mcp_caller", default=None)


async def _bind_caller(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """MCP middleware: the handler of a message runs with the credential of the HTTP request that
    carried it (the SDK hands the request over with each message)."""
    headers = getattr(ctx.request, "headers", None)
    token = _caller.set(headers.get("authorization") if headers is not None else None)
    try:
        return await call_next(ctx)
    finally:
        _caller.reset(token)


def _unauthorized(detail: str) -> JSONResponse:
    return JSONResponse(
        {"detail": detail}, status_code=status.HTTP_401_UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"}
    )


class McpEndpoint:
    """The ASGI endpoint of `/mcp`: authenticate, then hand the request to the SDK's Streamable HTTP app."""

    def __init__(self, app: FastAPI, host: str) -> None:
        self._app = app
        self._host = host
        self._sdk_app: ASGIApp | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        header = Headers(scope=scope).get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            why = "a valid API key or token is required: Authorization: Bearer <credential>"
            await _unauthorized(why)(scope, receive, send)
            return
        state = self._app.state
        principal, problem = await principal_for(credential.strip(), state.principals, token_verifier(state))
        if principal is None:
            await _unauthorized(problem)(scope, receive, send)
            return
        if self._sdk_app is None:
            unavailable = JSONResponse({"detail": "the MCP server is not running"}, status_code=503)
            await unavailable(scope, receive, send)
            return
        await self._sdk_app(scope, receive, send)

    @asynccontextmanager
    async def _gateway(self) -> AsyncIterator[Gateway]:
        authorization = _caller.get()
        if authorization is None:  # the endpoint authenticated the request: never without a header
            raise RuntimeError("an MCP tool ran outside an authenticated request")
        transport = httpx.ASGITransport(app=self._app)
        headers = {"Authorization": authorization}
        async with httpx.AsyncClient(transport=transport, base_url=_IN_PROCESS, headers=headers) as http:
            yield Gateway(http)

    async def start(self) -> None:
        """Run the SDK's session manager (its task group) until `stop`."""
        if self._task is not None:
            return
        server = build_server(self._gateway, middleware=[_bind_caller])
        sdk_app = server.streamable_http_app(
            streamable_http_path=PATH, stateless_http=True, json_response=True, host=self._host
        )
        running = asyncio.Event()
        self._stop.clear()

        async def run() -> None:
            async with server.session_manager.run():
                running.set()
                await self._stop.wait()

        self._task = asyncio.create_task(run(), name="mcp-session-manager")
        started = asyncio.create_task(running.wait())
        await asyncio.wait({self._task, started}, return_when=asyncio.FIRST_COMPLETED)
        if not running.is_set():
            started.cancel()
            task, self._task = self._task, None
            await task  # raises what stopped it
        self._sdk_app = sdk_app

    async def stop(self) -> None:
        self._sdk_app = None
        task, self._task = self._task, None
        if task is not None:
            self._stop.set()
            await task


def mount_mcp(app: FastAPI, host: str) -> McpEndpoint:
    """Serve MCP at `/mcp`. POST only: stateless, the endpoint has no stream to offer on a GET (the SDK
    would hold one open, idle, for as long as the client likes) and no session to end with a DELETE; both
    are answered 405, as the MCP specification provides."""
    endpoint = McpEndpoint(app, host)
    # A route, not a mount: a mount would answer `/mcp` with a redirect to `/mcp/`.
    route = Route(PATH, endpoint, methods=["POST"], include_in_schema=False)
    app.router.routes.append(route)
    app.state.mcp = endpoint
    return endpoint
