"""Browser hardening headers on every HTTP response of the gateway.

- `Content-Security-Policy: STRICT_CSP`: only this origin's files run, load and are fetched (no inline
  script or style, no plugins, no `<base>`), forms post only here, and no page may frame ours
  (clickjacking: a framed inbox could be tricked into an `a` keystroke that approves). The inbox (`/ui`)
  and the stream page (`/ws-test/{run_id}`) are written for it: their script and style are files. JSON
  answers carry it too, where it costs nothing.
- The API docs (`/docs`, `/redoc`, Swagger's OAuth2 redirect) are FastAPI's pages, whose inline script
  loads Swagger UI or ReDoc from a CDN: they get DOCS_CSP, which forbids framing, plugins and `<base>`
  and leaves their scripts alone.
- `X-Frame-Options: DENY` (framing, for browsers without `frame-ancestors`), `X-Content-Type-Options:
  nosniff` (a response is only ever what its Content-Type says), `Referrer-Policy: no-referrer` (run ids
  in our URLs never leak to the Temporal Web UI or elsewhere through a link).

A route that sets one of these headers itself keeps its own. Pure ASGI: refusals by other middleware
(413, 429) get the headers too.
"""

from collections.abc import Iterable

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from countersign.api.limits import route_path

STRICT_CSP = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
ALWAYS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class SecurityHeadersMiddleware:
    """STRICT_CSP and ALWAYS on every response; DOCS_CSP instead on the paths in `docs`."""

    def __init__(self, app: ASGIApp, docs: Iterable[str | None] = ()) -> None:
        self._app = app
        self._docs = {path for path in docs if path}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        policy = DOCS_CSP if route_path(scope) in self._docs else STRICT_CSP

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", policy)
                for name, value in ALWAYS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self._app(scope, receive, with_headers)
