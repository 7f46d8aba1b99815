"""The Temporal remote codec protocol, for the Web UI and `temporal --codec-endpoint`.

`POST /codec/encode` and `POST /codec/decode` take and return `{"payloads": [{"metadata": {k: base64},
"data": base64}]}` (proto3 JSON of `temporalio.api.common.v1.Payloads`). Decoding shows workflow data in
clear, so only ADMIN may decode; anyone authenticated may encode (it reveals nothing).
"""

import json
from collections.abc import Awaitable, Callable, Sequence

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from google.protobuf import json_format
from starlette.types import ASGIApp, Receive, Scope, Send
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import PayloadCodec

from countersign.api.deps import PrincipalDep, refusals
from countersign.api.limits import route_path
from countersign.models.enums import Role
from countersign.models.errors import Forbidden, Invalid, NotFound
from countersign.security.codec import PayloadCodecError

PREFIX = "/codec"

router = APIRouter(prefix=PREFIX, tags=["codec"])

# The OpenAPI page cannot infer the body from a raw protobuf parse; this is the protocol's shape.
_PAYLOADS_SCHEMA = {
    "type": "object",
    "required": ["payloads"],
    "properties": {
        "payloads": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "metadata": {
                        "type": "object",
                        "additionalProperties": {"type": "string", "format": "byte"},
                    },
                    "data": {"type": "string", "format": "byte"},
                },
            },
        }
    },
}
_OPENAPI = {
    "requestBody": {"required": True, "content": {"application/json": {"schema": _PAYLOADS_SCHEMA}}},
    "responses": {"200": {"content": {"application/json": {"schema": _PAYLOADS_SCHEMA}}}},
}


def _codec(request: Request) -> PayloadCodec:
    codec: PayloadCodec | None = request.app.state.codec
    if codec is None:
        raise NotFound("payload encryption is not configured (COUNTERSIGN_ENCRYPTION_KEYS is unset)")
    return codec


async def _apply(
    request: Request, convert: Callable[[Sequence[Payload]], Awaitable[list[Payload]]]
) -> Response:
    # Not JSON at all is a 400, JSON of the wrong shape a 422, as on every other route.
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as error:
        raise HTTPException(400, f"the body is not UTF-8: {error.reason} at byte {error.start}") from None
    try:
        json.loads(text)
    except ValueError as error:
        raise HTTPException(400, f"the body is not JSON: {error}") from None
    try:
        payloads = json_format.Parse(text, Payloads())
    except json_format.ParseError as error:
        raise Invalid(f"the body must be {{'payloads': [...]}} in proto3 JSON: {error}") from None
    try:
        converted = await convert(payloads.payloads)
    except PayloadCodecError as error:
        raise Invalid(str(error)) from None
    # `payloads` even when empty (proto3 JSON would leave it out), as the protocol's schema requires.
    return JSONResponse({"payloads": [json_format.MessageToDict(payload) for payload in converted]})


@router.post(
    "/encode",
    summary="Encrypt payloads with the active key",
    openapi_extra=_OPENAPI,
    responses=refusals(400, 401, 404, 413, 422),
)
async def encode(_: PrincipalDep, request: Request) -> Response:
    return await _apply(request, _codec(request).encode)


@router.post(
    "/decode",
    summary="Decrypt payloads (ADMIN only)",
    openapi_extra=_OPENAPI,
    responses=refusals(400, 401, 403, 404, 413, 422),
)
async def decode(principal: PrincipalDep, request: Request) -> Response:
    codec = _codec(request)
    if Role.ADMIN not in principal.roles:
        raise Forbidden("decoding payloads needs the ADMIN role")
    return await _apply(request, codec.decode)


class CodecCorsMiddleware:
    """CORSMiddleware for the codec routes only: the Web UI's origin gets no cross-origin access to the
    rest of the API. Starlette's middleware applies to a whole app, hence the dispatch on the path."""

    def __init__(self, app: ASGIApp, origins: Sequence[str]) -> None:
        self._app = app
        self._cors = CORSMiddleware(
            app,
            allow_origins=list(origins),
            allow_methods=["POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Namespace"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and route_path(scope).startswith(PREFIX + "/"):
            await self._cors(scope, receive, send)
        else:
            await self._app(scope, receive, send)
