"""JSON bodies hold JSON: what Python's parser accepts beyond it is refused before any route sees it.

Python's `json` reads `NaN`, `Infinity` and `-Infinity`, and strings that are not Unicode (a lone
surrogate, written `"\\ud800"` or sent as the bytes of one); JSON (RFC 8259, I-JSON RFC 7493) has none of
them. Such a value passes a model typed `Any` or `float`, then cannot be carried to a workflow: one
`{"fields": {"zzz": NaN}}` once made a workflow whose input no worker could decode. Bodies nested deeper
than MAX_DEPTH are refused too: Temporal's pydantic converter stops decoding at about 200 levels, and no
body of this API needs a tenth of that.

Each refusal is shaped like FastAPI's own answer to a JSON syntax error (`type` `json_invalid`), and
like it is a 400 (the body is not JSON): for JSON, NaN, Infinity and a lone surrogate are syntax errors.
Nesting past MAX_DEPTH is JSON, refused as too deep: a 422, like any body that does not fit its route.
Anything else the parser cannot read (malformed JSON, bytes that are not UTF-8) goes on to the route,
whose parse answers 400 too (api/main.py, `not_json`).

A pure ASGI middleware rather than a route class: it holds for every route whoever wrote it, including
those that read their body themselves (/graph/create, /codec), and for routes added later. It buffers
the body, which RequestLimitMiddleware (outside it) has already capped, parses it once more (tens of
microseconds for a typical request; for a MiB of small values, tens of milliseconds, about what the
route's own parse costs), and hands the same bytes on.
"""

import json
import re
from typing import Any

from fastapi import status
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Far above any body of this API (a graph definition is six levels deep, a codec request four) and far
# below what the data converter can decode (about 200, wrappers included).
MAX_DEPTH = 64
# What may encode a surrogate: an escape `\uD800`-`\uDFFF`, or its UTF-8 bytes (ED A0-BF ..), which
# Python's `json.loads(bytes)` decodes with `surrogatepass`. Only bodies holding one are searched.
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _NotJson(ValueError):
    pass


_TOO_DEEP = f"the JSON is nested deeper than {MAX_DEPTH} levels"


def _refuse_constant(constant: str) -> Any:
    raise _NotJson(f"{constant} is not JSON: JSON numbers are finite")


def json_problem(body: bytes) -> str | None:
    """Why `body` is refused, or None: valid JSON, or something the route will refuse on its own."""
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except _NotJson as error:
        return str(error)
    except RecursionError:
        return _TOO_DEEP
    except ValueError:  # a syntax error or bytes that are not UTF-8: the route answers as it always has
        return None
    # Strings are looked at only when the body holds something like a surrogate (a substring test first:
    # the pattern alone scans 8 MiB in tens of milliseconds).
    strings = (b"\\u" in body or b"\xed" in body) and _MAYBE_SURROGATE.search(body) is not None
    return _shape_problem(value, strings)


def _shape_problem(value: Any, strings: bool) -> str | None:
    """Depth over MAX_DEPTH, or (when `strings`) a string or key that is not Unicode. Level by level, each
    container's members once, in comprehensions: no recursion for a body to exhaust, and a MiB of small
    members takes milliseconds."""
    level: list[Any] = [value]
    depth = 0
    while level:
        if strings and any(type(item) is str and _SURROGATE.search(item) for item in level):
            return "a string is not Unicode: it holds a lone surrogate (\\ud800-\\udfff)"
        containers = [item for item in level if type(item) is dict or type(item) is list]
        if not containers:
            return None
        depth += 1
        if depth > MAX_DEPTH:
            return _TOO_DEEP
        level = []
        for container in containers:
            if type(container) is dict:
                level += container.keys() if strings else ()
                level += container.values()
            else:
                level += container
    return None


def _json_media(scope: Scope) -> bool:
    """A body FastAPI or a route would parse as JSON: no Content-Type, `application/json` or `+json`."""
    content_type = Headers(scope=scope).get("content-type")
    if content_type is None:
        return True
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _has_body(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    return headers.get("content-length", "0").strip() not in ("", "0") or "transfer-encoding" in headers


class JsonBodyGate:
    """Refuses a JSON body that json_problem finds something wrong with: 400 not JSON, 422 too deep."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope) or not _json_media(scope):
            await self._app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left mid-body: the app sees it leave
                await self._app(scope, _replay(message, receive), send)
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        problem = json_problem(bytes(body))
        if problem is not None:
            error = {"type": "json_invalid", "loc": ["body"], "msg": problem}
            code = (
                status.HTTP_422_UNPROCESSABLE_CONTENT if problem == _TOO_DEEP else status.HTTP_400_BAD_REQUEST
            )
            response = JSONResponse({"detail": [error]}, status_code=code)
            await response(scope, receive, send)
            return
        whole = {"type": "http.request", "body": bytes(body), "more_body": False}
        await self._app(scope, _replay(whole, receive), send)


def _replay(first: Message, receive: Receive) -> Receive:
    """`first`, then whatever the server sends next (a disconnect)."""
    pending = [first]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
