"""`countersign mcp`: the MCP server over stdio, for an agent host that starts it as a subprocess. Every
tool call is an HTTP request to the gateway at `api_url` with `api_key`, the caller's own credential."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from countersign.mcp_server.gateway import Gateway
from countersign.mcp_server.server import build_server


async def serve_stdio(api_url: str, api_key: str) -> None:
    """Serve MCP on stdin/stdout until the client closes them. Nothing but the protocol is written to
    stdout; the key travels only in the Authorization header of requests to the gateway."""
    headers = {"Authorization": f"Bearer {api_key}", "User-Agent": "countersign-mcp"}
    async with httpx.AsyncClient(base_url=api_url.rstrip("/"), headers=headers) as http:
        gateway = Gateway(http)

        @asynccontextmanager
        async def the_gateway() -> AsyncIterator[Gateway]:
            yield gateway

        await build_server(the_gateway).run_stdio_async()
